"""The physical limits, measured in the same run with the same thread settings.

Matrix-product peak per device and dtype: the best rate of a square product,
n x n times n x n (2 n^3 FLOPs), over a few repeats, by every library that
runs on the device (NumPy's BLAS and torch on the CPU; torch on CUDA); the
device's peak is the best of them. Memory bandwidth: the best rate of copying
an array far larger than the caches on the device (bytes read + bytes written).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.clocks import clock_for
from benchmarks.settings import TORCH_DTYPES

# Sizes for timed runs; a smoke run measures tiny ones so the code still runs.
MATMUL_N = {"cpu": 1024, "cuda": 8192}
SMOKE_N = 64
COPY_BYTES = 256 * 2**20
REPEATS = 10


def _best_seconds(fn, clock, repeats):
    fn()  # warm-up: first-call allocation and library initialisation stay out
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def matmul_peak(device: str, dtype, smoke: bool = False) -> dict:
    """GFLOP/s per library and the device's peak (their best)."""
    n = SMOKE_N if smoke else MATMUL_N[device]
    repeats = 1 if smoke else REPEATS
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    flops = 2 * n**3
    rates = {}
    if device == "cpu":
        out = np.empty((n, n), dtype)
        rates["numpy"] = flops / _best_seconds(lambda: np.matmul(a, b, out=out), time.perf_counter, repeats) / 1e9
    ta, tb = (torch.as_tensor(x, device=device, dtype=TORCH_DTYPES[np.dtype(dtype)]) for x in (a, b))
    tout = torch.empty_like(ta)
    rates["torch"] = flops / _best_seconds(lambda: torch.matmul(ta, tb, out=tout), clock_for(device), repeats) / 1e9
    return {"n": n, **rates, "peak": max(rates.values())}


def copy_bandwidth(device: str, smoke: bool = False) -> float:
    """Memory bandwidth of ``device`` in GB/s: an array copy, bytes read + written."""
    n_bytes = 2**20 if smoke else COPY_BYTES
    repeats = 1 if smoke else REPEATS
    if device == "cpu":
        src = np.ones(n_bytes // 8)
        dst = np.empty_like(src)
        seconds = _best_seconds(lambda: np.copyto(dst, src), time.perf_counter, repeats)
    else:
        src = torch.ones(n_bytes // 8, dtype=torch.float64, device=device)
        dst = torch.empty_like(src)
        seconds = _best_seconds(lambda: dst.copy_(src), clock_for(device), repeats)
    return 2 * n_bytes / seconds / 1e9
