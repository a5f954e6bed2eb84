"""golden_families.py — the tiny fixtures of the model families beyond LLaMA/Gemma 1, made with the real transformers
classes, and their family-specific checks (used by make_golden.py --families).

Each family below is a hub-style config.json (the keys and spellings of the published checkpoints, scaled down to
hidden 64, 2 layers) that transformers parses itself (AutoConfig.from_pretrained on the written folder), and a
deterministic weight init (torch.Generator, fixed seed per family) written with safetensors in the config's dtype.
The fixture folder is then reloaded with AutoModelForCausalLM.from_pretrained and must load without a missing or
unexpected key.

    fixture            model_type   special case it carries
    tiny-qwen2         qwen2        q/k/v biases (frozen, fp32), untied, rope_theta 1e6, F32
    tiny-qwen2-tied    qwen2        the same, tied embeddings, BF16
    tiny-qwen3         qwen3        q_norm/k_norm per head, explicit head_dim 32 != hidden/heads, tied, BF16
    tiny-mistral       mistral      sliding_window 5 < sequence (12 and 16), untied, BF16
    tiny-gemma2        gemma2       pre+post norms, attention and final logit soft-capping that clips (caps chosen
                                    from the measured pre-cap maxima), query_pre_attn_scalar 24, layer 0 local
                                    (window 5) and layer 1 global, GELU-tanh, (1+w) norms, embedding scale, BF16
    tiny-gemma3        gemma3_text  q/k norm (1+w), layer 0 local / layer 1 global (layer_types), local rope theta
                                    1e4, global theta 1e6 with linear rope scaling x8, window 5, BF16
    tiny-phi3          phi3         fused qkv_proj / gate_up_proj, LongRoPE (short/long factors) with
                                    original_max_position_embeddings 8 < the sequences (12 and 16), F32

Family checks (verify_family) evaluate behaviour, not attribute names, so they hold across transformers versions:
the cos/sin each layer's attention receives (pre-hook) against RoPE computed here from config.json; the attention
masks (output_attentions, eager) against causal / sliding-window masks; the activation; tying; the embedding scale;
soft-capping seen through torch.tanh. A probe that cannot be observed in this transformers version is reported, not
guessed; a probe that is observed and disagrees fails the family.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

H64 = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VOCAB = 112      # 105 tokenizer entries (the shared character tokenizer) + room for family chat tokens
COMMON = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.02,
              attention_dropout=0.0)
WINDOW = 5
PHI3_ORIG = 8


def _phi3_factors():
    # head_dim 16 -> 8 factors each; deterministic, distinct, > 1 for the long ones (as in the published files).
    short = [1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 1.8, 2.0]
    long = [1.0, 1.3, 2.1, 3.4, 5.5, 8.9, 14.4, 23.3]
    return short, long


def family_specs() -> dict:
    short, long = _phi3_factors()
    qwen2 = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", **H64, intermediate_size=160,
                 hidden_act="silu", max_position_embeddings=256, max_window_layers=2, rms_norm_eps=1e-6,
                 rope_theta=1000000.0, rope_scaling=None, sliding_window=256, use_sliding_window=False,
                 **COMMON)
    specs = {
        "qwen2": dict(dir="tiny-qwen2", seed=2001, dtype="float32",
                      forms=[dict(qwen2, tie_word_embeddings=False, torch_dtype="float32")]),
        "qwen2-tied": dict(dir="tiny-qwen2-tied", seed=2002, dtype="bfloat16",
                           forms=[dict(qwen2, tie_word_embeddings=True, torch_dtype="bfloat16")]),
        "qwen3": dict(dir="tiny-qwen3", seed=2003, dtype="bfloat16", forms=[dict(
            architectures=["Qwen3ForCausalLM"], model_type="qwen3", **H64, head_dim=32, intermediate_size=160,
            hidden_act="silu", attention_bias=False, max_position_embeddings=256, max_window_layers=2,
            rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, sliding_window=None,
            use_sliding_window=False, tie_word_embeddings=True, torch_dtype="bfloat16", **COMMON)]),
        "mistral": dict(dir="tiny-mistral", seed=2004, dtype="bfloat16", forms=[dict(
            architectures=["MistralForCausalLM"], model_type="mistral", **H64, head_dim=16, intermediate_size=160,
            hidden_act="silu", max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=1000000.0,
            sliding_window=WINDOW, tie_word_embeddings=False, torch_dtype="bfloat16", **COMMON)]),
        "gemma2": dict(dir="tiny-gemma2", seed=2005, dtype="bfloat16", qk_std=0.15, forms=[dict(
            architectures=["Gemma2ForCausalLM"], model_type="gemma2", **H64, head_dim=32, intermediate_size=128,
            hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
            sliding_window=WINDOW, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False,
            cache_implementation="hybrid", tie_word_embeddings=True, torch_dtype="bfloat16", **COMMON)]),
        "gemma3": dict(dir="tiny-gemma3", seed=2006, dtype="bfloat16", forms=[
            # The published gemma-3 text config.json form (rope_scaling for the global layers, rope_local_base_freq).
            dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", **H64, head_dim=32,
                 intermediate_size=128, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=32,
                 sliding_window=WINDOW, sliding_window_pattern=2,
                 layer_types=["sliding_attention", "full_attention"],
                 final_logit_softcapping=None, attn_logit_softcapping=None, max_position_embeddings=256,
                 rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                 rope_scaling={"rope_type": "linear", "factor": 8.0}, attention_bias=False,
                 tie_word_embeddings=True, torch_dtype="bfloat16", **COMMON),
            # transformers 5 form (rope_parameters per layer type), tried when the first is not parsed as intended.
            dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", **H64, head_dim=32,
                 intermediate_size=128, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=32,
                 sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                 final_logit_softcapping=None, attn_logit_softcapping=None, max_position_embeddings=256,
                 rms_norm_eps=1e-6,
                 rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                  "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                 attention_bias=False, tie_word_embeddings=True, torch_dtype="bfloat16", **COMMON),
        ]),
        "phi3": dict(dir="tiny-phi3", seed=2007, dtype="float32", forms=[
            dict(architectures=["Phi3ForCausalLM"], model_type="phi3", **H64, intermediate_size=128,
                 hidden_act="silu", max_position_embeddings=64, original_max_position_embeddings=PHI3_ORIG,
                 rms_norm_eps=1e-5, rope_theta=10000.0,
                 rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long},
                 sliding_window=None, embd_pdrop=0.0, resid_pdrop=0.0, tie_word_embeddings=False,
                 torch_dtype="float32", **COMMON),
            dict(architectures=["Phi3ForCausalLM"], model_type="phi3", **H64, intermediate_size=128,
                 hidden_act="silu", max_position_embeddings=64, original_max_position_embeddings=PHI3_ORIG,
                 rms_norm_eps=1e-5,
                 rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short,
                                  "long_factor": long, "original_max_position_embeddings": PHI3_ORIG},
                 sliding_window=None, embd_pdrop=0.0, resid_pdrop=0.0, tie_word_embeddings=False,
                 torch_dtype="float32", **COMMON),
        ]),
    }
    return specs


FAMILY_OF_DIR = {s["dir"]: f for f, s in family_specs().items()}


class FamilyError(Exception):
    pass


def ffail(msg: str):
    raise FamilyError(msg)


# ----------------------------------------------------------------------------------------------------------------
# What the native trainer must reproduce, computed from config.json alone.

def head_dim_of(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def layer_types_of(cfg: dict) -> list[str]:
    """'sliding' or 'full' per layer, as the native loader must derive it from config.json."""
    L, mt = cfg["num_hidden_layers"], cfg["model_type"]
    if mt == "mistral" or mt == "phi3":
        return ["sliding" if cfg.get("sliding_window") else "full"] * L
    if mt in ("qwen2", "qwen3"):
        if not cfg.get("use_sliding_window"):
            return ["full"] * L
        return ["sliding" if i >= cfg.get("max_window_layers", L) else "full" for i in range(L)]
    if mt == "gemma2":
        return ["sliding" if i % 2 == 0 else "full" for i in range(L)]
    if mt == "gemma3_text":
        if cfg.get("layer_types"):
            return ["sliding" if t == "sliding_attention" else "full" for t in cfg["layer_types"]]
        p = cfg.get("sliding_window_pattern", 6)
        return ["sliding" if (i + 1) % p else "full" for i in range(L)]
    return ["full"] * L


def rope_of(cfg: dict, layer_type: str, T: int) -> tuple[torch.Tensor, float, str]:
    """(inv_freq [d/2] fp32, attention scaling, description) the layer's RoPE uses for a batch of length T."""
    d = head_dim_of(cfg)
    expo = torch.arange(0, d, 2, dtype=torch.int64).to(dtype=torch.float) / d
    mt = cfg["model_type"]
    rp = cfg.get("rope_parameters")
    if mt == "gemma3_text":
        if rp and "full_attention" in rp:
            p = rp["full_attention" if layer_type == "full" else "sliding_attention"]
            theta, rs = float(p["rope_theta"]), (p if p.get("rope_type", "default") != "default" else None)
        elif layer_type == "sliding":
            theta, rs = float(cfg.get("rope_local_base_freq", 10000.0)), None
        else:
            theta, rs = float(cfg.get("rope_theta", 1e6)), cfg.get("rope_scaling")
    else:
        rp = rp or {}
        theta = float(cfg.get("rope_theta", rp.get("rope_theta", 10000.0)))
        rs = cfg.get("rope_scaling") or (rp if rp.get("rope_type", "default") != "default" else None)
    inv = 1.0 / (theta ** expo)
    if not rs:
        return inv, 1.0, f"default theta {theta:g}"
    rtype = rs.get("rope_type", rs.get("type"))
    if rtype == "linear":
        return inv / float(rs["factor"]), 1.0, f"linear x{rs['factor']} theta {theta:g}"
    if rtype in ("longrope", "su"):
        orig = int(cfg.get("original_max_position_embeddings") or rs.get("original_max_position_embeddings"))
        factor = cfg["max_position_embeddings"] / orig
        att = rs.get("attention_factor")
        if att is None:
            att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = torch.tensor(rs["long_factor"] if T > orig else rs["short_factor"], dtype=torch.float32)
        inv = 1.0 / (ext * theta ** expo)
        return inv, float(att), f"longrope {'long' if T > orig else 'short'} factors (T {T} vs {orig}), scale {att:.6g}"
    ffail(f"rope type {rtype!r} has no reference here")


def cos_sin(inv: torch.Tensor, scale: float, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.arange(T, dtype=torch.float32)
    freqs = pos[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos() * scale, emb.sin() * scale


def expected_mask(T: int, layer_type: str, window: int | None, rule: str) -> torch.Tensor:
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = j <= i
    if layer_type == "sliding":
        m = m & ((i - j < window) if rule == "lt" else (i - j <= window))
    return m


def act_of(cfg: dict) -> str:
    return "gelu_pytorch_tanh" if cfg["model_type"] in ("gemma2", "gemma3_text") else "silu"


def gemma_like(cfg: dict) -> bool:
    return cfg["model_type"] in ("gemma2", "gemma3_text")


# ----------------------------------------------------------------------------------------------------------------
# Fixture creation.

def _load_config(path: str):
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(path)


def _from_config(config):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config)
    model.to(torch.float32)
    model.config.use_cache = False
    model.eval()
    return model


def _is_norm(name: str, p: torch.Tensor) -> bool:
    return p.dim() == 1 and not name.endswith(".bias")


@torch.no_grad()
def init_weights(model, spec: dict, cfg: dict) -> None:
    """Every parameter from one generator, in named_parameters order (tied lm_head is not listed twice).
    2-D projections N(0, 0.02) (Gemma-2 q/k N(0, qk_std) so that soft-capping sees scores of order 1), embedding and
    lm_head N(0, 0.1) (as the JS fixtures, so the frozen head can express a learnable distribution), biases
    N(0, 0.1), norms 1 + 0.1 N (w-scaled) or 0.1 N (Gemma's 1 + w)."""
    gen = torch.Generator().manual_seed(spec["seed"])
    for name, p in model.named_parameters():
        if _is_norm(name, p):
            v = torch.randn(p.shape, generator=gen) * 0.1 + (0.0 if gemma_like(cfg) else 1.0)
        elif name.endswith(".bias"):
            v = torch.randn(p.shape, generator=gen) * 0.1
        elif "embed_tokens" in name or name.startswith("lm_head"):
            v = torch.randn(p.shape, generator=gen) * 0.1
        elif spec.get("qk_std") and (".q_proj." in name or ".k_proj." in name):
            v = torch.randn(p.shape, generator=gen) * spec["qk_std"]
        else:
            v = torch.randn(p.shape, generator=gen) * 0.02
        if spec["dtype"] == "bfloat16":
            v = v.to(torch.bfloat16).float()
        p.copy_(v)


class TanhRecorder:
    """Wraps torch.tanh and records max |x| of the soft-capping calls: key 4 for attention scores / cap ([B, H, T, T]),
    key 3 for final logits / cap ([B, T, V]); other tanh calls (an activation's, say) are not counted."""

    def __init__(self, vocab: int):
        self.max = {}
        self.vocab = vocab

    def __enter__(self):
        self._orig = torch.tanh
        rec = self

        def tanh(x, *a, **k):
            if isinstance(x, torch.Tensor) and ((x.dim() == 4 and x.shape[-1] == x.shape[-2])
                                                or (x.dim() == 3 and x.shape[-1] == rec.vocab)):
                rec.max[x.dim()] = max(rec.max.get(x.dim(), 0.0), float(x.detach().abs().max()))
            return rec._orig(x, *a, **k)
        torch.tanh = tanh
        return self

    def __exit__(self, *exc):
        torch.tanh = self._orig
        return False


def _probe_ids(V: int, B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(4, V, (B, T), generator=torch.Generator().manual_seed(seed), dtype=torch.int64)


def choose_softcaps(model, cfg: dict) -> dict:
    """Gemma-2: measures the pre-cap maxima with the config's caps in place and returns caps at max/2.5 (2
    significant digits), so tanh works well inside its nonlinear range on the golden inputs."""
    ids = _probe_ids(cfg["vocab_size"], 2, 16, 99)
    a_cap, f_cap = cfg["attn_logit_softcapping"], cfg["final_logit_softcapping"]
    with TanhRecorder(cfg["vocab_size"]) as rec, torch.no_grad():
        model(input_ids=ids)
    if 4 not in rec.max or 3 not in rec.max:
        print(f"gemma2: WARNING: soft-capping not observed through torch.tanh (seen: {sorted(rec.max)}); "
              "using fixed caps 0.8 / 1.0", flush=True)
        return {"attn_logit_softcapping": 0.8, "final_logit_softcapping": 1.0, "measured_raw_max": None}
    raw_a, raw_f = rec.max[4] * a_cap, rec.max[3] * f_cap

    def sig2(x):
        return float(f"{x:.2g}")
    return {"attn_logit_softcapping": sig2(raw_a / 2.5), "final_logit_softcapping": sig2(raw_f / 2.5),
            "measured_raw_max": {"attention": raw_a, "final": raw_f}}


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def copy_tokenizer(src_dir: str, dst_dir: str) -> None:
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copyfile(os.path.join(src_dir, fn), os.path.join(dst_dir, fn))


def write_weights(model, dst: str, dtype: str, tied: bool) -> list[str]:
    from safetensors.torch import save_file
    sd = model.state_dict()
    if tied:
        sd.pop("lm_head.weight", None)
    tdt = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    tensors = {k: v.detach().to(tdt).contiguous().clone() for k, v in sd.items()}
    save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return sorted(tensors)


def make_fixture(family: str, out_root: str, tokenizer_src: str, log) -> str:
    """Writes <out_root>/<dir>: config.json, model.safetensors, the shared tokenizer files. Returns the folder."""
    import transformers
    spec = family_specs()[family]
    dst = os.path.join(out_root, spec["dir"])
    errors = []
    # Each config form strictly; if none is parsed as intended, the first (published) form with the disagreements
    # recorded as warnings, so the run still brings back transformers' own numbers for it.
    attempts = [(k, f, True) for k, f in enumerate(spec["forms"])] + [(0, spec["forms"][0], False)]
    for k, form, strict in attempts:
        cfg = dict(form, transformers_version=transformers.__version__)
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        _write_json(os.path.join(dst, "config.json"), cfg)
        copy_tokenizer(tokenizer_src, dst)
        try:
            model = _from_config(_load_config(dst))
            init_weights(model, spec, cfg)
            if family == "gemma2":
                caps = choose_softcaps(model, cfg)
                log(f"[{spec['dir']}] soft-caps from measured pre-cap maxima {caps['measured_raw_max']}: "
                    f"attn {caps['attn_logit_softcapping']}, final {caps['final_logit_softcapping']}")
                cfg["attn_logit_softcapping"] = caps["attn_logit_softcapping"]
                cfg["final_logit_softcapping"] = caps["final_logit_softcapping"]
                _write_json(os.path.join(dst, "config.json"), cfg)
                model = _from_config(_load_config(dst))
                init_weights(model, spec, cfg)
            # The parse must match what config.json means before anything is written (else try the next form).
            verify_family(model, cfg, spec["dir"], probes_only=True, strict=strict)
        except FamilyError as e:
            errors.append(f"form {k}: {e}")
            log(f"[{spec['dir']}] config form {k} not parsed as intended: {e}")
            continue
        names = write_weights(model, dst, spec["dtype"], bool(cfg.get("tie_word_embeddings")))
        log(f"[{spec['dir']}] fixture written with config form {k}: {len(names)} tensors "
            f"({os.path.getsize(os.path.join(dst, 'model.safetensors'))} bytes)")
        check_reload(dst, model, spec["dir"])
        return dst
    ffail(f"{spec['dir']}: no config form was parsed as intended by transformers {transformers.__version__}: "
          + " | ".join(errors))


def check_reload(dst: str, model, name: str) -> None:
    from transformers import AutoModelForCausalLM
    try:
        re, info = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, output_loading_info=True)
    except TypeError:
        re, info = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float32, output_loading_info=True)
    bad = {k: list(v) for k, v in (info or {}).items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")
           and len(v)}
    if bad:
        ffail(f"{name}: reloading the fixture reports {bad}")
    want = model.state_dict()
    for k, v in re.state_dict().items():
        if k in want and not torch.equal(v.float(), want[k].float()):
            ffail(f"{name}: {k} reloads with different values")


# ----------------------------------------------------------------------------------------------------------------
# Behavioural checks of a loaded model against config.json; returns (info, probe tensors).

def _layers(model):
    return model.model.layers


def capture_rope(model, ids: torch.Tensor) -> dict:
    caps = {}
    handles = []
    for L, layer in enumerate(_layers(model)):
        def hook(_m, args, kwargs, L=L):
            pe = kwargs.get("position_embeddings")
            if pe is None and len(args) > 1 and isinstance(args[1], tuple):
                pe = args[1]
            if pe is not None:
                caps[L] = (pe[0][0].detach().float().clone(), pe[1][0].detach().float().clone())
        handles.append(layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return caps


def attention_masks(model, ids: torch.Tensor) -> dict:
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
    except Exception as e:  # noqa: BLE001  (a version without output_attentions: reported, not fatal)
        return {"error": f"{type(e).__name__}: {e}"}
    att = getattr(out, "attentions", None)
    if not att:
        return {"error": "output_attentions returned nothing"}
    return {L: (a[0] > 0).all(dim=0) for L, a in enumerate(att)}   # [T, T]: allowed for every head


def verify_family(model, cfg: dict, name: str, probes_only: bool = False, strict: bool = True) -> tuple[dict, dict]:
    """Structural checks always fail the family. The behavioural probes (RoPE, masks, soft-capping) fail it when
    `strict`; otherwise a disagreement is recorded in info["warnings"] (the golden stays transformers' own output)."""
    c = model.config
    warnings: list[str] = []

    def soft(msg: str):
        if strict:
            ffail(msg)
        warnings.append(msg)
        print(f"[{name}] WARNING: {msg}", flush=True)

    inner = model.model
    mt = cfg["model_type"]
    H, KV, h = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    d = head_dim_of(cfg)
    attn0 = inner.layers[0].self_attn
    mlp0 = inner.layers[0].mlp
    info: dict = {"model_type": getattr(c, "model_type", None), "class": type(model).__name__, "head_dim": d,
                  "heads": H, "kv_heads": KV, "hidden": h, "attn_impl": getattr(c, "_attn_implementation", None)}
    probes: dict = {}
    if getattr(attn0, "head_dim", d) != d:
        ffail(f"{name}: head_dim parsed as {attn0.head_dim}, config.json means {d}")
    if mt == "phi3":
        if attn0.qkv_proj.out_features != (H + 2 * KV) * d or mlp0.gate_up_proj.out_features != 2 * cfg["intermediate_size"]:
            ffail(f"{name}: fused projection shapes disagree with the config")
    else:
        if attn0.q_proj.out_features != H * d or attn0.k_proj.out_features != KV * d or attn0.o_proj.in_features != H * d:
            ffail(f"{name}: projection shapes disagree with heads {H}/{KV} x head_dim {d}")
        want_bias = mt == "qwen2"
        for p in ("q_proj", "k_proj", "v_proj"):
            if (getattr(attn0, p).bias is not None) != want_bias:
                ffail(f"{name}: {p} bias present={getattr(attn0, p).bias is not None}, expected {want_bias}")
        if attn0.o_proj.bias is not None:
            ffail(f"{name}: o_proj has a bias")
        info["qkv_bias"] = want_bias
    has_qk_norm = mt in ("qwen3", "gemma3_text")
    if (getattr(attn0, "q_norm", None) is not None) != has_qk_norm:
        ffail(f"{name}: q_norm present={getattr(attn0, 'q_norm', None) is not None}, expected {has_qk_norm}")
    info["qk_norm"] = has_qk_norm
    # Activation.
    x = torch.linspace(-4, 4, 101)
    act_fn = getattr(mlp0, "act_fn", None) or getattr(mlp0, "activation_fn", None)
    want = F.gelu(x, approximate="tanh") if act_of(cfg) == "gelu_pytorch_tanh" else F.silu(x)
    if act_fn is None or float((act_fn(x) - want).abs().max()) > 1e-6:
        ffail(f"{name}: MLP activation is not {act_of(cfg)}")
    info["act"] = act_of(cfg)
    # Tying.
    tie = bool(cfg.get("tie_word_embeddings", False))
    tied = model.lm_head.weight.data_ptr() == inner.embed_tokens.weight.data_ptr()
    if tied != tie:
        ffail(f"{name}: lm_head tied={tied}, config.json tie_word_embeddings={tie}")
    info["tied"] = tied
    # Norm convention: Gemma (1 + w) vs w. Evaluate the final norm on a vector.
    v = torch.randn(1, h, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = inner.norm(v)
        nv = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + cfg["rms_norm_eps"])
        w = inner.norm.weight.float()
        want_n = nv * (1.0 + w) if gemma_like(cfg) else nv * w
    if float((got - want_n).abs().max()) > 1e-5:
        ffail(f"{name}: final RMSNorm is not the {'1+w' if gemma_like(cfg) else 'w'} convention")
    # Embedding scale: what layer 0 receives.
    ids = torch.arange(4, 14).view(1, -1)
    captured = {}

    def grab(_mod, args, kwargs):
        captured["h"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
    hd = inner.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids)
    hd.remove()
    base = inner.embed_tokens.weight[ids].detach()
    if gemma_like(cfg):
        base = base * torch.tensor(h ** 0.5, dtype=torch.float32)
    if "h" not in captured or not torch.allclose(captured["h"], base, rtol=1e-6, atol=0):
        ffail(f"{name}: decoder input differs from the {mt} embedding convention")
    info["embed_scale"] = h ** 0.5 if gemma_like(cfg) else 1.0
    # RoPE per layer, at the golden lengths and at a short one (LongRoPE switches on T > original).
    lt = layer_types_of(cfg)
    info["layer_types"] = lt
    rope_info = {}
    for T in (6, 12, 16):
        caps = capture_rope(model, _probe_ids(cfg["vocab_size"], 1, T, 7))
        if not caps:
            rope_info[T] = "position_embeddings not observed (pre-hook saw none)"
            continue
        for L in range(cfg["num_hidden_layers"]):
            inv, sc, desc = rope_of(cfg, lt[L], T)
            ec, es = cos_sin(inv, sc, T)
            gc, gs = caps[L]
            err = max(float((gc - ec).abs().max()), float((gs - es).abs().max()))
            if err > 2e-5:
                soft(f"{name}: layer {L} ({lt[L]}) RoPE at T={T} differs from config.json's {desc}: max abs {err:.3g}")
            rope_info[f"T{T}.L{L}"] = f"{desc} (max abs {err:.2g})"
            probes[f"probe.rope.T{T}.L{L}.cos"] = gc.contiguous()
            probes[f"probe.rope.T{T}.L{L}.sin"] = gs.contiguous()
    info["rope"] = rope_info
    # Attention masks at T = 16: which keys each query may see, per layer.
    T = 16
    masks = attention_masks(model, _probe_ids(cfg["vocab_size"], 1, T, 8))
    if "error" in masks:
        info["masks"] = f"not observed: {masks['error']}"
    else:
        rules = {}
        for L in range(cfg["num_hidden_layers"]):
            m = masks[L]
            probes[f"probe.mask.L{L}"] = m.to(torch.uint8).contiguous()
            W = cfg.get("sliding_window")
            found = [r for r in ("lt", "le") if lt[L] == "sliding" and torch.equal(m, expected_mask(T, "sliding", W, r))]
            if lt[L] == "full":
                if not torch.equal(m, expected_mask(T, "full", None, "lt")):
                    soft(f"{name}: layer {L} should be causal (full) but its mask is {m.int().tolist()}")
                rules[L] = "causal"
            elif not found:
                soft(f"{name}: layer {L} should be a sliding window of {W}, mask {m.int().tolist()}")
                rules[L] = "unexpected (see probe.mask)"
            else:
                rules[L] = "key j visible from query i iff 0 <= i-j " + ("< W" if found[0] == "lt" else "<= W")
        info["masks"] = rules
    # Gemma-2 soft-capping must clip on inputs like the golden ones.
    if mt == "gemma2":
        with TanhRecorder(cfg["vocab_size"]) as rec, torch.no_grad():
            model(input_ids=_probe_ids(cfg["vocab_size"], 2, 12, 9))
        a, f_ = rec.max.get(4, 0.0), rec.max.get(3, 0.0)
        info["softcap_max_ratio"] = {"attention": a, "final": f_}
        if a < 1.0 or f_ < 1.0:
            soft(f"{name}: soft-capping does not clip (max |x|/cap: attention {a:.3g}, final {f_:.3g}; want >= 1)")
        info["query_pre_attn_scalar"] = cfg["query_pre_attn_scalar"]
    if gemma_like(cfg):
        sc = getattr(attn0, "scaling", None)
        if sc is not None and abs(sc - cfg["query_pre_attn_scalar"] ** -0.5) > 1e-7:
            ffail(f"{name}: attention scaling {sc}, want query_pre_attn_scalar^-0.5")
    eps = getattr(c, "rms_norm_eps", None)
    if eps is None or eps != cfg["rms_norm_eps"]:
        ffail(f"{name}: rms_norm_eps parsed as {eps}")
    info["warnings"] = warnings
    if not probes_only:
        print(f"[{name}] family checks: {json.dumps(info, default=str)}", flush=True)
    return info, probes


# ----------------------------------------------------------------------------------------------------------------
# Projection weights of a family, by the native trainer's module names (Phi-3's fused tensors are sliced by rows:
# qkv_proj = [q (H·d); k (KV·d); v (KV·d)], gate_up_proj = [gate (F); up (F)], as Phi3Attention/Phi3MLP split them).

def proj_slices(model, cfg: dict, modules: list[str]) -> dict:
    """module name -> (linear holding the weight, row0, row1)."""
    out = {}
    if cfg["model_type"] != "phi3":
        for m in modules:
            lin = model.get_submodule(m)
            out[m] = (lin, 0, lin.weight.shape[0])
        return out
    H, KV, d, Fi = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim_of(cfg), cfg["intermediate_size"]
    for m in modules:
        L = int(m.split(".")[2])
        layer = model.model.layers[L]
        t = m.rsplit(".", 1)[1]
        if t == "q_proj":
            out[m] = (layer.self_attn.qkv_proj, 0, H * d)
        elif t == "k_proj":
            out[m] = (layer.self_attn.qkv_proj, H * d, (H + KV) * d)
        elif t == "v_proj":
            out[m] = (layer.self_attn.qkv_proj, (H + KV) * d, (H + 2 * KV) * d)
        elif t == "o_proj":
            out[m] = (layer.self_attn.o_proj, 0, h_out(layer.self_attn.o_proj))
        elif t == "gate_proj":
            out[m] = (layer.mlp.gate_up_proj, 0, Fi)
        elif t == "up_proj":
            out[m] = (layer.mlp.gate_up_proj, Fi, 2 * Fi)
        elif t == "down_proj":
            out[m] = (layer.mlp.down_proj, 0, h_out(layer.mlp.down_proj))
        else:
            ffail(f"phi3: unknown target {t}")
    return out


def h_out(lin) -> int:
    return lin.weight.shape[0]


class SlicedLora(torch.nn.Module):
    """A frozen linear plus, for each row slice, its own hierarchical LoRA levels (the native trainer's adapters on a
    fused tensor): y = base(x) + concat_s Σ_j scale_j (x A_sjᵀ) B_sjᵀ over the slices in row order."""

    def __init__(self, base, slices: list[tuple[str, int, int]], levels: list[dict]):
        super().__init__()
        self.base_layer = base
        self.slices = slices
        self.scales = [lv["alpha"] / lv["rank"] for lv in levels]
        self.A = torch.nn.ParameterList()
        self.B = torch.nn.ParameterList()
        inn = base.weight.shape[1]
        for _, r0, r1 in slices:
            for lv in levels:
                self.A.append(torch.nn.Parameter(torch.zeros(lv["rank"], inn)))
                self.B.append(torch.nn.Parameter(torch.zeros(r1 - r0, lv["rank"])))
        n_rows = sum(r1 - r0 for _, r0, r1 in slices)
        if n_rows != base.weight.shape[0] or [s[1] for s in slices] != sorted(s[1] for s in slices):
            raise FamilyError("slices must cover the fused rows in order")

    def level(self, s: int, j: int):
        k = s * len(self.scales) + j
        return self.A[k], self.B[k]

    def forward(self, x):
        y = self.base_layer(x)
        parts = []
        for s in range(len(self.slices)):
            acc = None
            for j, sc in enumerate(self.scales):
                A, B = self.level(s, j)
                t = sc * ((x @ A.T) @ B.T)
                acc = t if acc is None else acc + t
            parts.append(acc)
        return y + torch.cat(parts, dim=-1)


def install_sliced_lora(model, cfg: dict, modules: list[str], levels: list[dict]) -> dict:
    """Replaces every projection holder by a SlicedLora; returns module -> (SlicedLora, slice index)."""
    for p in model.parameters():
        p.requires_grad_(False)
    sl = proj_slices(model, cfg, modules)
    by_holder: dict[int, list[str]] = {}
    holders = {}
    for m, (lin, r0, r1) in sl.items():
        by_holder.setdefault(id(lin), []).append(m)
        holders[id(lin)] = lin
    where = {}
    for hid, ms in by_holder.items():
        lin = holders[hid]
        ms.sort(key=lambda m: sl[m][1])
        wrapper = SlicedLora(lin, [(m, sl[m][1], sl[m][2]) for m in ms], levels)
        parent_name = None
        for n, mod in model.named_modules():
            if mod is lin:
                parent_name = n
                break
        parent, attr = parent_name.rsplit(".", 1)
        setattr(model.get_submodule(parent), attr, wrapper)
        for s, m in enumerate(ms):
            where[m] = (wrapper, s)
    return where


def main_check() -> None:  # pragma: no cover - a smoke entry point for humans
    print(json.dumps({f: s["dir"] for f, s in family_specs().items()}))


if __name__ == "__main__":
    main_check()
    sys.exit(0)
