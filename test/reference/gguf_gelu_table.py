#!/usr/bin/env python3
# gguf_gelu_table.py — why the Gemma-2/3 f32 GGUF bound is 3e-3 (extension/gguf/verify.ts F32_POST_NORM_GELU_BOUND).
# llama.cpp's CPU GELU reads a table of f16 values at the f16-rounded input (ggml-cpu vec.h GGML_GELU_FP16). This is
# a float64 numpy forward of a Gemma-2 / Gemma-3 fixture (base weights, the verification's 3 x 16 ids of
# export_verify.cpp verify_ids) with exact tanh-GELU and with that table emulated, printing the max and mean
# |Δ log-prob| between the two. Usage: python3 test/reference/gguf_gelu_table.py test/fixtures/models/tiny-gemma2
# Measured (numpy 2.4): gemma2 max 8.9e-4 mean 1.30e-4, gemma3 max 9.4e-4 mean 1.55e-4; llama.cpp's base GGUF
# against our forward measures max 8.1e-4 / 1.17e-3, mean 1.33e-4 / 1.64e-4. The exact forward matches our native
# one (ggufReferenceLogits base original, no adapter) to 1.6e-6 / 1.9e-6. Only numpy is needed.
import json, struct, sys
import numpy as np
fx = sys.argv[1]
b = open(f'{fx}/model.safetensors', 'rb').read()
n = struct.unpack('<Q', b[:8])[0]; hdr = json.loads(b[8:8 + n]); base = 8 + n
def t(name):
    e = hdr[name]; raw = b[base + e['data_offsets'][0]: base + e['data_offsets'][1]]
    if e['dtype'] == 'BF16':
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64).reshape(e['shape'])
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64).reshape(e['shape'])
cfg = json.load(open(f'{fx}/config.json'))
g3 = cfg['model_type'] == 'gemma3_text'
C, L, H, KV, d = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['head_dim']
V, eps, W = cfg['vocab_size'], cfg['rms_norm_eps'], cfg['sliding_window']
qpas = cfg['query_pre_attn_scalar']; acap = cfg.get('attn_logit_softcapping'); fcap = cfg.get('final_logit_softcapping')
if g3: sliding = [lt == 'sliding_attention' for lt in cfg['layer_types']]
else: sliding = [l % 2 == 0 for l in range(L)]
def ids():
    x = 0x9E3779B97F4A7C15; M = (1 << 64) - 1; out = []
    for i in range(3 * 16):
        x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M; out.append(x % V)
    for r in range(3): out[r * 16] = cfg['bos_token_id']
    return np.array(out).reshape(3, 16)
def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * (1 + w)
def gelu(x): return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
def gelu_table(x):
    xf = x.astype(np.float16).astype(np.float32)
    y = gelu(xf.astype(np.float32)).astype(np.float32).astype(np.float16).astype(np.float64)
    return np.where(x <= -10, 0.0, np.where(x >= 10, x, y))
def rope(x, theta, factor, T):
    inv = 1.0 / (theta ** (np.arange(0, d, 2) / d)) / factor
    ang = np.arange(T)[:, None] * inv[None, :]; cos = np.cos(np.concatenate([ang, ang], -1)); sin = np.sin(np.concatenate([ang, ang], -1))
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return x * cos + np.concatenate([-x2, x1], -1) * sin
def forward(act):
    out = []
    for row in ids():
        T = len(row); h = t('model.embed_tokens.weight')[row] * np.sqrt(C)
        for l in range(L):
            p = f'model.layers.{l}.'
            x = rms(h, t(p + 'input_layernorm.weight'))
            q = (x @ t(p + 'self_attn.q_proj.weight').T).reshape(T, H, d).transpose(1, 0, 2)
            k = (x @ t(p + 'self_attn.k_proj.weight').T).reshape(T, KV, d).transpose(1, 0, 2)
            v = (x @ t(p + 'self_attn.v_proj.weight').T).reshape(T, KV, d).transpose(1, 0, 2)
            if g3:
                q = rms(q, t(p + 'self_attn.q_norm.weight')); k = rms(k, t(p + 'self_attn.k_norm.weight'))
                theta, fac = (cfg['rope_local_base_freq'], 1.0) if sliding[l] else (cfg['rope_theta'], cfg['rope_scaling']['factor'])
            else:
                theta, fac = cfg['rope_theta'], 1.0
            q = rope(q, theta, fac, T); k = rope(k, theta, fac, T)
            k = np.repeat(k, H // KV, 0); v = np.repeat(v, H // KV, 0)
            s = q @ k.transpose(0, 2, 1) * qpas ** -0.5
            if acap: s = np.tanh(s / acap) * acap
            i, j = np.arange(T)[:, None], np.arange(T)[None, :]
            vis = (j <= i) & ((i - j < W) if sliding[l] else True)
            s = np.where(vis, s, -np.inf); s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(T, H * d) @ t(p + 'self_attn.o_proj.weight').T
            h = h + rms(o, t(p + 'post_attention_layernorm.weight'))
            x = rms(h, t(p + 'pre_feedforward_layernorm.weight'))
            m = (act(x @ t(p + 'mlp.gate_proj.weight').T) * (x @ t(p + 'mlp.up_proj.weight').T)) @ t(p + 'mlp.down_proj.weight').T
            h = h + rms(m, t(p + 'post_feedforward_layernorm.weight'))
        z = rms(h, t('model.norm.weight')) @ t('model.embed_tokens.weight').T
        if fcap: z = np.tanh(z / fcap) * fcap
        out.append(z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True))
    return np.stack(out)
ex, tb = forward(gelu), forward(gelu_table)
print(fx.split('/')[-1], 'max |Δ log-prob| exact vs f16-table GELU:', f'{np.abs(ex - tb).max():.3e}', 'mean', f'{np.abs(ex - tb).mean():.3e}')
