"""Run one Body under pytest-benchmark and state what was measured beside it.

Each round is one call, preceded by the body's untimed ``reset``; the number of
rounds is chosen from untimed estimate calls so that the timed calls take about
``--benchmark-max-time`` (at least ``--benchmark-min-rounds``, at most
``MAX_ROUNDS``), after ``WARMUP_ROUNDS`` more untimed rounds.
When benchmarks are disabled (plain ``pytest``) the body runs once, untimed.

Limits (benchmarks/peak.py) are measured at the first benchmark of each device
and dtype and the matmul peak is probed again after every timed benchmark;
``finalize()`` (at the end of the session) judges every result against the
best peak seen in the run, in the saved JSON and in the summary alike.

A step's floor (benchmarks/floor.py) is timed right after the step, in as many
rounds as fit in ``FLOOR_MAX_TIME`` (at least ``--benchmark-min-rounds``), once
per library, case, size and dtype (numpy-readable shares NumPy's).
"""

from __future__ import annotations

import math
import statistics

import torch

from agreement.environment import blas_libraries as blas_kernels  # noqa: F401 (benchmarks/conftest.py imports it from here)
from agreement.run import tf32_state
from benchmarks import machine, peak, summary
from benchmarks.bodies import Body
from benchmarks.clocks import clock_for
from benchmarks.settings import THREADS, dtype_name

WARMUP_ROUNDS = 1  # after the estimate's calls, which warm up too
ESTIMATE_CALLS = 3
SLOW_CALL_S = 0.01  # one call this long is estimate enough
MAX_ROUNDS = 20_000
FLOOR_MAX_TIME = 0.25  # seconds of timed floor calls per step: half a benchmark's, to keep the run short

_limits: dict = {}  # (device, dtype name, smoke) -> limits measured at the start
_best_peak: dict = {}  # (device, dtype name) -> best matmul GFLOP/s seen in the run
_floors: dict = {}  # (floor library, case, size, dtype name) -> floor timing


def limits(device: str, dtype, smoke: bool) -> dict:
    """Measured once per session, device, dtype (and mode): matmul peak, copy bandwidth."""
    key = (device, dtype_name(dtype), smoke)
    if key not in _limits:
        _limits[key] = {"matmul": peak.matmul_peak(device, dtype, smoke),
                        "copy_gbytes_per_s": peak.copy_bandwidth(device, smoke)}
        if not smoke:
            _note_peak(device, dtype, _limits[key]["matmul"]["peak"])
    return _limits[key]


def _note_peak(device, dtype, gflops):
    key = (device, dtype_name(dtype))
    _best_peak[key] = max(_best_peak.get(key, 0.0), gflops)


def measured_limits() -> dict:
    return {f"{device}/{dtype}": {**value, "best_matmul_gflops": _best_peak.get((device, dtype))}
            for (device, dtype, smoke), value in _limits.items() if not smoke}


def _rounds(body, clock, config, max_time=None) -> int:
    times = []
    while len(times) < ESTIMATE_CALLS and not (times and times[0] >= SLOW_CALL_S):
        if body.reset:
            body.reset()
        start = clock()
        body.run()
        times.append(clock() - start)
    max_time = float(config.getoption("benchmark_max_time")) if max_time is None else max_time
    wanted = math.ceil(max_time / max(statistics.median(times), 1e-9))
    return min(max(wanted, config.getoption("benchmark_min_rounds")), MAX_ROUNDS)


def floor_timing(key, make_run, clock, config, smoke: bool) -> dict:
    """Median and fastest of the floor's calls (``make_run()`` builds them), once per ``key``.
    A smoke run makes one untimed call, so the floor's code runs in plain ``pytest`` too."""
    if smoke:
        make_run()()
        return {"floor_s": None, "floor_min_s": None}
    if key not in _floors:
        run = make_run()
        rounds = _rounds(Body(run), clock, config, FLOOR_MAX_TIME)
        for _ in range(WARMUP_ROUNDS):
            run()
        times = []
        for _ in range(rounds):
            start = clock()
            run()
            times.append(clock() - start)
        _floors[key] = {"floor_s": statistics.median(times), "floor_min_s": min(times), "floor_rounds": rounds}
    return _floors[key]


def measure(benchmark, config, body, *, case, backend, size, dtype, phase, device, flops, n_bytes, floor=None):
    """``floor``: (key, make_run, floor FLOPs, number of products) for a step, else None."""
    benchmark.group = f"{case} | {phase} | {size} | {dtype_name(dtype)}"
    info = benchmark.extra_info
    info.update(case=case, backend=backend, size=size, dtype=dtype_name(dtype), phase=phase, device=device,
                flops=flops, bytes=n_bytes, threads=THREADS, torch_threads=torch.get_num_threads(),
                blas=machine.backend_blas(backend), cpu_model=machine.cpu_model())
    if device == "cuda":
        info.update(tf32_state())
    smoke = benchmark.disabled
    limit = limits(device, dtype, smoke)
    info.update(peak_gflops_at_start=limit["matmul"]["peak"], median_s=None, min_s=None,
                peak_gbytes_per_s=None if phase == "h2d" else limit["copy_gbytes_per_s"])
    clock = clock_for(device)
    if smoke:
        benchmark.pedantic(body.run, setup=body.reset, rounds=1)
    else:
        rounds = _rounds(body, clock, config)
        benchmark.pedantic(body.run, setup=body.reset, rounds=rounds, warmup_rounds=WARMUP_ROUNDS)
        info["median_s"] = benchmark.stats.stats.median
        info["min_s"] = benchmark.stats.stats.min
        library = "numpy" if backend.startswith("numpy") else "torch"
        _note_peak(device, dtype, peak.matmul_rate(library, device, dtype, repeats=1))
        summary.record(info)
    if floor is not None:
        key, make_run, floor_flops, n_products = floor
        info.update(floor_timing(key, make_run, clock, config, smoke), floor_flops=floor_flops,
                    floor_products=n_products, floor_of=key[0])
    _rates(info)
    return info


def _rates(info: dict) -> None:
    """Achieved rates and fractions of the limits, from the best peak seen so far."""
    median, flops = info["median_s"], info["flops"]
    best = _best_peak.get((info["device"], info["dtype"]), info["peak_gflops_at_start"])
    info.update(peak_gflops=best, gflops=None, peak_fraction=None, peak_fraction_best_round=None,
                gbytes_per_s=None, bandwidth_fraction=None, floor_fraction=None, floor_fraction_best_round=None)
    if median and flops is not None:
        info["gflops"] = flops / median / 1e9
        info["peak_fraction"] = info["gflops"] / best
        # The fastest round: on a shared machine, the closest to the uncontended cost.
        info["peak_fraction_best_round"] = flops / info["min_s"] / 1e9 / best
        info["gbytes_per_s"] = info["bytes"] / median / 1e9
        if info["peak_gbytes_per_s"]:
            info["bandwidth_fraction"] = info["gbytes_per_s"] / info["peak_gbytes_per_s"]
    if median and info.get("floor_s"):
        info["floor_fraction"] = info["floor_s"] / median
        info["floor_fraction_best_round"] = info["floor_min_s"] / info["min_s"]


def finalize() -> None:
    """Judge every timed result against the best peak of the whole run."""
    for info in summary.RESULTS:
        _rates(info)
