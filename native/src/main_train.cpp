// main_train.cpp — the hqlora-train executable: argument parsing, signals, exit codes (docs/CONTRACTS.md §1).
//
// stdout carries only JSON (events, or the inspect object); the human log goes to stderr.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "backend.h"
#include "data_parallel.h"
#include "dist_launch.h"
#include "error.h"
#include "eval_cmd.h"
#include "events.h"
#include "inspect.h"
#include "run_config.h"
#include "trainer.h"
#include "version.h"
#ifdef HQ_WITH_CUDA
#include "cuda_model.h"
#endif

namespace {

std::atomic<int> g_stop{0};

std::atomic<int> g_save{0};

extern "C" void on_stop_signal(int sig) { g_stop.store(sig); }
extern "C" void on_save_signal(int) { g_save.store(1); }

void usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: hqlora-train [train] --config <run.json> [--resume] [--threads N] [--max-steps N] [--nproc N]\n"
                 "       hqlora-train inspect <file.safetensors | model-folder>\n"
                 "       hqlora-train eval --config <run.json> [--adapter DIR|none] [--levels all|ablation|K] ...\n"
                 "       hqlora-train --version | --help\n"
                 "\n"
                 "Fine-tunes a frozen NF4 base model with hierarchical LoRA adapters (H-QLoRA) on the CPU.\n"
                 "Events: one JSON object per line on stdout (schemas/trainer-events.schema.json), also appended\n"
                 "to <run>/events.jsonl; human-readable progress on stderr.\n"
                 "\n"
                 "train flags:\n"
                 "  --config PATH     run.json (docs/CONTRACTS.md §6)                  (required, no default)\n"
                 "  --resume          continue from the newest complete checkpoint     (default: off)\n"
                 "  --threads N       compute threads, 0 = all cores                   (default: run.json hardware.threads)\n"
                 "  --max-steps N     override the number of optimizer steps           (default: run.json training)\n"
                 "  --nproc N         start and supervise N ranks on this host        (default: run.json hardware.gpus)\n"
                 "other:\n"
                 "  inspect PATH      validate a .safetensors file or model folder and print it as one JSON object\n"
                 "  eval ...          base vs adapter vs level ablation: eval loss + multiple choice (eval --help)\n"
                 "  --version         print \"hqlora-train <version>\" and the compiled backends\n"
                 "  --help, -h        this text\n"
                 "\n"
                 "data parallel: one process per rank, placed by the launcher's environment: torchrun (RANK,\n"
                 "         WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Slurm (SLURM_PROCID, SLURM_NTASKS,\n"
                 "         SLURM_LOCALID, SLURM_JOB_NODELIST); run.json distributed.{backend,timeout_s,bucket_mb}.\n"
                 "         Without a launcher, --nproc N > 1 (or hardware.gpus > 1) makes this process the launcher\n"
                 "         of N ranks on this host (rank k on visible GPU k), passing rank 0's events through\n"
                 "signals: SIGINT/SIGTERM stop after a checkpoint; SIGUSR1 writes a checkpoint after the current step\n"
                 "         and training goes on (checkpoint event, reason \"requested\")\n"
                 "exit codes: 0 done | 1 error (an error event was printed) | 2 usage | 3 stopped by SIGINT/SIGTERM\n"
                 "            after a checkpoint | 4 non-finite loss (last good checkpoint kept)\n");
}

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "hqlora-train: %s\n\n", msg.c_str());
    usage(stderr);
    return hq::kExitUsage;
}

// The one-host launcher (dist_launch.h), when --nproc or run.json hardware.gpus asks for more than one rank and no
// launcher started this process. Returns its exit code, or -1 to train in this process.
int launch_if_asked(const hq::TrainOptions& opt, int nproc, const std::vector<std::string>& rank_args,
                    hq::EventSink& events) {
    const hq::DistEnv env = hq::dist_env_from_environment();
    if (env.distributed()) {
        if (nproc > 1)
            throw hq::Error("E_DIST", HQ_MSG("--nproc " << nproc << " given, but this process already is rank "
                                             << env.rank << " of a " << env.source << " world of " << env.world),
                            {}, "let the launcher (torchrun, srun) start the ranks, and drop --nproc");
        return -1;   // torchrun / srun set the world; hardware.gpus does not apply
    }
    const hq::RunConfig cfg = hq::load_run_config(opt.config_path);
    const int n = nproc > 0 ? nproc : cfg.gpus;
    if (n <= 1) return -1;
    hq::LocalLaunch spec;
    spec.nproc = n;
    spec.args = rank_args;
    spec.events_log = cfg.run_dir() + "/events.jsonl";
    return hq::launch_local_world(spec, events);
}

bool parse_int(const char* s, long long lo, long long* out) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo) return false;
    *out = v;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef HQ_WITH_CUDA
    hq::register_device_backend(hq::cuda::cuda_backend());
#endif
    std::string cmd = "train";
    int i = 1;
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        i = 2;
    }
    // Data parallel: rank 0 alone prints events (and writes events.jsonl); the other ranks print only their errors.
    bool root = true;
    try {
        root = hq::dist_env_from_environment().rank == 0;
    } catch (const hq::Error&) {   // reported by the trainer, which reads the environment again
    }
    hq::EventSink events(cmd == "train" && !root ? nullptr : stdout);
    hq::EventSink rank_errors(stdout);
    hq::EventSink& errors = root ? events : rank_errors;
    if (cmd == "inspect") {
        if (argc - i != 1) return usage_error("inspect takes exactly one path");
        try {
            std::string out = hq::inspect_path(argv[i]).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            std::fprintf(stdout, "%s\n", out.c_str());
            return hq::kExitDone;
        } catch (const hq::Error& e) {
            events.emit_error(e);
            std::fprintf(stderr, "hqlora-train: %s\n", e.what());
            return hq::kExitError;
        }
    }
    if (cmd == "eval") return hq::eval_main(argc, argv, i, events);
    if (cmd != "train") return usage_error("unknown command \"" + cmd + "\"");

    hq::TrainOptions opt;
    int nproc = 0;                     // --nproc (0: run.json hardware.gpus)
    std::vector<std::string> rank_args;   // the arguments a rank of the one-host launcher gets (no --nproc)
    for (int k = 1; k < argc; ++k) {
        if (std::string(argv[k]) == "--nproc") {
            ++k;
            continue;
        }
        rank_args.emplace_back(argv[k]);
    }
    for (; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) return nullptr;
            (void)flag;
            return argv[++i];
        };
        long long n = 0;
        if (a == "--help" || a == "-h") {
            usage(stdout);
            return hq::kExitDone;
        } else if (a == "--version") {
            std::printf("hqlora-train %s\nbackends: cpu%s\n", HQ_VERSION, hq::device_backend() ? ",cuda" : "");
            return hq::kExitDone;
        } else if (a == "--config") {
            const char* v = value("--config");
            if (!v) return usage_error("--config needs a path");
            opt.config_path = v;
        } else if (a == "--resume") {
            opt.resume = true;
        } else if (a == "--threads") {
            const char* v = value("--threads");
            if (!v || !parse_int(v, 0, &n)) return usage_error("--threads needs an integer >= 0");
            opt.threads = static_cast<int>(n);
        } else if (a == "--nproc") {
            const char* v = value("--nproc");
            if (!v || !parse_int(v, 1, &n) || n > 256) return usage_error("--nproc needs an integer in 1..256");
            nproc = static_cast<int>(n);
            continue;
        } else if (a == "--max-steps") {
            const char* v = value("--max-steps");
            if (!v || !parse_int(v, 0, &n)) return usage_error("--max-steps needs an integer >= 0");
            opt.max_steps = n;
        } else {
            return usage_error("unknown argument \"" + a + "\"");
        }
    }
    if (opt.config_path.empty()) return usage_error("--config is required");

    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    struct sigaction su = sa;
    su.sa_handler = on_save_signal;
    sigaction(SIGUSR1, &su, nullptr);

    try {
        const int launched = launch_if_asked(opt, nproc, rank_args, events);
        if (launched >= 0) return launched;
        return hq::run_training(opt, events, g_stop, &g_save);
    } catch (const hq::Error& e) {
        hq::dist_report_failure(e.code() + ": " + e.what());
        errors.emit_error(e);
        std::fprintf(stderr, "[hqlora] error %s: %s%s%s\n", e.code().c_str(), e.what(), e.hint().empty() ? "" : "\n  hint: ",
                     e.hint().c_str());
    } catch (const std::bad_alloc&) {
        hq::dist_report_failure("E_OOM: out of memory");
        errors.emit_error(hq::Error("E_OOM", "out of memory", {}, "lower micro_batch_size or the sequence lengths"));
        std::fprintf(stderr, "[hqlora] error: out of memory\n");
    } catch (const std::exception& e) {
        hq::dist_report_failure(std::string("E_INTERNAL: ") + e.what());
        errors.emit_error(hq::Error("E_INTERNAL", e.what(), {}, "please report this as a bug with the trainer log"));
        std::fprintf(stderr, "[hqlora] internal error: %s\n", e.what());
    }
    return hq::kExitError;
}
