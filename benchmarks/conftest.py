"""Benchmark session: untimed by default, fixed threads, and the closing summary.

Plain ``pytest`` runs every benchmark body once, untimed, as a smoke test:
this hook turns on pytest-benchmark's ``--benchmark-disable`` unless the run
asks for timing with ``--benchmark-only`` or ``--benchmark-enable`` (or skips
benchmarks with ``--benchmark-skip``). The option cannot live in ``addopts``:
pytest-benchmark refuses ``--benchmark-disable`` together with
``--benchmark-only``. It runs before pytest-benchmark reads its options, since
its own ``pytest_configure`` is ``trylast`` and this file is an initial
conftest whenever benchmarks/ is collected from the command line or
``testpaths``.
"""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits

from agreement.run import tf32
from benchmarks import machine, summary
from benchmarks.measure import blas_kernels, finalize, measured_limits
from benchmarks.settings import TF32, THREADS
from benchmarks.sizes import BENCH_ONLY_SIZES

_TIMING_OPTIONS = ("benchmark_only", "benchmark_enable", "benchmark_skip")


def pytest_configure(config):
    if any(config.getoption(name, False) for name in _TIMING_OPTIONS):
        return
    config.option.benchmark_disable = True
    session = getattr(config, "_benchmarksession", None)
    if session is not None:  # loaded late (e.g. `pytest .`): pytest-benchmark has read its options already
        session.disabled = True


def pytest_collection_modifyitems(config, items):
    """Untimed runs skip the large and xl sizes: the code is the same as at the other
    sizes, and running it once costs seconds that a smoke test does not need."""
    if not config.option.benchmark_disable or config.option.benchmark_enable:
        return
    large = [item for item in items
             if getattr(item, "callspec", None) and item.callspec.params.get("size") in ("large", *BENCH_ONLY_SIZES)]
    if large:
        config.hook.pytest_deselected(items=large)
        items[:] = [item for item in items if item not in large]


@pytest.fixture(scope="session", autouse=True)
def fixed_threads():
    """NumPy's BLAS and torch's pool at THREADS each, and TF32 as BENCHMARK_TF32 says,
    for every benchmark; restored afterwards."""
    before = torch.get_num_threads()
    # set once for the session, before any CUDA product, capture or peak
    with threadpool_limits(limits=THREADS, user_api="blas"), tf32(TF32):
        torch.set_num_threads(THREADS)
        yield
    torch.set_num_threads(before)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["benchmark_threads"] = THREADS
    machine_info["blas"] = blas_kernels()
    machine_info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine_info["tf32"] = TF32
    machine_info.update(machine.description())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Before pytest-benchmark saves its JSON (its own wrapper runs inside this one)."""
    finalize()
    yield


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["measured_limits"] = measured_limits()


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter):
    if not summary.RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("NumPy vs torch: medians, ratios, fraction of the measured limit")
    about = machine.description()
    write(f"CPU: {about['cpu_model']}; GPU: {about['cuda_device'] or 'none'}")
    write(f"numpy {about['numpy']}: {about['numpy_blas']}; torch {about['torch']}: {about['torch_blas']}")
    write(f"threads: {THREADS} (NumPy BLAS and torch); TF32: {'on' if TF32 else 'off'}; "
          "limit: % of matmul peak (mm) or of copy bandwidth (bw); a step's % of its floor (fl), "
          "its own matrix products timed alone")
    for key, value in measured_limits().items():
        mm = value["matmul"]
        libs = ", ".join(f"{k} {v:.4g}" for k, v in mm.items() if k not in ("n", "peak"))
        write(f"  {key}: matmul peak {value['best_matmul_gflops']:.4g} GFLOP/s, best in the run "
              f"(at the start: {libs}; n={mm['n']}); copy {value['copy_gbytes_per_s']:.3g} GB/s")
    for line in summary.table(summary.RESULTS):
        write(line)
    terminalreporter.section("steps against their floor: the step's own matrix products timed alone")
    write("median step, median floor, floor/step (fastest rounds), and the step's fraction of the matmul peak")
    for line in summary.floor_table(summary.RESULTS):
        write(line)
    terminalreporter.section("performance targets (reported, not asserted)")
    for line in summary.targets(summary.RESULTS):
        write(line)
