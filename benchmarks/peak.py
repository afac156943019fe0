"""The physical limits, measured in the same run with the same thread settings.

Matrix-product peak per device and dtype: the best rate of a square product,
n x n times n x n (2 n^3 FLOPs), by every library that runs on the device and
computes in the dtype (NumPy's BLAS and torch on the CPU, torch alone for
bfloat16; torch on CUDA), in each of the four operand layouts (each operand
plain or a transposed view, which BLAS reads with its transpose flag): a
library's kernels need not be equally fast in all four, and a step uses several
(on this AVX2 CPU torch's bfloat16 products run at 20 GFLOP/s with the first
operand transposed, 10 with the second, 1.4 with neither). It is measured at
the start (``REPEATS`` products per library and layout) and probed again beside
every timed benchmark (one product by that benchmark's library, in the layout
that was fastest at the start); the device's peak is the
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

from agreement.precision import numpy_computes_in
from benchmarks.clocks import clock_for
from benchmarks.settings import dtype_name, torch_dtype

# Sizes for timed runs; a smoke run measures tiny ones so the code still runs.
# bfloat16 on a CPU without bfloat16 instructions: a 1024 product in the slowest
# layout takes 2 s (AVX2 here); at 256 the fastest layout runs as fast as at 1024.
MATMUL_N = {"cpu": 1024, "cuda": 8192}
LOW_PRECISION_CPU_N = 256
LAYOUTS = ("NN", "NT", "TN", "TT")  # first and second operand: plain (N) or a transposed view (T)
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


_fastest_layout: dict = {}  # (library, device, dtype name) -> layout, from the start's measurement


@cache
def _operands(library: str, device: str, dtype: str, n: int) -> tuple:
    """Two n x n operands and an output, shared by the four layouts (views of them)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)) for _ in range(2))
    if library == "numpy":
        return a.astype(dtype), b.astype(dtype), np.empty((n, n), dtype)
    a, b = (torch.as_tensor(x, device=device).to(torch_dtype(dtype)) for x in (a, b))
    return a, b, torch.empty((n, n), dtype=a.dtype, device=device)


@cache
def _product(library: str, device: str, dtype: str, n: int, layout: str):
    """A zero-argument call computing one n x n product into a preallocated output, its
    operands laid out as ``layout`` says ("TN": the first a transposed view)."""
    a, b, out = _operands(library, device, dtype, n)
    a, b = (x.T if flag == "T" else x for x, flag in zip((a, b), layout, strict=True))
    if library == "numpy":
        return lambda: np.matmul(a, b, out=out)
    return lambda: torch.matmul(a, b, out=out)


def libraries(device: str, dtype=np.float32) -> tuple:
    """The libraries that compute in ``dtype`` on ``device``."""
    return ("numpy", "torch") if device == "cpu" and numpy_computes_in(dtype) else ("torch",)


def size(device: str, dtype, smoke: bool = False) -> int:
    if smoke:
        return SMOKE_N
    return MATMUL_N[device] if device == "cuda" or numpy_computes_in(dtype) else LOW_PRECISION_CPU_N


def matmul_rate(library: str, device: str, dtype, smoke: bool = False, repeats: int = REPEATS) -> float:
    """GFLOP/s of the best of ``repeats`` square products (after one warm-up), in each
    layout the first time, then in the layout that was fastest then."""
    n, key = size(device, dtype, smoke), (library, device, dtype_name(dtype))
    layouts = (_fastest_layout[key],) if key in _fastest_layout else LAYOUTS
    seconds = {layout: _best_seconds(_product(library, device, key[2], n, layout), clock_for(device),
                                     1 if smoke else repeats) for layout in layouts}
    fastest = min(seconds, key=seconds.get)
    if not smoke:
        _fastest_layout.setdefault(key, fastest)
    return 2 * n**3 / seconds[fastest] / 1e9


def matmul_peak(device: str, dtype, smoke: bool = False) -> dict:
    """GFLOP/s per library and the device's peak (their best)."""
    rates = {lib: matmul_rate(lib, device, dtype, smoke) for lib in libraries(device, dtype)}
    return {"n": size(device, dtype, smoke), **rates, "peak": max(rates.values())}


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
