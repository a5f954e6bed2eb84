#!/usr/bin/env python3
"""PyTorch + PEFT LoRA peer of the benchmark, on the same checkpoint folder as hqlora-train.

usage: peft_peer.py MODEL_DIR MICRO_BATCH SEQ STEPS CKPT RANKS [--warmup N] [--seed S] [--device cuda|cpu]

  MODEL_DIR   a folder written by make_checkpoint.py (config.json + bf16 safetensors)
  STEPS       timed optimizer steps (after --warmup untimed ones, default 3)
  CKPT        0 | 1 | 0,1     gradient checkpointing off / on (non-reentrant), several = one run each
  RANKS       64 | 32,8,8,8,8 | several configurations separated by '/' (e.g. 64/32,8,8,8,8)

Method (the same as ../shared/bench/peft_baseline.py, written anew here): the base is loaded once in bf16 with SDPA
attention onto the GPU (no quantization: the GPU machine has no bitsandbytes), then for every configuration PEFT LoRA
adapters on q,k,v,o,gate,up,down with lora_alpha 16 and dropout 0 are added, a hierarchy such as 32,8,8,8,8 as
several adapters that are all active and trainable (PEFT sums their outputs); only lora_* parameters train; AdamW
lr 2e-4; the loss is the causal-LM loss on all tokens (labels = input_ids) of a fixed random [MICRO_BATCH, SEQ]
batch. Warm-up steps, then each timed step between two torch.cuda.synchronize() calls. Between configurations the
adapters are removed (PeftModel.unload) and the base is reused.

Prints one JSON line per configuration: tokens_per_s (trained tokens per step / median step), tokens_trained_per_step
(the label positions the loss counts: MICRO_BATCH * (SEQ - 1), labels are shifted by one inside the model),
tokens_fed_per_step (MICRO_BATCH * SEQ), step_s (median), step_mean_s,
peak_gib (torch.cuda.max_memory_allocated after reset at the first step, weights included, as the peer reports),
reserved_gib (max_memory_reserved), smi_peak_gib (nvidia-smi memory.used max - $HQB_SMI_BASE_MIB, when given),
trainable, load_s, versions. A configuration that fails prints {"error": ...} and the others still run.
--device cpu (bf16 on the CPU, no memory figures) exists only to smoke-test this script without a GPU.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smi  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_base(torch, model_dir, device):
    from transformers import AutoModelForCausalLM
    kw = dict(attn_implementation="sdpa")
    try:
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map=device, **kw)
    except (TypeError, ValueError, ImportError) as e:   # older transformers / no accelerate: load, then move
        print(f"peft_peer: from_pretrained(device_map={device!r}) failed ({e}); loading on the CPU", file=sys.stderr)
        try:
            m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, **kw)
        except TypeError:
            m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, **kw)
        m = m.to(device)
    m.config.use_cache = False
    return m


def set_ckpt(base, on):
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    else:
        if getattr(base, "is_gradient_checkpointing", False):
            base.gradient_checkpointing_disable()
        if hasattr(base, "_require_grads_hook"):
            base.disable_input_require_grads()


def run_one(torch, base, ranks, mb, seq, warmup, steps, ckpt, x, smi_base):
    cuda = x.is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    from peft import LoraConfig, get_peft_model
    set_ckpt(base, ckpt)
    names = []
    m = None
    for i, r in enumerate(ranks):
        cfg = LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
        name = f"level{i}"
        if i == 0:
            m = get_peft_model(base, cfg, adapter_name=name)
        else:
            m.add_adapter(name, cfg)
        names.append(name)
    m.base_model.set_adapter(names)          # every level active (outputs summed)
    for n, p in m.named_parameters():
        p.requires_grad = "lora_" in n        # ... and trainable
    m.train()                                # from_pretrained returns eval(); HF checkpointing needs training mode
    params = [p for p in m.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=2e-4)

    def step():
        out = m(input_ids=x, labels=x, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    with smi.Poller() as poll:
        for _ in range(warmup):
            step()
        sync()
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = step()
            sync()
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
    med = statistics.median(times)
    trained = int((x[:, 1:] != -100).sum().item())   # the positions the shifted causal-LM loss counts
    res = dict(system="peft", ranks=ranks, micro_batch=mb, seq=seq, ckpt=int(ckpt), warmup=warmup, steps=steps,
               trainable=trainable, step_s=round(med, 5), step_mean_s=round(statistics.fmean(times), 5),
               step_times_s=[round(t, 5) for t in times], tokens_per_s=round(trained / med, 1),
               tokens_trained_per_step=trained, tokens_fed_per_step=int(x.numel()),
               peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
               reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
               smi_peak_gib=(round((poll.max_mib - smi_base) / 1024, 3)
                             if cuda and poll.max_mib is not None and smi_base is not None else None),
               loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None)
    # remove the adapters, give the memory back, keep the base for the next configuration
    del opt, params
    m.zero_grad(set_to_none=True)
    base = m.unload()
    if hasattr(base, "peft_config"):
        try:
            del base.peft_config
        except AttributeError:
            pass
    del m
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return res, base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("micro_batch", type=int)
    ap.add_argument("seq", type=int)
    ap.add_argument("steps", type=int)
    ap.add_argument("ckpt")
    ap.add_argument("ranks")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    ckpts = [int(c) for c in a.ckpt.split(",") if c != ""]
    rank_sets = [[int(r) for r in rs.split(",")] for rs in a.ranks.split("/") if rs]
    smi_base = os.environ.get("HQB_SMI_BASE_MIB")
    smi_base = int(smi_base) if smi_base not in (None, "") else None

    import torch
    import transformers
    import peft
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    t0 = time.time()
    base = load_base(torch, a.model_dir, a.device)
    load_s = round(time.time() - t0, 2)
    vocab = base.config.vocab_size
    g = torch.Generator(device=a.device)
    g.manual_seed(a.seed)
    x = torch.randint(0, vocab, (a.micro_batch, a.seq), device=a.device, generator=g)
    print(f"peft_peer: loaded {a.model_dir} in {load_s} s ({versions})", file=sys.stderr, flush=True)
    rc = 0
    for ck in ckpts:
        for ranks in rank_sets:
            failed = False
            try:
                res, base = run_one(torch, base, ranks, a.micro_batch, a.seq, a.warmup, a.steps, bool(ck), x,
                                    smi_base)
                res.update(load_s=load_s, **versions)
            except Exception as e:  # noqa: BLE001 - report and go on with the next configuration
                failed, rc = True, 1
                res = dict(system="peft", ranks=ranks, micro_batch=a.micro_batch, seq=a.seq, ckpt=ck,
                           error=f"{type(e).__name__}: {e}"[:2000], **versions)
                print(f"peft_peer: ranks {ranks} ckpt {ck} failed: {e}", file=sys.stderr, flush=True)
            print(json.dumps(res), flush=True)
            if failed:   # the base may hold half-removed adapters: drop everything (the exception is gone now)
                base = None
                gc.collect()
                if a.device == "cuda":
                    torch.cuda.empty_cache()
                base = load_base(torch, a.model_dir, a.device)
    return rc


if __name__ == "__main__":
    sys.exit(main())
