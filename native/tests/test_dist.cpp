// test_dist.cpp — data parallel on the CPU collective backend, with the real hqlora-train processes as ranks
// (torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):
//   - the launch environment (torchrun, Slurm, node lists) and its errors;
//   - 2 and 4 ranks equal 1 rank with 2× / 4× accumulation (losses, gradient norms, final adapter);
//   - a rank SIGKILLed at seeded random moments stops every other rank within seconds, rank 0 naming it, no
//     checkpoint is partial, and --resume after every kill ends in the uninterrupted run's adapter, bit for bit;
//   - a run resumes on another world size (the data position is global);
//   - hqlora-train --nproc N / hardware.gpus: the one-host launcher (dist_launch.h), its output and its failures.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "dist.h"
#include "error.h"
#include "fsutil.h"
#include "safetensors.h"
#include "tokens.h"
#include "trainer_child.h"

using namespace hq;
using json = nlohmann::json;
using hq_test::of_type;
using hq_test::read_events;

namespace {

const std::string kRepo = HQ_REPO_ROOT;
const std::string kFixture = kRepo + "/test/fixtures/models/tiny-llama";
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string tmp_dir() {
    char tmpl[] = "/tmp/hq_test_dist_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

// 32 short arithmetic sequences of several lengths (the micro-batches get different padding and target counts).
std::string token_bytes() {
    std::vector<std::vector<uint32_t>> ex;
    std::vector<std::vector<uint8_t>> mk;
    for (uint32_t i = 0; i < 32; ++i) {
        std::vector<uint32_t> e = {1};
        const uint32_t len = 6 + (i * 5) % 11, start = 3 + (i * 7) % 40, stride = 1 + i % 3;
        for (uint32_t k = 0; k < len; ++k) e.push_back(3 + (start + k * stride) % 90);
        e.push_back(2);
        std::vector<uint8_t> m(e.size(), 1);
        m[0] = m[1] = m[2] = 0;
        ex.push_back(e);
        mk.push_back(m);
    }
    return encode_token_file(ex, mk, {{"vocab_size", 105}, {"bos_id", 1}, {"eos_id", 2}, {"pad_id", 0}});
}

struct Env {
    std::string dir, train;
};

Env make_env() {
    REQUIRE_MESSAGE(path_exists(kFixture + "/config.json"), "fixture missing: " << kFixture);
    Env e;
    e.dir = tmp_dir();
    e.train = e.dir + "/train.hqtok";
    write_file_atomic(e.train, token_bytes());
    return e;
}

// Dropout on, shuffled data, cosine schedule, clipping active: everything a rank must agree on.
json config(const Env& e, const std::string& run_name, int ga, int64_t steps) {
    return {{"model", {{"path", kFixture}}},
            {"quantization", {{"type", "nf4"}, {"double_quant", true}, {"blocksize", 64}}},
            {"adapter", {{"levels", {{{"rank", 4}, {"alpha", 8}}, {{"rank", 2}, {"alpha", 8}}}}, {"dropout", 0.1}}},
            {"data", {{"train_tokens", e.train}}},
            {"training", {{"max_steps", steps}, {"micro_batch_size", 2}, {"gradient_accumulation_steps", ga},
                          {"learning_rate", 1e-2}, {"lr_scheduler", "cosine"}, {"warmup_steps", 2},
                          {"max_grad_norm", 0.3}, {"seed", 5}}},
            {"eval", {{"every_steps", 0}}},
            {"checkpoints", {{"every_steps", 2}, {"keep", 2}}},
            {"output", {{"dir", e.dir + "/runs"}, {"run_name", run_name}}},
            {"distributed", {{"timeout_s", 20}}},
            {"logging", {{"every_steps", 1}, {"adapter_stats_every", 0}}}};
}

std::string write_config(const Env& e, const std::string& name, const json& cfg) {
    const std::string p = e.dir + "/" + name + ".json";
    write_file_atomic(p, cfg.dump(2));
    return p;
}

int g_port_seq = 0;
int next_port() {   // a different port per world (the listener uses SO_REUSEADDR; TIME_WAIT does not block it)
    return 20000 + static_cast<int>((static_cast<unsigned>(getpid()) * 131u + 17u * ++g_port_seq) % 30000u);
}

struct World {
    std::vector<pid_t> pids;
    std::vector<std::string> outs;   // rank r's stdout; stderr in outs[r] + ".err"
};

// W ranks of hqlora-train with torchrun's environment (W = 0: one plain process, no launcher environment).
World launch(int W, const std::string& out_prefix, std::vector<std::string> args) {
    static const std::string bin = HQ_TRAIN_BIN;
    World w;
    const int port = next_port();
    const int n = W == 0 ? 1 : W;
    for (int r = 0; r < n; ++r) {
        const std::string out = out_prefix + ".rank" + std::to_string(r);
        remove_all(out);
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (W > 0) {
                setenv("RANK", std::to_string(r).c_str(), 1);
                setenv("WORLD_SIZE", std::to_string(W).c_str(), 1);
                setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
                setenv("MASTER_ADDR", "127.0.0.1", 1);
                setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
            }
            const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            const int err = open((out + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(err, 2);
            std::vector<char*> argv = {const_cast<char*>(bin.c_str())};
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(bin.c_str(), argv.data());
            _exit(127);
        }
        w.pids.push_back(pid);
        w.outs.push_back(out);
    }
    return w;
}

// Exit codes (128 + signal for a signal) of every rank.
std::vector<int> wait_all(const World& w) {
    std::vector<int> rc;
    for (pid_t p : w.pids) {
        int st = 0;
        REQUIRE(waitpid(p, &st, 0) == p);
        rc.push_back(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    return rc;
}

std::vector<double> field(const std::vector<json>& ev, const char* key) {
    std::vector<double> v;
    for (const auto& s : of_type(ev, "step")) v.push_back(s[key].get<double>());
    return v;
}

std::map<std::string, std::vector<float>> adapter(const std::string& run) {
    auto f = SafeTensorsFile::open(run + "/adapter/adapter.safetensors");
    std::map<std::string, std::vector<float>> m;
    for (const auto& t : f->tensors()) m[t.name] = f->read_f32(t.name);
    return m;
}

// max |a - b| / max |a| over all tensors of both runs' final adapters, and whether they are equal bit for bit.
double adapter_max_rel(const std::string& run_a, const std::string& run_b, bool* exact) {
    const auto a = adapter(run_a), b = adapter(run_b);
    REQUIRE(a.size() == b.size());
    double worst = 0.0, scale = 0.0;
    *exact = true;
    for (const auto& [name, va] : a) {
        const auto& vb = b.at(name);
        REQUIRE(va.size() == vb.size());
        for (size_t i = 0; i < va.size(); ++i) {
            if (va[i] != vb[i]) *exact = false;
            worst = std::max(worst, std::fabs(double(va[i]) - vb[i]));
            scale = std::max(scale, std::fabs(double(va[i])));
        }
    }
    return worst / std::max(scale, 1e-30);
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double w = 0.0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(a[i] - b[i]) / std::max(std::fabs(a[i]), 1e-12));
    return w;
}

}  // namespace

TEST_CASE("the launch environment: torchrun first, then Slurm, else a world of one") {
    auto from = [](std::map<std::string, std::string> m) {
        return dist_env_from([m](const char* n) -> const char* {
            auto it = m.find(n);
            return it == m.end() ? nullptr : it->second.c_str();
        });
    };
    DistEnv a = from({});
    CHECK(!a.distributed());
    CHECK(a.world == 1);
    DistEnv t = from({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"},
                      {"MASTER_PORT", "1234"}, {"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}});
    CHECK(t.source == "torchrun");
    CHECK(t.rank == 3);
    CHECK(t.world == 8);
    CHECK(t.local_rank == 1);
    CHECK(t.master_addr == "node7");
    CHECK(t.master_port == 1234);
    DistEnv s = from({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                      {"SLURM_JOB_NODELIST", "gpu[03-07,12],cpu1"}});
    CHECK(s.source == "slurm");
    CHECK(s.rank == 5);
    CHECK(s.world == 16);
    CHECK(s.local_rank == 1);
    CHECK(s.master_addr == "gpu03");
    CHECK(s.master_port == 29500);
    CHECK(slurm_first_host("a,b") == "a");
    CHECK(slurm_first_host("n[1-2]") == "n1");
    CHECK(slurm_first_host("rack1-n[0009-0012]-ib") == "rack1-n0009-ib");
    auto fails = [&](std::map<std::string, std::string> m, const char* needle) {
        try {
            from(m);
            FAIL("no error for " << needle);
        } catch (const Error& e) {
            CHECK(e.code() == "E_DIST");
            CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
        }
    };
    fails({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}}, "RANK=\"2\"");
    fails({{"RANK", "0"}, {"WORLD_SIZE", "two"}, {"MASTER_ADDR", "x"}}, "WORLD_SIZE");
    fails({{"RANK", "1"}, {"WORLD_SIZE", "2"}}, "MASTER_ADDR");
    fails({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT");
}

TEST_CASE("2 and 4 ranks equal 1 rank with 2x and 4x accumulation") {
    Env e = make_env();
    const int64_t steps = 8;
    // Reference: one plain process with accumulation 4; then 4 ranks × 1, 2 ranks × 2 and a world of one under the
    // launcher's environment × 4.
    struct Case {
        const char* name;
        int W, ga;
    };
    // The worlds overlap each bucket's sum with the backward (distributed.overlap, the default), one bucket per layer
    // (bucket_mb 0), so on the 2-layer fixture the last layer's sum runs during the first layer's backward; w2sync
    // and w4sync sum after the backward in one bucket.
    const Case cases[] = {{"one", 0, 4},     {"w4", 4, 1},    {"w2", 2, 2},     {"w1", 1, 4},
                          {"one_ga2", 0, 2}, {"w2ga1", 2, 1}, {"w2sync", 2, 2}, {"w4sync", 4, 1}};
    std::map<std::string, std::vector<json>> ev;
    for (const Case& c : cases) {
        json cj = config(e, c.name, c.ga, steps);
        const bool sync = std::string(c.name).find("sync") != std::string::npos;
        cj["distributed"] = {{"timeout_s", 20}, {"bucket_mb", sync ? 25 : 0}, {"overlap", !sync}};
        const std::string cfg = write_config(e, c.name, cj);
        World w = launch(c.W, e.dir + "/" + c.name, {"--config", cfg, "--threads", "1"});
        const std::vector<int> rc = wait_all(w);
        for (size_t r = 0; r < rc.size(); ++r)
            REQUIRE_MESSAGE(rc[r] == 0, c.name << " rank " << r << ": " << read_file(w.outs[r] + ".err"));
        ev[c.name] = read_events(w.outs[0]);
        for (size_t r = 1; r < w.outs.size(); ++r) CHECK(read_file(w.outs[r]).empty());   // rank 0 alone prints events
        REQUIRE(field(ev[c.name], "loss").size() == static_cast<size_t>(steps));
    }
    const auto& s4 = of_type(ev["w4"], "step");
    CHECK(s4[0]["world_size"] == 4);
    CHECK(s4[0]["allreduce_bytes"].get<int64_t>() > 0);
    CHECK(s4[0]["rank_memory_bytes"].size() == 4);
    CHECK(of_type(ev["w4"], "start")[0]["examples_per_step"] == 8);
    CHECK(of_type(ev["w4"], "start")[0]["dist_backend"] == "cpu");
    CHECK(read_file(e.dir + "/w2.rank0.err").find("in 2 bucket(s), overlapped with the backward") != std::string::npos);
    CHECK(read_file(e.dir + "/w2sync.rank0.err").find("in 1 bucket(s)\n") != std::string::npos);

    // One micro-batch per rank sums in the order one rank accumulates: bit for bit.
    bool exact = false;
    CHECK(field(ev["w4"], "loss") == field(ev["one"], "loss"));
    CHECK(field(ev["w4"], "grad_norm") == field(ev["one"], "grad_norm"));
    adapter_max_rel(e.dir + "/runs/w4", e.dir + "/runs/one", &exact);
    CHECK(exact);
    CHECK(field(ev["w2ga1"], "loss") == field(ev["one_ga2"], "loss"));
    adapter_max_rel(e.dir + "/runs/w2ga1", e.dir + "/runs/one_ga2", &exact);
    CHECK(exact);
    // Overlapped and after-the-backward sums are the same sums: bit for bit.
    for (const char* w : {"w2", "w4"}) {
        const std::string sync = std::string(w) + "sync";
        CHECK(field(ev[w], "loss") == field(ev[sync], "loss"));
        CHECK(field(ev[w], "grad_norm") == field(ev[sync], "grad_norm"));
        adapter_max_rel(e.dir + "/runs/" + w, e.dir + "/runs/" + sync, &exact);
        CHECK_MESSAGE(exact, w);
    }
    CHECK(field(ev["w1"], "loss") == field(ev["one"], "loss"));
    adapter_max_rel(e.dir + "/runs/w1", e.dir + "/runs/one", &exact);
    CHECK(exact);
    // 2 ranks × 2 micro-batches sum (g0 + g1) + (g2 + g3) instead of ((g0 + g1) + g2) + g3: fp32 reassociation
    // only. Measured on the development machine: losses ≤ 1e-6 relative, final adapter ≤ 1e-4 relative.
    const double dl = max_rel(field(ev["w2"], "loss"), field(ev["one"], "loss"));
    const double dw = adapter_max_rel(e.dir + "/runs/w2", e.dir + "/runs/one", &exact);
    MESSAGE("2 ranks x 2 vs 1 rank x 4: loss max rel " << dl << ", adapter max rel " << dw << std::string(exact ? " (exact)" : ""));
    CHECK(dl <= 1e-5);
    CHECK(dw <= 1e-3);
}

TEST_CASE("a killed rank stops every other rank within seconds, naming it; --resume ends bit-exact") {
    const char* ks = std::getenv("HQ_DIST_KILLS");
    const int K = ks && *ks ? std::atoi(ks) : 20;
    Env e = make_env();
    const int64_t steps = 10;
    json cfg = config(e, "ref", 1, steps);
    cfg["checkpoints"] = {{"every_steps", 1}, {"keep", 2}};
    cfg["distributed"] = {{"timeout_s", 5}};
    const int W = 2;
    auto t0 = Clock::now();
    World ref = launch(W, e.dir + "/ref", {"--config", write_config(e, "ref", cfg), "--threads", "1"});
    for (int rc : wait_all(ref)) REQUIRE(rc == 0);
    const double full_s = since(t0);
    const std::vector<double> ref_loss = field(read_events(ref.outs[0]), "loss");

    cfg["output"]["run_name"] = "storm";
    const std::string scfg = write_config(e, "storm", cfg);
    const std::string run = e.dir + "/runs/storm";
    std::mt19937_64 rng(20261207);
    std::uniform_real_distribution<double> delay(0.0, full_s * 0.8);
    std::uniform_int_distribution<int> victim_of(0, W - 1);
    int kills = 0, named = 0, attempts = 0;
    double worst_stop_s = 0.0, worst_named_s = 0.0;
    int completions = 0;
    std::map<int64_t, double> loss_at;   // every step loss any attempt of the current run reported
    // A completed run: the uninterrupted run's losses and adapter, bit for bit; then the storm starts a fresh run.
    auto check_completed = [&]() {
        ++completions;
        for (const auto& [k, l] : loss_at) CHECK_MESSAGE(l == ref_loss.at(static_cast<size_t>(k - 1)), "step " << k);
        bool same = false;
        adapter_max_rel(run, e.dir + "/runs/ref", &same);
        CHECK(same);
        loss_at.clear();
        remove_all(run);
    };
    while (kills < K) {
        ++attempts;
        REQUIRE(attempts < 6 * K);
        World w = launch(W, e.dir + "/storm", {"--config", scfg, "--threads", "1", "--resume"});
        std::this_thread::sleep_for(std::chrono::duration<double>(delay(rng)));
        const int victim = victim_of(rng);
        // The survivors whose watchdog already runs ("collectives ready"): they must name the victim.
        std::vector<bool> watching(W, false);
        for (int r = 0; r < W; ++r)
            watching[r] = read_file(w.outs[r] + ".err").find("collectives ready") != std::string::npos;
        int st = 0;
        if (waitpid(w.pids[victim], &st, WNOHANG) == w.pids[victim]) {   // it already finished: the run is done
            wait_all(World{{w.pids[1 - victim]}, {}});
            check_completed();
            continue;
        }
        kill(w.pids[victim], SIGKILL);
        const auto tk = Clock::now();
        REQUIRE(waitpid(w.pids[victim], &st, 0) == w.pids[victim]);
        const bool was_killed = WIFSIGNALED(st);
        // The survivors: they end by themselves (no hung process), within seconds.
        for (int r = 0; r < W; ++r) {
            if (r == victim) continue;
            int s2 = 0;
            while (waitpid(w.pids[r], &s2, WNOHANG) != w.pids[r]) {
                REQUIRE_MESSAGE(since(tk) < 30.0, "rank " << r << " still runs 30 s after rank " << victim
                                                          << " was killed:\n" << read_file(w.outs[r] + ".err"));
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            const double stop_s = since(tk);
            worst_stop_s = std::max(worst_stop_s, stop_s);
            if (!was_killed) continue;   // the kill came after its exit
            const int rc = WIFEXITED(s2) ? WEXITSTATUS(s2) : 128 + WTERMSIG(s2);
            if (rc == 0) continue;   // it had finished its part already (the victim was in its last moments)
            CHECK_MESSAGE(rc == 1, "rank " << r << " exit " << rc);
            const std::string err = read_file(w.outs[r] + ".err");
            if (err.find("rank " + std::to_string(victim) + " failed") != std::string::npos) {
                ++named;
                worst_named_s = std::max(worst_named_s, stop_s);
            } else {
                CHECK_MESSAGE(!watching[r], "rank " << r << " had its watchdog running but did not name rank "
                                                    << victim << ":\n" << err);
                CHECK_MESSAGE(err.find("E_DIST") != std::string::npos, err);   // a rendezvous timeout (see below)
                if (std::getenv("HQ_DIST_VERBOSE")) MESSAGE("unnamed stop after " << stop_s << " s: " << err);
            }
        }
        if (was_killed) ++kills;
        const std::vector<json> ev0 = read_events(w.outs[0]);
        for (const auto& s : of_type(ev0, "step")) loss_at[s["step"].get<int64_t>()] = s["loss"];
        if (!of_type(ev0, "done").empty() && of_type(ev0, "done")[0]["status"] == "completed") {
            check_completed();
            continue;
        }
        // No partial checkpoint: every checkpoint listed is whole (its state and tensors read back).
        for (const CheckpointRef& c : list_checkpoints(run + "/checkpoints")) {
            CHECK_NOTHROW(read_checkpoint_state(c.path));
            CHECK(path_exists(c.path + "/adapter.safetensors"));
        }
    }
    MESSAGE(kills << " kills in " << attempts << " attempts, " << completions << " runs completed; the other rank "
                  "named the killed one " << named << " times, within " << worst_named_s << " s at most; slowest stop "
                  "of a survivor " << worst_stop_s << " s");
    CHECK(kills >= K);
    // A kill after the rendezvous is named within seconds; one before it (start-up) ends the other rank by the
    // rendezvous timeout (distributed.timeout_s = 5 here), as nothing had connected yet.
    CHECK(worst_named_s < 5.0);
    CHECK(worst_stop_s < 5.0 + 5.0);
    // Which kills come after the rendezvous depends on the machine's speed; the storm must have had some.
    CHECK(named > 0);
    // Finish the run, then: the same adapter and the same losses as the uninterrupted run.
    World fin = launch(W, e.dir + "/fin", {"--config", scfg, "--threads", "1", "--resume"});
    for (int rc : wait_all(fin)) REQUIRE(rc == 0);
    for (const auto& s : of_type(read_events(fin.outs[0]), "step")) loss_at[s["step"].get<int64_t>()] = s["loss"];
    for (const auto& [k, l] : loss_at) CHECK_MESSAGE(l == ref_loss.at(static_cast<size_t>(k - 1)), "step " << k);
    bool exact = false;
    adapter_max_rel(run, e.dir + "/runs/ref", &exact);
    CHECK(exact);
}

TEST_CASE("a run resumes on another world size: the data position is global") {
    Env e = make_env();
    // Reference: one rank × accumulation 2 for 8 steps (constant lr: the schedule does not depend on the step count).
    auto cfg = [&](const std::string& name, int ga) {
        json c = config(e, name, ga, 8);
        c["training"]["lr_scheduler"] = "constant";
        c["training"]["warmup_steps"] = 0;
        return write_config(e, name + "-ga" + std::to_string(ga), c);
    };
    World ref = launch(0, e.dir + "/ref", {"--config", cfg("ref", 2), "--threads", "1"});
    REQUIRE(wait_all(ref)[0] == 0);
    const std::vector<double> ref_loss = field(read_events(ref.outs[0]), "loss");
    // 2 ranks × 1 for 4 steps, then 1 rank × 2; and 1 rank × 2 for 4 steps, then 2 ranks × 1.
    for (const auto& [name, first_W, then_W] : std::vector<std::tuple<std::string, int, int>>{{"a", 2, 0}, {"b", 0, 2}}) {
        World w1 = launch(first_W, e.dir + "/" + name + "1",
                          {"--config", cfg(name, first_W ? 1 : 2), "--threads", "1", "--max-steps", "4"});
        for (int rc : wait_all(w1)) REQUIRE(rc == 0);
        World w2 = launch(then_W, e.dir + "/" + name + "2",
                          {"--config", cfg(name, then_W ? 1 : 2), "--threads", "1", "--resume"});
        for (int rc : wait_all(w2)) REQUIRE(rc == 0);
        const std::vector<json> ev1 = read_events(w1.outs[0]), ev2 = read_events(w2.outs[0]);
        CHECK(of_type(ev2, "start")[0]["resumed_from_step"] == 4);
        bool warned = false;
        for (const auto& x : of_type(ev2, "warning")) warned |= x["code"] == "W_WORLD_CHANGED";
        CHECK(warned);
        std::vector<double> loss = field(ev1, "loss");
        for (double l : field(ev2, "loss")) loss.push_back(l);
        CHECK_MESSAGE(loss == ref_loss, name);
        bool exact = false;
        adapter_max_rel(e.dir + "/runs/" + name, e.dir + "/runs/ref", &exact);
        CHECK_MESSAGE(exact, name);
    }
}

namespace {

// Every tensor of a checkpoint's optimizer.safetensors (m.<param>, v.<param>).
std::map<std::string, std::vector<float>> optimizer_state(const std::string& ckpt) {
    auto f = SafeTensorsFile::open(ckpt + "/optimizer.safetensors");
    std::map<std::string, std::vector<float>> m;
    for (const auto& t : f->tensors()) m[t.name] = f->read_f32(t.name);
    return m;
}

}  // namespace

TEST_CASE("ZeRO-1: 2 and 4 ranks with the optimizer state sharded equal the unsharded world; resume re-shards") {
    Env e = make_env();
    auto cfg = [&](const std::string& name, int ga, int zero, int64_t steps) {
        json c = config(e, name, ga, steps);
        c["training"]["weight_decay"] = 0.1;   // every AdamW term
        c["training"]["lr_scheduler"] = "constant";   // the schedule does not depend on --max-steps
        c["training"]["warmup_steps"] = 0;
        c["checkpoints"] = {{"every_steps", 4}, {"keep", 0}};
        c["distributed"] = {{"timeout_s", 20}, {"zero", zero}, {"bucket_mb", 0}};
        return c;
    };
    auto train = [&](int W, const std::string& name, const json& c, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"--config", write_config(e, name + std::to_string(W), c), "--threads", "1"};
        for (auto& a : extra) args.push_back(a);
        World w = launch(W, e.dir + "/" + name + std::to_string(W), args);
        const std::vector<int> rc = wait_all(w);
        for (size_t r = 0; r < rc.size(); ++r)
            REQUIRE_MESSAGE(rc[r] == 0, name << " rank " << r << ": " << read_file(w.outs[r] + ".err"));
        return w;
    };
    const std::string ck8 = "/checkpoints/step-000008";
    for (int W : {2, 4}) {
        const std::string z0 = "z0w" + std::to_string(W), z1 = "z1w" + std::to_string(W);
        World w0 = train(W, z0, cfg(z0, 1, 0, 8));
        World w1 = train(W, z1, cfg(z1, 1, 1, 8));
        const std::vector<json> ev0 = read_events(w0.outs[0]), ev1 = read_events(w1.outs[0]);
        CHECK(field(ev1, "loss") == field(ev0, "loss"));
        CHECK(field(ev1, "grad_norm") == field(ev0, "grad_norm"));
        bool exact = false;
        adapter_max_rel(e.dir + "/runs/" + z1, e.dir + "/runs/" + z0, &exact);
        CHECK_MESSAGE(exact, z1);
        for (int step : {4, 8}) {   // the checkpoints hold the whole state, the same bits
            const std::string ck = "/checkpoints/step-00000" + std::to_string(step);
            CHECK(optimizer_state(e.dir + "/runs/" + z1 + ck) == optimizer_state(e.dir + "/runs/" + z0 + ck));
        }
        // Each rank holds about 1/W of the state: the memory of every rank is below the unsharded one's.
        const json m0 = of_type(ev0, "step").back()["rank_memory_bytes"], m1 = of_type(ev1, "step").back()["rank_memory_bytes"];
        for (int r = 0; r < W; ++r) CHECK(m1[r].get<double>() < m0[r].get<double>());
        CHECK(read_file(w1.outs[1] + ".err").find("ZeRO-1: AdamW state of params") != std::string::npos);
    }
    // Resume on another world size: 4 ranks with ZeRO-1 for 4 steps, then one rank × 4 (the whole state from the
    // checkpoint); one rank × 4 for 4 steps, then 4 ranks with ZeRO-1 (re-sharded on load). Both end in the
    // uninterrupted one-rank run's adapter and optimizer state, bit for bit (4 ranks × 1 sum as one rank × 4).
    json ref = cfg("ref", 4, 0, 8);
    train(0, "ref", ref);
    for (const auto& [name, first_W, then_W] : std::vector<std::tuple<std::string, int, int>>{{"a", 4, 0}, {"b", 0, 4}}) {
        train(first_W, name + "1", cfg(name, first_W ? 1 : 4, 1, 8), {"--max-steps", "4"});
        World w2 = train(then_W, name + "2", cfg(name, then_W ? 1 : 4, 1, 8), {"--resume"});
        CHECK(of_type(read_events(w2.outs[0]), "start")[0]["resumed_from_step"] == 4);
        bool exact = false;
        adapter_max_rel(e.dir + "/runs/" + name, e.dir + "/runs/ref", &exact);
        CHECK_MESSAGE(exact, name);
        CHECK_MESSAGE(optimizer_state(e.dir + "/runs/" + name + ck8) == optimizer_state(e.dir + "/runs/ref" + ck8), name);
    }
}

namespace {

// The children of `parent` (field 4 of /proc/<pid>/stat) and the RANK each has in its environment (-1: none).
std::map<pid_t, int> ranks_of(pid_t parent) {
    std::map<pid_t, int> out;
    for (const std::string& name : list_dir("/proc")) {
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string stat, env;
        try {   // a process may end between the listing and the reads
            stat = read_file("/proc/" + name + "/stat");
            env = read_file("/proc/" + name + "/environ");
        } catch (const Error&) {
            continue;
        }
        const size_t close = stat.rfind(')');
        if (close == std::string::npos) continue;
        int ppid = 0;
        char state = 0;
        if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != parent) continue;
        int rank = -1;
        for (size_t p = 0; p < env.size();) {
            if (env.compare(p, 5, "RANK=") == 0) rank = std::atoi(env.c_str() + p + 5);
            const size_t end = env.find('\0', p);
            if (end == std::string::npos) break;
            p = end + 1;
        }
        out[static_cast<pid_t>(std::stol(name))] = rank;
    }
    return out;
}

}  // namespace

TEST_CASE("--nproc 2: hqlora-train launches the world itself, passes rank 0's events through, stops all on a death") {
    Env e = make_env();
    // The launcher's world of 2 × accumulation 1 is one rank × accumulation 2, bit for bit.
    hq_test::Child one = hq_test::spawn({"--config", write_config(e, "one", config(e, "one", 2, 4)), "--threads", "1"},
                                        e.dir + "/one.out");
    REQUIRE(hq_test::wait_child(one) == 0);
    json two_cfg = config(e, "two", 1, 4);
    two_cfg["hardware"] = {{"gpus", 2}, {"device", "cpu"}};   // hardware.gpus: no flag needed
    hq_test::Child two = hq_test::spawn({"--config", write_config(e, "two", two_cfg), "--threads", "1"}, e.dir + "/two.out");
    REQUIRE(hq_test::wait_child(two) == 0);
    const std::vector<json> ev = read_events(two.out_path);
    REQUIRE(of_type(ev, "start").size() == 1);   // rank 0's events only
    CHECK(of_type(ev, "start")[0]["world_size"] == 2);
    CHECK(of_type(ev, "start")[0]["dist_backend"] == "cpu");
    CHECK(of_type(ev, "step").size() == 4);
    CHECK(of_type(ev, "step")[0]["rank_memory_bytes"].size() == 2);
    CHECK(field(ev, "loss") == field(read_events(one.out_path), "loss"));
    bool exact = false;
    adapter_max_rel(e.dir + "/runs/two", e.dir + "/runs/one", &exact);
    CHECK(exact);
    const std::string log = read_file(two.out_path + ".err");
    CHECK(log.find("[rank 1] [hqlora] rank 1 of 2") != std::string::npos);

    // SIGKILL of either rank mid-run: the launcher ends within seconds, exit 1, with an error event naming the rank.
    for (int victim : {1, 0}) {
        json cfg = config(e, "kill" + std::to_string(victim), 1, 400);
        cfg["distributed"] = {{"timeout_s", 5}};
        const std::string run = e.dir + "/runs/kill" + std::to_string(victim);
        hq_test::Child l = hq_test::spawn({"--config", write_config(e, "kill" + std::to_string(victim), cfg),
                                           "--threads", "1", "--nproc", "2"},
                                          run + ".out");
        const auto t0 = Clock::now();
        while (of_type(read_events(l.out_path), "step").empty()) {
            REQUIRE_MESSAGE(since(t0) < 60.0, read_file(l.out_path + ".err"));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        const std::map<pid_t, int> ranks = ranks_of(l.pid);
        REQUIRE(ranks.size() == 2);
        pid_t target = -1;
        for (const auto& [pid, r] : ranks)
            if (r == victim) target = pid;
        REQUIRE(target > 0);
        kill(target, SIGKILL);
        const auto tk = Clock::now();
        int st = 0;
        while (waitpid(l.pid, &st, WNOHANG) != l.pid) {
            REQUIRE_MESSAGE(since(tk) < 20.0, "the launcher still runs 20 s after rank " << victim << " was killed");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        MESSAGE("rank " << victim << " killed: the launcher ended after " << since(tk) << " s");
        CHECK(WIFEXITED(st));
        CHECK(WEXITSTATUS(st) == 1);
        for (const auto& [pid, r] : ranks) CHECK_MESSAGE(kill(pid, 0) != 0, "rank " << r << " is left");
        const std::vector<json> errs = of_type(read_events(l.out_path), "error");
        REQUIRE(errs.size() == 1);
        const std::string msg = errs[0]["message"];
        CHECK_MESSAGE(msg.find("rank " + std::to_string(victim)) != std::string::npos, msg);
        if (victim == 0) {   // the launcher's own event, in events.jsonl too
            CHECK(msg.find("SIGKILL") != std::string::npos);
            CHECK(of_type(read_events(run + "/events.jsonl"), "error").size() == 1);
        }
        for (const CheckpointRef& c : list_checkpoints(run + "/checkpoints")) CHECK_NOTHROW(read_checkpoint_state(c.path));
    }
}
