#!/usr/bin/env python3
"""Write a random-init Hugging Face checkpoint of a benchmark shape (bf16 safetensors shards + index).

usage: make_checkpoint.py SHAPE OUT_DIR [--max-shard-bytes N] [--seed S] [--pure] [--force]

SHAPE: llama2-7b, gemma-2b, tinyllama-1.1b (or tiny-llama / tiny-gemma for a CPU smoke test); see shapes.py.
OUT_DIR gets config.json, model-0000k-of-0000n.safetensors (each <= 5 GB, BF16) and model.safetensors.index.json,
loadable by transformers' AutoModelForCausalLM.from_pretrained and by hqlora-train. Projection and embedding weights
are N(0, 0.02); RMSNorm weights are ones (LLaMA) or zeros (Gemma's 1 + w form).

With torch the tensors are drawn on the GPU (CPU when there is none) and written with safetensors' save_file; no
transformers model is instantiated. Without torch (or with --pure) a standard-library writer is used; it is meant for
the tiny shapes (pure Python draws about a million numbers per second).

An existing OUT_DIR whose .hqbench-complete marker matches (shape, seed, shard size) is reused as is; the folder is
built under OUT_DIR.tmp-<pid> and renamed when complete.
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys
import time
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402

MARKER = ".hqbench-complete"


def plan_shards(specs, max_bytes):
    """Greedy split of the tensors, in order, into shards of at most max_bytes (a larger tensor gets its own)."""
    shards, cur, cur_bytes = [], [], 0
    for name, shp, init in specs:
        b = 2 * shapes.numel(shp)
        if cur and cur_bytes + b > max_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shp, init))
        cur_bytes += b
    if cur:
        shards.append(cur)
    return shards


# ---- standard-library path ---------------------------------------------------------------------------------------

def bf16_bytes_pure(n, init, rng):
    if init == "ones":
        return struct.pack("<H", 0x3F80) * n
    if init == "zeros":
        return bytes(2 * n)
    f = array("f", (rng.gauss(0.0, 0.02) for _ in range(n)))
    u = array("I")
    u.frombytes(f.tobytes())
    # round to nearest even on the upper 16 bits (no NaN/Inf can occur here)
    h = array("H", (((x + 0x7FFF + ((x >> 16) & 1)) >> 16) & 0xFFFF for x in u))
    if sys.byteorder != "little":
        h.byteswap()
    return h.tobytes()


def write_safetensors_pure(path, tensors):
    """tensors: [(name, shape, raw_bf16_bytes)] -> a .safetensors file (8-byte LE header length, JSON, data)."""
    header, off = {}, 0
    for name, shp, raw in tensors:
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, raw in tensors:
            f.write(raw)


# ---- torch path ----------------------------------------------------------------------------------------------------

def make_shard_torch(torch, shard, dev, gen):
    out = {}
    for name, shp, init in shard:
        if init == "ones":
            t = torch.ones(shp, dtype=torch.bfloat16)
        elif init == "zeros":
            t = torch.zeros(shp, dtype=torch.bfloat16)
        else:
            t = torch.empty(shp, dtype=torch.float32 if dev.type == "cpu" else torch.bfloat16, device=dev)
            t.normal_(0.0, 0.02, generator=gen)
            t = t.to(torch.bfloat16).cpu()
        out[name] = t.contiguous()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shape")
    ap.add_argument("out_dir")
    ap.add_argument("--max-shard-bytes", type=int, default=5 * 10**9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pure", action="store_true", help="standard-library writer even when torch is present")
    ap.add_argument("--force", action="store_true", help="rewrite even when a complete folder exists")
    a = ap.parse_args()

    s = shapes.shape(a.shape)
    specs = shapes.tensor_specs(s)
    marker = {"shape": a.shape, "seed": a.seed, "max_shard_bytes": a.max_shard_bytes, "format": 1}
    out = os.path.abspath(a.out_dir)
    mpath = os.path.join(out, MARKER)
    if not a.force and os.path.exists(mpath):
        try:
            with open(mpath) as f:
                if json.load(f) == marker:
                    print(json.dumps({"shape": a.shape, "dir": out, "reused": True}), flush=True)
                    return 0
        except (OSError, ValueError):
            pass

    torch = None
    if not a.pure:
        try:
            import torch  # noqa: F401
        except ImportError:
            torch = None
    total_params = sum(shapes.numel(shp) for _, shp, _ in specs)
    if torch is None and total_params > 50_000_000:
        print(f"make_checkpoint: {a.shape} has {total_params/1e9:.2f} B parameters; the pure-Python writer is for "
              "the tiny shapes only (install torch)", file=sys.stderr)
        return 2

    t0 = time.time()
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shards = plan_shards(specs, a.max_shard_bytes)
    n = len(shards)
    weight_map, total_size = {}, 0
    if torch is not None:
        from safetensors.torch import save_file
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        gen = torch.Generator(device=dev)
        gen.manual_seed(a.seed)
    else:
        rng = random.Random(a.seed)
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{n:05d}.safetensors"
        path = os.path.join(tmp, fname)
        if torch is not None:
            tensors = make_shard_torch(torch, shard, dev, gen)
            save_file(tensors, path, metadata={"format": "pt"})
            del tensors
        else:
            write_safetensors_pure(path, [(nm, shp, bf16_bytes_pure(shapes.numel(shp), init, rng))
                                          for nm, shp, init in shard])
        for nm, shp, _ in shard:
            weight_map[nm] = fname
            total_size += 2 * shapes.numel(shp)
        print(f"make_checkpoint: {a.shape}: wrote {fname} ({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total_size}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(shapes.config_json(s), f, indent=2)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        cj = shapes.config_json(s)
        json.dump({"bos_token_id": cj["bos_token_id"], "eos_token_id": cj["eos_token_id"],
                   "pad_token_id": cj["pad_token_id"]}, f, indent=2)
    with open(os.path.join(tmp, MARKER), "w") as f:
        json.dump(marker, f)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(json.dumps({"shape": a.shape, "dir": out, "reused": False, "params": total_params, "bytes": total_size,
                      "shards": n, "seconds": round(time.time() - t0, 2),
                      "writer": "torch+safetensors" if torch is not None else "pure-python"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
