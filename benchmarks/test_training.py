"""Every registry case timed: NumPy vs torch CPU vs torch CUDA, per size and dtype.

Phases: "step" (forward, backward, SGD update) for trainable cases,
"fwd_bwd" (forward and backward only) for every case, and "h2d" (the data
batch copied to the GPU) for trainable cases on CUDA. Backends: "numpy" (the
fast path of reference/fast.py where the case has one, else the registry's
reference), "numpy-readable" (the registry's reference and pure optimizer
update, shown beside the fast path), "torch-cpu", "torch-cuda".
"""

from __future__ import annotations

import numpy as np
import pytest

from agreement.optimizers import OPTIMIZERS
from agreement.registry import cases
from benchmarks import bodies, flops
from benchmarks.clocks import cuda_synchronized_clock
from benchmarks.measure import measure
from benchmarks.settings import DTYPES, OPTIMIZER, cuda_available, cuda_skip_reason

_CUDA_MARKS = [pytest.mark.cuda, pytest.mark.benchmark(timer=cuda_synchronized_clock),
               pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())]


def _backends(case, phase):
    if phase == "h2d":
        return ["torch-cuda"]
    readable = ["numpy-readable"] if phase == "step" and bodies.has_fast_path(case) else []
    return ["numpy", *readable, "torch-cpu", "torch-cuda"]


def _grid():
    for case in cases():
        phases = ("step", "fwd_bwd", "h2d") if case.trainable else ("fwd_bwd",)
        for phase in phases:
            for size in case.sizes:  # what the case builds
                for dtype in DTYPES:
                    for backend in _backends(case, phase):
                        marks = _CUDA_MARKS if backend == "torch-cuda" else []
                        yield pytest.param(case, phase, size, dtype, backend, marks=marks,
                                           id=f"{case.name}-{phase}-{size}-{np.dtype(dtype).name}-{backend}")


def _body(case, example, phase, backend):
    if phase == "h2d":
        return bodies.host_to_device_body(example, "cuda")
    if backend.startswith("numpy"):
        return bodies.numpy_body(case, example, phase, readable=backend == "numpy-readable")
    return bodies.torch_body(case, example, phase, backend.removeprefix("torch-"))


@pytest.mark.parametrize("case, phase, size, dtype, backend", list(_grid()))
def test_benchmark(benchmark, request, case, phase, size, dtype, backend):
    example = case.build(size, dtype, 0)
    body = _body(case, example, phase, backend)
    device = "cuda" if backend == "torch-cuda" else "cpu"
    # Counting FLOPs imports torch._dynamo (seconds, once): done for timed runs only;
    # benchmarks/test_harness.py checks the count.
    work = None if benchmark.disabled else 0 if phase == "h2d" else flops.call_flops(
        case, example, phase, OPTIMIZERS[OPTIMIZER].defaults)
    info = measure(benchmark, request.config, body, case=case.name, backend=backend, size=size, dtype=dtype,
                   phase=phase, device=device, flops=work, n_bytes=flops.call_bytes(example, phase))
    # the saved record describes this benchmark, and claims a rate only for what was timed
    assert {k: info[k] for k in ("case", "backend", "size", "dtype", "phase", "device", "flops")} == dict(
        case=case.name, backend=backend, size=size, dtype=np.dtype(dtype).name, phase=phase, device=device,
        flops=work)
    if benchmark.disabled:
        assert info["median_s"] is None and info["gflops"] is None and info["peak_fraction"] is None
    else:
        assert info["median_s"] == benchmark.stats.stats.median > 0
        assert info["gflops"] == pytest.approx(work / info["median_s"] / 1e9)
        assert info["peak_fraction"] == pytest.approx(info["gflops"] / info["peak_gflops"])
