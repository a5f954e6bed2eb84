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
        if (static_cast<size_t>(T) * static_cast<size_t>(V) * sizeof(float) > max_logits_bytes) {
            logits_ok = false;
            loss_sum += model.forward_backward(mb.ids.data(), mb.labels.data(), 1, T, false, 0.0f).loss_sum;
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

int run_training(const TrainOptions& opt, EventSink& events, const std::atomic<int>& stop_flag,
                 std::atomic<int>* save_request) {
    const auto t_start = Clock::now();
    RunConfig cfg = load_run_config(opt.config_path);
    const std::string run_dir = cfg.run_dir();
    const std::string ckpt_dir = path_join(run_dir, "checkpoints");

    // Threads: one setting for OpenMP and OpenBLAS; results are identical for a fixed count.
    int threads = opt.threads >= 0 ? opt.threads : cfg.threads;
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    // Everything that can fail on user input is checked before anything in the run folder is written.
    ModelConfig mc = load_model_config(cfg.model_path);
    TokenFile train = read_token_file(cfg.data.train_tokens, mc.vocab_size);
    std::optional<TokenFile> eval_file;
    if (!cfg.data.eval_tokens.empty()) eval_file = read_token_file(cfg.data.eval_tokens, mc.vocab_size);
    std::optional<McqFile> mcq_file;   // eval.mcq: multiple-choice accuracy at every eval (mcq event)
    if (!cfg.eval.mcq_tokens.empty()) mcq_file = read_mcq_file(cfg.eval.mcq_tokens, mc.vocab_size);
    HQ_CHECK(train.n_examples > 0, "E_TOKENS", cfg.data.train_tokens << " has no examples",
             (Where{cfg.data.train_tokens, "", "", -1, -1}), "check the dataset and the data preparation settings");

    std::optional<CheckpointRef> resume_from;
    if (opt.resume) {
        resume_from = find_resume_checkpoint(ckpt_dir);
    } else if (!list_checkpoints(ckpt_dir).empty()) {
        Where w;
        w.file = cfg.file;
        w.key = "output.run_name";
        throw Error("E_CONFIG", HQ_MSG("the run folder " << run_dir << " already has checkpoints"), w,
                    "pass --resume to continue that run, or choose another output.run_name");
    }
    if (resume_from) check_checkpoint_compat(read_checkpoint_state(resume_from->path), compat_json(cfg),
                                             resume_from->path);

    // Data parallel: join the world (when a launcher started this process as one rank of it) before the model
    // loads, so that the device backend picks this local rank's GPU.
    DataParallel dp(cfg.dist, cfg.device);
    const int world = dp.world(), rank = dp.rank();
    LoadedModel loaded = load_model_on(cfg.device, cfg.model_path, cfg.quant, cfg.adapter, cfg.training.seed, cfg.file,
                                      cfg.compute_dtype);
    std::unique_ptr<Model> model = std::move(loaded.model);
    const bool on_device = model->device_resident();
    model->set_gradient_checkpointing(cfg.training.gradient_checkpointing);
    std::vector<Param>& params = model->params();
    dp.attach(*model, cfg.file);
    AdamW adam(params, {cfg.training.learning_rate, cfg.training.adam_beta1, cfg.training.adam_beta2,
                        cfg.training.adam_epsilon, cfg.training.weight_decay});

    const int mbs = cfg.training.micro_batch_size, ga = cfg.training.gradient_accumulation_steps;
    const int64_t ex_per_step = static_cast<int64_t>(mbs) * ga * world;   // the global batch (data_parallel.h)
    int64_t total = cfg.training.max_steps;
    if (cfg.training.has_epochs)
        total = static_cast<int64_t>(std::ceil(cfg.training.epochs * static_cast<double>(train.n_examples) /
                                               static_cast<double>(ex_per_step)));
    if (opt.max_steps >= 0) total = opt.max_steps;
    ScheduleConfig sched{cfg.training.lr_scheduler, cfg.training.learning_rate,
                         resolve_warmup_steps(cfg.training.warmup_steps, cfg.training.warmup_ratio, total), total};
    const int64_t max_len = std::min<int64_t>(cfg.data.max_len(), mc.max_position_embeddings);
    Batcher batcher(train, mbs, max_len, cfg.training.shuffle, cfg.training.seed);
    uint64_t dropout_seed = cfg.training.seed;
    const std::string hash = config_hash(cfg);

    if (dp.root()) {   // rank 0 alone writes the run folder
        make_dirs(run_dir);
        events.open_log(path_join(run_dir, "events.jsonl"));
    }

    int64_t step = 0, last_ckpt_step = -1, last_eval_step = -1, tokens_seen = 0;
    std::string last_ckpt_path;
    std::deque<double> loss_tail;
    if (resume_from) {
        nlohmann::json st = load_checkpoint(resume_from->path, *model, adam);
        model->sync_from_host(&adam);
        step = st.at("step").get<int64_t>();
        tokens_seen = st.value("tokens_seen", int64_t(0));
        batcher.restore(DataCursor::from_json(st.at("data_cursor")));
        dropout_seed = std::stoull(st.at("rng").at("dropout_seed").get<std::string>());
        for (const auto& x : st.value("loss_history_tail", nlohmann::json::array()))
            if (x.is_number()) loss_tail.push_back(x.get<double>());
        const int64_t saved_world = st.value("world_size", int64_t(1));
        if (saved_world != world)
            events.emit_warning("W_WORLD_CHANGED",
                                HQ_MSG("checkpoint " << resume_from->path << " was written by a world of " << saved_world
                                       << " rank(s); resuming on " << world << ": the data position is global, the "
                                       "global batch is now " << ex_per_step << " examples"));
        if (st.value("config_hash", std::string()) != hash)
            events.emit_warning("W_CONFIG_CHANGED",
                                HQ_MSG("run.json differs from the configuration of checkpoint " << resume_from->path
                                       << " in training settings; resuming with the new settings"));
        last_ckpt_step = step;
        last_ckpt_path = resume_from->path;
        std::fprintf(stderr, "[hqlora] resumed from %s (step %lld)\n", resume_from->path.c_str(), (long long)step);
    } else if (opt.resume) {
        events.emit_warning("W_NO_CHECKPOINT", HQ_MSG("--resume given but " << ckpt_dir
                                                      << " has no complete checkpoint; starting from step 0"));
    }

    const TruncationStats trunc = truncation_stats(train, max_len);
    if (trunc.rows > 0)
        events.emit_warning("W_TRUNCATED", truncation_message(trunc, train.n_examples, max_len, cfg.data.max_len(), mc,
                                                              cfg.model_path, cfg.data.train_tokens));

    // start event
    const AdapterSpec& spec = model->adapter_spec();
    int64_t trainable = 0;
    for (const Param& p : params) trainable += static_cast<int64_t>(p.numel);
    nlohmann::json per_level = nlohmann::json::array();
    for (size_t l = 0; l < spec.levels.size(); ++l) {
        int64_t n = 0;
        for (const AdaptedModule& m : model->modules()) n += static_cast<int64_t>(spec.levels[l].rank) * (m.in + m.out);
        per_level.push_back({{"level", l}, {"rank", spec.levels[l].rank}, {"alpha", spec.levels[l].alpha},
                             {"scale", spec.scale(static_cast<int>(l))}, {"params", n}});
    }
    const double tokens_per_step = static_cast<double>(ex_per_step) * static_cast<double>(train.total_targets(max_len)) /
                                   static_cast<double>(train.n_examples);
    events.emit("start",
                {{"run_dir", run_dir}, {"trainer_version", HQ_VERSION}, {"config_hash", hash},
                 {"model", {{"path", cfg.model_path}, {"architecture", mc.model_type}, {"layers", mc.num_layers},
                            {"hidden", mc.hidden_size}, {"vocab", mc.vocab_size}, {"quantization", cfg.quant.type}}},
                 {"backend", model->backend()}, {"threads", threads}, {"world_size", world},
                 {"dist_backend", dp.backend()},
                 {"params", {{"total", model->base_param_count() + trainable}, {"trainable", trainable},
                             {"per_level", per_level}}},
                 {"total_steps", total},
                 {"resumed_from_step", resume_from ? nlohmann::json(step) : nlohmann::json()},
                 {"tokens_per_step", tokens_per_step}, {"examples_per_step", ex_per_step},
                 {"train_examples", train.n_examples}, {"eval_examples", eval_file ? eval_file->n_examples : 0}});
    if (!loaded.warning.empty()) {   // after `start`: the start event is always the first one (CONTRACTS §2)
        events.emit_warning("W_DEVICE_FALLBACK", loaded.warning);
        std::fprintf(stderr, "[hqlora] warning: %s\n", loaded.warning.c_str());
    }
    std::fprintf(stderr, "[hqlora] %s: %s, %d layers, %lld trainable params, %lld steps, %d threads\n",
                 run_dir.c_str(), mc.model_type.c_str(), mc.num_layers, (long long)trainable, (long long)total, threads);

    auto save = [&](const char* reason) {
        if (!dp.root()) {   // rank 0 writes the one checkpoint of the world
            last_ckpt_step = step;
            return;
        }
        nlohmann::json state = {
            {"reason", reason},   // "requested" checkpoints are never pruned (checkpoint.cpp)
            {"micro_step", step * ga},
            {"epoch", batcher.epoch_progress()},
            {"data_cursor", batcher.cursor().to_json()},
            {"rng", {{"dropout_seed", std::to_string(dropout_seed)},
                     {"dropout_stream", "splitmix64(seed, step): re-seeded at every optimizer step"}}},
            {"scheduler", {{"type", sched.type}, {"lr", sched.lr}, {"warmup_steps", sched.warmup_steps},
                           {"total_steps", sched.total_steps}, {"last_lr", lr_at(sched, std::max<int64_t>(0, step - 1))}}},
            {"config_hash", hash},
            {"compat", compat_json(cfg)},
            {"loss_history_tail", std::vector<double>(loss_tail.begin(), loss_tail.end())},
            {"total_steps", total},
            {"tokens_seen", tokens_seen},
            {"world_size", world},
            {"trainer_version", HQ_VERSION},
            {"created", unix_time_s()}};
        model->sync_to_host(&adam);
        SavedCheckpoint sc;
        try {
            sc = save_checkpoint(ckpt_dir, step, *model, adam, state, cfg.checkpoints.keep);
        } catch (const Error& e) {   // a full disk, say: say which checkpoint is still good
            throw Error(e.code(), HQ_MSG("the checkpoint of step " << step << " was not written: " << e.what()),
                        e.where(),
                        HQ_MSG(e.hint() << "; " << (last_ckpt_path.empty()
                                                        ? std::string("there is no earlier checkpoint: the run starts "
                                                                      "again from step 0")
                                                        : "the last complete checkpoint " + last_ckpt_path +
                                                              " is kept: make room, then continue with --resume")));
        }
        last_ckpt_step = step;
        last_ckpt_path = sc.path;
        events.emit("checkpoint", {{"step", step}, {"path", sc.path}, {"bytes", sc.bytes}, {"kept", sc.kept},
                                   {"reason", reason}});
        std::fprintf(stderr, "[hqlora] checkpoint %s (%.1f MB)\n", sc.path.c_str(), sc.bytes / 1e6);
    };
    auto run_eval = [&]() {
        last_eval_step = step;
        if (!dp.root()) return;   // rank 0 evaluates; the others wait at the next step's all-reduce
        if (mcq_file) {
            McqOptions mo;
            mo.max_len = mc.max_position_embeddings;
            mo.max_questions = cfg.eval.mcq_max_questions;
            nlohmann::json s = score_mcq(*model, *mcq_file, mo).summary();
            s["step"] = step;
            events.emit("mcq", s);
            std::fprintf(stderr, "[hqlora] mcq step %lld | acc %.4f | macro %.4f\n", (long long)step,
                         s["accuracy"].get<double>(), s["macro_accuracy"].get<double>());
        }
        if (!eval_file) return;
        const int64_t max_ex = cfg.eval.max_batches > 0 ? cfg.eval.max_batches * mbs : 0;
        EvalResult er = evaluate(*model, *eval_file, max_len, max_ex);
        nlohmann::json f = {{"step", step}, {"eval_loss", er.loss}, {"perplexity", er.perplexity},
                            {"eval_tokens", er.tokens}, {"eval_examples", er.examples}};
        if (er.accuracy >= 0) {
            f["accuracy"] = er.accuracy;
            f["exact_match"] = er.exact_match;
        }
        events.emit("eval", f);
        std::fprintf(stderr, "[hqlora] eval step %lld | loss %.4f | ppl %.3f | acc %.4f\n", (long long)step, er.loss,
                     er.perplexity, er.accuracy);
        last_eval_step = step;
    };
    auto non_finite = [&](const char* what, double value) {
        Where w;
        w.file = last_ckpt_path;
        events.emit_error(
            Error("E_NONFINITE", HQ_MSG(what << " is " << json_number(value).dump() << " at step " << (step + 1) << "; the update was not "
                                        "applied to any checkpoint"),
                  w,
                  last_ckpt_path.empty()
                      ? "lower training.learning_rate or training.max_grad_norm and start again"
                      : HQ_MSG("lower training.learning_rate or training.max_grad_norm; the last good checkpoint "
                               << last_ckpt_path << " is kept (resume from it with --resume)")),
            {{"step", step + 1}});
        std::fprintf(stderr, "[hqlora] error: %s is not finite at step %lld\n", what, (long long)(step + 1));
        return kExitNonFinite;
    };

    const auto t_loop = Clock::now();
    const int64_t first_step = step;
    double last_loss = loss_tail.empty() ? std::nan("") : loss_tail.back();
    bool ran_step = false;
    std::vector<MicroBatch> micro(static_cast<size_t>(ga));
    bool stop_all = false;   // data parallel: a stop request of any rank, summed with the step
    size_t allreduce_bytes = 0;
    std::vector<double> rank_memory;
    while (step < total) {
        if (stop_all || (!dp.active() && stop_flag.load())) break;
        const auto t_step = Clock::now();
        model->set_training(true, dropout_seed_for(dropout_seed, step));
        model->skip_dropout_calls(static_cast<uint64_t>(rank) * ga);
        int64_t n_targets = 0, n_tokens = 0;   // of the global batch: every rank walks the whole stream
        for (int k = 0; k < ga * world; ++k) {
            MicroBatch mb = batcher.next();
            n_targets += mb.n_targets;
            n_tokens += mb.n_real_tokens;
            if (k / ga == rank) micro[k % ga] = std::move(mb);
        }
        const float grad_scale = n_targets > 0 ? 1.0f / static_cast<float>(n_targets) : 0.0f;
        model->zero_grad();
        double loss_sum = 0.0;
        for (int k = 0; k < ga; ++k)
            loss_sum += model->forward_backward(micro[k].ids.data(), micro[k].labels.data(), micro[k].B, micro[k].T,
                                                true, grad_scale).loss_sum;
        bool requested_here = false;
        if (dp.active()) {   // sum the gradients, the loss and the requests over ranks (data_parallel.h)
            allreduce_bytes = dp.reduce_gradients(*model);
            std::vector<double> v(static_cast<size_t>(3 + world), 0.0);
            v[0] = loss_sum;
            v[1] = stop_flag.load() ? 1.0 : 0.0;
            v[2] = save_request && save_request->exchange(0) != 0 ? 1.0 : 0.0;
            v[3 + rank] = static_cast<double>(model->memory_bytes() + (on_device ? 0 : optimizer_bytes(adam)));
            dp.reduce_host(v);
            loss_sum = v[0];
            stop_all = v[1] > 0;
            requested_here = v[2] > 0;
            rank_memory.assign(v.begin() + 3, v.end());
        }
        const double loss = n_targets > 0 ? loss_sum / static_cast<double>(n_targets) : 0.0;
        if (!std::isfinite(loss)) return non_finite("the training loss", loss);
        if (n_targets == 0)
            events.emit_warning("W_NO_TARGETS", HQ_MSG("step " << step + 1 << " has no target tokens; no update"));
        const float max_norm = static_cast<float>(cfg.training.max_grad_norm);
        const float grad_norm = on_device ? model->device_clip_grad_norm(max_norm) : clip_grad_norm(params, max_norm);
        if (!std::isfinite(grad_norm)) return non_finite("the gradient norm", grad_norm);
        const double lr = lr_at(sched, step);
        bool finite = true;
        if (on_device) {
            finite = model->device_adamw_step(adam, lr);
        } else {
            adam.step(lr);
            finite = params_finite(params);
        }
        if (!finite) return non_finite("an adapter weight after the update", std::nan(""));
        ++step;
        tokens_seen += n_targets;
        ran_step = true;
        last_loss = loss;
        loss_tail.push_back(loss);
        while (loss_tail.size() > 32) loss_tail.pop_front();

        const double dt = seconds_since(t_step), elapsed = seconds_since(t_loop);
        const double eta = elapsed / static_cast<double>(step - first_step) * static_cast<double>(total - step);
        if (step % cfg.logging.every_steps == 0 || step == total) {
            nlohmann::json ev = {{"step", step}, {"total_steps", total}, {"epoch", batcher.epoch_progress()},
                                 {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm}, {"tokens", n_targets},
                                 {"tokens_per_s", n_tokens / std::max(dt, 1e-9)}, {"elapsed_s", elapsed},
                                 {"eta_s", eta}, {"memory_bytes", model->memory_bytes() + (on_device ? 0 : optimizer_bytes(adam))}};
            if (dp.active()) {
                ev["world_size"] = world;
                ev["allreduce_bytes"] = allreduce_bytes;
                ev["rank_memory_bytes"] = rank_memory;
            }
            events.emit("step", ev);
            std::fprintf(stderr, "[hqlora] step %lld/%lld | loss %.4f | lr %.3e | gnorm %.4f | %.0f tok/s | eta %s\n",
                         (long long)step, (long long)total, loss, lr, grad_norm, n_tokens / std::max(dt, 1e-9),
                         fmt_duration(eta).c_str());
        }
        if (dp.root() && cfg.logging.adapter_stats_every > 0 && step % cfg.logging.adapter_stats_every == 0) {
            model->sync_to_host(nullptr);
            nlohmann::json st = adapter_stats(*model);
            st["step"] = step;
            events.emit("adapter_stats", st);
        }
        if ((eval_file || mcq_file) && cfg.eval.every_steps > 0 && step % cfg.eval.every_steps == 0 && step < total) run_eval();
        // "Save checkpoint now" (SIGUSR1) is served after the step it arrived in, as one "requested" checkpoint, which
        // keep-K pruning leaves alone; it stands in for a periodic one of the same step. On the last step the final
        // checkpoint serves it.
        const bool requested =
            step < total && (dp.active() ? requested_here : save_request && save_request->exchange(0) != 0);
        if (requested)
            save("requested");
        else if (cfg.checkpoints.every_steps > 0 && step % cfg.checkpoints.every_steps == 0)
            save("periodic");
    }

    if ((stop_all || stop_flag.load()) && step < total) {
        if (last_ckpt_step != step) save("signal");
        events.emit("done", {{"step", step}, {"final_loss", ran_step ? json_number(last_loss) : nlohmann::json()},
                             {"adapter_dir", nullptr}, {"peft_dir", nullptr}, {"checkpoint", last_ckpt_path},
                             {"elapsed_s", seconds_since(t_start)}, {"status", "stopped"}});
        std::fprintf(stderr, "[hqlora] stopped at step %lld; resume with --resume\n", (long long)step);
        return kExitStopped;
    }

    if ((eval_file || mcq_file) && last_eval_step != step) run_eval();
    if (!dp.root()) return kExitDone;   // rank 0 writes the adapters
    const std::string adapter_dir = path_join(run_dir, "adapter"), peft_dir = path_join(run_dir, "peft");
    const nlohmann::json final_loss = loss_tail.empty() ? nlohmann::json() : json_number(last_loss);
    nlohmann::json meta = {{"trainer_version", HQ_VERSION},
                           {"base_model", {{"path", cfg.model_path}}},
                           {"training", {{"steps", step}, {"final_loss", final_loss}, {"tokens", tokens_seen},
                                         {"config_hash", hash}, {"seed", cfg.training.seed}}}};
    model->sync_to_host(nullptr);
    save_hierarchical_adapter(*model, adapter_dir, meta);
    export_peft(*model, peft_dir, cfg.model_path);
    events.emit("done", {{"step", step}, {"final_loss", final_loss},
                         {"adapter_dir", adapter_dir}, {"peft_dir", peft_dir},
                         {"checkpoint", last_ckpt_path.empty() ? nlohmann::json() : nlohmann::json(last_ckpt_path)},
                         {"elapsed_s", seconds_since(t_start)}, {"status", "completed"}});
    std::fprintf(stderr, "[hqlora] done: %lld steps, final loss %.4f, adapter %s\n", (long long)step, last_loss,
                 adapter_dir.c_str());
    return kExitDone;
}

}  // namespace hq
