#!/usr/bin/env python3
"""H-QLoRA GPU benchmark: hqlora-train (NF4 base + hierarchical LoRA, CUDA backend) against PyTorch + PEFT LoRA,
side by side on the same random-init checkpoints, in one run. Start it with bench/gpu/run.sh (it picks the Python).

Steps: (1) the bf16 GEMM rate of the GPU (gemm_rate.py: torch.matmul 8192^3, median of 10 after warm-up);
(2) random-init bf16 checkpoints per shape into $CKPT_ROOT (make_checkpoint.py; reused when complete) and random
token files (make_tokens.py: rows of exactly $SEQ tokens, every token a target); (3) for each ckpt in $CKPTS and
shape in $SHAPES: hqlora-train once per rank set in $RANKS (a run.json written here: device $DEVICE, micro-batch $MB,
source_max_len + target_max_len = $SEQ, gradient accumulation 1, max_steps $WARMUP + $STEPS, logging every step,
no checkpoints, no eval, NF4 double quant blocksize 64, lr 2e-4, alpha 16 per level, dropout 0), then
peft_peer.py with every rank set on the same checkpoint; (4) a Markdown table and the goal lines of issue 7.

Measurements
- step s (ours): the median, over the timed steps (the ones after $WARMUP), of the wall time between consecutive
  `step` events (elapsed_s differences: everything the trainer does per step, logging included).
  step s (PEFT): the median over the timed steps of the time between two torch.cuda.synchronize() calls.
- tokens/s = trained tokens per step / step s, for both systems. Ours: the `tokens` field of the trainer's `step`
  events (the positions that carry a loss, after any clamp to max_position_embeddings), the median over the timed
  steps; the start event's `tokens_per_step` is recorded beside it. The peer: the label positions its loss counts
  (MB * (SEQ - 1): labels = input_ids, shifted by one inside the model); the tokens it was fed (MB * SEQ) are recorded
  too. A row is INVALID, and never printed as a ratio, when its trainer warned W_TRUNCATED (rows longer than the
  model's max_position_embeddings are cut, so it trained fewer tokens than SEQ says) or when its trained tokens per
  step differ from the peer's at the same shape, length and ckpt; bench.json says why ("valid", "invalid_reason").
- peak GiB (ours): nvidia-smi memory.used, polled every 200 ms during the run, max minus the reading just before
  the trainer started (CUDA context included). The trainer's own `memory_bytes` (a host-side estimate) is kept
  in bench.json. peak GiB (PEFT): torch.cuda.max_memory_allocated (weights included; what the peer reports);
  the "smi GiB" column has the nvidia-smi figure of both systems, measured the same way.
- MFU = tokens/s * (4 * N_base + 6 * L * SEQ * n_heads * head_dim) / R_gemm
  N_base: the base's matrix-multiply parameters (q,k,v,o,gate,up,down of every layer + the V x C LM head);
  4 * N_base = forward + input gradient of a frozen base; the second term is causal attention forward + backward;
  R_gemm: the bf16 rate measured in step (1). LoRA FLOPs and checkpointing recomputation are not counted
  (shapes.py has the details).

Environment (defaults in brackets)
  HQ_TRAIN [native/build/bin/hqlora-train]  SHAPES [llama2-7b gemma-2b]  CKPTS [0 1]  RANKS [64 32,8,8,8,8]
  PEER_RANKS [$RANKS]: the peer's rank sets (e.g. 64 alone: the ratio's reference, without the slow multi-adapter run)
  MB [4]  SEQ [512]  SEQS [unset]: several lengths, one table each, e.g. "4x512 1x2048 1x4096" (MBxSEQ, or SEQ
  alone with micro-batch MB); the checkpoint of each shape is made once and reused.  WARMUP [3]  STEPS [10]  DEVICE [cuda]  COMPUTE_DTYPE [bfloat16]  THREADS [0]
  WORK [/tmp/hqbench]  CKPT_ROOT [$WORK/ckpt]  OUT [unset: no files]  PEER [1]  OURS [1]
  BUDGET_S [480]: no new measurement starts after this many seconds; HARD_S [560]: every child process gets
  SIGTERM by then and SIGKILL 15 s later (the whole run stays under the device's 10-minute limit);
  RUN_TIMEOUT_S [300] per child process.  PEER_DEVICE [cuda]: the peer's device.
  KEEP_RUNS [0]: keep the trainer's run folders (adapters) under $WORK/runs.
  HQ_COMMIT [git rev-parse HEAD of this checkout]: the commit of the trainer measured, recorded in the results.
  For a smoke test without a GPU: DEVICE=cpu PEER_DEVICE=cpu SHAPES="tiny-llama tiny-gemma" MB=2 SEQ=64.
Outputs: the table on stdout (progress on stderr); logs of every child process in $WORK/logs; with OUT set:
$OUT/bench.json (every number) and $OUT/logs.tar.gz, both rewritten after each measurement (a run cut short still
leaves its results), and $OUT/bench.md (the table) at the end.
"""
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import shapes  # noqa: E402
import smi  # noqa: E402

T0 = time.time()


def env(name, default):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


CFG = {
    "trainer": env("HQ_TRAIN", os.path.join(ROOT, "native", "build", "bin", "hqlora-train")),
    "python": env("PYTHON", sys.executable),
    "shapes": env("SHAPES", "llama2-7b gemma-2b").split(),
    "ckpts": [int(c) for c in env("CKPTS", "0 1").replace(",", " ").split()],
    "ranks": env("RANKS", "64 32,8,8,8,8").split(),
    "peer_ranks": env("PEER_RANKS", env("RANKS", "64 32,8,8,8,8")).split(),
    "mb": int(env("MB", "4")),
    "seq": int(env("SEQ", "512")),
    "seqs_spec": env("SEQS", ""),
    "warmup": int(env("WARMUP", "3")),
    "steps": int(env("STEPS", "10")),
    "device": env("DEVICE", "cuda"),
    "compute_dtype": env("COMPUTE_DTYPE", "bfloat16"),
    "threads": int(env("THREADS", "0")),
    "work": env("WORK", "/tmp/hqbench"),
    "peer": env("PEER", "1") != "0",
    "peer_device": env("PEER_DEVICE", "cuda"),
    "ours": env("OURS", "1") != "0",
    "budget_s": float(env("BUDGET_S", "480")),
    "hard_s": float(env("HARD_S", "560")),
    "run_timeout_s": float(env("RUN_TIMEOUT_S", "300")),
    "keep_runs": env("KEEP_RUNS", "0") != "0",
    "out": os.environ.get("OUT") or None,
}
CFG["ckpt_root"] = env("CKPT_ROOT", os.path.join(CFG["work"], "ckpt"))


def parse_seqs(spec, mb, seq):
    """SEQS: "4x512 1x2048 8192" -> [(4, 512), (1, 2048), (MB, 8192)]; empty: [(MB, SEQ)]."""
    out = []
    for item in spec.replace(",", " ").split():
        try:
            b, _, t = item.rpartition("x")
            out.append((int(b) if b else mb, int(t)))
        except ValueError:
            raise SystemExit(f"SEQS: {item!r} is not MBxSEQ or SEQ (e.g. 4x512 or 2048)")
    return out or [(mb, seq)]


CFG["seqs"] = parse_seqs(CFG["seqs_spec"], CFG["mb"], CFG["seq"])
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

RESULTS = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "config": CFG, "env": {}, "gemm": None, "checkpoints": {}, "tokens": {}, "runs": []}


def log(msg):
    print(f"[bench {time.time() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed():
    return time.time() - T0


def logs_dir():
    d = os.path.join(CFG["work"], "logs")
    os.makedirs(d, exist_ok=True)
    return d


def save_results():
    """$OUT/bench.json and $OUT/logs.tar.gz (the device returns at most 8 files from $OUT: keep it to three)."""
    if not CFG["out"]:
        return
    os.makedirs(CFG["out"], exist_ok=True)
    tmp = os.path.join(CFG["out"], ".bench.json.tmp")
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=1)
    os.replace(tmp, os.path.join(CFG["out"], "bench.json"))
    tmp = os.path.join(CFG["work"], ".logs.tar.gz.tmp")
    with tarfile.open(tmp, "w:gz") as t:
        t.add(logs_dir(), arcname="logs")
    shutil.move(tmp, os.path.join(CFG["out"], "logs.tar.gz"))


def run_proc(cmd, tag, timeout=None, extra_env=None, poll_smi=False):
    """Runs cmd with stdout/stderr to logs/<tag>.{out,err}; stops it at the timeout (SIGTERM, then SIGKILL after
    15 s). Returns dict(rc, wall_s, timed_out, stdout, stderr_tail, smi_base_mib, smi_max_mib, smi_samples)."""
    limit = CFG["hard_s"] - elapsed()
    if timeout is not None:
        limit = min(limit, timeout)
    limit = max(limit, 5.0)
    d = logs_dir()
    out_path, err_path = os.path.join(d, tag + ".out"), os.path.join(d, tag + ".err")
    e = dict(os.environ)
    if extra_env:
        e.update(extra_env)
    base = smi.used_mib() if poll_smi else None
    poller = smi.Poller() if poll_smi else None
    if poller:
        poller.__enter__()
    t = time.time()
    timed_out = False
    with open(out_path, "w") as fo, open(err_path, "w") as fe:
        try:
            p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=e, cwd=ROOT)
        except OSError as ex:
            if poller:
                poller.stop()
            return dict(rc=None, wall_s=0.0, timed_out=False, stdout="", stderr_tail=str(ex), smi_base_mib=base,
                        smi_max_mib=None, smi_samples=0)
        try:
            p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            log(f"{tag}: still running after {limit:.0f} s; stopping it (SIGTERM)")
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    wall = time.time() - t
    if poller:
        poller.stop()
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return dict(rc=p.returncode, wall_s=round(wall, 2), timed_out=timed_out, stdout=stdout,
                stderr_tail=stderr[-3000:], smi_base_mib=base, smi_max_mib=poller.max_mib if poller else None,
                smi_samples=poller.samples if poller else 0)


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def ranks_of(label):
    return [int(r) for r in label.split(",")]


# ---- setup --------------------------------------------------------------------------------------------------------

def commit():
    """The commit of the trainer measured: $HQ_COMMIT (the checkout that built it), else this checkout's HEAD."""
    c = os.environ.get("HQ_COMMIT")
    if c:
        return c
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return "unknown (no git checkout; set HQ_COMMIT)"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git; set HQ_COMMIT)"


def environment():
    info = {"python": CFG["python"], "trainer": CFG["trainer"], "commit": commit()}
    try:
        r = subprocess.run([CFG["trainer"], "--version"], capture_output=True, text=True, timeout=60)
        info["trainer_version"] = r.stdout.strip().replace("\n", " | ")
        if r.returncode != 0:
            info["trainer_version"] = f"not runnable (exit {r.returncode}): {r.stderr.strip()[-400:]}"
    except (OSError, subprocess.SubprocessError) as ex:
        info["trainer_version"] = f"not runnable: {ex}"
    if smi.available():
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader", "-i", smi.gpu_index()],
                               capture_output=True, text=True, timeout=30)
            info["gpu"] = r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    RESULTS["env"] = info
    log(f"trainer: {info['trainer_version']}; gpu: {info.get('gpu', 'none (no nvidia-smi)')}")
    if CFG["device"] == "cuda" and "cuda" not in info["trainer_version"].split("backends:")[-1]:
        log("WARNING: the trainer does not list a cuda backend; its runs will fail with E_CONFIG")


def gemm():
    r = run_proc([CFG["python"], os.path.join(HERE, "gemm_rate.py"), "8192", "10"], "gemm", timeout=180)
    res = (json_lines(r["stdout"]) or [None])[-1]
    if not res or "tflops" not in res:
        log(f"GEMM rate not measured (rc {r['rc']}): {r['stderr_tail'][-300:].strip()}")
        res = {"error": (res or {}).get("error") or r["stderr_tail"][-500:]}
    else:
        log(f"bf16 GEMM rate: {res['tflops']} TFLOP/s ({res['gpu']}, torch {res['torch']})")
    RESULTS["gemm"] = res


def prepare(shape_name):
    """The checkpoint of a shape (made once, reused for every length). Returns its folder or None."""
    d = os.path.join(CFG["ckpt_root"], shape_name)
    r = run_proc([CFG["python"], os.path.join(HERE, "make_checkpoint.py"), shape_name, d], f"ckpt-{shape_name}",
                 timeout=CFG["run_timeout_s"])
    info = (json_lines(r["stdout"]) or [{}])[-1]
    info.update(rc=r["rc"], wall_s=r["wall_s"])
    if r["rc"] != 0:
        info["error"] = r["stderr_tail"][-1500:]
        log(f"checkpoint {shape_name} FAILED: {r['stderr_tail'][-500:].strip()}")
    else:
        log(f"checkpoint {shape_name}: {d} ({'reused' if info.get('reused') else str(info.get('seconds')) + ' s'})")
    RESULTS["checkpoints"][shape_name] = info
    return d if info.get("rc") == 0 else None


def prepare_tokens(shape_name, mb, seq):
    """Random rows of exactly seq tokens for a shape. Returns the token file or None."""
    s = shapes.shape(shape_name)
    rows = max(64, mb * (CFG["warmup"] + CFG["steps"]))
    cj = shapes.config_json(s)
    tok = os.path.join(CFG["work"], "tokens", f"{shape_name}-{rows}x{seq}.hqtok")
    os.makedirs(os.path.dirname(tok), exist_ok=True)
    r = run_proc([sys.executable, os.path.join(HERE, "make_tokens.py"), tok, "--vocab", str(s["vocab"]),
                  "--rows", str(rows), "--seq", str(seq), "--bos-id", str(cj["bos_token_id"]),
                  "--eos-id", str(cj["eos_token_id"]), "--pad-id", str(cj["pad_token_id"])],
                 f"tokens-{shape_name}-{seq}", timeout=120)
    RESULTS["tokens"][f"{shape_name}/{mb}x{seq}"] = {"file": tok, "rows": rows, "rc": r["rc"]}
    return tok if r["rc"] == 0 else None


# ---- our trainer --------------------------------------------------------------------------------------------------

def run_json(model_dir, tokens, ranks, ck, run_name, mb, seq):
    return {
        "model": {"path": model_dir},
        "quantization": {"type": "nf4", "double_quant": True, "blocksize": 64, "compute_dtype": CFG["compute_dtype"]},
        "adapter": {"target_modules": TARGETS, "levels": [{"rank": r, "alpha": 16} for r in ranks], "dropout": 0.0,
                    "init": "kaiming", "rslora": False},
        "data": {"train_tokens": tokens, "source_max_len": seq // 2, "target_max_len": seq - seq // 2,
                 "train_on_source": True},
        "training": {"max_steps": CFG["warmup"] + CFG["steps"], "micro_batch_size": mb,
                     "gradient_accumulation_steps": 1, "learning_rate": 2e-4, "lr_scheduler": "constant",
                     "warmup_steps": 0, "warmup_ratio": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999,
                     "adam_epsilon": 1e-8, "weight_decay": 0.0, "max_grad_norm": 0.3,
                     "gradient_checkpointing": bool(ck), "seed": 0, "shuffle": True},
        "eval": {"every_steps": 0, "max_batches": 0},
        "checkpoints": {"every_steps": 0, "keep": 1},
        "output": {"dir": os.path.join(CFG["work"], "runs"), "run_name": run_name},
        "hardware": {"device": CFG["device"], "threads": CFG["threads"], "gpu_ids": None},
        "logging": {"every_steps": 1, "adapter_stats_every": 0},
    }


def parse_trainer(events, res):
    """Fills res from the trainer's events (docs/CONTRACTS.md §5)."""
    start = next((e for e in events if e.get("type") == "start"), None)
    steps = [e for e in events if e.get("type") == "step"]
    errors = [e for e in events if e.get("type") == "error"]
    warnings = [e for e in events if e.get("type") == "warning"]
    res["warnings"] = [f"{w.get('code')}: {w.get('message')}" for w in warnings]
    trunc = [w for w in warnings if w.get("code") == "W_TRUNCATED"]
    if trunc:
        res["valid"] = False
        res["invalid_reason"] = f"trainer warned {trunc[0].get('code')}: {trunc[0].get('message')}"
    done = next((e for e in events if e.get("type") == "done"), None)
    if start:
        res["backend"] = start.get("backend")
        res["trainable"] = (start.get("params") or {}).get("trainable")
        res["start_after_s"] = round(start["time"] - res["launched_at"], 2) if "time" in start else None
        res["tokens_per_step_start"] = start.get("tokens_per_step")
    if errors:
        res["error"] = f"{errors[0].get('code')}: {errors[0].get('message')}"
    if done:
        res["status"] = done.get("status")
    if not steps:
        return
    res["first_step_after_s"] = round(steps[0]["time"] - res["launched_at"], 2) if "time" in steps[0] else None
    el = [float(e["elapsed_s"]) for e in steps]
    dts = [el[0]] + [b - a for a, b in zip(el, el[1:])]
    trained = [e.get("tokens") for e in steps]
    fed = res["micro_batch"] * res["seq"]
    own = [fed / float(e["tokens_per_s"]) if isinstance(e.get("tokens_per_s"), (int, float)) and e["tokens_per_s"] > 0
           else None for e in steps]
    timed = list(range(CFG["warmup"], len(steps)))
    res["steps_done"] = len(steps)
    res["step_times_s"] = [round(x, 5) for x in dts]
    if timed:
        med = statistics.median(dts[i] for i in timed)
        res["step_s"] = round(med, 5)
        res["step_mean_s"] = round(statistics.fmean(dts[i] for i in timed), 5)
        tt = [trained[i] for i in timed if isinstance(trained[i], (int, float))]
        if not tt:
            res["valid"] = False
            res["invalid_reason"] = "the trainer's step events carry no trained-token count"
            return
        res["tokens_trained_per_step"] = statistics.median(tt)
        res["tokens_trained_min"], res["tokens_trained_max"] = min(tt), max(tt)
        res["tokens_per_s"] = round(res["tokens_trained_per_step"] / med, 1)
        own_t = [own[i] for i in timed if own[i] is not None]
        res["trainer_step_s"] = round(statistics.median(own_t), 5) if own_t else None
        res["timed_steps"] = len(timed)
    mem = {}
    for e in steps:
        for k, v in e.items():
            if "mem" in k and isinstance(v, (int, float)):
                mem[k] = max(mem.get(k, 0), v)
    res["event_memory_max"] = mem
    if "memory_bytes" in mem:
        res["memory_bytes_gib"] = round(mem["memory_bytes"] / 2**30, 3)
    losses = [e.get("loss") for e in steps]
    res["loss_first"], res["loss_last"] = losses[0], losses[-1]


def run_ours(shape_name, model_dir, tokens, label, ck, mb, seq):
    ranks = ranks_of(label)
    name = f"{shape_name}-{mb}x{seq}-ck{ck}-r{label.replace(',', '_')}"
    res = {"system": "hqlora", "shape": shape_name, "ckpt": ck, "ranks": label, "micro_batch": mb,
           "seq": seq, "warmup": CFG["warmup"], "steps": CFG["steps"], "device": CFG["device"]}
    run_dir = os.path.join(CFG["work"], "runs", name)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(os.path.join(CFG["work"], "runcfg"), exist_ok=True)
    cfg_path = os.path.join(CFG["work"], "runcfg", name + ".json")
    with open(cfg_path, "w") as f:
        json.dump(run_json(model_dir, tokens, ranks, ck, name, mb, seq), f, indent=1)
    shutil.copy(cfg_path, os.path.join(logs_dir(), f"ours-{name}.run.json"))
    res["launched_at"] = time.time()
    r = run_proc([CFG["trainer"], "--config", cfg_path], f"ours-{name}", timeout=CFG["run_timeout_s"],
                 poll_smi=True)
    res.update(rc=r["rc"], wall_s=r["wall_s"], timed_out=r["timed_out"], smi_samples=r["smi_samples"])
    parse_trainer(json_lines(r["stdout"]), res)
    if r["smi_max_mib"] is not None and r["smi_base_mib"] is not None:
        res["smi_peak_gib"] = round((r["smi_max_mib"] - r["smi_base_mib"]) / 1024, 3)
        res["peak_gib"] = res["smi_peak_gib"]
        res["peak_source"] = "nvidia-smi"
    elif "memory_bytes_gib" in res:
        res["peak_gib"] = res["memory_bytes_gib"]
        res["peak_source"] = "trainer memory_bytes (host estimate)"
    if r["rc"] != 0 and "error" not in res:
        res["error"] = f"exit {r['rc']}" + (" (timed out)" if r["timed_out"] else "") + ": " + \
                       r["stderr_tail"][-800:].strip()
    if not CFG["keep_runs"]:
        shutil.rmtree(run_dir, ignore_errors=True)
    del res["launched_at"]
    return res


# ---- PEFT peer ----------------------------------------------------------------------------------------------------

def run_peer(shape_name, model_dir, ck, mb, seq):
    labels = CFG["peer_ranks"]
    base = smi.used_mib()
    r = run_proc([CFG["python"], os.path.join(HERE, "peft_peer.py"), model_dir, str(mb), str(seq),
                  str(CFG["steps"]), str(ck), "/".join(labels), "--warmup", str(CFG["warmup"]),
                  "--device", CFG["peer_device"]],
                 f"peft-{shape_name}-{mb}x{seq}-ck{ck}", timeout=CFG["run_timeout_s"],
                 extra_env={"HQB_SMI_BASE_MIB": "" if base is None else str(base)})
    got = {",".join(str(x) for x in j.get("ranks", [])): j for j in json_lines(r["stdout"]) if j.get("system") == "peft"}
    out = []
    for label in labels:
        j = got.get(label)
        if j is None:
            j = {"error": (f"exit {r['rc']}" + (" (timed out)" if r["timed_out"] else "") + ": " +
                           r["stderr_tail"][-800:].strip())}
        j = dict(j, system="peft", shape=shape_name, ckpt=ck, ranks=label, micro_batch=mb, seq=seq,
                 peak_source="torch max_memory_allocated")
        out.append(j)
    return out


# ---- report -------------------------------------------------------------------------------------------------------

def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def mfu(res, shape_name):
    g = RESULTS["gemm"] or {}
    if not g.get("tflops") or not res.get("tokens_per_s"):
        return None
    f = shapes.flops_per_token(shapes.shape(shape_name), res["seq"])["total"]
    return res["tokens_per_s"] * f / (g["tflops"] * 1e12)


def find(shape_name, ck, system, label, mb, seq):
    for r in RESULTS["runs"]:
        if (r["shape"] == shape_name and r["ckpt"] == ck and r["system"] == system and r["ranks"] == label
                and r.get("micro_batch") == mb and r.get("seq") == seq):
            return r
    return None


def check_validity():
    """Marks our rows invalid whose trained tokens per step differ from the peer's (same shape, length, ckpt)."""
    for r in RESULTS["runs"]:
        if r.get("valid") is False or r.get("tokens_per_s") is None:
            continue
        r["valid"] = True
        if r["system"] != "hqlora":
            continue
        for p in RESULTS["runs"]:
            if (p["system"] == "peft" and p["shape"] == r["shape"] and p["ckpt"] == r["ckpt"]
                    and p.get("micro_batch") == r["micro_batch"] and p.get("seq") == r["seq"]
                    and p.get("tokens_trained_per_step") is not None
                    and p["tokens_trained_per_step"] != r.get("tokens_trained_per_step")):
                r["valid"] = False
                r["invalid_reason"] = (f"trained {r.get('tokens_trained_per_step')} tokens per step, the peer "
                                       f"{p['tokens_trained_per_step']}")
                break


def valid(r):
    return r is not None and r.get("tokens_per_s") is not None and r.get("valid") is not False


def table(mb, seq):
    lines = ["| shape | ckpt | system | ranks | tokens/step | step s | tokens/s | peak GiB | smi GiB | MFU | vs PEFT r64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in RESULTS["runs"]:
        if r.get("micro_batch") != mb or r.get("seq") != seq:
            continue
        sysname = "H-QLoRA" if r["system"] == "hqlora" else "PEFT"
        if r["system"] == "hqlora" and r.get("backend") and r["backend"] != CFG["device"]:
            sysname += f" ({r['backend']}!)"
        if r.get("skipped"):
            lines.append(f"| {r['shape']} | {r['ckpt']} | {sysname} | {r['ranks']} | | skipped: {r['skipped']} "
                         "| | | | | |")
            continue
        if r.get("tokens_per_s") is None:
            err = (r.get("error") or "no timed steps").replace("|", "/").replace("\n", " ")[:140]
            lines.append(f"| {r['shape']} | {r['ckpt']} | {sysname} | {r['ranks']} | | failed: {err} | | | | | |")
            continue
        trained = fmt(r.get("tokens_trained_per_step"), ",.0f")
        if r.get("valid") is False:
            why = (r.get("invalid_reason") or "?").replace("|", "/").replace("\n", " ")[:160]
            lines.append(f"| {r['shape']} | {r['ckpt']} | {sysname} | {r['ranks']} | {trained} | INVALID: {why} "
                         "| | | | | |")
            continue
        peer = find(r["shape"], r["ckpt"], "peft", "64", mb, seq)
        ratio = (r["tokens_per_s"] / peer["tokens_per_s"]) if valid(peer) else None
        m = mfu(r, r["shape"])
        peak = fmt(r.get("peak_gib"), ".2f")
        if r["system"] == "hqlora" and r.get("peak_source", "").startswith("trainer"):
            peak += " (est)"
        lines.append(f"| {r['shape']} | {r['ckpt']} | {sysname} | {r['ranks']} | {trained} | {r['step_s']:.4f} | "
                     f"{r['tokens_per_s']:,.0f} | {peak} | {fmt(r.get('smi_peak_gib'), '.2f')} | "
                     f"{'–' if m is None else f'{100 * m:.1f}%'} | {'–' if ratio is None else f'{ratio:.2f}x'} |")
    return lines


def goals(mb, seq):
    lines = []
    hier = "32,8,8,8,8"
    for ck in CFG["ckpts"]:
        for sh in CFG["shapes"]:
            oh, o64 = find(sh, ck, "hqlora", hier, mb, seq), find(sh, ck, "hqlora", "64", mb, seq)
            p64 = find(sh, ck, "peft", "64", mb, seq)
            tag = f"{sh}, {mb} x {seq}, ckpt {ck}"
            ok = lambda r, k: valid(r) and r.get(k) is not None  # noqa: E731
            if ok(oh, "tokens_per_s") and ok(p64, "tokens_per_s"):
                x = oh["tokens_per_s"] / p64["tokens_per_s"]
                lines.append(f"- {tag}: throughput: H-QLoRA {hier} {oh['tokens_per_s']:,.0f} tokens/s = {x:.2f}x "
                             f"PEFT r64 ({p64['tokens_per_s']:,.0f}); goal >= 2x: {'MET' if x >= 2 else 'not met'}")
            else:
                lines.append(f"- {tag}: throughput goal (>= 2x PEFT r64): not measured")
            if ok(oh, "step_s") and ok(o64, "step_s"):
                ov = oh["step_s"] / o64["step_s"] - 1
                lines.append(f"- {tag}: hierarchy overhead: {hier} {oh['step_s']:.4f} s vs r64 {o64['step_s']:.4f} s "
                             f"= {100 * ov:+.1f}%; goal <= 3%: {'MET' if ov <= 0.03 else 'not met'}")
            else:
                lines.append(f"- {tag}: hierarchy overhead goal (<= 3% over our r64): not measured")
            if ok(oh, "peak_gib") and ok(p64, "peak_gib"):
                x = oh["peak_gib"] / p64["peak_gib"]
                extra = ""
                if p64.get("smi_peak_gib") and oh.get("smi_peak_gib"):
                    extra = f" (nvidia-smi both: {oh['smi_peak_gib']:.2f} vs {p64['smi_peak_gib']:.2f} GiB = " \
                            f"{oh['smi_peak_gib'] / p64['smi_peak_gib']:.2f}x)"
                lines.append(f"- {tag}: peak memory: H-QLoRA {hier} {oh['peak_gib']:.2f} GiB "
                             f"({oh.get('peak_source')}) vs PEFT r64 {p64['peak_gib']:.2f} GiB (max allocated) = "
                             f"{x:.2f}x{extra}; goal <= 0.5x: {'MET' if x <= 0.5 else 'not met'}")
            else:
                lines.append(f"- {tag}: peak memory goal (<= 1/2 PEFT): not measured")
    return lines


def report():
    g = RESULTS["gemm"] or {}
    hdr = [f"# H-QLoRA GPU benchmark, {RESULTS['started']}",
           "",
           f"GPU: {RESULTS['env'].get('gpu', g.get('gpu', '?'))}; bf16 GEMM (torch.matmul 8192^3, median of 10): "
           f"{g.get('tflops', '–')} TFLOP/s; torch {g.get('torch', '?')}; trainer: "
           f"{RESULTS['env'].get('trainer_version')}; commit {RESULTS['env'].get('commit')}",
           f"lengths (micro-batch x tokens): {', '.join(f'{b} x {t}' for b, t in CFG['seqs'])}; "
           f"{CFG['warmup']} warm-up + {CFG['steps']} timed steps "
           f"(median step); ours: NF4 double-quant base, device {CFG['device']}, compute {CFG['compute_dtype']}; "
           "PEFT: bf16 base (no quantization), SDPA; LoRA on q,k,v,o,gate,up,down, alpha 16, dropout 0, AdamW.",
           "tokens/step = positions that carry a loss (ours: the trainer's step events; PEFT: MB x (SEQ - 1)); "
           "tokens/s = tokens/step / median step s. INVALID rows (truncated by the trainer, or a token count that "
           "differs from the peer's) get no ratio.",
           "peak GiB: ours = nvidia-smi max - baseline; PEFT = torch.cuda.max_memory_allocated. "
           "MFU = tokens/s x (4 x N_base + 6 L S heads head_dim) / GEMM rate. ckpt = gradient checkpointing.",
           ""]
    check_validity()
    body = list(hdr)
    for mb, seq in CFG["seqs"]:
        body += [f"## {mb} x {seq} tokens", ""] + table(mb, seq) + ["", "Goals (issue 7):"] + goals(mb, seq) + [""]
    body.append("")
    body.append(f"total wall time {elapsed():.0f} s")
    text = "\n".join(body)
    RESULTS["table_md"] = text
    RESULTS["finished_s"] = round(elapsed(), 1)
    save_results()
    if CFG["out"]:
        with open(os.path.join(CFG["out"], "bench.md"), "w") as f:
            f.write(text + "\n")
    print(text, flush=True)


def add(res):
    RESULTS["runs"].append(res)
    save_results()
    if res.get("skipped"):
        log(f"{res['system']} {res['shape']} ckpt {res['ckpt']} r{res['ranks']}: skipped ({res['skipped']})")
    elif res.get("tokens_per_s") is not None:
        log(f"{res['system']} {res['shape']} ckpt {res['ckpt']} r{res['ranks']}: {res['step_s']:.4f} s/step, "
            f"{res['tokens_per_s']:,.0f} tokens/s, peak {fmt(res.get('peak_gib'), '.2f')} GiB"
            + (f", backend {res['backend']}" if res.get("backend") else "")
            + (f", first step done {res['first_step_after_s']} s after launch" if res.get("first_step_after_s") else "")
            + (f" (wall {res['wall_s']} s)" if res.get("wall_s") is not None else ""))
    else:
        log(f"{res['system']} {res['shape']} ckpt {res['ckpt']} r{res['ranks']}: FAILED: "
            f"{(res.get('error') or '?')[:600]}")


def measure(sh, model_dir, mb, seq):
    """Every ckpt setting of one shape at one length: ours with each rank set, then the peer."""
    tokens = prepare_tokens(sh, mb, seq) if model_dir else None
    for ck in CFG["ckpts"]:
        base = {"shape": sh, "ckpt": ck, "micro_batch": mb, "seq": seq}
        if model_dir is None or tokens is None:
            for system in (["hqlora"] if CFG["ours"] else []) + (["peft"] if CFG["peer"] else []):
                for label in CFG["ranks" if system == "hqlora" else "peer_ranks"]:
                    add(dict(base, system=system, ranks=label, error="checkpoint or token file not written"))
            continue
        if CFG["ours"]:
            for label in CFG["ranks"]:
                if elapsed() > CFG["budget_s"]:
                    add(dict(base, system="hqlora", ranks=label, skipped="time budget"))
                    continue
                add(run_ours(sh, model_dir, tokens, label, ck, mb, seq))
        if CFG["peer"]:
            if elapsed() > CFG["budget_s"]:
                for label in CFG["peer_ranks"]:
                    add(dict(base, system="peft", ranks=label, skipped="time budget"))
                continue
            for res in run_peer(sh, model_dir, ck, mb, seq):
                add(res)


def main():
    shutil.rmtree(os.path.join(CFG["work"], "logs"), ignore_errors=True)
    log(f"shapes {CFG['shapes']}, ckpts {CFG['ckpts']}, ranks {CFG['ranks']}, lengths {CFG['seqs']}, "
        f"{CFG['warmup']}+{CFG['steps']} steps, device {CFG['device']}, budget {CFG['budget_s']:.0f} s")
    for s in CFG["shapes"]:
        shapes.shape(s)
    environment()
    if CFG["peer"] or CFG["device"] == "cuda":
        gemm()
    prepared = {s: prepare(s) for s in CFG["shapes"]}
    for mb, seq in CFG["seqs"]:
        for sh in CFG["shapes"]:
            measure(sh, prepared[sh], mb, seq)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
