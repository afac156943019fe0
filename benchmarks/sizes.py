"""Sizes the benchmarks time beyond the registry's.

The registry's sizes (``Case.sizes``: tiny, tutorial, large) are what the
report, the tests and every backend use. ``xl`` exists only here: the GPU tier,
where the two-layer step is compute-bound on a GPU (at the large size a CUDA
step is a few hundred microseconds of kernels behind a millisecond of launches).
Only torch-cuda times it: a NumPy or torch-cpu step there is seconds (about
0.65 TFLOP per step), so those entries are skipped with that reason.
"""

from __future__ import annotations

import contextlib

import numpy as np

from agreement.cases import common
from agreement.precision import emulated

# N, then layer widths: about 0.65 TFLOP per step (forward + backward products).
XL = dict(N=4096, D_in=8192, H=4096, D_out=1024)
BENCH_ONLY_SIZES = {"xl": XL}
XL_CASES = ("two_layer_regression", "two_layer_classifier")
XL_BACKENDS = ("torch-cuda", "torch-cuda-graph")
XL_SKIP_REASON = ("xl is the GPU tier: a step there is about 0.65 TFLOP, seconds for NumPy or torch on "
                  "the CPU; timed for torch-cuda only")


@contextlib.contextmanager
def _registered(size: str):
    """The case builders read ``MODEL_SIZES[size]`` when called: the size is in that
    table only while one example is built, so nothing that iterates the registry's
    sizes ever sees it."""
    table = common.MODEL_SIZES
    table[size] = BENCH_ONLY_SIZES[size]
    try:
        yield
    finally:
        del table[size]


def build(case, size: str, dtype, seed: int = 0):
    """The case's example at ``size``, with the case's own builder. A precision NumPy has
    no dtype for (bfloat16) is built in float32 and rounded to it, as the tests do."""
    if emulated(dtype):
        return build(case, size, np.float32, seed).astype(dtype)
    if size not in BENCH_ONLY_SIZES:
        return case.build(size, dtype, seed)
    with _registered(size):
        return case.build(size, dtype, seed)
