#!/usr/bin/env python3
"""Measured bf16 matrix-multiply rate of the GPU: the MFU denominator of the benchmark.

usage: gemm_rate.py [N] [REPS]      (defaults 8192 10)

torch.matmul of two N x N bf16 matrices; 5 warm-up products, then REPS products each timed with CUDA events;
prints one JSON line {tflops (from the median time), median_s, min_s, n, reps, gpu, torch, cuda}.
"""
import json
import statistics
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    import torch
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device visible to torch", "torch": torch.__version__}), flush=True)
        return 1
    dev = torch.device("cuda")
    g = torch.Generator(device=dev)
    g.manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(5):
        torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        torch.matmul(a, b, out=c)
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    med = statistics.median(times)
    print(json.dumps({"tflops": round(2 * n**3 / med / 1e12, 1), "median_s": med, "min_s": min(times), "n": n,
                      "reps": reps, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cuda": torch.version.cuda}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
