#!/usr/bin/env bash
# CUDA parity tests on a GPU machine, one command (from the repository root):
#
#   bash bench/gpu/parity.sh [TEST_DIR] > parity.log
#
# Runs the CUDA test executables of a native build (TEST_DIR, default native/build/tests): kernels against their CPU
# references (test_cuda_kernels), cuBLASLt GEMMs and attention (test_cuda_gemm_attention), the whole model against
# the CPU backend on the tiny fixtures — logits, loss, gradients, a 20-step trajectory, dropout masks,
# checkpointing — and the real trainer with hardware.device cuda, incl. --resume (test_cuda_model), and the device
# selection (test_backend), and the NCCL backend: a world of one, two ranks refused on one GPU, 2 GPUs when
# present (test_cuda_dist). Each test states its tolerances in its header; doctest's MESSAGE lines carry the
# measured errors. Exit status: non-zero when any test fails. On a machine without a GPU the tests skip (pass).
set -uo pipefail
dir="${1:-native/build/tests}"
status=0
echo "# H-QLoRA CUDA parity, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
for t in test_backend test_cuda_kernels test_cuda_gemm_attention test_cuda_model test_cuda_dist; do
  echo "## $t"
  "$dir/$t" 2>&1 | grep -E "MESSAGE|skipped|ERROR|test cases|assertions|Status" | sed -E 's#^.*/native/tests/##'
  rc=${PIPESTATUS[0]}
  echo "exit $rc"
  [[ $rc -ne 0 ]] && status=1
done
exit $status
