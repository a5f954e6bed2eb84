#!/usr/bin/env python3
"""make_golden.py — golden reference files for the native H-QLoRA trainer (docs/CONTRACTS.md §4 "Golden files").

Runs on a machine with torch + transformers + peft (the GPU machine: torch 2.11, transformers 5.17, peft 0.21; it has
no bitsandbytes, so the bnb algorithm is re-implemented here). Everything runs on the CPU in fp32, single-threaded,
with deterministic algorithms and TF32 off, which is the most reproducible setting.

    python3 test/reference/make_golden.py [--fixtures test/fixtures/models] [--out $OUT/golden] [--models a,b]
    python3 test/reference/make_golden.py --families all [--fixtures-out $OUT/fixtures] [--out $OUT/golden]

For each fixture model (tiny-llama, tiny-llama3, tiny-gemma) it writes <out>/<model>.safetensors. With --families
(qwen2, qwen2-tied, qwen3, mistral, gemma2, gemma3, phi3; see golden_families.py) it first makes each family's fixture
folder with the real transformers class, then its golden file; one family's failure is reported and the others go on.
Family golden files also hold probe.* tensors: probe.rope.T{6,12,16}.L{l}.{cos,sin} [T, d] (what each layer's
attention received), probe.mask.L{l} U8 [16, 16] (1 = key visible, from output_attentions), probe.short.ids /
probe.short.logits (the adapted model on the first 6 positions of input.ids). Phi-3's module names are the native
trainer's (model.layers.L.self_attn.q_proj, ...): rows of the fused qkv_proj / gate_up_proj, each quantized and adapted
on its own (golden_families.SlicedLora).

NF4 (a PyTorch re-implementation of bitsandbytes quantize_4bit(nf4, blocksize 64, compress_statistics=True) and
dequantize_4bit, trainer-anchors §1.3–1.6), for every targeted projection weight M (e.g. model.layers.0.mlp.up_proj):
    nf4.M.packed     U8  [numel/2]      4-bit codes, two per byte, the even (first) element in the HIGH nibble
    nf4.M.absmax     F32 [nblocks]      fp32 absmax of each 64-block (before double quantization)
    nf4.M.qabsmax    U8  [nblocks]      8-bit dynamic-map code of absmax - offset
    nf4.M.absmax2    F32 [ceil(nblocks/256)]   fp32 absmax of (absmax - offset) per 256 blocks
    nf4.M.offset     F32 []             absmax.mean() (torch fp32 CPU reduction)
    nf4.M.scales     F32 [nblocks]      dequantized block scales dyn[qabsmax] * absmax2 + offset (fp32, two roundings)
    nf4.concat.*     the same six tensors for all targeted weights flattened and concatenated in golden.modules
                     order (> 256 blocks, so several nested blocks and a partial last one are exercised)
    nf4.code         F32 [16]           the NF4 lookup table
    nf4.dynamic_map  F32 [256]          create_dynamic_map(signed=True) exactly as bnb builds it (torch.linspace fp32)
  The dequantized weight is nf4.code[code] * scales[block] (fp32); it is not stored (it follows from the above).
  qabsmax follows bnb's CPU/default backend (nearest code by argmin |x - code|, first index on ties); the CUDA
  kernel's dQuantize<0> (binary search + midpoint) is evaluated too and the script fails if the two ever differ.
  The 4-bit codes use the CUDA dQuantizeNF4 thresholds (strict '>', ties to the lower code) through
  torch.bucketize(right=False); the default backend's argmin is evaluated too and must agree.

Model + adapters (transformers fp32, eager attention; every targeted weight replaced by its NF4-dequantized value; PEFT
LoRA with one adapter per level "level0".."levelK", all active together so their outputs are summed):
    <M>.levels.{j}.lora_A.weight       F32 [r_j, in]    initial adapter weights (deterministic, B != 0)
    <M>.levels.{j}.lora_B.weight       F32 [out, r_j]
    input.ids / input.labels           I32 [B, T]       labels: ids with some positions -100
    logits                             F32 [B, T, V]
    loss                               F32 []           HF causal-LM loss: mean CE over target positions (shifted)
    grad.<M>.levels.{j}.lora_{A,B}.weight   F32         d loss / d weight (the mean loss)
    traj.ids / traj.labels             I32 [S, B2, T2]  the micro-batch of each of the S = 20 optimizer steps
    traj.loss                          F32 [S]          loss of step k, before its update
    traj.grad_norm                     F32 [S]          total L2 norm of the adapter grads before clipping
    final.<M>.levels.{j}.lora_{A,B}.weight  F32         adapter weights after the S steps
  Steps: zero_grad; loss = model(ids, labels).loss; loss.backward(); clip_grad_norm_(params, 1.0);
  torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, foreach=False).step().

Metadata (all strings): hqlora.levels (JSON [{rank, alpha, scale}]), hqlora.target_modules (JSON), hqlora.rslora,
golden.* (model, seed, n_target_tokens, optimizer settings as JSON, quantization as JSON, module list), and the
versions of python, torch, transformers, peft and safetensors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_families import (FAMILY_OF_DIR, family_specs, install_sliced_lora,  # noqa: E402
                             make_fixture, proj_slices, verify_family)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LEVELS = [{"rank": 4, "alpha": 8.0}, {"rank": 2, "alpha": 2.0}, {"rank": 2, "alpha": 6.0}]  # scales 2, 1, 3
BLOCKSIZE = 64
NESTED_BLOCKSIZE = 256
SEED = 1234
FWD_B, FWD_T = 2, 12
TRAJ_STEPS, TRAJ_B, TRAJ_T = 20, 2, 16
ADAMW = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0,
         "steps": TRAJ_STEPS}
MODELS = ["tiny-llama", "tiny-llama3", "tiny-gemma"]
MAP_INFO: dict = {}   # how the dynamic map depends on the ATen CPU capability (filled by main)


def fail(msg: str) -> None:
    print(f"make_golden.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ----------------------------------------------------------------------------------------------------------------
# bitsandbytes NF4 + double quantization, re-implemented (bnb functional.py / backends/default/ops.py / kernels.cu).

# nf4_dequantization_lut (csrc/kernels.cu) == get_4bit_type("nf4"), index = 4-bit code.
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)

# The thresholds of dQuantizeNF4's decision tree (fp32 literals, ascending): code = #{t : x > t}.
NF4_THRESHOLDS = torch.tensor([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) -> torch.Tensor:
    """bitsandbytes.functional.create_dynamic_map, same statements (torch.linspace in float32)."""
    data = []
    non_sign_bits = total_bits - (1 if signed else 1)
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(
            2 ** (i + non_sign_bits - max_exponent_bits) + 1
            if signed
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        )
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    gap = 256 - len(data)
    for i in range(gap):
        data.append(0)
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def f32_ulps(a: float, b: float) -> int:
    """Distance in fp32 ulps between two values (b is rounded to fp32 first)."""
    ia = int(torch.tensor([a], dtype=torch.float32).view(torch.int32))
    ib = int(torch.tensor([b], dtype=torch.float32).view(torch.int32))
    oa = ia if ia >= 0 else -(ia & 0x7FFFFFFF)
    ob = ib if ib >= 0 else -(ib & 0x7FFFFFFF)
    return abs(oa - ob)


def _f32(x) -> float:
    """Round a Python float to fp32 (the value a CUDA float register holds)."""
    return float(torch.tensor(x, dtype=torch.float32))


def dquantize_kernel(code: list[float], x: float) -> int:
    """csrc/kernels.cu dQuantize<STOCHASTIC=0>: 7-step binary search over the sorted 256 code, then midpoint rounding.
    Every float operation is rounded to fp32 as on the GPU."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = -1.0, 1.0
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        midpoint = _f32(_f32(upper + val) * 0.5)
        return upper_pivot if x > midpoint else pivot
    midpoint = _f32(_f32(lower + val) * 0.5)
    return lower_pivot if x < midpoint else pivot


def quantize_blockwise(A: torch.Tensor, code: torch.Tensor, blocksize: int):
    """backends/default/ops.py quantize_blockwise: per-block fp32 absmax, x * (1/absmax) clamped, nearest code by argmin.
    Also returns the CUDA kernel's choice (dQuantize<0> on x * (1/absmax), unclamped) for comparison."""
    n = A.numel()
    rem = n % blocksize
    has_rem = rem > 0
    blocks = n // blocksize + has_rem
    absmax = torch.zeros((blocks,), dtype=torch.float32)
    A_reshaped = A.reshape(n)
    A_com = A_reshaped[: n - rem]
    A_com_reshaped = A_com.reshape(n // blocksize, blocksize)
    absmax[: blocks - has_rem] = torch.abs(A_com_reshaped).max(dim=-1)[0]
    unclamped = (A_com_reshaped * (1 / absmax[: blocks - has_rem].view(-1, 1))).reshape(-1)
    scaled_A = torch.clamp(A_com_reshaped * (1 / absmax[: blocks - has_rem].view(-1, 1)), -1, 1).reshape(-1)
    if has_rem:
        absmax[-1] = torch.abs(A_reshaped[n - rem:]).max()
        unclamped = torch.cat([unclamped, A_reshaped[n - rem:] * (1 / absmax[-1])], dim=0)
        scaled_A = torch.cat([scaled_A, torch.clamp(A_reshaped[n - rem:] * (1 / absmax[-1]), -1, 1)], dim=0)
    diff = torch.abs(scaled_A.unsqueeze(-1) - code)
    out = torch.argmin(diff, dim=-1).to(torch.uint8).reshape(A.shape)
    code_list = code.tolist()
    kernel = torch.tensor([dquantize_kernel(code_list, v) for v in unclamped.tolist()], dtype=torch.uint8)
    return out, absmax, kernel.reshape(A.shape)


def quantize_nf4_dq(w: torch.Tensor, dyn: torch.Tensor, blocksize: int = BLOCKSIZE) -> dict:
    """quantize_4bit(w, blocksize, quant_type="nf4", compress_statistics=True) + the dequantized scales and weight."""
    A = w.detach().to(torch.float32).contiguous().reshape(-1)
    n = A.numel()
    full_blocks = n // blocksize
    rem = n % blocksize
    blocks = full_blocks + 1 if rem else full_blocks
    absmax = torch.zeros((blocks,), dtype=torch.float32)
    A_full = A[: n - rem].reshape(full_blocks, blocksize)
    absmax[:full_blocks] = torch.abs(A_full).max(dim=-1)[0]
    scaled = torch.clamp(A_full * (1 / absmax[:full_blocks].view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        absmax[-1] = torch.abs(A[-rem:]).max()
        scaled = torch.cat([scaled, torch.clamp(A[-rem:] * (1 / absmax[-1]), -1, 1)], dim=0)
    if scaled.numel() % 2:
        scaled = F.pad(scaled, (0, 1), value=0.0)
    # CUDA dQuantizeNF4 (strict '>' against the tree's fp32 thresholds) == bucketize(right=False) on those thresholds.
    q_tree = torch.bucketize(scaled, NF4_THRESHOLDS, right=False).to(torch.uint8)
    # bnb default backend: nearest code by argmin |x - code| (first index on ties).
    q_argmin = torch.argmin(torch.abs(scaled.view(-1, 1) - NF4_CODE), dim=-1).to(torch.uint8)
    n_code_mismatch = int((q_tree != q_argmin).sum())
    packed = (q_tree[::2] << 4) | q_tree[1::2]

    # Double quantization (functional.py quantize_4bit, compress_statistics=True).
    offset = absmax.mean()
    qabsmax, absmax2, qabsmax_kernel = quantize_blockwise(absmax - offset, dyn, NESTED_BLOCKSIZE)
    n_q8_mismatch = int((qabsmax != qabsmax_kernel).sum())

    # dequantize_4bit: absmax = dequantize_blockwise(qabsmax, state2); absmax += offset; w = code[q] * absmax.
    nb = NESTED_BLOCKSIZE
    q8 = dyn[qabsmax.reshape(-1).long()]
    res = q8.shape[-1] % nb
    if res:
        q8 = F.pad(q8, (0, nb - res), value=0)
    scales = (q8.view(-1, nb) * absmax2.view(-1, 1)).reshape(-1)[:blocks].clone()
    scales += offset
    codes = torch.empty(packed.numel() * 2, dtype=torch.int64)
    codes[1::2] = (packed & 0xF).long()
    codes[::2] = (packed >> 4).long()
    dq = NF4_CODE[codes][:n]
    if rem:
        deq = torch.cat([(dq[: n - rem].view(-1, blocksize) * scales[:-1].view(-1, 1)).reshape(-1),
                         dq[n - rem:] * scales[-1]])
    else:
        deq = (dq.view(-1, blocksize) * scales.view(-1, 1)).reshape(-1)
    return {
        "packed": packed.contiguous(), "absmax": absmax, "qabsmax": qabsmax.contiguous(), "absmax2": absmax2,
        "offset": offset.reshape(()).clone(), "scales": scales, "dequant": deq.reshape(w.shape),
        "n_code_mismatch": n_code_mismatch, "n_q8_mismatch": n_q8_mismatch,
        "q_tree": q_tree[:n],
    }


# ----------------------------------------------------------------------------------------------------------------
# transformers config checks.

def expected_inv_freq(cfg_json: dict, head_dim: int) -> torch.Tensor:
    """HF default RoPE (and llama3 scaling, _compute_llama3_parameters) from the raw config.json, fp32."""
    rp = cfg_json.get("rope_parameters") or {}
    base = float(cfg_json.get("rope_theta", rp.get("rope_theta", 10000.0)))
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float) / head_dim))
    rs = cfg_json.get("rope_scaling") or (rp if rp.get("rope_type", "default") != "default" else None)
    if rs:
        rtype = rs.get("rope_type", rs.get("type"))
        if rtype != "llama3":
            fail(f"unexpected rope_scaling type {rtype!r} in config.json")
        factor = rs["factor"]
        low, high = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(is_medium, smoothed, inv_l)
    return inv


def verify_config(model, cfg_json: dict, name: str) -> dict:
    """Fails loudly unless transformers parsed config.json as the native loader reads it."""
    c = model.config
    inner = model.model
    attn = inner.layers[0].self_attn
    mlp = inner.layers[0].mlp
    H, KV, h = cfg_json["num_attention_heads"], cfg_json["num_key_value_heads"], cfg_json["hidden_size"]
    hd_expected = cfg_json.get("head_dim") or h // H
    hd = getattr(attn, "head_dim", None)
    if hd != hd_expected:
        fail(f"{name}: head_dim parsed as {hd}, config.json says {hd_expected}")
    if attn.q_proj.out_features != H * hd or attn.k_proj.out_features != KV * hd or attn.o_proj.in_features != H * hd:
        fail(f"{name}: projection shapes disagree with heads {H}/{KV} x head_dim {hd}")
    # Activation: evaluate it.
    x = torch.linspace(-4, 4, 101)
    act = mlp.act_fn(x)
    if cfg_json["model_type"] == "gemma":
        want, act_name = F.gelu(x, approximate="tanh"), "gelu_pytorch_tanh"
    else:
        want, act_name = F.silu(x), "silu"
    if float((act - want).abs().max()) > 1e-6:
        fail(f"{name}: MLP activation is not {act_name} (max diff {float((act - want).abs().max())})")
    # Tied embeddings.
    tie_expected = bool(cfg_json.get("tie_word_embeddings", cfg_json["model_type"] == "gemma"))
    tied = model.lm_head.weight.data_ptr() == inner.embed_tokens.weight.data_ptr()
    if tied != tie_expected:
        fail(f"{name}: lm_head tied={tied}, config.json tie_word_embeddings={tie_expected}")
    # RoPE inverse frequencies (theta and llama3 scaling).
    inv = inner.rotary_emb.inv_freq.float().cpu()
    inv_want = expected_inv_freq(cfg_json, hd)
    rel = float(((inv - inv_want).abs() / inv_want.abs()).max())
    if rel > 1e-6:
        fail(f"{name}: RoPE inv_freq differs from config.json (theta/scaling): max rel {rel:.3g}\n"
             f"  got {inv.tolist()}\n  want {inv_want.tolist()}")
    att_scaling = float(getattr(inner.rotary_emb, "attention_scaling", 1.0))
    if att_scaling != 1.0:
        fail(f"{name}: rotary attention_scaling {att_scaling} != 1")
    # Embedding scale (Gemma multiplies the embeddings by sqrt(hidden) rounded to the weight dtype; LLaMA does not
    # scale): capture what the first decoder layer receives.
    ids = torch.arange(4, min(14, cfg_json["vocab_size"])).view(1, -1)
    captured = {}

    def grab(_mod, args, kwargs):
        captured["h"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = inner.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    base = inner.embed_tokens.weight[ids].detach()
    if cfg_json["model_type"] == "gemma":
        base = base * torch.tensor(h ** 0.5, dtype=torch.float32)
    if "h" not in captured or not torch.equal(captured["h"], base):
        got = captured.get("h")
        diff = float((got - base).abs().max()) if got is not None else float("nan")
        fail(f"{name}: decoder input differs from the {cfg_json['model_type']} embedding convention (max diff {diff})")
    eps = getattr(c, "rms_norm_eps", None)
    if eps is None or abs(eps - cfg_json["rms_norm_eps"]) > 0:
        fail(f"{name}: rms_norm_eps parsed as {eps}, config.json says {cfg_json['rms_norm_eps']}")
    info = {
        "model_type": c.model_type, "head_dim": hd, "heads": H, "kv_heads": KV, "hidden": h,
        "act": act_name, "tied": tied, "rms_norm_eps": eps, "inv_freq_rel_err": rel,
        "rope": cfg_json.get("rope_scaling") or "default", "rope_theta": cfg_json.get("rope_theta"),
        "attn_impl": getattr(c, "_attn_implementation", None), "class": type(model).__name__,
    }
    print(f"[{name}] config as parsed: {json.dumps(info, default=str)}", flush=True)
    return info


# ----------------------------------------------------------------------------------------------------------------

def load_model(path: str):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    model.config.use_cache = False
    model.eval()  # no dropout anywhere (attention_dropout is 0 too)
    return model


def target_module_names(model) -> list[str]:
    names = []
    for L in range(model.config.num_hidden_layers):
        for t in TARGETS:
            grp = "self_attn" if t in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            names.append(f"model.layers.{L}.{grp}.{t}")
    return names


def hq_key(module: str, level: int, which: str) -> str:
    return f"{module}.levels.{level}.lora_{which}.weight"


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1, :].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


def make_batch(gen: torch.Generator, B: int, T: int, V: int, pad_id: int):
    """ids in [4, V) (no specials), labels = ids with a masked prompt of 1..4 tokens per row and, on row 1, a right
    padding of 0..3 pad tokens (label -100), as the trainer's collator produces."""
    ids = torch.randint(4, V, (B, T), generator=gen, dtype=torch.int64)
    labels = ids.clone()
    for b in range(B):
        p = int(torch.randint(1, 5, (1,), generator=gen))
        labels[b, :p] = -100
    npad = int(torch.randint(0, 4, (1,), generator=gen))
    if npad:
        ids[B - 1, T - npad:] = pad_id
        labels[B - 1, T - npad:] = -100
    return ids, labels


def peft_adapters(model, modules: list[str], tensors: dict, name: str, gen: torch.Generator):
    """PEFT LoRA, one adapter per level (all active); initial weights drawn from `gen` into tensors. Returns the
    transformers model with the LoRA layers injected and the [(hq_key, parameter)] list."""
    from peft import LoraConfig, get_peft_model

    level_names = [f"level{j}" for j in range(len(LEVELS))]
    cfgs = [LoraConfig(r=lv["rank"], lora_alpha=lv["alpha"], target_modules=list(TARGETS), lora_dropout=0.0,
                       bias="none", task_type="CAUSAL_LM", use_rslora=False) for lv in LEVELS]
    pm = get_peft_model(model, cfgs[0], adapter_name=level_names[0])
    for j in range(1, len(LEVELS)):
        pm.add_adapter(level_names[j], cfgs[j])
    pm.base_model.set_adapter(level_names)
    pm.eval()
    # The transformers model with the LoRA layers injected. It is called directly (not through PeftModel.forward,
    # whose active_peft_config expects a single active adapter); each lora.Linear sums its active adapters.
    inner = pm.base_model.model
    lora_layers = {m: inner.get_submodule(m) for m in modules}
    for m, lay in lora_layers.items():
        act = list(lay.active_adapters)
        if sorted(act) != sorted(level_names):
            fail(f"{name}: {m} active adapters {act}, want {level_names}")
        for j, lv in enumerate(LEVELS):
            s = lay.scaling[level_names[j]]
            if abs(s - lv["alpha"] / lv["rank"]) > 1e-12:
                fail(f"{name}: {m} level {j} scaling {s}, want alpha/r = {lv['alpha'] / lv['rank']}")

    # Deterministic adapter init with B != 0 (so dA != 0): A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, 0.05^2).
    params: list[tuple[str, torch.nn.Parameter]] = []
    with torch.no_grad():
        for m in modules:
            lay = lora_layers[m]
            for j, ln in enumerate(level_names):
                A = lay.lora_A[ln].weight
                B = lay.lora_B[ln].weight
                bound = 1.0 / math.sqrt(A.shape[1])
                A.copy_((torch.rand(A.shape, generator=gen) * 2 - 1) * bound)
                B.copy_(torch.randn(B.shape, generator=gen) * 0.05)
                tensors[hq_key(m, j, "A")] = A.detach().clone()
                tensors[hq_key(m, j, "B")] = B.detach().clone()
                params.append((hq_key(m, j, "A"), A))
                params.append((hq_key(m, j, "B"), B))
    for _, p in params:
        p.requires_grad_(True)
    n_trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    if n_trainable != sum(p.numel() for _, p in params):
        fail(f"{name}: {n_trainable} trainable parameters, but the adapters have {sum(p.numel() for _, p in params)}")

    # The levels' outputs are summed: check one layer against the formula.
    lay = lora_layers[modules[0]]
    x = torch.randn(3, lay.base_layer.in_features, generator=gen)
    with torch.no_grad():
        y = lay(x)
        want = lay.base_layer(x)
        for j, ln in enumerate(level_names):
            s = LEVELS[j]["alpha"] / LEVELS[j]["rank"]
            want = want + s * (x @ lay.lora_A[ln].weight.T) @ lay.lora_B[ln].weight.T
    if float((y - want).abs().max()) > 1e-5:
        fail(f"{name}: PEFT multi-adapter output is not the sum of the levels (max diff {float((y - want).abs().max())})")

    return inner, params


def sliced_adapters(model, cfg_json: dict, modules: list[str], tensors: dict, name: str, gen: torch.Generator):
    """Phi-3: per-slice hierarchical adapters on the fused qkv_proj / gate_up_proj (and on o_proj / down_proj), the
    same init distribution and order as peft_adapters. Returns the model and the [(hq_key, parameter)] list."""
    where = install_sliced_lora(model, cfg_json, modules, LEVELS)
    params: list[tuple[str, torch.nn.Parameter]] = []
    with torch.no_grad():
        for m in modules:
            wrapper, s = where[m]
            for j in range(len(LEVELS)):
                A, B = wrapper.level(s, j)
                bound = 1.0 / math.sqrt(A.shape[1])
                A.copy_((torch.rand(A.shape, generator=gen) * 2 - 1) * bound)
                B.copy_(torch.randn(B.shape, generator=gen) * 0.05)
                tensors[hq_key(m, j, "A")] = A.detach().clone()
                tensors[hq_key(m, j, "B")] = B.detach().clone()
                params.append((hq_key(m, j, "A"), A))
                params.append((hq_key(m, j, "B"), B))
    for _, p in params:
        p.requires_grad_(True)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_trainable != sum(p.numel() for _, p in params):
        fail(f"{name}: {n_trainable} trainable parameters, but the adapters have {sum(p.numel() for _, p in params)}")
    # The fused output is base + the slices' level sums in row order: check the first layer's qkv_proj.
    wrapper, _ = where[modules[0]]
    x = torch.randn(3, wrapper.base_layer.weight.shape[1], generator=gen)
    with torch.no_grad():
        y = wrapper(x)
        want = wrapper.base_layer(x).clone()
        for s, (_, r0, r1) in enumerate(wrapper.slices):
            for j, lv in enumerate(LEVELS):
                A, B = wrapper.level(s, j)
                want[:, r0:r1] += (lv["alpha"] / lv["rank"]) * (x @ A.T) @ B.T
    if float((y - want).abs().max()) > 1e-5:
        fail(f"{name}: sliced adapters' output is not base + the slices' level sums")
    return model, params


def run_model(name: str, fixtures: str, out_dir: str, dyn: torch.Tensor) -> dict:
    import peft

    path = os.path.join(fixtures, name)
    with open(os.path.join(path, "config.json")) as f:
        cfg_json = json.load(f)
    model = load_model(path)
    probes: dict[str, torch.Tensor] = {}
    if name in FAMILY_OF_DIR:
        info, probes = verify_family(model, cfg_json, name, strict=False)
    else:
        info = verify_config(model, cfg_json, name)
    V = cfg_json["vocab_size"]
    pad_id = cfg_json.get("pad_token_id", 0) or 0
    modules = target_module_names(model)
    tensors: dict[str, torch.Tensor] = dict(probes)
    # Where each targeted weight lives: its own Linear, or rows of a fused one (Phi-3 qkv_proj / gate_up_proj).
    slices = proj_slices(model, cfg_json, modules)

    # a. NF4 of every targeted projection, and the model's weight replaced by its dequantized value.
    code_mm = q8_mm = 0
    worst_rel = 0.0
    tensors_w: dict[str, torch.Tensor] = {}
    offset_ulps: list[int] = []   # torch fp32 mean() vs the fp64 mean rounded to fp32, in ulps, per weight
    with torch.no_grad():
        for m in modules:
            lin, r0, r1 = slices[m]
            w = lin.weight[r0:r1].detach().clone()
            tensors_w[m] = w
            r = quantize_nf4_dq(w, dyn)
            code_mm += r["n_code_mismatch"]
            q8_mm += r["n_q8_mismatch"]
            for k in ("packed", "absmax", "qabsmax", "absmax2", "offset", "scales"):
                tensors[f"nf4.{m}.{k}"] = r[k]
            offset_ulps.append(f32_ulps(float(r["offset"]), float(r["absmax"].double().mean())))
            worst_rel = max(worst_rel, float((r["dequant"] - w).abs().max() / w.abs().max()))
            lin.weight[r0:r1].copy_(r["dequant"])
    # The same for all targeted weights flattened and concatenated in module order (one tensor of > 256 blocks,
    # so the nested double-quant blocks, including a partial last one, are exercised).
    r = quantize_nf4_dq(torch.cat([tensors_w[m].reshape(-1) for m in modules]), dyn)
    code_mm += r["n_code_mismatch"]
    q8_mm += r["n_q8_mismatch"]
    for k in ("packed", "absmax", "qabsmax", "absmax2", "offset", "scales"):
        tensors[f"nf4.concat.{k}"] = r[k]
    if code_mm:
        fail(f"{name}: {code_mm} NF4 codes differ between the CUDA tree and the default backend's argmin")
    if q8_mm:
        fail(f"{name}: {q8_mm} qabsmax codes differ between dQuantize<0> and the default backend's argmin")
    print(f"[{name}] NF4: {len(modules)} weights quantized; tree == argmin codes; dQuantize<0> == argmin qabsmax; "
          f"max |deq - w| / max|w| = {worst_rel:.4f}; offset vs fp64 mean (ulps) {offset_ulps}", flush=True)

    # b. Adapters, one per level, all active: PEFT LoRA, or for Phi-3's fused weights the native trainer's
    # per-slice adapters (SlicedLora), since PEFT adapts a fused Linear only as a whole.
    gen = torch.Generator().manual_seed(SEED)
    if cfg_json.get("model_type") == "phi3":
        inner, params = sliced_adapters(model, cfg_json, modules, tensors, name, gen)
    else:
        inner, params = peft_adapters(model, modules, tensors, name, gen)

    # c. Fixed inputs: logits, loss, grads.
    ids = torch.randint(4, V, (FWD_B, FWD_T), generator=gen, dtype=torch.int64)
    labels = ids.clone()
    labels[0, :4] = -100
    labels[1, 7] = -100
    labels[1, 10] = -100
    n_target = int((labels[:, 1:] != -100).sum())
    inner.zero_grad(set_to_none=True)
    out = inner(input_ids=ids, labels=labels)
    loss = out.loss
    manual = ce_loss(out.logits, labels)
    if abs(float(loss.detach()) - float(manual.detach())) > 1e-6 * max(1.0, abs(float(manual.detach()))):
        fail(f"{name}: model loss {float(loss)} != shifted mean CE {float(manual)}")
    loss.backward()
    tensors["input.ids"] = ids.to(torch.int32)
    tensors["input.labels"] = labels.to(torch.int32)
    tensors["logits"] = out.logits.detach().float().contiguous()
    tensors["loss"] = loss.detach().float().reshape(())
    for key, p in params:
        if p.grad is None:
            fail(f"{name}: no gradient for {key}")
        tensors["grad." + key] = p.grad.detach().clone()
    gA = sum(float(p.grad.abs().max()) for k, p in params if ".lora_A." in k)
    if gA == 0.0:
        fail(f"{name}: lora_A gradients are all zero")
    print(f"[{name}] forward: loss {float(loss):.6f} over {n_target} targets, |logits|max "
          f"{float(out.logits.abs().max()):.4f}", flush=True)
    if name in FAMILY_OF_DIR:
        # A short sequence too (T = 6: LongRoPE's short factors, a window that never slides out).
        with torch.no_grad():
            tensors["probe.short.ids"] = ids[:, :6].to(torch.int32).contiguous()
            tensors["probe.short.logits"] = inner(input_ids=ids[:, :6]).logits.detach().float().contiguous()

    # d. 20-step trajectory from the same init.
    with torch.no_grad():
        for key, p in params:
            p.copy_(tensors[key])
    plist = [p for _, p in params]
    opt = torch.optim.AdamW(plist, lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
                            weight_decay=ADAMW["weight_decay"], foreach=False)
    tgen = torch.Generator().manual_seed(SEED + 1)
    t_ids, t_labels, t_loss, t_norm = [], [], [], []
    for step in range(TRAJ_STEPS):
        bi, bl = make_batch(tgen, TRAJ_B, TRAJ_T, V, pad_id)
        opt.zero_grad(set_to_none=True)
        o = inner(input_ids=bi, labels=bl)
        o.loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(plist, ADAMW["max_grad_norm"], foreach=False)
        opt.step()
        t_ids.append(bi)
        t_labels.append(bl)
        t_loss.append(float(o.loss))
        t_norm.append(float(norm))
    tensors["traj.ids"] = torch.stack(t_ids).to(torch.int32)
    tensors["traj.labels"] = torch.stack(t_labels).to(torch.int32)
    tensors["traj.loss"] = torch.tensor(t_loss, dtype=torch.float32)
    tensors["traj.grad_norm"] = torch.tensor(t_norm, dtype=torch.float32)
    for key, p in params:
        tensors["final." + key] = p.detach().clone()
    print(f"[{name}] trajectory: loss {t_loss[0]:.5f} -> {t_loss[-1]:.5f}; grad norms "
          f"{min(t_norm):.4f}..{max(t_norm):.4f}", flush=True)

    # e. Write.
    import safetensors
    import transformers
    from safetensors.torch import save_file
    tensors["nf4.code"] = NF4_CODE.clone()
    tensors["nf4.dynamic_map"] = dyn.clone()
    levels_meta = [{"rank": lv["rank"], "alpha": lv["alpha"], "scale": lv["alpha"] / lv["rank"]} for lv in LEVELS]
    meta = {
        "format": "pt",
        "hqlora.version": "1",
        "hqlora.levels": json.dumps(levels_meta),
        "hqlora.target_modules": json.dumps(TARGETS),
        "hqlora.rslora": "false",
        "golden.model": name,
        "golden.seed": str(SEED),
        "golden.n_target_tokens": str(n_target),
        "golden.modules": json.dumps(modules),
        "golden.optimizer": json.dumps({"type": "adamw", **ADAMW}),
        "golden.quantization": json.dumps({"type": "nf4", "double_quant": True, "blocksize": BLOCKSIZE,
                                           "nested_blocksize": NESTED_BLOCKSIZE}),
        "golden.config_check": json.dumps(info, default=str),
        "golden.device": "cpu fp32, 1 thread, deterministic, eager attention",
        "golden.dynamic_map_capability": json.dumps(MAP_INFO),
        "golden.offset_vs_fp64_mean_ulps": json.dumps(offset_ulps),
        "versions": json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                                "transformers": transformers.__version__, "peft": peft.__version__,
                                "safetensors": safetensors.__version__}),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    os.makedirs(out_dir, exist_ok=True)
    dest = os.path.join(out_dir, f"{name}.safetensors")
    save_file(tensors, dest, metadata=meta)
    size = os.path.getsize(dest)
    if size > 1 << 20:
        fail(f"{dest} is {size} bytes (> 1 MiB)")
    print(f"[{name}] wrote {dest}: {len(tensors)} tensors, {size} bytes", flush=True)
    return {"model": name, "bytes": size, "loss": float(loss), "traj_first": t_loss[0], "traj_last": t_loss[-1]}


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=os.path.join(repo, "test", "fixtures", "models"))
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "golden") if os.environ.get("OUT")
                    else os.path.join(repo, "test", "golden"))
    ap.add_argument("--models", default=None, help=f"golden files to make (default {','.join(MODELS)}, or with "
                    "--families only the families' fixtures)")
    ap.add_argument("--families", default="",
                    help="make the fixtures of these families first (comma list of "
                         f"{','.join(family_specs())}, or 'all') into --fixtures-out, then their golden files")
    ap.add_argument("--fixtures-out", default=None,
                    help="where --families writes fixture folders (default $OUT/fixtures, else --fixtures)")
    ap.add_argument("--print-map", action="store_true", help="print the dynamic map as float hex (JSON) and exit")
    args = ap.parse_args()
    if args.print_map:
        print(json.dumps([float(v).hex() for v in create_dynamic_map(signed=True).tolist()]))
        return 0

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    print(f"python {platform.python_version()} torch {torch.__version__}", flush=True)

    dyn = create_dynamic_map(signed=True)
    if dyn.numel() != 256 or float(dyn[127]) != 0.0 or float(dyn[255]) != 1.0 or not bool((dyn[1:] > dyn[:-1]).all()):
        fail("dynamic map is not 256 ascending values with [127] = 0 and [255] = 1")
    # torch.linspace on the CPU is vectorized per CPU capability, so the map can depend on it at the ulp level:
    # rebuild it under each ATen capability and report where the results differ from this process's map.
    import subprocess
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    variants = {}
    mine = [float(v).hex() for v in dyn.tolist()]
    for c in ("default", "avx2", "avx512"):
        pr = subprocess.run([sys.executable, os.path.abspath(__file__), "--print-map"], capture_output=True, text=True,
                            env={**os.environ, "ATEN_CPU_CAPABILITY": c})
        if pr.returncode != 0:
            variants[c] = f"failed: {pr.stderr.strip()[-200:]}"
            continue
        other = json.loads(pr.stdout.strip().splitlines()[-1])
        variants[c] = [i for i in range(256) if other[i] != mine[i]]
    print(f"dynamic map: this process's capability {cap}; indices that differ under ATEN_CPU_CAPABILITY=...: "
          f"{json.dumps(variants)}", flush=True)
    MAP_INFO.update({"capability": cap, "differs_under": variants})
    specs = family_specs()
    fams = list(specs) if args.families == "all" else [f for f in args.families.split(",") if f]
    for f in fams:
        if f not in specs:
            fail(f"unknown family {f!r}; known: {', '.join(specs)}")
    fx_out = args.fixtures_out or (os.path.join(os.environ["OUT"], "fixtures") if os.environ.get("OUT")
                                   else args.fixtures)
    models = args.models.split(",") if args.models is not None else ([] if fams else list(MODELS))
    jobs = [(m, args.fixtures, None) for m in models if m] + [(specs[f]["dir"], fx_out, f) for f in fams]
    # One family's failure is recorded and the others go on: one bug must not cost the whole run.
    summary, failed = [], []
    import traceback
    for name, fx_dir, fam in jobs:
        try:
            if fam:
                os.makedirs(fx_dir, exist_ok=True)
                make_fixture(fam, fx_dir, os.path.join(args.fixtures, "tiny-llama"), lambda s: print(s, flush=True))
            summary.append(run_model(name, fx_dir, args.out, dyn))
        except (Exception, SystemExit) as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"
            print(f"make_golden.py: FAILED for {name}: {msg}", file=sys.stderr, flush=True)
            traceback.print_exc()
            failed.append({"model": name, "error": msg})
    print("summary: " + json.dumps(summary), flush=True)
    if failed:
        print("make_golden.py: FAILED: " + json.dumps(failed), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
