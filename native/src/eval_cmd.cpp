// eval_cmd.cpp — `hqlora-train eval` (see eval_cmd.h).
#include "eval_cmd.h"

#include "backend.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>

#include "adapter_io.h"
#include "error.h"
#include "fsutil.h"
#include "mcq.h"
#include "model_config.h"
#include "run_config.h"
#include "safetensors.h"
#include "tokens.h"
#include "trainer.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace hq {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The adapter file of --adapter: a folder holding adapter.safetensors (final adapter or checkpoint) or the file.
std::string adapter_file(const std::string& p) {
    const std::string f = is_directory(p) ? path_join(p, "adapter.safetensors") : p;
    HQ_CHECK(path_exists(f), "E_IO", "no hierarchical adapter at " << f, (Where{f, "", "", -1, -1}),
             "pass --adapter <run>/adapter, a checkpoint folder, an adapter.safetensors, or none for the base model");
    return f;
}

// Level ranks/alphas, targets and rsLoRA from the adapter file's metadata (CONTRACTS §4); a checkpoint's
// adapter.safetensors has no hqlora.* metadata and was made with the run's own spec, `fallback`.
AdapterSpec adapter_spec_of(const std::string& file, const AdapterSpec& fallback) {
    std::unique_ptr<SafeTensorsFile> st = SafeTensorsFile::open(file);
    const auto& md = st->metadata();
    if (!md.count("hqlora.levels")) return fallback;
    AdapterSpec spec = fallback;
    try {
        spec.levels.clear();
        for (const auto& lv : nlohmann::json::parse(md.at("hqlora.levels")))
            spec.levels.push_back(LevelSpec{lv.at("rank").get<int>(), lv.at("alpha").get<float>()});
        spec.target_modules = nlohmann::json::parse(md.at("hqlora.target_modules")).get<std::vector<std::string>>();
        spec.rslora = md.count("hqlora.rslora") && md.at("hqlora.rslora") == "true";
    } catch (const std::exception& e) {
        throw Error("E_SAFETENSORS", HQ_MSG(file << ": metadata hqlora.levels / hqlora.target_modules missing or malformed ("
                                            << e.what() << ")"),
                    Where{file, "", "__metadata__", -1, -1}, "pass a hierarchical adapter written by hqlora-train");
    }
    HQ_CHECK(!spec.levels.empty(), "E_SAFETENSORS", file << ": hqlora.levels is empty", (Where{file, "", "", -1, -1}),
             "pass a hierarchical adapter written by hqlora-train");
    spec.dropout = 0.0f;
    return spec;
}

std::string row_name(int levels, int L, const AdapterSpec& spec, const std::string& quant) {
    if (levels == 0) return quant == "nf4" ? "base (NF4)" : "base (" + quant + ")";
    std::string ranks;
    for (int j = 0; j < levels; ++j) ranks += (j ? "+" : "") + std::to_string(spec.levels[j].rank);
    if (levels == L) return "adapter, all " + std::to_string(L) + " levels (r " + ranks + ")";
    std::string names;
    for (int j = 0; j < levels; ++j) names += (j ? "+L" : "L") + std::to_string(j + 1);
    return names + " (r " + ranks + ")";
}

bool parse_count(const char* s, long long lo, long long* out) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo) return false;
    *out = v;
    return true;
}

}  // namespace

std::vector<int> eval_rows(const std::string& spec, int L, bool has_adapter) {
    std::vector<int> rows = {0};
    if (!has_adapter) return rows;
    if (spec == "all") {
        rows.push_back(L);
    } else if (spec == "ablation") {
        for (int k = 1; k <= L; ++k) rows.push_back(k);
    } else {
        long long k = 0;
        HQ_CHECK(parse_count(spec.c_str(), 1, &k) && k <= L, "E_CONFIG",
                 "--levels " << spec << " is not all, ablation or a level count in [1, " << L << "]",
                 (Where{"", "", "--levels", -1, -1}), HQ_MSG("the adapter has " << L << " levels"));
        rows.push_back(static_cast<int>(k));
    }
    return rows;
}

int run_eval(const EvalOptions& opt, EventSink& events) {
    const auto t0 = Clock::now();
    RunConfig cfg = load_run_config(opt.config_path);
    int threads = opt.threads >= 0 ? opt.threads : cfg.threads;
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    // Inputs first: every file is validated before the (slow) model load.
    const ModelConfig mc = load_model_config(cfg.model_path);
    const std::string mcq_path = opt.mcq.empty() ? cfg.eval.mcq_tokens : (opt.mcq == "none" ? "" : opt.mcq);
    const std::string tok_path = opt.eval_tokens.empty() ? cfg.data.eval_tokens : (opt.eval_tokens == "none" ? "" : opt.eval_tokens);
    std::optional<McqFile> mcq;
    if (!mcq_path.empty()) mcq = read_mcq_file(mcq_path, mc.vocab_size);
    std::optional<TokenFile> toks;
    if (!tok_path.empty()) toks = read_token_file(tok_path, mc.vocab_size);
    HQ_CHECK(mcq || toks, "E_CONFIG", "nothing to evaluate: no multiple-choice file and no eval token file",
             (Where{cfg.file, "", "eval.mcq", -1, -1}),
             "pass --mcq FILE.hqmcq and/or --eval-tokens FILE.hqtok, or set eval.mcq / data.eval in the config");

    const std::string adapter_arg = opt.adapter.empty() ? path_join(cfg.run_dir(), "adapter") : opt.adapter;
    const bool has_adapter = adapter_arg != "none";
    std::string afile;
    AdapterSpec spec = cfg.adapter;
    if (has_adapter) {
        afile = adapter_file(adapter_arg);
        spec = adapter_spec_of(afile, cfg.adapter);
    }
    const int L = static_cast<int>(spec.levels.size());
    const std::vector<int> rows = eval_rows(opt.levels, L, has_adapter);

    LoadedModel loaded = load_model_on(cfg.device, cfg.model_path, cfg.quant, spec, cfg.training.seed, cfg.file,
                                      cfg.compute_dtype);
    if (!loaded.warning.empty()) std::fprintf(stderr, "[hqlora] warning: %s\n", loaded.warning.c_str());
    std::unique_ptr<Model> model = std::move(loaded.model);
    if (has_adapter) load_hierarchical_adapter(*model, afile);
    model->set_training(false, 0);

    const int64_t max_len = std::min<int64_t>(cfg.data.max_len(), mc.max_position_embeddings);
    McqOptions mo;
    mo.max_batch = std::max(1, opt.batch);
    mo.max_len = mc.max_position_embeddings;
    mo.max_questions = opt.max_questions >= 0 ? opt.max_questions : cfg.eval.mcq_max_questions;
    const int64_t n_q = mcq ? (mo.max_questions > 0 ? std::min(mo.max_questions, mcq->n_questions) : mcq->n_questions) : 0;
    const int64_t max_ex = opt.max_examples >= 0 ? opt.max_examples
                                                  : cfg.eval.max_batches * cfg.training.micro_batch_size;
    const int64_t n_ex = toks ? (max_ex > 0 ? std::min(max_ex, toks->n_examples) : toks->n_examples) : 0;
    const int64_t units_per_row = n_q + n_ex, total_units = units_per_row * static_cast<int64_t>(rows.size());

    std::fprintf(stderr, "[hqlora] eval %s: %s, %d rows, %lld questions, %lld eval examples, %d threads\n",
                 cfg.run_dir().c_str(), mc.model_type.c_str(), (int)rows.size(), (long long)n_q, (long long)n_ex, threads);
    nlohmann::json table = nlohmann::json::array();
    auto last_progress = Clock::now() - std::chrono::seconds(10);
    for (size_t ri = 0; ri < rows.size(); ++ri) {
        const int lv = rows[ri];
        const std::string name = row_name(lv, L, spec, cfg.quant.type);
        const int64_t base_units = units_per_row * static_cast<int64_t>(ri);
        auto progress = [&](int64_t done_in_row, bool force) {
            if (!force && since(last_progress) < 0.5) return;
            last_progress = Clock::now();
            const int64_t done = base_units + done_in_row;
            const double el = since(t0);
            const double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(total_units - done) : -1.0;
            events.emit("eval_progress", {{"row", ri}, {"rows", rows.size()}, {"name", name}, {"done", done},
                                          {"total", total_units}, {"elapsed_s", el},
                                          {"eta_s", eta >= 0 ? nlohmann::json(eta) : nlohmann::json()}});
        };
        std::optional<AdapterOff> off;
        if (lv == 0) off.emplace(*model);
        model->set_active_levels(lv == 0 ? 0 : lv);

        nlohmann::json row = {{"name", name}, {"levels", lv}};
        nlohmann::json ranks = nlohmann::json::array();
        for (int j = 0; j < lv; ++j) ranks.push_back(spec.levels[j].rank);
        row["ranks"] = ranks;
        if (toks) {
            const EvalResult er = evaluate(*model, *toks, max_len, n_ex);
            row["eval_loss"] = json_number(er.loss);
            row["perplexity"] = json_number(er.perplexity);
            row["eval_tokens"] = er.tokens;
            if (er.accuracy >= 0) row["token_accuracy"] = er.accuracy;
            progress(n_ex, true);
        }
        if (mcq) {
            McqOptions o = mo;
            o.progress = [&](int64_t d, int64_t) { progress(n_ex + d, d == n_q); };
            const McqResult r = score_mcq(*model, *mcq, o);
            nlohmann::json s = r.summary();
            row["mcq"] = s;
            // One letter per question, in question-file order: what a paired comparison of two rows needs.
            std::string pred(r.predictions.size(), '?');
            for (size_t i = 0; i < pred.size(); ++i) pred[i] = static_cast<char>('A' + r.predictions[i]);
            row["predictions"] = pred;
            s["config"] = name;
            s["levels"] = lv;
            s["step"] = nullptr;
            events.emit("mcq", s);
            if (r.truncated > 0)
                events.emit_warning("W_TRUNCATED", HQ_MSG(r.truncated << " prompts are longer than the model's "
                                                          << mo.max_len << " positions and lost their first tokens"));
        }
        std::fprintf(stderr, "[hqlora] %-36s", name.c_str());
        if (row.contains("eval_loss")) std::fprintf(stderr, " | eval loss %.4f | ppl %.3f", row["eval_loss"].get<double>(),
                                                    row["perplexity"].get<double>());
        if (row.contains("mcq")) std::fprintf(stderr, " | mcq acc %.4f | macro %.4f", row["mcq"]["accuracy"].get<double>(),
                                              row["mcq"]["macro_accuracy"].get<double>());
        std::fprintf(stderr, "\n");
        table.push_back(row);
    }
    model->set_active_levels(0);

    nlohmann::json subjects = nlohmann::json::array();
    std::string answers;
    if (mcq) {
        for (const std::string& s : mcq->subjects) subjects.push_back(s);
        for (int64_t i = 0; i < n_q; ++i) answers.push_back(static_cast<char>('A' + mcq->answer[i]));
    }
    events.emit("eval_result",
                {{"run_dir", cfg.run_dir()},
                 {"model", {{"path", cfg.model_path}, {"architecture", mc.model_type}, {"quantization", cfg.quant.type}}},
                 {"adapter", has_adapter ? nlohmann::json(afile) : nlohmann::json()},
                 {"mcq_file", mcq ? nlohmann::json(mcq_path) : nlohmann::json()},
                 {"eval_file", toks ? nlohmann::json(tok_path) : nlohmann::json()},
                 {"shots", mcq && mcq->header.contains("shots") ? mcq->header["shots"] : nlohmann::json()},
                 {"questions", n_q}, {"eval_examples", n_ex}, {"subjects", subjects}, {"rows", table},
                 {"answers", mcq ? nlohmann::json(answers) : nlohmann::json()},
                 {"threads", threads}, {"elapsed_s", since(t0)}});
    return kExitDone;
}

void eval_usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: hqlora-train eval --config <run.json> [--adapter DIR|FILE|none] [--levels all|ablation|K]\n"
                 "                         [--mcq FILE.hqmcq|none] [--eval-tokens FILE.hqtok|none] [--threads N]\n"
                 "                         [--batch N] [--max-questions N] [--max-examples N]\n"
                 "\n"
                 "Scores the NF4 base model and the base + hierarchical adapter (docs/CONTRACTS.md §7): eval loss and\n"
                 "perplexity on a token file, multiple-choice accuracy (letter logits at the answer position, per\n"
                 "subject and macro-averaged). Events on stdout; the last one, eval_result, holds the table.\n"
                 "\n"
                 "eval flags:\n"
                 "  --config PATH        run.json                                          (required, no default)\n"
                 "  --adapter P          adapter folder/file, or none for the base only    (default: <run>/adapter)\n"
                 "  --levels L           all = base + adapter | ablation = base + 1..k     (default: all)\n"
                 "                       cumulatively | K = base + the first K levels\n"
                 "  --mcq FILE           .hqmcq question file, or none                     (default: run.json eval.mcq.tokens)\n"
                 "  --eval-tokens FILE   .hqtok for eval loss/perplexity, or none          (default: run.json data.eval_tokens)\n"
                 "  --threads N          compute threads, 0 = all cores                    (default: run.json hardware.threads)\n"
                 "  --batch N            questions per forward at most                     (default: 32)\n"
                 "  --max-questions N    score the first N questions, 0 = all              (default: run.json eval.mcq.max_questions)\n"
                 "  --max-examples N     eval-loss examples, 0 = all                       (default: run.json eval.max_batches)\n");
}

int eval_main(int argc, char** argv, int first, EventSink& events) {
    EvalOptions opt;
    auto bad = [](const std::string& msg) {
        std::fprintf(stderr, "hqlora-train eval: %s\n\n", msg.c_str());
        eval_usage(stderr);
        return kExitUsage;
    };
    for (int i = first; i < argc; ++i) {
        const std::string a = argv[i];
        long long n = 0;
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--help" || a == "-h") {
            eval_usage(stdout);
            return kExitDone;
        }
        const char* v = value();
        if (!v) return bad(a.rfind("--", 0) == 0 ? a + " needs a value" : "unknown argument \"" + a + "\"");
        if (a == "--config") opt.config_path = v;
        else if (a == "--adapter") opt.adapter = v;
        else if (a == "--levels") opt.levels = v;
        else if (a == "--mcq") opt.mcq = v;
        else if (a == "--eval-tokens") opt.eval_tokens = v;
        else if (a == "--threads" && parse_count(v, 0, &n)) opt.threads = static_cast<int>(n);
        else if (a == "--batch" && parse_count(v, 1, &n)) opt.batch = static_cast<int>(std::min(n, 1LL << 20));
        else if (a == "--max-questions" && parse_count(v, 0, &n)) opt.max_questions = n;
        else if (a == "--max-examples" && parse_count(v, 0, &n)) opt.max_examples = n;
        else if (a == "--threads" || a == "--batch" || a == "--max-questions" || a == "--max-examples")
            return bad(a + " needs a whole number, got \"" + v + "\"");
        else return bad("unknown argument \"" + a + "\"");
    }
    if (opt.config_path.empty()) return bad("--config is required");
    long long k = 0;
    if (opt.levels != "all" && opt.levels != "ablation" && !parse_count(opt.levels.c_str(), 1, &k))
        return bad("--levels must be all, ablation or a level count >= 1, got \"" + opt.levels + "\"");
    try {
        return run_eval(opt, events);
    } catch (const Error& e) {
        events.emit_error(e);
        std::fprintf(stderr, "[hqlora] error %s: %s%s%s\n", e.code().c_str(), e.what(), e.hint().empty() ? "" : "\n  hint: ",
                     e.hint().c_str());
    } catch (const std::bad_alloc&) {
        events.emit_error(Error("E_OOM", "out of memory", {}, "lower --batch"));
        std::fprintf(stderr, "[hqlora] error: out of memory\n");
    } catch (const std::exception& e) {
        events.emit_error(Error("E_INTERNAL", e.what(), {}, "please report this as a bug with the trainer log"));
        std::fprintf(stderr, "[hqlora] internal error: %s\n", e.what());
    }
    return kExitError;
}

}  // namespace hq
