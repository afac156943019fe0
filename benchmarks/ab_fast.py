"""Two versions of reference/fast.py, timed in alternation, each beside its own floor.

    git show REV:reference/fast.py > /tmp/fast_old.py   # REV: the commit to compare with
    python -m benchmarks.ab_fast /tmp/fast_old.py [reference/fast.py] [--size tutorial] [--rounds 1500]

On a machine shared with other work, two benchmark runs minutes apart see
different load, and a change of a few microseconds drowns in it. Here every
round times one step of each version and one call of that version's floor (the
matrix products its step performs, alone, benchmarks/floor.py), back to back,
so all four see the same moments; the minimum and the median of each are
printed, and each version's floor fraction. The step is the benchmark's (forward, backward, the
SGD update with the optimizer table's defaults; the untimed restore before
each call), one BLAS thread.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from agreement.registry import CASES, cases
from benchmarks import bodies, floor
from benchmarks.settings import DTYPES


def _load(path: Path, name: str):
    loader = importlib.machinery.SourceFileLoader(name, str(path))  # any file name, .py or not
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(versions: dict, case_names, size: str, rounds: int) -> list[str]:
    lines = []
    for name in case_names:
        case = CASES[name]
        for dtype in DTYPES:
            example = case.build(size, dtype, 0)
            steps = {label: bodies.numpy_fast(case, example, "step", module) for label, module in versions.items()}
            products = {label: floor.numpy_products(case, example, module) for label, module in versions.items()}
            work = {label: floor.flops(calls) for label, calls in products.items()}
            if len(set(work.values())) > 1:  # e.g. a version that folds biases without naming its folds
                lines.append(f"{name} {size} {np.dtype(dtype).name}: the versions' floors are different "
                             f"products ({work} FLOPs): their fractions are not comparable")
            floors = {label: floor.numpy_run(calls) for label, calls in products.items()}
            times = {label: {"step": [], "floor": []} for label in steps}
            for _ in range(rounds):
                for label, body in steps.items():
                    body.reset()
                    start = time.perf_counter()
                    body.run()
                    times[label]["step"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    floors[label]()
                    times[label]["floor"].append(time.perf_counter() - start)
            cells = []
            for label in steps:
                (best, median), (floor_min, floor_median) = ((min(t), statistics.median(t))
                                                             for t in times[label].values())
                cells.append(f"{label} step {best * 1e6:.0f}/{median * 1e6:.0f} us, floor "
                             f"{floor_min * 1e6:.0f}/{floor_median * 1e6:.0f} us "
                             f"({floor_min / best:.1%}/{floor_median / median:.1%} of floor)")
            lines.append(f"{name} {size} {np.dtype(dtype).name}: " + "; ".join(cells))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=Path("reference/fast.py"))
    parser.add_argument("--size", default="tutorial")
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--cases", nargs="+", default=["two_layer_regression", "two_layer_classifier"])
    args = parser.parse_args(argv)
    cases()
    versions = {"old": _load(args.old, "fast_old"), "new": _load(args.new, "fast_new")}
    print("min/median per call; one BLAS thread")
    with threadpool_limits(limits=1, user_api="blas"):
        for line in compare(versions, args.cases, args.size, args.rounds):
            print(line, flush=True)


if __name__ == "__main__":
    main()
