"""Every registry case timed: NumPy vs torch CPU vs torch CUDA, per size and dtype.

Phases: "step" (forward, backward, SGD update) for trainable cases,
"fwd_bwd" (forward and backward only) for every case, and "h2d" (the data
batch copied to the GPU) for trainable cases on CUDA. Backends: "numpy" (the
fast path of reference/fast.py where the case has one, else the registry's
reference), "numpy-readable" (the registry's reference and pure optimizer
update, shown beside the fast path), "torch-cpu", "torch-cuda", and for steps
"torch-cuda-graph" (the same step captured as one CUDA graph).

Sizes: each case's own (``Case.sizes``), and for the two-layer steps the GPU
tier ``xl`` (benchmarks/sizes.py), timed on CUDA only. Every step is timed
beside its floor, the matrix products it performs timed alone
(benchmarks/floor.py).

Dtypes: float32 and float64 everywhere; bfloat16 for the steps of torch's
backends (NumPy has none), on the CPU at tiny and tutorial only
(benchmarks/settings.py).
"""

from __future__ import annotations

import pytest

from agreement.optimizers import OPTIMIZERS
from agreement.precision import emulated
from agreement.registry import cases
from benchmarks import bodies, floor, flops, sizes
from benchmarks.clocks import cuda_synchronized_clock
from benchmarks.measure import measure
from benchmarks.settings import (
    DTYPES,
    LOW_PRECISION_CPU_SIZES,
    LOW_PRECISION_CPU_SKIP,
    LOW_PRECISION_DTYPES,
    OPTIMIZER,
    cuda_available,
    cuda_skip_reason,
    dtype_name,
    itemsize,
)

_CUDA_MARKS = [pytest.mark.cuda, pytest.mark.benchmark(timer=cuda_synchronized_clock),
               pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())]
_CUDA_BACKENDS = ("torch-cuda", "torch-cuda-graph")


def _backends(case, phase):
    if phase == "h2d":
        return ["torch-cuda"]
    readable = ["numpy-readable"] if phase == "step" and bodies.has_fast_path(case) else []
    graph = ["torch-cuda-graph"] if phase == "step" else []
    return ["numpy", *readable, "torch-cpu", "torch-cuda", *graph]


def _low_precision_backends(phase):
    return ["torch-cpu", "torch-cuda", "torch-cuda-graph"] if phase == "step" else []


def _marks(backend, size, dtype):
    if size in sizes.BENCH_ONLY_SIZES and backend not in sizes.XL_BACKENDS:
        return [pytest.mark.skip(reason=sizes.XL_SKIP_REASON)]
    if emulated(dtype) and backend == "torch-cpu" and size not in LOW_PRECISION_CPU_SIZES:
        return [pytest.mark.skip(reason=LOW_PRECISION_CPU_SKIP)]
    return _CUDA_MARKS if backend in _CUDA_BACKENDS else []


def _grid():
    for case in cases():
        phases = ("step", "fwd_bwd", "h2d") if case.trainable else ("fwd_bwd",)
        for phase in phases:
            tiers = ("xl",) if phase == "step" and case.name in sizes.XL_CASES else ()
            for size in (*case.sizes, *tiers):  # what the case builds, then the GPU tier
                for dtype in (*DTYPES, *LOW_PRECISION_DTYPES):
                    low = emulated(dtype)
                    for backend in _low_precision_backends(phase) if low else _backends(case, phase):
                        if size in sizes.BENCH_ONLY_SIZES and backend == "numpy-readable":
                            continue
                        yield pytest.param(case, phase, size, dtype, backend, marks=_marks(backend, size, dtype),
                                           id=f"{case.name}-{phase}-{size}-{dtype_name(dtype)}-{backend}")


def _body(case, example, phase, backend, dtype):
    if phase == "h2d":
        return bodies.host_to_device_body(example, "cuda", dtype)
    if backend.startswith("numpy"):
        return bodies.numpy_body(case, example, phase, readable=backend == "numpy-readable")
    if backend == "torch-cuda-graph":
        return bodies.torch_graph_body(case, example, dtype)
    return bodies.torch_body(case, example, phase, backend.removeprefix("torch-"), dtype)


def _floor(case, example, size, dtype, backend):
    """The step's products timed alone by the backend's own library (numpy-readable: NumPy's),
    recorded on operands of their own (benchmarks/floor.py)."""
    of = "numpy" if backend.startswith("numpy") else backend
    if of == "numpy":
        calls = floor.numpy_products(case, example)
        make_run = lambda: floor.numpy_run(calls)  # noqa: E731
    else:
        calls = floor.torch_products(case, example)
        make_run = lambda: floor.torch_run(calls, dtype, "cpu" if of == "torch-cpu" else "cuda",  # noqa: E731
                                           graphed=of == "torch-cuda-graph")
    return (of, case.name, size, dtype_name(dtype)), make_run, floor.flops(calls), len(calls)


_last_example: dict = {}


def _example(case, size, dtype):
    """The example at (case, size, dtype), built once for the backends timed on it in a row
    (the grid's innermost loop; an xl example takes seconds to build). No body writes into
    it: the modules, fast models and optimizers copy the parameters."""
    key = (case.name, size, dtype_name(dtype))
    if key not in _last_example:
        _last_example.clear()
        _last_example[key] = sizes.build(case, size, dtype, 0)
    return _last_example[key]


@pytest.mark.parametrize("case, phase, size, dtype, backend", list(_grid()))
def test_benchmark(benchmark, request, case, phase, size, dtype, backend):
    example = _example(case, size, dtype)
    body = _body(case, example, phase, backend, dtype)
    device = "cuda" if backend in _CUDA_BACKENDS or phase == "h2d" else "cpu"
    # Counting FLOPs imports torch._dynamo (seconds, once): done for timed runs only;
    # benchmarks/test_harness.py checks the count.
    matmul = None if benchmark.disabled or phase == "h2d" else flops.matmul_flops(case, example)
    work = None if benchmark.disabled else 0 if phase == "h2d" else flops.call_flops(
        case, example, phase, OPTIMIZERS[OPTIMIZER].defaults, matmul)
    step_floor = _floor(case, example, size, dtype, backend) if phase == "step" else None
    info = measure(benchmark, request.config, body, case=case.name, backend=backend, size=size, dtype=dtype,
                   phase=phase, device=device, flops=work, n_bytes=flops.call_bytes(example, phase, itemsize(dtype)),
                   floor=step_floor)
    # the saved record describes this benchmark, and claims a rate only for what was timed
    assert {k: info[k] for k in ("case", "backend", "size", "dtype", "phase", "device", "flops")} == dict(
        case=case.name, backend=backend, size=size, dtype=dtype_name(dtype), phase=phase, device=device,
        flops=work)
    if benchmark.disabled:
        assert info["median_s"] is None and info["gflops"] is None and info["peak_fraction"] is None
        assert info["floor_fraction"] is None
    else:
        assert info["median_s"] == benchmark.stats.stats.median > 0
        assert info["gflops"] == pytest.approx(work / info["median_s"] / 1e9)
        assert info["peak_fraction"] == pytest.approx(info["gflops"] / info["peak_gflops"])
        if step_floor is not None:
            # the floor is the step's own products: their FLOPs are the step's matrix-product FLOPs
            assert info["floor_flops"] == matmul
            assert info["floor_fraction"] == pytest.approx(info["floor_s"] / info["median_s"])
