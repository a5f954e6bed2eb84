#!/usr/bin/env python3
"""Write random token rows as an .hqtok token file (docs/CONTRACTS.md §3), standard library only.

usage: make_tokens.py OUT.hqtok --vocab V --rows R --seq S [--seed N] [--pad-id P] [--eos-id E] [--bos-id B]

Every row has exactly S tokens, ids uniform in [0, V), and every loss-mask byte is 1 (full loss: the trainer's labels
are the ids, so the workload equals a causal LM trained on all tokens, as in the PEFT peer: labels = input_ids).

Layout (little-endian): magic 48 51 54 4F 4B 00 00 01 | u32 version 1 | u32 H | H bytes of header JSON padded with
0x20 to a multiple of 8 | u64 x (R+1) example offsets (0, S, 2S, ..., R*S) | u32 x R*S ids | u8 x R*S mask | zero
padding to a multiple of 8 (the file ends there).
"""
import argparse
import json
import os
import random
import struct
import sys
from array import array

MAGIC = b"HQTOK\x00\x00\x01"


def encode(rows, vocab, bos_id, eos_id, pad_id, created_by="bench/gpu/make_tokens.py"):
    n_ex = len(rows)
    n_tok = sum(len(r) for r in rows)
    header = {"format": "hqtok", "version": 1, "n_examples": n_ex, "n_tokens": n_tok, "vocab_size": vocab,
              "bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id, "tokenizer_sha256": "",
              "source": {"files": [], "format": "random"}, "created_by": created_by}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    out = bytearray(MAGIC)
    out += struct.pack("<II", 1, len(hj))
    out += hj
    out += b" " * ((8 - len(out) % 8) % 8)
    offs = array("Q", [0])
    for r in rows:
        offs.append(offs[-1] + len(r))
    ids = array("I")
    for r in rows:
        ids.extend(r)
    if sys.byteorder != "little":
        offs.byteswap()
        ids.byteswap()
    assert offs.itemsize == 8 and ids.itemsize == 4
    out += offs.tobytes()
    out += ids.tobytes()
    out += b"\x01" * n_tok
    out += b"\x00" * ((8 - len(out) % 8) % 8)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bos-id", type=int, default=1)
    ap.add_argument("--eos-id", type=int, default=2)
    ap.add_argument("--pad-id", type=int, default=0)
    a = ap.parse_args()
    if a.vocab < 1 or a.rows < 1 or a.seq < 2:
        ap.error("need --vocab >= 1, --rows >= 1, --seq >= 2")
    for k in ("bos_id", "eos_id", "pad_id"):
        if not 0 <= getattr(a, k) < a.vocab:
            ap.error(f"--{k.replace('_', '-')} must be in [0, vocab)")
    rng = random.Random(a.seed)
    rows = [[rng.randrange(a.vocab) for _ in range(a.seq)] for _ in range(a.rows)]
    data = encode(rows, a.vocab, a.bos_id, a.eos_id, a.pad_id)
    tmp = f"{a.out}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.out)
    print(json.dumps({"file": os.path.abspath(a.out), "rows": a.rows, "seq": a.seq, "vocab": a.vocab,
                      "bytes": len(data)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
