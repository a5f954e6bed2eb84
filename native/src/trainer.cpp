// trainer.cpp — the training loop: data → forward/backward → clip → AdamW → events, eval, checkpoints.
#include "trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <optional>

#include "adapter_io.h"
#include "backend.h"
#include "checkpoint.h"
#include "data_parallel.h"
#include "dist_launch.h"
#include "error.h"
#include "fsutil.h"
#include "mcq.h"
#include "model_config.h"
#include "optimizer.h"
#include "run_config.h"
#include "truncation.h"
#include "version.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace hq {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Dropout seed of optimizer step `step` (0-based): a pure function of (seed, step), so restoring `step` restores
// the dropout stream.
uint64_t dropout_seed_for(uint64_t seed, int64_t step) {
    uint64_t z = seed ^ 0x6A09E667F3BCC909ull;
    z += 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

std::string fmt_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    char buf[32];
    int64_t t = static_cast<int64_t>(s + 0.5);
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(t / 3600), (long long)(t / 60 % 60));
    else
        std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
    return buf;
}

size_t optimizer_bytes(const AdamW& opt) {
    size_t n = 0;
    for (size_t i = 0; i < opt.m.size(); ++i) n += (opt.m[i].size() + opt.v[i].size()) * sizeof(float);
    return n;
}

}  // namespace

EvalResult evaluate(Model& model, const TokenFile& file, int64_t max_len, int64_t max_examples,
                    size_t max_logits_bytes) {
    EvalResult r;
    model.set_training(false, 0);
    const int64_t V = model.config().vocab_size;
    const int64_t n = max_examples > 0 ? std::min(max_examples, file.n_examples) : file.n_examples;
    double loss_sum = 0.0;
    int64_t correct = 0, em_hits = 0, em_total = 0;
    bool logits_ok = true;
    std::vector<float> logits;
    for (int64_t e = 0; e < n; ++e) {
        MicroBatch mb = make_micro_batch(file, {e}, max_len);
        if (mb.n_targets == 0) continue;
        const int T = mb.T;
        r.examples += 1;
        r.tokens += mb.n_targets;
        // Packed rows need the document mask, which only the loss path takes (no accuracy / exact match then).
        if (file.packed || static_cast<size_t>(T) * static_cast<size_t>(V) * sizeof(float) > max_logits_bytes) {
            logits_ok = false;
            loss_sum += model.forward_backward_packed(mb.ids.data(), mb.labels.data(), seg_of(mb), 1, T, false, 0.0f)
                            .loss_sum;
            continue;
        }
        logits.resize(static_cast<size_t>(T) * V);
        model.forward_logits(mb.ids.data(), 1, T, logits.data());   // logits [1, T, V]
        bool all_right = true;
        for (int t = 0; t + 1 < T; ++t) {
            const int32_t y = mb.labels[t + 1];
            if (y == kIgnoreLabel) continue;
            const float* row = logits.data() + static_cast<size_t>(t) * V;
            int64_t arg = 0;
            for (int64_t k = 1; k < V; ++k)
                if (row[k] > row[arg]) arg = k;
            double s = 0.0;
            for (int64_t k = 0; k < V; ++k) s += std::exp(static_cast<double>(row[k]) - row[arg]);
            loss_sum += (static_cast<double>(row[arg]) + std::log(s)) - static_cast<double>(row[y]);
            if (arg == y) ++correct;
            else all_right = false;
        }
        em_total += 1;
        em_hits += all_right ? 1 : 0;
    }
    r.loss = r.tokens > 0 ? loss_sum / static_cast<double>(r.tokens) : 0.0;
    r.perplexity = std::exp(r.loss);
    if (logits_ok && r.tokens > 0) {
        r.accuracy = static_cast<double>(correct) / static_cast<double>(r.tokens);
        r.exact_match = em_total > 0 ? static_cast<double>(em_hits) / static_cast<double>(em_total) : 0.0;
    }
    return r;
}

nlohmann::json adapter_stats(Model& model, int max_modules) {
    std::vector<AdaptedModule>& mods = model.modules();
    const AdapterSpec& spec = model.adapter_spec();
    const int L = static_cast<int>(spec.levels.size());
    std::vector<size_t> pick;
    const size_t n = mods.size();
    if (n <= static_cast<size_t>(max_modules) || max_modules < 2) {
        for (size_t i = 0; i < std::min(n, static_cast<size_t>(std::max(max_modules, 1))); ++i) pick.push_back(i);
    } else {
        for (int k = 0; k < max_modules; ++k) pick.push_back(static_cast<size_t>(k) * (n - 1) / (max_modules - 1));
    }
    std::vector<double> d2(L, 0.0), a2(L, 0.0), b2(L, 0.0);
    nlohmann::json names = nlohmann::json::array();
    for (size_t idx : pick) {
        const AdaptedModule& m = mods[idx];
        names.push_back(m.name);
        const int64_t R = m.A->shape[0], in = m.in, out = m.out;
        const float* A = m.A->w;   // [R, in]
        const float* B = m.B->w;   // [out, R]
        for (int l = 0; l < L; ++l) {
            const int r = spec.levels[l].rank, off = m.level_offset[l];
            std::vector<double> ga(static_cast<size_t>(r) * r, 0.0), gb(static_cast<size_t>(r) * r, 0.0);
            for (int j = 0; j < r; ++j)          // G_A = A_l A_lᵀ [r, r]
                for (int k = j; k < r; ++k) {
                    double s = 0.0;
                    const float* aj = A + (off + j) * in;
                    const float* ak = A + (off + k) * in;
                    for (int64_t c = 0; c < in; ++c) s += static_cast<double>(aj[c]) * ak[c];
                    ga[j * r + k] = ga[k * r + j] = s;
                }
            for (int64_t o = 0; o < out; ++o) {  // G_B = B_lᵀ B_l [r, r]
                const float* row = B + o * R + off;
                for (int j = 0; j < r; ++j)
                    for (int k = j; k < r; ++k) gb[j * r + k] += static_cast<double>(row[j]) * row[k];
            }
            for (int j = 0; j < r; ++j)
                for (int k = 0; k < j; ++k) gb[j * r + k] = gb[k * r + j];
            double tr = 0.0, ta = 0.0, tb = 0.0;
            for (int j = 0; j < r; ++j) {
                ta += ga[j * r + j];
                tb += gb[j * r + j];
                for (int k = 0; k < r; ++k) tr += gb[j * r + k] * ga[k * r + j];
            }
            const double s = spec.scale(l);
            d2[l] += s * s * std::max(0.0, tr);
            a2[l] += ta;
            b2[l] += tb;
            (void)R;
        }
    }
    nlohmann::json levels = nlohmann::json::array();
    for (int l = 0; l < L; ++l)
        levels.push_back({{"level", l}, {"rank", spec.levels[l].rank}, {"delta_norm", std::sqrt(d2[l])},
                          {"a_norm", std::sqrt(a2[l])}, {"b_norm", std::sqrt(b2[l])}});
    return {{"levels", levels}, {"modules", names}};
}

namespace {

// One training job, in the order it happens: setup (everything that can fail on user input is checked before the
// run folder is written; then resume and the start event), the optimizer steps, evaluations and checkpoints in
// between, and the end (a stop or the final adapter). Non-copyable: the batcher and the optimizer hold references
// into it.
class TrainingRun {
  public:
    TrainingRun(const TrainOptions& opt, EventSink& events, const std::atomic<int>& stop_flag,
                std::atomic<int>* save_request)
        : opt_(opt), events_(events), stop_flag_(stop_flag), save_request_(save_request) {}
    TrainingRun(const TrainingRun&) = delete;
    TrainingRun& operator=(const TrainingRun&) = delete;

    int run() {
        setup();
        t_loop_ = Clock::now();
        first_step_ = step_;
        last_loss_ = loss_tail_.empty() ? std::nan("") : loss_tail_.back();
        std::vector<MicroBatch> micro(static_cast<size_t>(ga_));
        while (step_ < total_) {
            if (stop_all_ || (!dp_->active() && stop_flag_.load())) break;
            if (const int rc = train_step(micro); rc != kExitDone) return rc;
            after_step();
        }
        if ((stop_all_ || stop_flag_.load()) && step_ < total_) return finish_stopped();
        return finish_completed();
    }

  private:
    // --- setup -----------------------------------------------------------------------------------------------
    void setup() {
        t_start_ = Clock::now();
        cfg_ = load_run_config(opt_.config_path);
        run_dir_ = cfg_.run_dir();
        ckpt_dir_ = path_join(run_dir_, "checkpoints");
        set_threads();
        read_inputs();
        load_model();
        plan_schedule();
        if (dp_->root()) {   // rank 0 alone writes the run folder
            make_dirs(run_dir_);
            events_.open_log(path_join(run_dir_, "events.jsonl"));
        }
        if (resume_from_) {
            restore_checkpoint();
        } else if (opt_.resume) {
            events_.emit_warning("W_NO_CHECKPOINT", HQ_MSG("--resume given but " << ckpt_dir_
                                                           << " has no complete checkpoint; starting from step 0"));
        }
        dp_->zero_shard(*adam_);   // ZeRO-1: this rank's share of the (restored) optimizer state
        warn_truncated();
        emit_start();
    }

    // Threads: one setting for OpenMP and OpenBLAS; results are identical for a fixed count.
    void set_threads() {
        threads_ = opt_.threads >= 0 ? opt_.threads : cfg_.threads;
        if (threads_ <= 0) threads_ = std::max(1, omp_get_num_procs() / dist_local_world());   // a host's ranks share the cores
        omp_set_num_threads(threads_);
        openblas_set_num_threads(threads_);
    }

    // The model config, the token files and the checkpoint to resume from (or the absence of one to overwrite).
    void read_inputs() {
        mc_ = load_model_config(cfg_.model_path);
        train_ = read_token_file(cfg_.data.train_tokens, mc_.vocab_size);
        if (!cfg_.data.eval_tokens.empty()) eval_file_ = read_token_file(cfg_.data.eval_tokens, mc_.vocab_size);
        // eval.mcq: multiple-choice accuracy at every eval (mcq event)
        if (!cfg_.eval.mcq_tokens.empty()) mcq_file_ = read_mcq_file(cfg_.eval.mcq_tokens, mc_.vocab_size);
        HQ_CHECK(train_.n_examples > 0, "E_TOKENS", cfg_.data.train_tokens << " has no examples",
                 (Where{cfg_.data.train_tokens, "", "", -1, -1}), "check the dataset and the data preparation settings");

        if (opt_.resume) {
            resume_from_ = find_resume_checkpoint(ckpt_dir_);
        } else if (!list_checkpoints(ckpt_dir_).empty()) {
            Where w;
            w.file = cfg_.file;
            w.key = "output.run_name";
            throw Error("E_CONFIG", HQ_MSG("the run folder " << run_dir_ << " already has checkpoints"), w,
                        "pass --resume to continue that run, or choose another output.run_name");
        }
        if (resume_from_) check_checkpoint_compat(read_checkpoint_state(resume_from_->path), compat_json(cfg_),
                                                  resume_from_->path);
    }

    // Data parallel: join the world (when a launcher started this process as one rank of it) before the model
    // loads, so that the device backend picks this local rank's GPU.
    void load_model() {
        dp_.emplace(cfg_.dist, cfg_.device);
        world_ = dp_->world();
        rank_ = dp_->rank();
        LoadedModel loaded = load_model_on(cfg_.device, cfg_.model_path, cfg_.quant, cfg_.adapter, cfg_.training.seed,
                                           cfg_.file, cfg_.compute_dtype);
        model_ = std::move(loaded.model);
        load_warning_ = loaded.warning;
        on_device_ = model_->device_resident();
        const TokenFile* packed = train_.packed ? &train_ : eval_file_ && eval_file_->packed ? &*eval_file_ : nullptr;
        if (packed && !model_->supports_packing())
            throw Error("E_CONFIG", HQ_MSG(packed->path << " holds packed sequences (data.packing), which the "
                                           << model_->backend() << " backend cannot train yet: it has no document mask"),
                        Where{cfg_.file, "", "data.packing", -1, -1},
                        "set data.packing to false, or train on the CPU backend (hardware.device: cpu)");
        model_->set_gradient_checkpointing(cfg_.training.gradient_checkpointing);
        dp_->attach(*model_, cfg_.file);
        adam_.emplace(model_->params(), AdamWConfig{cfg_.training.learning_rate, cfg_.training.adam_beta1,
                                                    cfg_.training.adam_beta2, cfg_.training.adam_epsilon,
                                                    cfg_.training.weight_decay});
    }

    // Steps, learning-rate schedule, sequence length and data order.
    void plan_schedule() {
        mbs_ = cfg_.training.micro_batch_size;
        ga_ = cfg_.training.gradient_accumulation_steps;
        ex_per_step_ = static_cast<int64_t>(mbs_) * ga_ * world_;   // the global batch (data_parallel.h)
        total_ = cfg_.training.max_steps;
        if (cfg_.training.has_epochs)
            total_ = static_cast<int64_t>(std::ceil(cfg_.training.epochs * static_cast<double>(train_.n_examples) /
                                                    static_cast<double>(ex_per_step_)));
        if (opt_.max_steps >= 0) total_ = opt_.max_steps;
        sched_ = {cfg_.training.lr_scheduler, cfg_.training.learning_rate,
                  resolve_warmup_steps(cfg_.training.warmup_steps, cfg_.training.warmup_ratio, total_), total_};
        max_len_ = std::min<int64_t>(cfg_.data.max_len(), mc_.max_position_embeddings);
        batcher_.emplace(train_, mbs_, max_len_, cfg_.training.shuffle, cfg_.training.seed);
        dropout_seed_ = cfg_.training.seed;
        hash_ = config_hash(cfg_);
    }

    void restore_checkpoint() {
        nlohmann::json st = load_checkpoint(resume_from_->path, *model_, *adam_);
        model_->sync_from_host(&*adam_);
        step_ = st.at("step").get<int64_t>();
        tokens_seen_ = st.value("tokens_seen", int64_t(0));
        batcher_->restore(DataCursor::from_json(st.at("data_cursor")));
        dropout_seed_ = std::stoull(st.at("rng").at("dropout_seed").get<std::string>());
        for (const auto& x : st.value("loss_history_tail", nlohmann::json::array()))
            if (x.is_number()) loss_tail_.push_back(x.get<double>());
        const int64_t saved_world = st.value("world_size", int64_t(1));
        if (saved_world != world_)
            events_.emit_warning("W_WORLD_CHANGED",
                                 HQ_MSG("checkpoint " << resume_from_->path << " was written by a world of "
                                        << saved_world << " rank(s); resuming on " << world_ << ": the data position "
                                        "is global, the global batch is now " << ex_per_step_ << " examples"));
        if (st.value("config_hash", std::string()) != hash_)
            events_.emit_warning("W_CONFIG_CHANGED",
                                 HQ_MSG("run.json differs from the configuration of checkpoint " << resume_from_->path
                                        << " in training settings; resuming with the new settings"));
        last_ckpt_step_ = step_;
        last_ckpt_path_ = resume_from_->path;
        std::fprintf(stderr, "[hqlora] resumed from %s (step %lld)\n", resume_from_->path.c_str(), (long long)step_);
    }

    void warn_truncated() {
        const TruncationStats trunc = truncation_stats(train_, max_len_);
        if (trunc.rows > 0)
            events_.emit_warning("W_TRUNCATED", truncation_message(trunc, train_.n_examples, max_len_,
                                                                   cfg_.data.max_len(), mc_, cfg_.model_path,
                                                                   cfg_.data.train_tokens));
    }

    void emit_start() {
        const AdapterSpec& spec = model_->adapter_spec();
        int64_t trainable = 0;
        for (const Param& p : model_->params()) trainable += static_cast<int64_t>(p.numel);
        nlohmann::json per_level = nlohmann::json::array();
        for (size_t l = 0; l < spec.levels.size(); ++l) {
            int64_t n = 0;
            for (const AdaptedModule& m : model_->modules())
                n += static_cast<int64_t>(spec.levels[l].rank) * (m.in + m.out);
            per_level.push_back({{"level", l}, {"rank", spec.levels[l].rank}, {"alpha", spec.levels[l].alpha},
                                 {"scale", spec.scale(static_cast<int>(l))}, {"params", n}});
        }
        const double tokens_per_step = static_cast<double>(ex_per_step_) *
                                       static_cast<double>(train_.total_targets(max_len_)) /
                                       static_cast<double>(train_.n_examples);
        events_.emit("start",
                     {{"run_dir", run_dir_}, {"trainer_version", HQ_VERSION}, {"config_hash", hash_},
                      {"model", {{"path", cfg_.model_path}, {"architecture", mc_.model_type}, {"layers", mc_.num_layers},
                                 {"hidden", mc_.hidden_size}, {"vocab", mc_.vocab_size},
                                 {"quantization", cfg_.quant.type}}},
                      {"backend", model_->backend()}, {"threads", threads_}, {"world_size", world_},
                      {"dist_backend", dp_->backend()},
                      {"params", {{"total", model_->base_param_count() + trainable}, {"trainable", trainable},
                                  {"per_level", per_level}}},
                      {"total_steps", total_},
                      {"resumed_from_step", resume_from_ ? nlohmann::json(step_) : nlohmann::json()},
                      {"tokens_per_step", tokens_per_step}, {"examples_per_step", ex_per_step_},
                      {"train_examples", train_.n_examples},
                      {"eval_examples", eval_file_ ? eval_file_->n_examples : 0}});
        if (!load_warning_.empty()) {   // after `start`: the start event is always the first one (CONTRACTS §2)
            events_.emit_warning("W_DEVICE_FALLBACK", load_warning_);
            std::fprintf(stderr, "[hqlora] warning: %s\n", load_warning_.c_str());
        }
        std::fprintf(stderr, "[hqlora] %s: %s, %d layers, %lld trainable params, %lld steps, %d threads\n",
                     run_dir_.c_str(), mc_.model_type.c_str(), mc_.num_layers, (long long)trainable, (long long)total_,
                     threads_);
    }

    // --- step ------------------------------------------------------------------------------------------------
    // One optimizer step: gather the step's micro-batches, forward/backward each, clip, AdamW. Returns kExitDone,
    // or kExitNonFinite when the loss, the gradient norm or an updated weight is not finite (nothing is applied to
    // a checkpoint then).
    int train_step(std::vector<MicroBatch>& micro) {
        const auto t_step = Clock::now();
        model_->set_training(true, dropout_seed_for(dropout_seed_, step_));
        model_->skip_dropout_calls(static_cast<uint64_t>(rank_) * ga_);
        int64_t n_targets = 0, n_tokens = 0;   // of the global batch: every rank walks the whole stream
        for (int k = 0; k < ga_ * world_; ++k) {
            MicroBatch mb = batcher_->next();
            n_targets += mb.n_targets;
            n_tokens += mb.n_real_tokens;
            if (k / ga_ == rank_) micro[k % ga_] = std::move(mb);
        }
        const float grad_scale = n_targets > 0 ? 1.0f / static_cast<float>(n_targets) : 0.0f;
        model_->zero_grad();
        double loss_sum = 0.0;
        struct Disarm {   // an exception between arm_overlap and the sum: stop the sums before the buffers go
            DataParallel& dp;
            Model& m;
            ~Disarm() { dp.disarm(m); }
        } disarm{*dp_, *model_};
        for (int k = 0; k < ga_; ++k) {
            if (k == ga_ - 1) dp_->arm_overlap(*model_);   // the last backward: its layers' gradients are final
            loss_sum += model_->forward_backward_packed(micro[k].ids.data(), micro[k].labels.data(), seg_of(micro[k]),
                                                        micro[k].B, micro[k].T, true, grad_scale).loss_sum;
        }
        requested_here_ = false;
        if (dp_->active()) reduce_over_ranks(loss_sum);
        const double loss = n_targets > 0 ? loss_sum / static_cast<double>(n_targets) : 0.0;
        if (!std::isfinite(loss)) return non_finite("the training loss", loss);
        if (n_targets == 0)
            events_.emit_warning("W_NO_TARGETS", HQ_MSG("step " << step_ + 1 << " has no target tokens; no update"));
        const float max_norm = static_cast<float>(cfg_.training.max_grad_norm);
        std::vector<Param>& params = model_->params();
        const float grad_norm = on_device_ ? model_->device_clip_grad_norm(max_norm) : clip_grad_norm(params, max_norm);
        if (!std::isfinite(grad_norm)) return non_finite("the gradient norm", grad_norm);
        const double lr = lr_at(sched_, step_);
        bool finite = true;
        if (on_device_) {
            finite = model_->device_adamw_step(*adam_, lr);
        } else {
            adam_->step(lr);
            dp_->zero_gather_weights(*model_);   // ZeRO-1: each rank updated its share
            finite = params_finite(params);
        }
        if (!finite) return non_finite("an adapter weight after the update", std::nan(""));
        ++step_;
        tokens_seen_ += n_targets;
        ran_step_ = true;
        last_loss_ = loss;
        loss_tail_.push_back(loss);
        while (loss_tail_.size() > 32) loss_tail_.pop_front();
        report_step(loss, lr, grad_norm, n_targets, n_tokens, seconds_since(t_step));
        return kExitDone;
    }

    // Data parallel: sums the gradients, the loss and the stop / save requests over ranks (data_parallel.h), and
    // gathers each rank's memory for the step event.
    void reduce_over_ranks(double& loss_sum) {
        allreduce_bytes_ = dp_->reduce_gradients(*model_);
        if (!logged_allreduce_) {   // the bytes per step, once (every step's event has allreduce_bytes)
            logged_allreduce_ = true;
            std::fprintf(stderr, "[hqlora] rank %d: %zu bytes of adapter gradients all-reduced per step in %d bucket(s)%s\n",
                         rank_, allreduce_bytes_, dp_->last_buckets(),
                         cfg_.dist.overlap ? ", overlapped with the backward" : "");
        }
        std::vector<double> v(static_cast<size_t>(3 + world_), 0.0);
        v[0] = loss_sum;
        v[1] = stop_flag_.load() ? 1.0 : 0.0;
        v[2] = save_request_ && save_request_->exchange(0) != 0 ? 1.0 : 0.0;
        v[3 + rank_] = static_cast<double>(model_->memory_bytes() + (on_device_ ? 0 : optimizer_bytes(*adam_)));
        dp_->reduce_host(v);
        loss_sum = v[0];
        stop_all_ = v[1] > 0;
        requested_here_ = v[2] > 0;
        rank_memory_.assign(v.begin() + 3, v.end());
    }

    void report_step(double loss, double lr, float grad_norm, int64_t n_targets, int64_t n_tokens, double dt) {
        const double elapsed = seconds_since(t_loop_);
        const double eta = elapsed / static_cast<double>(step_ - first_step_) * static_cast<double>(total_ - step_);
        if (step_ % cfg_.logging.every_steps == 0 || step_ == total_) {
            nlohmann::json ev = {{"step", step_}, {"total_steps", total_}, {"epoch", batcher_->epoch_progress()},
                                 {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm}, {"tokens", n_targets},
                                 {"tokens_per_s", n_tokens / std::max(dt, 1e-9)}, {"elapsed_s", elapsed},
                                 {"eta_s", eta},
                                 {"memory_bytes", model_->memory_bytes() + (on_device_ ? 0 : optimizer_bytes(*adam_))}};
            if (dp_->active()) {
                ev["world_size"] = world_;
                ev["allreduce_bytes"] = allreduce_bytes_;
                ev["rank_memory_bytes"] = rank_memory_;
            }
            events_.emit("step", ev);
            std::fprintf(stderr, "[hqlora] step %lld/%lld | loss %.4f | lr %.3e | gnorm %.4f | %.0f tok/s | eta %s\n",
                         (long long)step_, (long long)total_, loss, lr, grad_norm, n_tokens / std::max(dt, 1e-9),
                         fmt_duration(eta).c_str());
        }
    }

    // Adapter statistics, evaluation and checkpoints due after the step just taken.
    void after_step() {
        if (dp_->root() && cfg_.logging.adapter_stats_every > 0 && step_ % cfg_.logging.adapter_stats_every == 0) {
            model_->sync_to_host(nullptr);
            nlohmann::json st = adapter_stats(*model_);
            st["step"] = step_;
            events_.emit("adapter_stats", st);
        }
        if ((eval_file_ || mcq_file_) && cfg_.eval.every_steps > 0 && step_ % cfg_.eval.every_steps == 0 &&
            step_ < total_)
            evaluate_now();
        // "Save checkpoint now" (SIGUSR1) is served after the step it arrived in, as one "requested" checkpoint, which
        // keep-K pruning leaves alone; it stands in for a periodic one of the same step. On the last step the final
        // checkpoint serves it.
        const bool requested =
            step_ < total_ && (dp_->active() ? requested_here_ : save_request_ && save_request_->exchange(0) != 0);
        if (requested)
            checkpoint("requested");
        else if (cfg_.checkpoints.every_steps > 0 && step_ % cfg_.checkpoints.every_steps == 0)
            checkpoint("periodic");
    }

    int non_finite(const char* what, double value) {
        Where w;
        w.file = last_ckpt_path_;
        events_.emit_error(
            Error("E_NONFINITE", HQ_MSG(what << " is " << json_number(value).dump() << " at step " << (step_ + 1)
                                        << "; the update was not applied to any checkpoint"),
                  w,
                  last_ckpt_path_.empty()
                      ? "lower training.learning_rate or training.max_grad_norm and start again"
                      : HQ_MSG("lower training.learning_rate or training.max_grad_norm; the last good checkpoint "
                               << last_ckpt_path_ << " is kept (resume from it with --resume)")),
            {{"step", step_ + 1}});
        std::fprintf(stderr, "[hqlora] error: %s is not finite at step %lld\n", what, (long long)(step_ + 1));
        return kExitNonFinite;
    }

    // --- evaluate --------------------------------------------------------------------------------------------
    void evaluate_now() {
        last_eval_step_ = step_;
        if (!dp_->root()) return;   // rank 0 evaluates; the others wait at the next step's all-reduce
        if (mcq_file_) {
            McqOptions mo;
            mo.max_len = mc_.max_position_embeddings;
            mo.max_questions = cfg_.eval.mcq_max_questions;
            nlohmann::json s = score_mcq(*model_, *mcq_file_, mo).summary();
            s["step"] = step_;
            events_.emit("mcq", s);
            std::fprintf(stderr, "[hqlora] mcq step %lld | acc %.4f | macro %.4f\n", (long long)step_,
                         s["accuracy"].get<double>(), s["macro_accuracy"].get<double>());
        }
        if (!eval_file_) return;
        const int64_t max_ex = cfg_.eval.max_batches > 0 ? cfg_.eval.max_batches * mbs_ : 0;
        EvalResult er = evaluate(*model_, *eval_file_, max_len_, max_ex);
        nlohmann::json f = {{"step", step_}, {"eval_loss", er.loss}, {"perplexity", er.perplexity},
                            {"eval_tokens", er.tokens}, {"eval_examples", er.examples}};
        if (er.accuracy >= 0) {
            f["accuracy"] = er.accuracy;
            f["exact_match"] = er.exact_match;
        }
        events_.emit("eval", f);
        std::fprintf(stderr, "[hqlora] eval step %lld | loss %.4f | ppl %.3f | acc %.4f\n", (long long)step_, er.loss,
                     er.perplexity, er.accuracy);
    }

    // --- checkpoint ------------------------------------------------------------------------------------------
    void checkpoint(const char* reason) {
        dp_->zero_gather_state(*adam_);   // ZeRO-1: the checkpoint holds the whole optimizer state
        struct Reshard {
            DataParallel& dp;
            AdamW& opt;
            ~Reshard() { dp.zero_shard(opt); }
        } reshard{*dp_, *adam_};
        if (!dp_->root()) {   // rank 0 writes the one checkpoint of the world
            last_ckpt_step_ = step_;
            return;
        }
        nlohmann::json state = {
            {"reason", reason},   // "requested" checkpoints are never pruned (checkpoint.cpp)
            {"micro_step", step_ * ga_},
            {"epoch", batcher_->epoch_progress()},
            {"data_cursor", batcher_->cursor().to_json()},
            {"rng", {{"dropout_seed", std::to_string(dropout_seed_)},
                     {"dropout_stream", "splitmix64(seed, step): re-seeded at every optimizer step"}}},
            {"scheduler", {{"type", sched_.type}, {"lr", sched_.lr}, {"warmup_steps", sched_.warmup_steps},
                           {"total_steps", sched_.total_steps},
                           {"last_lr", lr_at(sched_, std::max<int64_t>(0, step_ - 1))}}},
            {"config_hash", hash_},
            {"compat", compat_json(cfg_)},
            {"loss_history_tail", std::vector<double>(loss_tail_.begin(), loss_tail_.end())},
            {"total_steps", total_},
            {"tokens_seen", tokens_seen_},
            {"world_size", world_},
            {"trainer_version", HQ_VERSION},
            {"created", unix_time_s()}};
        model_->sync_to_host(&*adam_);
        SavedCheckpoint sc;
        try {
            sc = save_checkpoint(ckpt_dir_, step_, *model_, *adam_, state, cfg_.checkpoints.keep);
        } catch (const Error& e) {   // a full disk, say: say which checkpoint is still good
            throw Error(e.code(), HQ_MSG("the checkpoint of step " << step_ << " was not written: " << e.what()),
                        e.where(),
                        HQ_MSG(e.hint() << "; " << (last_ckpt_path_.empty()
                                                        ? std::string("there is no earlier checkpoint: the run starts "
                                                                      "again from step 0")
                                                        : "the last complete checkpoint " + last_ckpt_path_ +
                                                              " is kept: make room, then continue with --resume")));
        }
        last_ckpt_step_ = step_;
        last_ckpt_path_ = sc.path;
        events_.emit("checkpoint", {{"step", step_}, {"path", sc.path}, {"bytes", sc.bytes}, {"kept", sc.kept},
                                    {"reason", reason}});
        std::fprintf(stderr, "[hqlora] checkpoint %s (%.1f MB)\n", sc.path.c_str(), sc.bytes / 1e6);
    }

    // --- the end ---------------------------------------------------------------------------------------------
    int finish_stopped() {
        if (last_ckpt_step_ != step_) checkpoint("signal");
        events_.emit("done", {{"step", step_}, {"final_loss", ran_step_ ? json_number(last_loss_) : nlohmann::json()},
                              {"adapter_dir", nullptr}, {"peft_dir", nullptr}, {"checkpoint", last_ckpt_path_},
                              {"elapsed_s", seconds_since(t_start_)}, {"status", "stopped"}});
        std::fprintf(stderr, "[hqlora] stopped at step %lld; resume with --resume\n", (long long)step_);
        return kExitStopped;
    }

    int finish_completed() {
        if ((eval_file_ || mcq_file_) && last_eval_step_ != step_) evaluate_now();
        if (!dp_->root()) return kExitDone;   // rank 0 writes the adapters
        const std::string adapter_dir = path_join(run_dir_, "adapter"), peft_dir = path_join(run_dir_, "peft");
        const nlohmann::json final_loss = loss_tail_.empty() ? nlohmann::json() : json_number(last_loss_);
        nlohmann::json meta = {{"trainer_version", HQ_VERSION},
                               {"base_model", {{"path", cfg_.model_path}}},
                               {"training", {{"steps", step_}, {"final_loss", final_loss}, {"tokens", tokens_seen_},
                                             {"config_hash", hash_}, {"seed", cfg_.training.seed}}}};
        model_->sync_to_host(nullptr);
        save_hierarchical_adapter(*model_, adapter_dir, meta);
        export_peft(*model_, peft_dir, cfg_.model_path);
        events_.emit("done", {{"step", step_}, {"final_loss", final_loss},
                              {"adapter_dir", adapter_dir}, {"peft_dir", peft_dir},
                              {"checkpoint", last_ckpt_path_.empty() ? nlohmann::json() : nlohmann::json(last_ckpt_path_)},
                              {"elapsed_s", seconds_since(t_start_)}, {"status", "completed"}});
        std::fprintf(stderr, "[hqlora] done: %lld steps, final loss %.4f, adapter %s\n", (long long)step_, last_loss_,
                     adapter_dir.c_str());
        return kExitDone;
    }

    const TrainOptions& opt_;
    EventSink& events_;
    const std::atomic<int>& stop_flag_;
    std::atomic<int>* save_request_;

    // setup
    Clock::time_point t_start_, t_loop_;
    RunConfig cfg_;
    std::string run_dir_, ckpt_dir_;
    int threads_ = 0;
    ModelConfig mc_;
    TokenFile train_;
    std::optional<TokenFile> eval_file_;
    std::optional<McqFile> mcq_file_;
    std::optional<CheckpointRef> resume_from_;
    std::optional<DataParallel> dp_;   // joined before the model loads; outlives it (declared first)
    int world_ = 1, rank_ = 0;
    std::unique_ptr<Model> model_;
    std::string load_warning_;
    bool on_device_ = false;
    std::optional<AdamW> adam_;     // holds a reference to model_->params()
    int mbs_ = 1, ga_ = 1;
    int64_t ex_per_step_ = 1, total_ = 0, max_len_ = 0;
    ScheduleConfig sched_;
    std::optional<Batcher> batcher_;  // holds a reference to train_
    uint64_t dropout_seed_ = 0;
    std::string hash_;

    // progress
    int64_t step_ = 0, first_step_ = 0, last_ckpt_step_ = -1, last_eval_step_ = -1, tokens_seen_ = 0;
    std::string last_ckpt_path_;
    std::deque<double> loss_tail_;
    double last_loss_ = 0.0;
    bool ran_step_ = false;
    bool stop_all_ = false;         // data parallel: a stop request of any rank, summed with the step
    bool requested_here_ = false;   // data parallel: a save request of any rank, summed with the step
    size_t allreduce_bytes_ = 0;
    bool logged_allreduce_ = false;
    std::vector<double> rank_memory_;
};

}  // namespace

int run_training(const TrainOptions& opt, EventSink& events, const std::atomic<int>& stop_flag,
                 std::atomic<int>* save_request) {
    TrainingRun run(opt, events, stop_flag, save_request);
    return run.run();
}

}  // namespace hq
