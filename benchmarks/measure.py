"""Run one Body under pytest-benchmark and state what was measured beside it.

Each round is one call, preceded by the body's untimed ``reset``; the number of
rounds is chosen from untimed estimate calls so that the timed calls take about
``--benchmark-max-time`` (at least ``--benchmark-min-rounds``, at most
``MAX_ROUNDS``), after ``WARMUP_ROUNDS`` more untimed rounds.
When benchmarks are disabled (plain ``pytest``) the body runs once, untimed.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from threadpoolctl import threadpool_info

from benchmarks import peak, summary
from benchmarks.clocks import clock_for
from benchmarks.settings import THREADS, apply_tf32

WARMUP_ROUNDS = 1  # after the estimate's calls, which warm up too
ESTIMATE_CALLS = 3
SLOW_CALL_S = 0.01  # one call this long is estimate enough
MAX_ROUNDS = 20_000

_limits: dict = {}


def limits(device: str, dtype, smoke: bool) -> dict:
    """Measured once per session, device, dtype (and mode): matmul peak, copy bandwidth."""
    key = (device, np.dtype(dtype).name, smoke)
    if key not in _limits:
        if device == "cuda":
            apply_tf32()
        _limits[key] = {"matmul": peak.matmul_peak(device, dtype, smoke),
                        "copy_gbytes_per_s": peak.copy_bandwidth(device, smoke)}
    return _limits[key]


def measured_limits() -> dict:
    return {f"{device}/{dtype}": value for (device, dtype, smoke), value in _limits.items() if not smoke}


def blas_kernels() -> list:
    return [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
            for lib in threadpool_info()]


def _rounds(body, clock, config) -> int:
    times = []
    while len(times) < ESTIMATE_CALLS and not (times and times[0] >= SLOW_CALL_S):
        if body.reset:
            body.reset()
        start = clock()
        body.run()
        times.append(clock() - start)
    max_time = float(config.getoption("benchmark_max_time"))
    wanted = math.ceil(max_time / max(statistics.median(times), 1e-9))
    return min(max(wanted, config.getoption("benchmark_min_rounds")), MAX_ROUNDS)


def measure(benchmark, config, body, *, case, backend, size, dtype, phase, device, flops, n_bytes):
    dtype_name = np.dtype(dtype).name
    benchmark.group = f"{case} | {phase} | {size} | {dtype_name}"
    info = dict(case=case, backend=backend, size=size, dtype=dtype_name, phase=phase, device=device,
                flops=flops, bytes=n_bytes, threads=THREADS, torch_threads=torch.get_num_threads())
    if device == "cuda":
        info.update(apply_tf32())
    smoke = benchmark.disabled
    limit = limits(device, dtype, smoke)
    if smoke:
        benchmark.pedantic(body.run, setup=body.reset, rounds=1)
        median = None
    else:
        rounds = _rounds(body, clock_for(device), config)
        benchmark.pedantic(body.run, setup=body.reset, rounds=rounds, warmup_rounds=WARMUP_ROUNDS)
        median = benchmark.stats.stats.median
    info.update(_rates(median, flops, n_bytes, limit, phase))
    benchmark.extra_info.update(info)
    if median is not None:
        summary.record({**info, "median_s": median})
    return info


def _rates(median, flops, n_bytes, limit, phase) -> dict:
    peak_gflops = limit["matmul"]["peak"]
    out = {"median_s": median, "peak_gflops": peak_gflops, "gflops": None, "peak_fraction": None,
           "gbytes_per_s": None, "peak_gbytes_per_s": None if phase == "h2d" else limit["copy_gbytes_per_s"],
           "bandwidth_fraction": None}
    if median and flops is not None:
        out["gflops"] = flops / median / 1e9
        out["peak_fraction"] = out["gflops"] / peak_gflops
        out["gbytes_per_s"] = n_bytes / median / 1e9
        if out["peak_gbytes_per_s"]:
            out["bandwidth_fraction"] = out["gbytes_per_s"] / out["peak_gbytes_per_s"]
    return out
