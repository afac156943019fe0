"""The registry under the measured error model and under the hand-derived term scales, side by side.

    python tests/registry_tolerance_stats.py [--examples 100] [--dtypes float64 float32]

For every registry case and dtype, over the same derandomized Hypothesis examples:
the worst error/tolerance ratio under each model, and how the tolerance itself
moved (new bound / old bound, element by element: the largest factor, the median, the
99th percentile and the share of elements whose bound grew more than 10x), over
the elements the old model gave more than its underflow floor; "floored" counts
the others (an exact 0 expected with a term scale of 0, as where the upstream
gradient is 0), where any positive bound is an astronomical factor over ~1e-306.
The largest factors left come from elements one side computes as an exact
absorption (sigmoid'(40) = 0), which fall back to the inputs' magnitude.
The old model is the analytic policy with the case's term scales
(agreement/scales.py), as single evaluations used it before the measured model.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from agreement.registry import cases
from agreement.run import TORCH_DTYPES, evaluate, term_scales
from agreement.tolerance import tolerance
from torch_impl import train


def old_bounds(case, example, dtype, exp_loss, exp_grads) -> dict:
    n = case.reduction_length(example)
    scales = term_scales(case, example)
    out = {"loss": tolerance(case.tolerance, dtype, n, np.asarray(exp_loss),
                             case.loss_condition(example) if case.loss_condition else 1.0,
                             scales.get("loss", 0.0)).bound(np.asarray(exp_loss))}
    for k, g in exp_grads.items():
        out[f"grad {k}"] = tolerance(case.tolerance, dtype, n, g, term_scale=scales.get(k, 0.0)).bound(g)
    return out


def study(case, dtype, examples: int) -> dict:
    stats = dict(new_worst=0.0, old_worst=0.0, growth=[], examples=0)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        example = data.draw(case.inputs(dtype)).astype(dtype)
        ex64 = example.astype(np.float64)
        exp_loss, exp_grads = case.reference(ex64.params, ex64.data, **ex64.hyper)
        t_loss, t_grads = train.loss_and_grads(case.twin, example.params, example.data, example.hyper, "cpu",
                                               TORCH_DTYPES[np.dtype(dtype)])
        actual = {"loss": t_loss, **{f"grad {k}": g for k, g in t_grads.items()}}
        expected = {"loss": exp_loss, **{f"grad {k}": g for k, g in exp_grads.items()}}
        old = old_bounds(case, ex64, dtype, exp_loss, exp_grads)
        for c in evaluate(case, example, dtype):
            if not c.device.startswith("torch") or c.what not in old:
                continue
            e = np.asarray(expected[c.what], np.float64)
            new = c.tol.bound(e)
            err = np.abs(np.asarray(actual[c.what], np.float64) - e)
            stats["new_worst"] = max(stats["new_worst"], float(np.max(err / new, initial=0.0)))
            stats["old_worst"] = max(stats["old_worst"], float(np.max(err / old[c.what], initial=0.0)))
            # elements the old model allowed only its underflow floor (k smallest_normal: an exact 0
            # expected with a term scale of 0, e.g. where the upstream gradient is 0) are left out: any
            # positive bound is an astronomical factor over ~1e-306 there
            resolved = old[c.what] > 1e3 * np.finfo(dtype).smallest_normal
            stats["growth"] += list(np.ravel((new / old[c.what])[resolved]))
            stats["floored"] = stats.get("floored", 0) + int(np.sum(~resolved))
        stats["examples"] += 1

    run()
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'case':30} {'dtype':8} {'ex':>4} {'old worst':>10} {'new worst':>10} {'max growth':>11} "
          f"{'median growth':>14} {'99% growth':>11} {'> 10x':>7} {'floored':>8}")
    with threadpool_limits(limits=1):
        for case in cases():
            for dtype in args.dtypes:
                s = study(case, np.dtype(dtype), args.examples)
                g = np.array(s["growth"])
                print(f"{case.name:30} {dtype:8} {s['examples']:4d} {s['old_worst']:10.3g} {s['new_worst']:10.3g} "
                      f"{np.max(g):11.3g} {np.median(g):14.3g} {np.quantile(g, 0.99):11.3g} {np.mean(g > 10):7.1%} "
                      f"{s.get('floored', 0):8d}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
