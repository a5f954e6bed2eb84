"""Model shapes of the GPU benchmark: HF config.json, tensor list and FLOP counts (standard library only).

Shared by make_checkpoint.py (what to write), bench.py (MFU) and peft_peer.py (nothing from here needs torch).

FLOPs per trained token (the MFU numerator, docs in bench.py's header):
    4 * N_base  +  6 * L * S * n_heads * head_dim
N_base = the matrix-multiply parameters of the frozen base: every q,k,v,o,gate,up,down projection of every layer plus
the LM head (V x C; for Gemma it is the tied embedding matrix, counted once). The embedding lookup and the norms are
not matrix multiplies. 4 * N_base = forward (2 N) + the input gradient (2 N); a frozen base has no weight gradient.
Attention: per layer and token, QK^T and PV over on average S/2 causal keys cost 2 * 2 * (S/2) * n_heads * head_dim
FLOPs forward; the backward (dQ, dK, dV, dP) costs twice that: 6 * S * n_heads * head_dim per layer and token.
Not counted: the LoRA products (< 1% at rank 64), gradient-checkpointing recomputation, norms, RoPE, activations.
"""

SHAPES = {
    # name: architecture + sizes
    "llama2-7b": dict(arch="llama", hidden=4096, inter=11008, layers=32, heads=32, kv_heads=32, head_dim=128,
                      vocab=32000, max_pos=4096, eps=1e-5, tie=False),
    # Long-context shapes (issue 20): every row of up to max_pos tokens is trained whole, nothing is clamped.
    # LLaMA-3-8B (meta-llama/Meta-Llama-3-8B config.json): GQA with 8 kv heads, 128256 tokens, 8192 positions.
    "llama3-8b": dict(arch="llama", hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
                      vocab=128256, max_pos=8192, eps=1e-5, tie=False, theta=500000.0),
    # LLaMA-2-7B sizes with a 32k context, as long-context fine-tunes of it use (the RoPE base raised to 1e6, as
    # Code Llama did, instead of a scaling rule: the speed does not depend on it).
    "llama2-7b-32k": dict(arch="llama", hidden=4096, inter=11008, layers=32, heads=32, kv_heads=32, head_dim=128,
                          vocab=32000, max_pos=32768, eps=1e-5, tie=False, theta=1000000.0),
    "tinyllama-1.1b": dict(arch="llama", hidden=2048, inter=5632, layers=22, heads=32, kv_heads=4, head_dim=64,
                           vocab=32000, max_pos=2048, eps=1e-5, tie=False),
    "gemma-2b": dict(arch="gemma", hidden=2048, inter=16384, layers=18, heads=8, kv_heads=1, head_dim=256,
                     vocab=256000, max_pos=8192, eps=1e-6, tie=True),
    # Issue 15 families (sizes of the published config.json files). The CUDA backend refuses, by name, the family
    # layers it does not implement yet (qkv bias, q/k norm, Gemma-2 norms/soft-capping/sliding window); Mistral v0.3
    # (sliding_window null) runs the LLaMA path.
    "qwen2.5-7b": dict(arch="qwen2", hidden=3584, inter=18944, layers=28, heads=28, kv_heads=4, head_dim=128,
                       vocab=152064, max_pos=32768, eps=1e-6, tie=False, theta=1000000.0),
    "qwen3-8b": dict(arch="qwen3", hidden=4096, inter=12288, layers=36, heads=32, kv_heads=8, head_dim=128,
                     vocab=151936, max_pos=40960, eps=1e-6, tie=False, theta=1000000.0),
    "mistral-7b": dict(arch="mistral", hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
                       vocab=32768, max_pos=32768, eps=1e-5, tie=False, theta=1000000.0),
    "gemma2-9b": dict(arch="gemma2", hidden=3584, inter=14336, layers=42, heads=16, kv_heads=8, head_dim=256,
                      vocab=256000, max_pos=8192, eps=1e-6, tie=True),
    # Small shapes for a CPU smoke test of the harness (written without torch).
    "tiny-llama": dict(arch="llama", hidden=64, inter=160, layers=2, heads=4, kv_heads=2, head_dim=16,
                       vocab=256, max_pos=1024, eps=1e-5, tie=False),
    "tiny-gemma": dict(arch="gemma", hidden=64, inter=128, layers=2, heads=4, kv_heads=1, head_dim=32,
                       vocab=256, max_pos=1024, eps=1e-6, tie=True),
}

PROJS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def shape(name):
    if name not in SHAPES:
        raise SystemExit(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    return dict(SHAPES[name], name=name)


def config_json(s):
    """The config.json of a shape; readable by transformers 4/5 and by native/src/model_config.cpp."""
    common = {
        "hidden_size": s["hidden"], "intermediate_size": s["inter"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
        "vocab_size": s["vocab"], "max_position_embeddings": s["max_pos"], "rms_norm_eps": s["eps"],
        "rope_theta": s.get("theta", 10000.0), "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0,
        "initializer_range": 0.02, "tie_word_embeddings": s["tie"], "use_cache": False,
        "torch_dtype": "bfloat16", "dtype": "bfloat16",
    }
    if s["arch"] == "llama":
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **common, "hidden_act": "silu",
                "mlp_bias": False, "pretraining_tp": 1, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if s["arch"] in ("qwen2", "qwen3"):
        common.pop("attention_bias")   # Qwen2's q/k/v biases come with the model_type
        return {"architectures": ["Qwen2ForCausalLM" if s["arch"] == "qwen2" else "Qwen3ForCausalLM"],
                "model_type": s["arch"], **common, "hidden_act": "silu", "use_sliding_window": False,
                "sliding_window": None, "max_window_layers": s["layers"], **ids}
    if s["arch"] == "mistral":
        return {"architectures": ["MistralForCausalLM"], "model_type": "mistral", **common, "hidden_act": "silu",
                "sliding_window": None, **ids}
    if s["arch"] == "gemma2":
        return {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", **common,
                "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": s["head_dim"], "sliding_window": 4096, "attn_logit_softcapping": 50.0,
                "final_logit_softcapping": 30.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    return {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", **common,
            "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
            "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}


def tensor_specs(s):
    """[(name, shape, init)] in HF order; init is 'normal' (std 0.02), 'ones' or 'zeros'.

    RMSNorm weights: ones for LLaMA (y = x * w), zeros for Gemma (y = x * (1 + w)), as the HF initialisers do.
    Gemma ties lm_head to the embeddings, so it has no lm_head.weight.
    """
    C, F, V = s["hidden"], s["inter"], s["vocab"]
    Hd, KVd = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    norm = "zeros" if s["arch"] in ("gemma", "gemma2") else "ones"
    out = [("model.embed_tokens.weight", [V, C], "normal")]
    pshape = {"q_proj": [Hd, C], "k_proj": [KVd, C], "v_proj": [KVd, C], "o_proj": [C, Hd],
              "gate_proj": [F, C], "up_proj": [F, C], "down_proj": [C, F]}
    for l in range(s["layers"]):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", [C], norm))
        for j in PROJS:
            mod = "self_attn" if j in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            out.append((f"{p}{mod}.{j}.weight", pshape[j], "normal"))
            if s["arch"] == "qwen2" and j in ("q_proj", "k_proj", "v_proj"):
                out.append((f"{p}self_attn.{j}.bias", [pshape[j][0]], "zeros"))
        if s["arch"] == "qwen3":
            out.append((p + "self_attn.q_norm.weight", [s["head_dim"]], norm))
            out.append((p + "self_attn.k_norm.weight", [s["head_dim"]], norm))
        out.append((p + "post_attention_layernorm.weight", [C], norm))
        if s["arch"] == "gemma2":
            out.append((p + "pre_feedforward_layernorm.weight", [C], norm))
            out.append((p + "post_feedforward_layernorm.weight", [C], norm))
    out.append(("model.norm.weight", [C], norm))
    if not s["tie"]:
        out.append(("lm_head.weight", [V, C], "normal"))
    return out


def numel(shp):
    n = 1
    for d in shp:
        n *= d
    return n


def param_counts(s):
    """{'total': all stored parameters (tied lm_head once), 'matmul': N_base of the FLOP formula,
    'per_layer_proj': projection parameters of one layer}."""
    C, F, V = s["hidden"], s["inter"], s["vocab"]
    Hd, KVd = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    per_layer = C * Hd + 2 * C * KVd + Hd * C + 3 * C * F
    total = sum(numel(shp) for _, shp, _ in tensor_specs(s))
    return {"total": total, "matmul": s["layers"] * per_layer + V * C, "per_layer_proj": per_layer}


def flops_per_token(s, seq):
    """Useful FLOPs per trained token (see the module docstring)."""
    n = param_counts(s)["matmul"]
    attn = 6 * s["layers"] * seq * s["heads"] * s["head_dim"]
    return {"base": 4 * n, "attention": attn, "total": 4 * n + attn}


def lora_params(s, ranks):
    """Trainable LoRA parameters for q,k,v,o,gate,up,down at total rank sum(ranks)."""
    C, F = s["hidden"], s["inter"]
    Hd, KVd = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    io = (C + Hd) + 2 * (C + KVd) + (Hd + C) + 3 * (C + F)
    return s["layers"] * sum(ranks) * io
