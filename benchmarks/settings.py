"""Run settings every benchmark states in its results: CPU threads, TF32, optimizer.

Threads: NumPy's BLAS (OpenBLAS, pthreads) and torch's intra-op pool (OpenMP,
MKL) are both fixed to ``BENCHMARK_THREADS`` (default 1). The benchmarks
alternate the two libraries in one process; two spinning pools on a 2-core
machine shared with other work cost more than the second core gains, and a
single thread makes results repeatable and fair (both sides get the same
cores). Set ``BENCHMARK_THREADS=2`` (or more) on a quiet machine.

TF32: off for both matmul and cuDNN unless ``BENCHMARK_TF32=1``, so float32 on
CUDA means float32 arithmetic, like the CPU (torch's defaults differ between the
two flags: matmul off, cuDNN on).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from agreement.precision import BFLOAT16
from agreement.precision import name as dtype_name  # noqa: F401  ("bfloat16" too, which np.dtype lacks)
from agreement.run import torch_dtype

THREADS = int(os.environ.get("BENCHMARK_THREADS", "1"))
TF32 = os.environ.get("BENCHMARK_TF32", "0") == "1"

# One optimizer is timed: SGD with the table's defaults (momentum, Nesterov,
# weight decay), the one the NumPy fast path implements.
OPTIMIZER = "sgd"

DTYPES = (np.float32, np.float64)
# Below float32, torch only (NumPy has no bfloat16: agreement/precision.py), steps
# only: what a user training in bfloat16 on a GPU runs. On the CPU only the sizes a
# CPU without bfloat16 matrix instructions finishes quickly (this AVX2 one runs a
# 1024^3 bfloat16 product at about 1 GFLOP/s, float32 at about 90, and the large
# step in 1.1 s against 0.14 s in float32).
LOW_PRECISION_DTYPES = (BFLOAT16,)
LOW_PRECISION_CPU_SIZES = ("tiny", "tutorial")
LOW_PRECISION_CPU_SKIP = ("bfloat16 on the CPU is timed at tiny and tutorial only: without bfloat16 matrix "
                          "instructions (AVX512-BF16, AMX) a large step takes about a second")


def itemsize(dtype) -> int:
    """Bytes per element torch stores the precision in (bfloat16: 2, not its float32 storage here)."""
    return torch_dtype(dtype).itemsize


def cuda_available() -> bool:
    return torch.cuda.is_available()


def cuda_skip_reason() -> str:
    if torch.version.cuda is None:
        return f"torch-cuda skipped: this torch {torch.__version__} is a CPU-only build (no CUDA)"
    return "torch-cuda skipped: torch has CUDA support but no CUDA device is visible"
