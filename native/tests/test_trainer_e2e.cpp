// test_trainer_e2e.cpp — runs the real hqlora-train binary as a child process on a tiny model:
// event stream vs schema, loss falls, SIGKILL + --resume reproduces the loss curve bit for bit, a storm of random
// SIGKILLs (during start-up, steps, checkpoint writes and the final export) loses nothing, a disk full inside a
// checkpoint write keeps the previous checkpoint and resumes exactly, SIGUSR1 -> a checkpoint now and training goes
// on, SIGTERM -> checkpoint +
// exit 3, non-finite loss -> E_NONFINITE + exit 4, bad inputs -> error event + exit 1.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fsutil.h"
#include "safetensors.h"
#include "tokens.h"
#include "trainer_child.h"

using namespace hq;
using json = nlohmann::json;
using hq_test::Child;
using hq_test::of_type;
using hq_test::read_events;
using hq_test::spawn;
using hq_test::wait_child;

namespace {

const std::string kRepo = HQ_REPO_ROOT;
const std::string kFixture = kRepo + "/test/fixtures/models/tiny-llama";

// Polls (no fixed sleeps) until `pred(events)` holds or the child exits; returns whether it held.
template <class Pred>
bool poll_events(const Child& c, Pred pred, double timeout_s = 60) {
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
        if (pred(read_events(c.out_path))) return true;
        int st;
        if (waitpid(c.pid, &st, WNOHANG) == c.pid) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
}


// Checks an event against schemas/trainer-events.schema.json: known type, required keys present, no unknown keys.
void check_schema(const json& schema, const json& ev) {
    REQUIRE(ev.contains("type"));
    std::string t = ev["type"];
    std::string def;
    for (const auto& [name, d] : schema["$defs"].items())
        if (d.contains("properties") && d["properties"].contains("type") && d["properties"]["type"].value("const", "") == t)
            def = name;
    REQUIRE_MESSAGE(!def.empty(), "unknown event type " << t);
    const json& d = schema["$defs"][def];
    for (const auto& k : d["required"]) CHECK_MESSAGE(ev.contains(k.get<std::string>()), t << " lacks " << k);
    for (const auto& [k, v] : ev.items()) CHECK_MESSAGE(d["properties"].contains(k), t << " has unknown key " << k);
    CHECK(ev["v"] == 1);
    CHECK(ev["time"].is_number());
}

std::string tmp_dir() {
    char tmpl[] = "/tmp/hq_test_e2e_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

// 24 short examples of arithmetic sequences (learnable: the loss falls fast); prompt tokens masked out.
std::string token_bytes() {
    std::vector<std::vector<uint32_t>> ex;
    std::vector<std::vector<uint8_t>> mk;
    for (uint32_t i = 0; i < 24; ++i) {
        std::vector<uint32_t> e = {1};
        const uint32_t len = 8 + (i * 5) % 9, start = 3 + (i * 7) % 40, stride = 1 + i % 3;
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
    std::string dir, train, eval;
    json schema;
};

Env make_env() {
    REQUIRE_MESSAGE(path_exists(kFixture + "/config.json"), "fixture missing: " << kFixture);
    Env e;
    e.dir = tmp_dir();
    e.train = e.dir + "/train.hqtok";
    e.eval = e.dir + "/eval.hqtok";
    write_file_atomic(e.train, token_bytes());
    write_file_atomic(e.eval, token_bytes());
    e.schema = json::parse(read_file(kRepo + "/schemas/trainer-events.schema.json"));
    return e;
}

json base_config(const Env& e, const std::string& run_name) {
    return {{"model", {{"path", kFixture}}},
            {"quantization", {{"type", "nf4"}, {"double_quant", true}, {"blocksize", 64}}},
            {"adapter", {{"levels", {{{"rank", 4}, {"alpha", 8}}, {{"rank", 2}, {"alpha", 8}}}}, {"dropout", 0.1}}},
            {"data", {{"train_tokens", e.train}, {"eval_tokens", e.eval}}},
            {"training", {{"max_steps", 12}, {"micro_batch_size", 2}, {"gradient_accumulation_steps", 2},
                          {"learning_rate", 1e-2}, {"lr_scheduler", "cosine"}, {"warmup_steps", 2}, {"seed", 3}}},
            {"eval", {{"every_steps", 6}, {"max_batches", 2}}},
            {"checkpoints", {{"every_steps", 4}, {"keep", 2}}},
            {"output", {{"dir", e.dir + "/runs"}, {"run_name", run_name}}},
            {"logging", {{"every_steps", 1}, {"adapter_stats_every", 6}}}};
}

std::string write_config(const Env& e, const std::string& name, const json& cfg) {
    std::string p = e.dir + "/" + name + ".json";
    write_file_atomic(p, cfg.dump(2));
    return p;
}

// Two runs' final adapters (<run>/adapter/adapter.safetensors) hold the same tensors, bit for bit.
void check_same_adapter(const std::string& run_a, const std::string& run_b) {
    auto fa = SafeTensorsFile::open(run_a + "/adapter/adapter.safetensors");
    auto fb = SafeTensorsFile::open(run_b + "/adapter/adapter.safetensors");
    REQUIRE(fa->tensors().size() == fb->tensors().size());
    for (const auto& t : fa->tensors()) CHECK_MESSAGE(fa->read_f32(t.name) == fb->read_f32(t.name), t.name);
}

std::vector<double> step_losses(const std::vector<json>& ev) {
    std::vector<double> l;
    for (const auto& s : of_type(ev, "step")) l.push_back(s["loss"].get<double>());
    return l;
}

}  // namespace

TEST_CASE("--version, --help and usage errors") {
    const std::string d = tmp_dir();
    Child c = spawn({"--version"}, d + "/version.out");
    CHECK(wait_child(c) == 0);
    std::string out = read_file(c.out_path);
    CHECK(out.rfind("hqlora-train ", 0) == 0);
#ifdef HQ_WITH_CUDA
    CHECK(out.find("\nbackends: cpu,cuda\n") != std::string::npos);
#else
    CHECK(out.find("\nbackends: cpu\n") != std::string::npos);
#endif
    Child h = spawn({"--help"}, d + "/help.out");
    CHECK(wait_child(h) == 0);
    std::string help = read_file(h.out_path);
    for (const char* flag : {"--config", "--resume", "--threads", "--max-steps", "inspect", "--version"})
        CHECK(help.find(flag) != std::string::npos);
    CHECK(wait_child(spawn({"--bogus"}, d + "/bogus.out")) == 2);
    CHECK(wait_child(spawn({}, d + "/noconfig.out")) == 2);
    remove_all(d);
}

TEST_CASE("a run emits schema-valid events, its loss falls, and SIGKILL + --resume replays it bit for bit") {
    Env e = make_env();
    json cfg = base_config(e, "full");
    Child a = spawn({"--config", write_config(e, "full", cfg), "--threads", "2"}, e.dir + "/full.out");
    REQUIRE(wait_child(a) == 0);
    std::vector<json> ev = read_events(a.out_path);
    for (const auto& x : ev) check_schema(e.schema, x);
    REQUIRE(of_type(ev, "start").size() == 1);
    CHECK(ev.front()["type"] == "start");
    CHECK(ev.front()["resumed_from_step"].is_null());
    CHECK(ev.front()["total_steps"] == 12);
    CHECK(ev.back()["type"] == "done");
    CHECK(ev.back()["status"] == "completed");
    CHECK(of_type(ev, "checkpoint").size() == 3);
    CHECK(of_type(ev, "adapter_stats").size() == 2);
    CHECK(of_type(ev, "adapter_stats")[0]["levels"].size() == 2);
    std::vector<json> evals = of_type(ev, "eval");
    REQUIRE(evals.size() == 2);   // step 6 and the final one
    CHECK(evals[1]["step"] == 12);
    CHECK(evals[1]["accuracy"].get<double>() >= 0.0);
    CHECK(evals[1]["eval_loss"].get<double>() < evals[0]["eval_loss"].get<double>());
    std::vector<double> full = step_losses(ev);
    REQUIRE(full.size() == 12);
    CHECK((full[9] + full[10] + full[11]) / 3 < (full[0] + full[1] + full[2]) / 3 - 0.3);
    CHECK(of_type(ev, "step")[0]["lr"] == 0.0);   // warmup starts at 0
    const std::string run = e.dir + "/runs/full";
    CHECK(path_exists(run + "/adapter/adapter.safetensors"));
    CHECK(path_exists(run + "/peft/adapter_model.safetensors"));
    CHECK(list_dir(run + "/checkpoints") == std::vector<std::string>{"step-000008", "step-000012"});
    // events.jsonl holds the same lines as stdout.
    CHECK(read_file(run + "/events.jsonl") == read_file(a.out_path));

    // Same run, killed hard right after its step-4 checkpoint, then resumed.
    cfg["output"]["run_name"] = "killed";
    const std::string kcfg = write_config(e, "killed", cfg);
    Child b = spawn({"--config", kcfg, "--threads", "2"}, e.dir + "/killed.out");
    bool saw = poll_events(b, [](const std::vector<json>& v) {
        for (const auto& x : v)
            if (x["type"] == "checkpoint" && x["step"] == 4) return true;
        return false;
    });
    REQUIRE(saw);
    kill(b.pid, SIGKILL);
    CHECK(wait_child(b) == 128 + SIGKILL);
    std::vector<json> before = read_events(b.out_path);
    CHECK(of_type(before, "done").empty());

    Child r = spawn({"--config", kcfg, "--threads", "2", "--resume"}, e.dir + "/resumed.out");
    REQUIRE(wait_child(r) == 0);
    std::vector<json> after = read_events(r.out_path);
    REQUIRE(!after.empty());
    const int64_t from = after.front()["resumed_from_step"].get<int64_t>();
    CHECK(from >= 4);
    std::vector<double> resumed = step_losses(after);
    REQUIRE(resumed.size() == static_cast<size_t>(12 - from));
    for (size_t i = 0; i < resumed.size(); ++i)
        CHECK_MESSAGE(resumed[i] == full[from + i], "step " << from + 1 + i);   // bit-identical doubles
    // The final adapters are identical too.
    check_same_adapter(run, e.dir + "/runs/killed");

    // Resuming with other adapter levels is refused, naming the key; nothing is written.
    json other = cfg;
    other["adapter"]["levels"][1]["rank"] = 3;
    const std::string before_log = read_file(e.dir + "/runs/killed/events.jsonl");
    Child m = spawn({"--config", write_config(e, "mismatch", other), "--resume"}, e.dir + "/mismatch.out");
    CHECK(wait_child(m) == 1);
    std::vector<json> mev = read_events(m.out_path);
    REQUIRE(mev.size() == 1);
    CHECK(mev[0]["code"] == "E_CHECKPOINT");
    CHECK(mev[0]["where"]["key"] == "adapter.levels");
    CHECK(read_file(e.dir + "/runs/killed/events.jsonl") == before_log);
    remove_all(e.dir);
}

// Kill storm: SIGKILL at K pseudo-random moments (seeded), each followed by --resume, so kills land in start-up,
// in steps, inside checkpoint writes (one per step) and inside the final export. When an attempt completes instead,
// its adapter is compared and the storm starts a fresh run. Bars: no attempt reports an error; none resumes from
// before a checkpoint an earlier attempt announced; every step loss ever reported (replays included) and every final
// adapter equal the uninterrupted run's bit for bit; events.jsonl stays one JSON object per line.
// K = HQ_KILL_STORM (default 200).
TEST_CASE("kill storm: random SIGKILLs with --resume never lose, corrupt or change the run") {
    const char* ks = std::getenv("HQ_KILL_STORM");
    const int K = ks && *ks ? std::atoi(ks) : 200;
    Env e = make_env();
    json cfg = base_config(e, "ref");
    const int64_t steps = 16;
    cfg["training"]["max_steps"] = steps;
    cfg["checkpoints"] = {{"every_steps", 1}, {"keep", 2}};
    const auto t0 = std::chrono::steady_clock::now();
    Child a = spawn({"--config", write_config(e, "ref", cfg), "--threads", "1"}, e.dir + "/ref.out");
    REQUIRE(wait_child(a) == 0);
    const double full_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<double> ref = step_losses(read_events(a.out_path));
    REQUIRE(ref.size() == static_cast<size_t>(steps));

    cfg["output"]["run_name"] = "storm";
    const std::string scfg = write_config(e, "storm", cfg);
    const std::string run = e.dir + "/runs/storm";
    std::mt19937_64 rng(20261128);
    // Kill delays up to a third of an uninterrupted run: most attempts get a few steps further, some die in start-up.
    std::uniform_real_distribution<double> delay_s(0.0, full_s / 3);
    int kills = 0, attempts = 0, completions = 0, fresh_starts = 1, replayed = 0, resumes_without_ckpt = 0;
    int64_t announced = 0;   // newest checkpoint step announced by an event of this storm run so far
    std::vector<int> seen(static_cast<size_t>(steps) + 1, 0);   // how often each step was reported in this run
    bool fresh = true;
    while (kills < K) {
        // A child killed before it opened its stdout leaves no file: never read an earlier attempt's events.
        const std::string out = e.dir + "/storm.out";
        remove_all(out);
        std::vector<std::string> args = {"--config", scfg, "--threads", "1"};
        if (!fresh) args.push_back("--resume");
        Child c = spawn(args, out);
        ++attempts;
        std::this_thread::sleep_for(std::chrono::duration<double>(delay_s(rng)));
        kill(c.pid, SIGKILL);
        const int rc = wait_child(c);
        const std::vector<json> ev = read_events(out);
        for (const auto& x : ev)
            CHECK_MESSAGE(x["type"] != "error", "attempt " << attempts << ": " << x.dump());
        const std::vector<json> starts = of_type(ev, "start");
        if (!fresh && !starts.empty()) {
            if (starts[0]["resumed_from_step"].is_null()) {
                CHECK_MESSAGE(announced == 0, "attempt " << attempts << " restarted from step 0 after checkpoint "
                                                         << announced << " was announced");
                ++resumes_without_ckpt;
            } else {
                CHECK_MESSAGE(starts[0]["resumed_from_step"].get<int64_t>() >= announced, "attempt " << attempts);
            }
        }
        for (const auto& st : of_type(ev, "step")) {
            const int64_t k = st["step"].get<int64_t>();
            REQUIRE(k >= 1);
            REQUIRE(k <= steps);
            CHECK_MESSAGE(st["loss"].get<double>() == ref[static_cast<size_t>(k - 1)], "attempt " << attempts
                                                                                            << ", step " << k);
            if (seen[static_cast<size_t>(k)]++ > 0) ++replayed;
        }
        for (const auto& ck : of_type(ev, "checkpoint")) announced = std::max(announced, ck["step"].get<int64_t>());
        fresh = false;
        if (rc == 0) {   // finished before the kill: same adapter as the uninterrupted run, then a fresh storm run
            ++completions;
            CHECK(!of_type(ev, "done").empty());
            check_same_adapter(e.dir + "/runs/ref", run);
            remove_all(run);
            announced = 0;
            std::fill(seen.begin(), seen.end(), 0);
            fresh = true;
            ++fresh_starts;
            continue;
        }
        CHECK(rc == 128 + SIGKILL);
        ++kills;
    }
    // Finish the last storm run and compare it too.
    if (!fresh) {
        Child c = spawn({"--config", scfg, "--threads", "1", "--resume"}, e.dir + "/storm-final.out");
        REQUIRE(wait_child(c) == 0);
        for (const auto& st : of_type(read_events(c.out_path), "step"))
            CHECK(st["loss"].get<double>() == ref[static_cast<size_t>(st["step"].get<int64_t>() - 1)]);
        check_same_adapter(e.dir + "/runs/ref", run);
        ++completions;
        // Every line of the run's event log is one JSON object, across all the attempts it took.
        auto log_lines = [&](size_t& bad) {
            std::istringstream log(read_file(run + "/events.jsonl"));
            std::vector<std::string> lines;
            for (std::string line; std::getline(log, line);) lines.push_back(line);
            bad = 0;
            for (const std::string& l : lines) bad += !json::accept(l);
            return lines;
        };
        size_t bad = 0;
        CHECK(!log_lines(bad).empty());
        CHECK(bad == 0);
        // A log cut inside a line (a kill inside write(2), a full disk): the next attempt ends that line first, so
        // only that line is lost and every later event stays whole.
        {
            std::ofstream f(run + "/events.jsonl", std::ios::app);
            f << "{\"v\":1,\"type\":\"st";
        }
        Child again = spawn({"--config", scfg, "--threads", "1", "--resume"}, e.dir + "/storm-again.out");
        REQUIRE(wait_child(again) == 0);
        const std::vector<std::string> lines = log_lines(bad);
        CHECK(bad == 1);
        size_t cut = 0;
        while (cut < lines.size() && json::accept(lines[cut])) ++cut;
        REQUIRE(cut + 1 < lines.size());
        CHECK(lines[cut] == "{\"v\":1,\"type\":\"st");               // the cut line, alone
        CHECK(json::parse(lines[cut + 1])["type"] == "start");          // the next attempt's first event, whole
        CHECK(json::parse(lines.back())["type"] == "done");
        // Only complete checkpoints remain (keep 2), no temp folders.
        const std::vector<std::string> left = list_dir(run + "/checkpoints");
        CHECK(left.size() == 2);
        for (const std::string& n : left) CHECK(n.rfind(".tmp", 0) != 0);
    }
    MESSAGE("kill storm: " << kills << " SIGKILLs over " << attempts << " attempts (uninterrupted run " << full_s
                           << " s); " << completions << " completed runs, " << fresh_starts << " fresh starts, "
                           << replayed << " steps run again after a kill, " << resumes_without_ckpt
                           << " resumes before the first checkpoint");
    remove_all(e.dir);
}

// A disk that fills up inside a checkpoint write (LD_PRELOAD fault_shim.c: writes into the step-8 checkpoint write
// half, then fail with ENOSPC): the run stops with one E_IO error naming the file and the last good checkpoint, step 4
// stays complete, nothing of step 8 is left that a resume would pick, and --resume (space back) continues from step 4
// to the same losses and adapter as an uninterrupted run, bit for bit.
TEST_CASE("disk full inside a checkpoint write: E_IO, the previous checkpoint intact, --resume replays exactly") {
    Env e = make_env();
    json cfg = base_config(e, "ref");
    Child a = spawn({"--config", write_config(e, "ref", cfg), "--threads", "2"}, e.dir + "/ref.out");
    REQUIRE(wait_child(a) == 0);
    const std::vector<double> ref = step_losses(read_events(a.out_path));
    REQUIRE(ref.size() == 12);

    cfg["output"]["run_name"] = "full";
    const std::string fcfg = write_config(e, "full", cfg);
    const std::string run = e.dir + "/runs/full";
    setenv("LD_PRELOAD", HQ_FAULT_SHIM, 1);
    setenv("HQ_FAULT_WRITE_MATCH", "step-000008", 1);
    Child b = spawn({"--config", fcfg, "--threads", "2"}, e.dir + "/full.out");
    unsetenv("LD_PRELOAD");
    unsetenv("HQ_FAULT_WRITE_MATCH");
    CHECK(wait_child(b) == 1);
    const std::vector<json> ev = read_events(b.out_path);
    const std::vector<json> errors = of_type(ev, "error");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0]["code"] == "E_IO");
    CHECK(errors[0]["message"].get<std::string>().find("No space left on device") != std::string::npos);
    CHECK(errors[0]["where"]["file"].get<std::string>().find("step-000008") != std::string::npos);
    CHECK_MESSAGE(errors[0]["hint"].get<std::string>().find("step-000004") != std::string::npos,
                  "the hint names the last good checkpoint: " << errors[0]["hint"]);
    CHECK(of_type(ev, "done").empty());
    CHECK(step_losses(ev).size() == 8);
    CHECK(path_exists(run + "/checkpoints/step-000004/state.json"));
    for (const std::string& n : list_dir(run + "/checkpoints"))   // the partial step-8 folder is gone
        CHECK_MESSAGE(n == "step-000004", "left in checkpoints/: " << n);

    Child r = spawn({"--config", fcfg, "--threads", "2", "--resume"}, e.dir + "/resumed.out");
    REQUIRE(wait_child(r) == 0);
    const std::vector<json> after = read_events(r.out_path);
    REQUIRE(!after.empty());
    CHECK(after.front()["resumed_from_step"] == 4);
    const std::vector<double> resumed = step_losses(after);
    REQUIRE(resumed.size() == 8);
    for (size_t i = 0; i < resumed.size(); ++i) CHECK_MESSAGE(resumed[i] == ref[4 + i], "step " << 5 + i);
    check_same_adapter(e.dir + "/runs/ref", run);
    remove_all(e.dir);
}

// "Save checkpoint now": SIGUSR1 mid-run writes a checkpoint (reason "requested") after the current step, and
// training goes on, unchanged: the same losses and final adapter as a run without it.
TEST_CASE("SIGUSR1 writes a checkpoint after the current step and training goes on unchanged") {
    Env e = make_env();
    json cfg = base_config(e, "ref");
    cfg["training"]["max_steps"] = 40;
    cfg["checkpoints"] = {{"every_steps", 1000}, {"keep", 3}};
    Child a = spawn({"--config", write_config(e, "ref", cfg), "--threads", "1"}, e.dir + "/ref.out");
    REQUIRE(wait_child(a) == 0);
    const std::vector<double> ref = step_losses(read_events(a.out_path));

    cfg["output"]["run_name"] = "saved";
    Child b = spawn({"--config", write_config(e, "saved", cfg), "--threads", "1"}, e.dir + "/saved.out");
    REQUIRE(poll_events(b, [](const std::vector<json>& v) { return !of_type(v, "step").empty(); }));
    kill(b.pid, SIGUSR1);
    REQUIRE(wait_child(b) == 0);
    const std::vector<json> ev = read_events(b.out_path);
    std::vector<json> requested;
    for (const auto& c : of_type(ev, "checkpoint"))
        if (c["reason"] == "requested") requested.push_back(c);
    REQUIRE(requested.size() == 1);
    const int64_t at = requested[0]["step"].get<int64_t>();
    CHECK(at >= 1);
    CHECK(at < 40);
    for (const auto& x : ev) check_schema(e.schema, x);
    CHECK(ev.back()["type"] == "done");
    CHECK(ev.back()["status"] == "completed");
    CHECK(step_losses(ev) == ref);   // bit-identical doubles: saving does not perturb training
    const std::string ck = requested[0]["path"].get<std::string>();
    CHECK(json::parse(read_file(ck + "/state.json"))["step"] == at);
    check_same_adapter(e.dir + "/runs/ref", e.dir + "/runs/saved");
    remove_all(e.dir);
}

TEST_CASE("SIGTERM stops after a checkpoint with exit code 3") {
    Env e = make_env();
    json cfg = base_config(e, "term");
    cfg["training"]["max_steps"] = 400;
    cfg["checkpoints"]["every_steps"] = 0;   // only on signals
    Child c = spawn({"--config", write_config(e, "term", cfg), "--threads", "2"}, e.dir + "/term.out");
    REQUIRE(poll_events(c, [](const std::vector<json>& v) { return !of_type(v, "step").empty(); }));
    kill(c.pid, SIGTERM);
    CHECK(wait_child(c) == 3);
    std::vector<json> ev = read_events(c.out_path);
    for (const auto& x : ev) check_schema(e.schema, x);
    auto ck = of_type(ev, "checkpoint");
    REQUIRE(ck.size() == 1);
    CHECK(ck[0]["reason"] == "signal");
    REQUIRE(ev.back()["type"] == "done");
    CHECK(ev.back()["status"] == "stopped");
    CHECK(ev.back()["step"] == ck[0]["step"]);
    CHECK(ev.back()["adapter_dir"].is_null());
    CHECK(path_exists(ck[0]["path"].get<std::string>() + "/state.json"));
    CHECK(json::parse(read_file(ck[0]["path"].get<std::string>() + "/state.json"))["step"] == ck[0]["step"]);
    remove_all(e.dir);
}

TEST_CASE("a non-finite loss stops with E_NONFINITE and exit 4, keeping the last good checkpoint") {
    Env e = make_env();
    json cfg = base_config(e, "nan");
    cfg["training"]["learning_rate"] = 1e30;
    cfg["training"]["warmup_steps"] = 0;
    cfg["training"]["lr_scheduler"] = "constant";
    cfg["checkpoints"]["every_steps"] = 1;
    cfg["checkpoints"]["keep"] = 0;
    Child c = spawn({"--config", write_config(e, "nan", cfg), "--threads", "2"}, e.dir + "/nan.out");
    CHECK(wait_child(c) == 4);
    std::vector<json> ev = read_events(c.out_path);
    for (const auto& x : ev) check_schema(e.schema, x);
    auto errs = of_type(ev, "error");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0]["code"] == "E_NONFINITE");
    const int64_t bad_step = errs[0]["where"]["step"];
    auto ck = of_type(ev, "checkpoint");
    const std::string dir = e.dir + "/runs/nan/checkpoints";
    // Every published checkpoint precedes the bad step, is complete, and holds finite weights.
    CHECK(static_cast<int64_t>(ck.size()) == bad_step - 1);
    CHECK(list_dir(dir).size() == ck.size());
    for (const auto& x : ck) {
        CHECK(x["step"].get<int64_t>() < bad_step);
        auto f = SafeTensorsFile::open(x["path"].get<std::string>() + "/adapter.safetensors");
        for (const auto& t : f->tensors())
            for (float w : f->read_f32(t.name)) REQUIRE(std::isfinite(w));
    }
    CHECK_FALSE(path_exists(e.dir + "/runs/nan/adapter"));
    CHECK(of_type(ev, "done").empty());
    remove_all(e.dir);
}

TEST_CASE("bad inputs give one error event naming file and offset/tensor/key, exit 1, run folder untouched") {
    Env e = make_env();
    const std::string run = e.dir + "/runs/bad";
    make_dirs(run);
    write_file_atomic(run + "/events.jsonl", "{\"v\":1,\"type\":\"warning\",\"time\":1,\"code\":\"W\",\"message\":\"old\"}\n");
    auto untouched = [&]() {
        CHECK(list_dir(run) == std::vector<std::string>{"events.jsonl"});
        CHECK(read_file(run + "/events.jsonl").find("\"old\"") != std::string::npos);
    };
    auto run_bad = [&](const std::string& cfg_path) {
        Child c = spawn({"--config", cfg_path}, e.dir + "/bad.out");
        CHECK(wait_child(c) == 1);
        std::vector<json> ev = read_events(c.out_path);
        REQUIRE(ev.size() == 1);
        check_schema(e.schema, ev[0]);
        CHECK(ev[0]["type"] == "error");
        return ev[0];
    };
    const std::string log_before = read_file(run + "/events.jsonl");

    // Truncated token file.
    const std::string bytes = token_bytes();
    const std::string trunc = e.dir + "/trunc.hqtok";
    write_file_atomic(trunc, bytes.substr(0, bytes.size() - 16));
    json cfg = base_config(e, "bad");
    cfg["data"]["train_tokens"] = trunc;
    json err = run_bad(write_config(e, "trunc", cfg));
    CHECK(err["code"] == "E_TOKENS");
    CHECK(err["where"]["file"] == trunc);
    CHECK(err["where"]["offset"] == static_cast<int64_t>(bytes.size() - 16));
    untouched();

    // Model folder with a tensor missing.
    const std::string model = e.dir + "/model-missing";
    make_dirs(model);
    write_file_atomic(model + "/config.json", read_file(kFixture + "/config.json"));
    ModelWeights mw = ModelWeights::open_dir(kFixture);
    SafeTensorsWriter w;
    const std::string gone = "model.layers.1.mlp.down_proj.weight";
    for (const std::string& n : mw.names()) {
        if (n == gone) continue;
        const TensorInfo* t = mw.find(n);
        std::vector<float> v = mw.read_f32(n);
        w.add_f32(n, t->shape, v.data());
    }
    w.write_atomic(model + "/model.safetensors");
    cfg = base_config(e, "bad");
    cfg["model"]["path"] = model;
    err = run_bad(write_config(e, "missing", cfg));
    CHECK(err["message"].get<std::string>().find(gone) != std::string::npos);
    CHECK((err["where"].value("tensor", "") == gone || err["where"].value("file", "").find(model) == 0));
    untouched();

    // Malformed run.json (JSON syntax) and a wrongly typed key.
    const std::string broken = e.dir + "/broken.json";
    write_file_atomic(broken, "{\n  \"model\": {\"path\": \"x\"},\n  \"data\": {\"train_tokens\": }\n}\n");
    err = run_bad(broken);
    CHECK(err["code"] == "E_CONFIG");
    CHECK(err["where"]["file"] == broken);
    CHECK(err["where"]["line"] == 3);
    CHECK(err["where"]["offset"].get<int64_t>() > 0);
    cfg = base_config(e, "bad");
    cfg["training"]["learning_rate"] = "fast";
    err = run_bad(write_config(e, "typed", cfg));
    CHECK(err["code"] == "E_CONFIG");
    CHECK(err["where"]["key"] == "training.learning_rate");
    untouched();
    CHECK(read_file(run + "/events.jsonl") == log_before);
    remove_all(e.dir);
}
