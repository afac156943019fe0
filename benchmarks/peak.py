"""The physical limits, measured in the same run with the same thread settings.

Matrix-product peak per device and dtype: the best rate of a square product,
n x n times n x n (2 n^3 FLOPs), by every library that runs on the device
(NumPy's BLAS and torch on the CPU; torch on CUDA). It is measured at the start
(``REPEATS`` products per library) and probed again beside every timed
benchmark (one product by that benchmark's library); the device's peak is the
best rate seen in the whole run, so a result is judged against what the
machine could do at its best moment, not at whatever moment the first
measurement happened to catch on a shared machine. Memory bandwidth: the best
rate of copying an array far larger than the caches on the device (bytes
read + bytes written).
"""

from __future__ import annotations

import time
from functools import cache

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


@cache
def _product(library: str, device: str, dtype_name: str, n: int):
    """A zero-argument call computing one n x n product into a preallocated output."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype_name) for _ in range(2))
    if library == "numpy":
        out = np.empty((n, n), dtype_name)
        return lambda: np.matmul(a, b, out=out)
    ta, tb = (torch.as_tensor(x, device=device, dtype=TORCH_DTYPES[np.dtype(dtype_name)]) for x in (a, b))
    tout = torch.empty_like(ta)
    return lambda: torch.matmul(ta, tb, out=tout)


def libraries(device: str) -> tuple:
    return ("numpy", "torch") if device == "cpu" else ("torch",)


def matmul_rate(library: str, device: str, dtype, smoke: bool = False, repeats: int = REPEATS) -> float:
    """GFLOP/s of the best of ``repeats`` square products (after one warm-up)."""
    n = SMOKE_N if smoke else MATMUL_N[device]
    seconds = _best_seconds(_product(library, device, np.dtype(dtype).name, n), clock_for(device),
                            1 if smoke else repeats)
    return 2 * n**3 / seconds / 1e9


def matmul_peak(device: str, dtype, smoke: bool = False) -> dict:
    """GFLOP/s per library and the device's peak (their best)."""
    rates = {lib: matmul_rate(lib, device, dtype, smoke) for lib in libraries(device)}
    return {"n": SMOKE_N if smoke else MATMUL_N[device], **rates, "peak": max(rates.values())}


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
