"""False-alarm census of the user-layer corpus (tests/user_layers.py) under check_gradients' default settings.

    python tests/corpus_stats.py --seeds 20 --examples 100
    python tests/corpus_stats.py --seeds 3 --examples 30 --layers tanh,layer_norm --dtypes float32
    python tests/corpus_stats.py --seeds 20 --examples 100 --dtypes bfloat16,float16

Every correct layer runs ``check_gradients`` once per seed and dtype with ``derandomize=False`` and Hypothesis's
random generator seeded (its ``seed=`` argument where it has one, else ``seeded``), so a census repeats exactly;
each failure of a correct layer is a false alarm. Every buggy twin runs on the same seeds and must fail each time.
Prints a table layer x dtype: runs, false alarms, the worst error/tolerance ratio seen, and how often the buggy
twin was caught.

Shrinking is switched off (``without_shrinking``) where check_gradients lets the loaded profile decide its
phases: the census needs the verdict and the ratio, not a minimal example, and shrinking a failure costs tens to
hundreds of evaluations. The ratio of a failed run is the one its report prints for the first (or shrunk) failing
example, read from the AssertionError's text, since check_gradients returns no summary when it raises; a passing
run's is the worst over all its examples.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from hypothesis import Phase, settings
from hypothesis import core as hypothesis_core

from agreement import check_gradients, precision

_RATIO = re.compile(r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?|inf|nan)\s*x\b", re.IGNORECASE)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed Hypothesis's generator for every test run inside, as ``pytest --hypothesis-seed=SEED`` does.

    ``check_gradients`` has no ``seed=`` argument and builds its @given test internally, where Hypothesis's
    ``@seed`` decorator cannot reach; with ``derandomize=False`` Hypothesis draws from ``global_force_seed`` when
    it is set (hypothesis/core.py, get_random_for_wrapped_test), which is what its pytest plugin sets.
    """
    if not hasattr(hypothesis_core, "global_force_seed"):
        raise RuntimeError("this Hypothesis has no core.global_force_seed: seeding needs another mechanism")
    previous = hypothesis_core.global_force_seed
    hypothesis_core.global_force_seed = seed
    try:
        yield
    finally:
        hypothesis_core.global_force_seed = previous


@contextlib.contextmanager
def without_shrinking():
    """Hypothesis's current profile minus the shrink phase. check_gradients passes its own settings for
    examples, derandomize, database and health checks; ``phases`` it inherits from the loaded profile."""
    current = settings.get_current_profile_name()
    settings.register_profile("user-corpus-no-shrink", parent=settings.get_profile(current),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("user-corpus-no-shrink")
    try:
        yield
    finally:
        settings.load_profile(current)


def failure_ratio(message: str) -> float:
    """The largest "<ratio>x" in a failure report (nan when the report names none, e.g. a shape mismatch)."""
    values = [float(m) for m in _RATIO.findall(message)]
    return max(values) if values else math.nan


@dataclass
class Run:
    ok: bool
    ratio: float
    message: str = ""


# check_gradients(seed=N) where the harness has it; otherwise Hypothesis's forced seed (``seeded``)
_HAS_SEED_ARGUMENT = "seed" in inspect.signature(check_gradients).parameters


def run_once(numpy_fn, layer, dtype, seed: int, examples: int) -> Run:
    """One check_gradients run of ``numpy_fn`` against the layer's torch twin, one dtype, one seed."""
    seeding = {"seed": seed} if _HAS_SEED_ARGUMENT else {}
    with contextlib.nullcontext() if _HAS_SEED_ARGUMENT else seeded(seed):
        try:
            summaries = check_gradients(numpy_fn, layer.torch_fn, layer.inputs, dtypes=(dtype,),
                                        max_examples=examples, derandomize=False, **seeding)
        except AssertionError as error:
            message = "\n".join([str(error), *getattr(error, "__notes__", [])])
            return Run(False, failure_ratio(message), message)
    return Run(True, max((s.worst.ratio for s in summaries if s.worst is not None), default=0.0))


@dataclass
class Census:
    layer: str
    dtype: str
    runs: int = 0
    false_alarms: int = 0
    worst: float = 0.0
    failing_seeds: list = field(default_factory=list)
    first_failure: str = ""
    buggy_runs: int = 0
    caught: int = 0
    seconds: float = 0.0

    def add(self, seed: int, run: Run) -> None:
        self.runs += 1
        self.worst = max(self.worst, run.ratio) if not math.isnan(run.ratio) else math.inf
        if not run.ok:
            self.false_alarms += 1
            self.failing_seeds.append(seed)
            self.first_failure = self.first_failure or run.message


def census(layers, seeds, examples: int, dtypes=(np.float64, np.float32), buggy: bool = True,
           progress=None) -> list[Census]:
    rows = []
    with without_shrinking():
        for layer in layers:
            for dtype in dtypes:
                row = Census(layer.name, precision.name(dtype))
                start = time.perf_counter()
                for seed in seeds:
                    row.add(seed, run_once(layer.numpy_fn, layer, dtype, seed, examples))
                    if buggy:
                        row.buggy_runs += 1
                        row.caught += not run_once(layer.buggy, layer, dtype, seed, examples).ok
                row.seconds = time.perf_counter() - start
                rows.append(row)
                if progress:
                    progress(row)
    return rows


def format_ratio(ratio: float) -> str:
    return f"{ratio:.3g}" if math.isfinite(ratio) and ratio < 1e6 else f"{ratio:.2e}"


HEADER = f"{'layer':18s} {'dtype':8s} {'runs':>5s} {'false alarms':>12s} {'worst ratio':>12s} {'buggy caught':>12s} " \
         f"{'time':>7s}"


def format_row(row: Census) -> str:
    caught = f"{row.caught}/{row.buggy_runs}" if row.buggy_runs else "-"
    return (f"{row.layer:18s} {row.dtype:8s} {row.runs:5d} {row.false_alarms:12d} {format_ratio(row.worst):>12s} "
            f"{caught:>12s} {row.seconds:6.1f}s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of Hypothesis seeds (0, 1, ... seeds-1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=100, help="examples per check_gradients run")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--no-buggy", action="store_true", help="skip the buggy twins")
    parser.add_argument("--show-failures", action="store_true", help="print each layer's first false alarm")
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits
    from user_layers import BY_NAME, LAYERS

    # one thread each, as the test suite (conftest.py): at these sizes two pools fighting over the cores cost more
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    layers = [BY_NAME[name] for name in args.layers.split(",")] if args.layers else LAYERS
    dtypes = [precision.resolve(d) for d in args.dtypes.split(",")]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"{len(layers)} layers x {len(dtypes)} dtypes x {args.seeds} seeds x {args.examples} examples, "
          f"check_gradients defaults, derandomize=False, seeded by "
          f"{'check_gradients(seed=)' if _HAS_SEED_ARGUMENT else 'hypothesis.core.global_force_seed'}\n")
    print(HEADER)
    start = time.perf_counter()
    rows = census(layers, seeds, args.examples, dtypes, buggy=not args.no_buggy,
                  progress=lambda row: print(format_row(row), flush=True))
    runs, alarms = sum(r.runs for r in rows), sum(r.false_alarms for r in rows)
    layers_alarmed = sorted({r.layer for r in rows if r.false_alarms})
    print(f"\nfalse alarms: {alarms} of {runs} runs; layers with any: {len(layers_alarmed)} of {len(layers)}"
          + (f" ({', '.join(layers_alarmed)})" if layers_alarmed else ""))
    if not args.no_buggy:
        missed = [f"{r.layer}/{r.dtype} ({r.buggy_runs - r.caught} missed)" for r in rows if r.caught < r.buggy_runs]
        print(f"buggy twins caught: {sum(r.caught for r in rows)} of {sum(r.buggy_runs for r in rows)} runs"
              + (f"; missed: {', '.join(missed)}" if missed else ""))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.show_failures:
        for row in rows:
            if row.first_failure:
                print(f"\n=== {row.layer} {row.dtype}: seeds {row.failing_seeds}\n{row.first_failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
