#!/usr/bin/env bash
# H-QLoRA GPU benchmark, one command (run from anywhere; it works from the repository root):
#
#   OUT=/some/dir bash bench/gpu/run.sh
#
# Builds nothing: uses native/build/bin/hqlora-train (or $HQ_TRAIN). Measures the bf16 GEMM rate, writes random-init
# LLaMA-2-7B and Gemma-2B shaped checkpoints into /tmp/hqbench/ckpt (reused when present), then for gradient
# checkpointing off and on runs hqlora-train (ranks 64 and 32,8,8,8,8, NF4 base, device cuda) and the PyTorch+PEFT
# peer (same ranks, bf16 base) on the same checkpoints, micro-batch 4 x 512 tokens, 3 warm-up + 10 timed steps, and
# prints a Markdown table (step s, tokens/s, peak GiB, MFU, ratio to PEFT rank 64) and the goal lines of issue 7.
# With OUT set, $OUT/bench.json, $OUT/bench.md and $OUT/logs.tar.gz are written. Everything is explained, with every
# environment variable (SHAPES, CKPTS, RANKS, STEPS, WARMUP, MB, SEQ, DEVICE, BUDGET_S, ...), in bench.py's header.
#
# Python: $PYTHON, else /opt/torch/.venv/bin/python3 when it exists, else python3 (torch, transformers, peft and
# safetensors are needed for the GEMM rate, the checkpoints of the large shapes and the peer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /opt/torch/.venv/bin/python3 ]]; then PYTHON=/opt/torch/.venv/bin/python3; else PYTHON=python3; fi
fi
export PYTHON
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$here/bench.py" "$@"
