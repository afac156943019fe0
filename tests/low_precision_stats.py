"""Measurements behind docs/low-precision.md: the registry in bfloat16 and float16.

    python tests/low_precision_stats.py --census --seeds 20 --examples 100
    python tests/low_precision_stats.py --sensitivity
    python tests/low_precision_stats.py --torch-testing

``--census``: every registry case and low precision, ``run_case`` with Hypothesis seeds 0..N-1 (random
draws, reproducible): disagreements (each a false alarm: the registry's references are correct), examples
compared and skipped (with the reasons), and the worst ratio.

``--sensitivity``: for every gradient of every case at the registry's fixed examples ("tiny" and "tutorial"),
the smallest factor in FACTORS that, applied to the reference's gradient, the torch comparison catches.

``--torch-testing``: per element, the allowed error over torch.testing.assert_close's default for the dtype
(atol 1e-5, rtol 1.6e-2 bfloat16 / 1e-3 float16), on the fixed tutorial examples and on 100 derandomized
Hypothesis draws per case; and how many comparisons of this correct code torch.testing's default would fail.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import agreement.run as run
from agreement.check import run_case
from agreement.precision import BFLOAT16, FLOAT16, name
from agreement.registry import cases

LOW = (BFLOAT16, FLOAT16)
FACTORS = (1.001, 1.002, 1.005, 1.01, 1.02, 1.05, 1.1, 1.2)
TORCH_TESTING = {"bfloat16": (1.6e-2, 1e-5), "float16": (1e-3, 1e-5)}  # torch/testing/_comparison.py


def census(seeds: int, examples: int) -> int:
    print(f"{'case':28} {'dtype':8} {'runs':>4} {'failed':>6} {'compared':>8} {'skipped':>7} {'worst':>6}  skips")
    failures = 0
    for case in cases():
        for dtype in LOW:
            start, failed, compared, skipped, worst = time.perf_counter(), 0, 0, Counter(), 0.0
            for seed in range(seeds):
                s = run_case(case, dtype, "cpu", examples, seed=seed)
                failed += not s.ok
                compared += s.examples
                skipped += s.skipped
                worst = max(worst, s.worst.ratio if s.worst else 0.0)
                if not s.ok:
                    print(f"  seed {seed}: {s.failure[:600]}")
            failures += failed
            reasons = "; ".join(f"{n}x {r}" for r, n in skipped.most_common(2))
            print(f"{case.name:28} {name(dtype):8} {seeds:4d} {failed:6d} {compared:8d} {sum(skipped.values()):7d} "
                  f"{worst:6.3g}  {reasons} ({time.perf_counter() - start:.0f}s)", flush=True)
    print(f"\n{failures} failed runs")
    return failures


def scaled_reference(case, param, factor):
    """The case's NumPy reference with ``param``'s gradient multiplied by ``factor``: a wrong one."""

    def reference(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, {**grads, param: grads[param] * factor}

    return reference


def sensitivity() -> None:
    largest = {name(d): 1.0 for d in LOW}
    for dtype in LOW:
        for case in cases():
            for size in [s for s in ("tiny", "tutorial") if s in case.sizes]:
                example = case.build(size, np.float32, 0)
                for param in example.params:
                    caught = next((f for f in FACTORS if f"grad {param}" in [
                        c.what for c in run.evaluate(case, example, dtype, reference=scaled_reference(case, param, f))
                        if not c.ok and c.device.startswith("torch")]), None)
                    print(f"{name(dtype):8} {case.name:28} {size:8} {param:4} smallest factor caught: {caught}")
                    largest[name(dtype)] = max(largest[name(dtype)], caught or np.inf)
    print("\nthe largest of the smallest factors caught, per dtype:", largest)


def _draws(case, dtype):
    """100 derandomized Hypothesis examples of ``case`` through evaluate (skips ignored)."""

    @settings(max_examples=100, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draws(data):
        try:
            run.evaluate(case, data.draw(case.inputs(dtype)), dtype)
        except run.Unresolvable:
            pass

    return draws


@contextlib.contextmanager
def torch_comparisons():
    """Every torch-side comparison ``run.evaluate`` makes inside the block, as
    (actual, expected, allowed error per element) in float64."""
    captured = []
    original = run.compare

    def capture(actual, expected, tol, **kw):
        if kw["device"].startswith("torch"):
            expected = np.asarray(expected, np.float64)
            captured.append((np.asarray(actual, np.float64), expected,
                             np.broadcast_to(tol.bound(expected), expected.shape)))
        return original(actual, expected, tol, **kw)

    run.compare = capture
    try:
        yield captured
    finally:
        run.compare = original


def torch_testing() -> None:
    with torch_comparisons() as captured:
        for kind in ("activation", "loss", "model"):
            for dtype in LOW:
                rtol, atol = TORCH_TESTING[name(dtype)]
                for source in ("tutorial", "drawn"):
                    captured.clear()
                    for case in cases(kind):
                        if source == "tutorial":
                            run.evaluate(case, case.build("tutorial", np.float32, 0), dtype)
                            continue

                        _draws(case, dtype)()
                    ratios = np.concatenate([(allowed / (atol + rtol * np.abs(e))).ravel()
                                             for _, e, allowed in captured])
                    would_fail = sum(bool(np.any(np.abs(a - e) > atol + rtol * np.abs(e))) for a, e, _ in captured)
                    print(f"{kind:10} {name(dtype):8} {source:8} {ratios.size:7d} elements: allowed / torch.testing's "
                          f"median {np.median(ratios):.2g}, 90th percentile {np.percentile(ratios, 90):.2g}, max "
                          f"{ratios.max():.3g}; below it on {np.mean(ratios < 1):.1%}; torch.testing's default "
                          f"fails {would_fail} of {len(captured)} comparisons of this correct code")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--census", action="store_true")
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--torch-testing", action="store_true")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"numpy {np.__version__}, torch {torch.__version__}")
    failed = 0
    with threadpool_limits(limits=1):
        if args.census:
            failed = census(args.seeds, args.examples)
        if args.sensitivity:
            sensitivity()
        if args.torch_testing:
            torch_testing()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
