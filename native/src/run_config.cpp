// run_config.cpp — typed, range-checked reading of run.json.
#include "run_config.h"

#include <cmath>
#include <cstdio>

#include "error.h"
#include "fsutil.h"

namespace hq {

namespace {

const char* kCfgHint = "fix the value in the .hqlora.yaml (the extension regenerates run.json from it)";

// Reads typed members of one JSON object; `prefix` is the key path of the object ("training").
class Section {
  public:
    Section(const nlohmann::json& root, const std::string& key, const std::string& file, bool required)
        : file_(file), prefix_(key) {
        auto it = root.find(key);
        if (it == root.end() || it->is_null()) {
            if (required) fail(key, "is missing");
            return;
        }
        if (!it->is_object()) fail(key, HQ_MSG("must be an object, got " << it->dump()));
        obj_ = &*it;
    }
    Section(const nlohmann::json* obj, std::string prefix, const std::string& file)
        : file_(file), prefix_(std::move(prefix)), obj_(obj) {}

    [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
        Where w;
        w.file = file_;
        w.key = key;
        throw Error("E_CONFIG", HQ_MSG(file_ << ": " << key << " " << msg), w, kCfgHint);
    }
    std::string path(const std::string& k) const { return prefix_.empty() ? k : prefix_ + "." + k; }
    const nlohmann::json* get(const std::string& k) const {
        if (!obj_) return nullptr;
        auto it = obj_->find(k);
        if (it == obj_->end() || it->is_null()) return nullptr;
        return &*it;
    }
    std::string str(const std::string& k, const std::string& dflt, bool required = false) const {
        const nlohmann::json* v = get(k);
        if (!v) {
            if (required) fail(path(k), "is missing");
            return dflt;
        }
        if (!v->is_string()) fail(path(k), HQ_MSG("must be a string, got " << v->dump()));
        return v->get<std::string>();
    }
    int64_t integer(const std::string& k, int64_t dflt, int64_t lo, int64_t hi) const {
        const nlohmann::json* v = get(k);
        if (!v) return dflt;
        int64_t x;
        if (v->is_number_integer()) {
            x = v->get<int64_t>();
        } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
                   std::fabs(v->get<double>()) < 9e15) {
            x = static_cast<int64_t>(v->get<double>());
        } else {
            fail(path(k), HQ_MSG("must be an integer, got " << v->dump()));
        }
        if (x < lo || x > hi) fail(path(k), HQ_MSG("must be in [" << lo << ", " << hi << "], got " << x));
        return x;
    }
    double number(const std::string& k, double dflt, double lo, double hi, bool hi_open = false) const {
        const nlohmann::json* v = get(k);
        if (!v) return dflt;
        if (!v->is_number()) fail(path(k), HQ_MSG("must be a number, got " << v->dump()));
        double x = v->get<double>();
        if (!std::isfinite(x) || x < lo || (hi_open ? x >= hi : x > hi))
            fail(path(k), HQ_MSG("must be in [" << lo << ", " << hi << (hi_open ? ")" : "]") << ", got " << v->dump()));
        return x;
    }
    bool boolean(const std::string& k, bool dflt) const {
        const nlohmann::json* v = get(k);
        if (!v) return dflt;
        if (!v->is_boolean()) fail(path(k), HQ_MSG("must be true or false, got " << v->dump()));
        return v->get<bool>();
    }
    const nlohmann::json* obj() const { return obj_; }

  private:
    std::string file_, prefix_;
    const nlohmann::json* obj_ = nullptr;
};

const int64_t kBig = int64_t(1) << 40;

uint64_t fnv1a64(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

}  // namespace

std::string RunConfig::run_dir() const { return path_join(output_dir, run_name); }

namespace {

// The sections of a run config, each read and checked by one function, called in the file's order by
// parse_run_config (so the first problem reported is the same as when it was one function).

// model.path, quantization.*
void read_model_and_quantization(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section model(j, "model", file, true);
    c.model_path = model.str("path", "", true);
    if (c.model_path.empty()) model.fail("model.path", "is empty");

    Section q(j, "quantization", file, false);
    c.quant.type = q.str("type", "nf4");
    if (c.quant.type != "nf4" && c.quant.type != "none")
        q.fail("quantization.type", HQ_MSG("must be \"nf4\" or \"none\", got \"" << c.quant.type << "\""));
    c.quant.double_quant = q.boolean("double_quant", true);
    c.quant.blocksize = static_cast<int>(q.integer("blocksize", 64, 32, 4096));
    if (c.quant.blocksize & (c.quant.blocksize - 1))
        q.fail("quantization.blocksize", HQ_MSG("must be a power of two, got " << c.quant.blocksize));
    c.compute_dtype = q.str("compute_dtype", "auto");
    if (c.compute_dtype != "auto" && c.compute_dtype != "bfloat16" && c.compute_dtype != "float32")
        q.fail("quantization.compute_dtype",
               HQ_MSG("must be \"auto\", \"bfloat16\" or \"float32\", got \"" << c.compute_dtype << "\""));
}

// adapter.*: target modules, levels {rank, alpha}, dropout, init, rslora
void read_adapter(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section a(j, "adapter", file, false);
    if (const nlohmann::json* tm = a.get("target_modules")) {
        if (!tm->is_array() || tm->empty()) a.fail("adapter.target_modules", "must be a non-empty list");
        static const char* kKnown[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
        c.adapter.target_modules.clear();
        for (size_t i = 0; i < tm->size(); ++i) {
            const auto& m = (*tm)[i];
            std::string key = HQ_MSG("adapter.target_modules[" << i << "]");
            if (!m.is_string()) a.fail(key, "must be a string");
            bool ok = false;
            for (const char* k : kKnown) ok = ok || m.get<std::string>() == k;
            if (!ok) a.fail(key, HQ_MSG("\"" << m.get<std::string>() << "\" is not one of q_proj, k_proj, v_proj, "
                                              "o_proj, gate_proj, up_proj, down_proj"));
            for (const auto& prev : c.adapter.target_modules)
                if (prev == m.get<std::string>()) a.fail(key, HQ_MSG("\"" << prev << "\" is listed twice"));
            c.adapter.target_modules.push_back(m.get<std::string>());
        }
    }
    if (const nlohmann::json* lv = a.get("levels")) {
        if (!lv->is_array() || lv->empty()) a.fail("adapter.levels", "must be a non-empty list");
        c.adapter.levels.clear();
        for (size_t i = 0; i < lv->size(); ++i) {
            std::string key = HQ_MSG("adapter.levels[" << i << "]");
            if (!(*lv)[i].is_object()) a.fail(key, "must be an object {rank, alpha}");
            Section l(&(*lv)[i], key, file);
            LevelSpec s;
            if (!l.get("rank")) a.fail(key + ".rank", "is missing");
            s.rank = static_cast<int>(l.integer("rank", 8, 1, 65536));
            s.alpha = static_cast<float>(l.number("alpha", 16.0, 1e-12, 1e12));
            c.adapter.levels.push_back(s);
        }
    }
    c.adapter.dropout = static_cast<float>(a.number("dropout", 0.0, 0.0, 1.0, true));
    c.adapter.init = a.str("init", "kaiming");
    if (c.adapter.init != "kaiming" && c.adapter.init != "gaussian")
        a.fail("adapter.init", HQ_MSG("must be \"kaiming\" or \"gaussian\", got \"" << c.adapter.init << "\""));
    c.adapter.rslora = a.boolean("rslora", false);
}

// data.*: token files and sequence lengths
void read_data(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section d(j, "data", file, true);
    c.data.train_tokens = d.str("train_tokens", "", true);
    c.data.eval_tokens = d.str("eval_tokens", "");
    c.data.source_max_len = d.integer("source_max_len", 1024, 1, kMaxSeqLen);
    c.data.target_max_len = d.integer("target_max_len", 256, 1, kMaxSeqLen);
    if (c.data.max_len() > kMaxSeqLen)   // the words of extension/core/truncation.ts seqLenLimitProblem
        d.fail("data.source_max_len", HQ_MSG("source_max_len + target_max_len = " << c.data.max_len() << " exceeds "
                                             << kMaxSeqLen << ", the longest sequence hqlora trains; lower "
                                             "source_max_len / target_max_len to a sum of at most " << kMaxSeqLen));
}

// training.*: steps, batch, schedule, AdamW, clipping, seed
void read_training(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section t(j, "training", file, false);
    TrainingConfig& tr = c.training;
    tr.max_steps = t.integer("max_steps", 1875, 0, kBig);
    if (t.get("epochs")) {
        tr.has_epochs = true;
        tr.epochs = t.number("epochs", 0.0, 1e-9, 1e9);
    }
    tr.micro_batch_size = static_cast<int>(t.integer("micro_batch_size", 1, 1, 1 << 16));
    tr.gradient_accumulation_steps = static_cast<int>(t.integer("gradient_accumulation_steps", 16, 1, 1 << 20));
    tr.learning_rate = t.number("learning_rate", 2e-4, 0.0, 1e300);
    tr.lr_scheduler = t.str("lr_scheduler", "constant");
    if (tr.lr_scheduler != "constant" && tr.lr_scheduler != "linear" && tr.lr_scheduler != "cosine")
        t.fail("training.lr_scheduler", HQ_MSG("must be constant, linear or cosine, got \"" << tr.lr_scheduler << "\""));
    tr.warmup_steps = t.integer("warmup_steps", 0, 0, kBig);
    tr.warmup_ratio = t.number("warmup_ratio", 0.0, 0.0, 1.0);
    tr.adam_beta1 = t.number("adam_beta1", 0.9, 0.5, 1.0, true);  // >= 0.5: ATen's lerp branch (optimizer.h)
    tr.adam_beta2 = t.number("adam_beta2", 0.999, 0.0, 1.0, true);
    tr.adam_epsilon = t.number("adam_epsilon", 1e-8, 0.0, 1.0);
    tr.weight_decay = t.number("weight_decay", 0.0, 0.0, 1e6);
    tr.max_grad_norm = t.number("max_grad_norm", 0.3, 0.0, 1e30);
    tr.gradient_checkpointing = t.boolean("gradient_checkpointing", true);
    tr.seed = static_cast<uint64_t>(t.integer("seed", 0, 0, (int64_t(1) << 53)));
    tr.shuffle = t.boolean("shuffle", true);
}

// eval.*, checkpoints.*, output.*
void read_eval_checkpoints_output(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section e(j, "eval", file, false);
    c.eval.every_steps = e.integer("every_steps", 187, 0, kBig);
    c.eval.max_batches = e.integer("max_batches", 0, 0, kBig);
    if (const nlohmann::json* m = e.get("mcq")) {   // periodic multiple-choice eval (docs/CONTRACTS.md §7)
        if (!m->is_object()) e.fail("eval.mcq", HQ_MSG("must be an object, got " << m->dump()));
        Section mq(m, "eval.mcq", file);
        c.eval.mcq_tokens = mq.str("tokens", "");
        c.eval.mcq_max_questions = mq.integer("max_questions", 0, 0, kBig);
    }

    Section ck(j, "checkpoints", file, false);
    c.checkpoints.every_steps = ck.integer("every_steps", 250, 0, kBig);
    c.checkpoints.keep = static_cast<int>(ck.integer("keep", 3, 0, 1 << 20));

    Section o(j, "output", file, true);
    c.output_dir = o.str("dir", "", true);
    c.run_name = o.str("run_name", "", true);
    if (c.output_dir.empty()) o.fail("output.dir", "is empty");
    if (c.run_name.empty() || c.run_name.find('/') != std::string::npos || c.run_name == "." || c.run_name == "..")
        o.fail("output.run_name", HQ_MSG("must be a plain folder name, got \"" << c.run_name << "\""));
}

// hardware.* and distributed.*
void read_hardware_and_distributed(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section hw(j, "hardware", file, false);
    c.device = hw.str("device", "auto");
    if (c.device != "auto" && c.device != "cpu" && c.device != "cuda")
        hw.fail("hardware.device", HQ_MSG("\"" << c.device << "\" is not one of auto, cpu, cuda"));
    c.threads = static_cast<int>(hw.integer("threads", 0, 0, 4096));
    if (const nlohmann::json* g = hw.get("gpus"); g && g->is_array()) {   // GPU ordinals: one rank each
        if (g->empty() || g->size() > 256) hw.fail("hardware.gpus", "must list 1 to 256 GPU ordinals");
        for (const nlohmann::json& id : *g)
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 255)
                hw.fail("hardware.gpus", HQ_MSG("must list GPU ordinals 0..255, got " << id.dump()));
        c.gpus = static_cast<int>(g->size());
    } else {
        c.gpus = static_cast<int>(hw.integer("gpus", 1, 1, 256));
    }

    Section ds(j, "distributed", file, false);   // data parallel (data_parallel.h); used only under a launcher
    c.dist.backend = ds.str("backend", "auto");
    if (c.dist.backend != "auto" && c.dist.backend != "cpu" && c.dist.backend != "nccl")
        ds.fail("distributed.backend", HQ_MSG("\"" << c.dist.backend << "\" is not one of auto, cpu, nccl"));
    c.dist.timeout_s = ds.number("timeout_s", 600.0, 1.0, 86400.0);
    c.dist.bucket_mb = ds.number("bucket_mb", 25.0, 0.0, 4096.0);
    c.dist.overlap = ds.boolean("overlap", true);
    c.dist.zero = static_cast<int>(ds.integer("zero", 0, 0, 1));
}

// logging.*
void read_logging(const nlohmann::json& j, const std::string& file, RunConfig& c) {
    Section lg(j, "logging", file, false);
    c.logging.every_steps = lg.integer("every_steps", 1, 1, kBig);
    c.logging.adapter_stats_every = lg.integer("adapter_stats_every", 10, 0, kBig);
}

}  // namespace

RunConfig parse_run_config(const nlohmann::json& j, const std::string& file) {
    RunConfig c;
    c.file = file;
    c.raw = j;
    if (!j.is_object()) {
        Where w;
        w.file = file;
        throw Error("E_CONFIG", HQ_MSG(file << ": the run config must be a JSON object"), w, kCfgHint);
    }

    read_model_and_quantization(j, file, c);
    read_adapter(j, file, c);
    read_data(j, file, c);
    read_training(j, file, c);
    read_eval_checkpoints_output(j, file, c);
    read_hardware_and_distributed(j, file, c);
    read_logging(j, file, c);
    return c;
}

RunConfig load_run_config(const std::string& path) {
    const std::string text = read_file(path);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        Where w;
        w.file = path;
        w.offset = e.byte > 0 ? static_cast<int64_t>(e.byte) - 1 : 0;
        int64_t line = 1;
        for (int64_t i = 0; i < w.offset && i < static_cast<int64_t>(text.size()); ++i) line += text[i] == '\n';
        w.line = line;
        throw Error("E_CONFIG", HQ_MSG(path << ": not valid JSON at byte " << w.offset << " (line " << line
                                            << "): " << e.what()),
                    w, "run.json is written by the extension; re-run the training command to regenerate it");
    }
    return parse_run_config(j, path);
}

nlohmann::json compat_json(const RunConfig& c) {
    nlohmann::json levels = nlohmann::json::array();
    for (const auto& l : c.adapter.levels) levels.push_back({{"rank", l.rank}, {"alpha", l.alpha}});
    return {{"model", c.model_path},
            {"quantization", {{"type", c.quant.type}, {"double_quant", c.quant.double_quant},
                              {"blocksize", c.quant.blocksize}}},
            {"levels", levels},
            {"target_modules", c.adapter.target_modules},
            {"rslora", c.adapter.rslora}};
}

std::string config_hash(const RunConfig& c) {
    const TrainingConfig& t = c.training;
    nlohmann::json h = compat_json(c);
    h["adapter"] = {{"dropout", c.adapter.dropout}, {"init", c.adapter.init}};
    h["data"] = {{"train_tokens", c.data.train_tokens}, {"source_max_len", c.data.source_max_len},
                 {"target_max_len", c.data.target_max_len}};
    h["training"] = {{"max_steps", t.max_steps}, {"epochs", t.has_epochs ? nlohmann::json(t.epochs) : nlohmann::json()},
                     {"micro_batch_size", t.micro_batch_size},
                     {"gradient_accumulation_steps", t.gradient_accumulation_steps},
                     {"learning_rate", t.learning_rate}, {"lr_scheduler", t.lr_scheduler},
                     {"warmup_steps", t.warmup_steps}, {"warmup_ratio", t.warmup_ratio},
                     {"adam_beta1", t.adam_beta1}, {"adam_beta2", t.adam_beta2}, {"adam_epsilon", t.adam_epsilon},
                     {"weight_decay", t.weight_decay}, {"max_grad_norm", t.max_grad_norm},
                     {"seed", t.seed}, {"shuffle", t.shuffle}};
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a64(h.dump())));
    return buf;
}

}  // namespace hq
