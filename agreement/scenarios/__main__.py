"""``python -m agreement.scenarios``: the tutorials' training runs, NumPy by hand against
torch as the tutorial writes it, every step judged (agreement/scenarios/judge.py).

Prints one row per scenario part, torch form, dtype and device: steps, the final
loss of each side, the worst error/tolerance ratio over the judged steps (NumPy
in that dtype and the torch form, each against the float64 reference), the
comparable horizon, and the wall time of each side. Exits 1 on a disagreement.

Threads: torch's intra-op pool and NumPy's BLAS (threadpoolctl) are held to one
thread each, as in the test suite: the runs alternate NumPy and torch step by
step, and two pools competing for the cores cost more than they gain.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from agreement.run import tf32
from agreement.scenarios.catalog import SCENARIOS, run_part

DTYPES = {"float32": np.float32, "float64": np.float64}


def _select(names: list[str] | None) -> list:
    """Scenarios by full name or by number ("4" for 4-two-layer)."""
    if not names:
        return list(SCENARIOS.values())
    chosen = []
    for name in names:
        matches = [s for s in SCENARIOS.values() if s.name == name or s.name.split("-")[0] == name]
        if not matches:
            raise SystemExit(f"--scenario: unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        chosen += [s for s in matches if s not in chosen]
    return chosen


def _devices(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(devices to run, notes). cuda is skipped with a note when absent, unless asked for by name."""
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if not requested:
        return available, [] if "cuda" in available else ["cuda: skipped, no CUDA device"]
    for device in requested:
        if device not in ("cpu", "cuda"):
            raise SystemExit(f"--device: expected cpu or cuda, got {device!r}")
        if device not in available:
            raise SystemExit(f"--device {device}: no CUDA device is available here")
    return list(dict.fromkeys(requested)), []


def _row(cells, widths):
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


HEADER = ("scenario", "torch form", "dtype", "device", "steps", "final loss numpy", "final loss torch",
          "worst err/tol", "horizon", "numpy s", "torch s", "judge s", "verdict", "notes")
WIDTHS = (11, 44, 7, 6, 5, 16, 16, 13, 8, 7, 7, 7, 7, 0)


def rows(result) -> list[tuple]:
    """Table rows of one part's result."""
    j, part = result.judgement, result.part
    numpy_sides = {s.dtype: s for s in j.sides if s.label == "numpy"}
    judge_seconds = sum(v for k, v in j.seconds.items() if k != "numpy")
    out = []
    for side in j.sides:
        if side.label == "numpy":
            continue
        numpy = numpy_sides[side.dtype]
        numpy_seconds = numpy.seconds if side.dtype != "float64" else j.seconds["reference"]
        ratio = max(side.worst_ratio, numpy.worst_ratio)
        horizon = j.horizon[side.dtype]
        notes = []
        if part.metric:
            notes.append(f"{part.metric_name} numpy {part.metric(numpy.final):.3f} "
                         f"torch {part.metric(side.final):.3f}")
        for name, curve in side.evaluations.items():  # scenario 2's validation loss, judged after each epoch
            notes.append(f"{name} loss after step {curve[-1][0]}: numpy {numpy.evaluations[name][-1][1]:.8g} "
                         f"torch {curve[-1][1]:.8g}")
        verdict = "ok" if side.ok and numpy.ok else "FAIL"
        if not side.ok:
            notes.append(f"first diverges at step {side.first_failing_step}")
        out.append((part.name, side.label, side.dtype, side.device, j.steps, f"{numpy.losses[-1]:.8g}",
                    f"{side.losses[-1]:.8g}", f"{ratio:.3g}", "all" if horizon == j.steps else str(horizon),
                    f"{numpy_seconds:.2f}", f"{side.seconds:.2f}", f"{judge_seconds:.2f}", verdict,
                    "; ".join(notes)))
    return out


def cost_line(result) -> str:
    """The judge's seconds by part, and the rounding model's (probe, term scales, perturbed
    runs) against the float64 reference run and against each torch run (mean over forms)."""
    j = result.judgement
    sec = j.seconds
    model = sec["probe"] + sec["scales"] + sec["perturbed"]
    torch_runs = [s.seconds for s in j.sides if s.label != "numpy"]
    mean_torch = sum(torch_runs) / len(torch_runs) if torch_runs else float("nan")
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in sec.items())
    return (f"  scenario {result.part.name} judge: {parts}; rounding model {model:.2f} s = "
            f"{model / sec['reference']:.1f}x the float64 reference run, {model / mean_torch:.1f}x a torch run "
            f"({mean_torch:.2f} s); whole judge (model + reference + comparisons) "
            f"{(model + sec['reference'] + sec['compare']) / mean_torch:.1f}x a torch run")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agreement.scenarios", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario (name or number; repeatable)")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="cpu or cuda (repeatable; default: every available device)")
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES),
                        help="float32 or float64 (repeatable; default: both)")
    parser.add_argument("--short", action="store_true", help="the short versions the default test suite runs")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA (off by default)")
    parser.add_argument("--curves", action="store_true", help="print the per-epoch loss curves")
    parser.add_argument("--cost", action="store_true", help="print the judge's cost against the runs' own")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:22} {s.title}" + (f" [{s.notes}]" if s.notes else ""))
        return 0
    scenarios = _select(args.scenario)
    devices, notes = _devices(args.device)
    dtypes = [DTYPES[d] for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    # torch's first optimizer step loads lazily imported modules (about 2 s): done here,
    # so that it is not counted as the first scenario's torch time
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0).step()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    failures = []
    try:
        with threadpool_limits(limits=1), tf32(args.tf32):
            print(_row(HEADER, WIDTHS))
            for scenario in scenarios:
                for part in scenario.build(args.short):
                    result = run_part(part, dtypes, devices)
                    for row in rows(result):
                        print(_row(row, WIDTHS), flush=True)
                    for dtype, reason in result.judgement.horizon_reason.items():
                        if reason:
                            print(f"  scenario {part.name} {dtype}: comparable up to step "
                                  f"{result.judgement.horizon[dtype]} of {result.judgement.steps}: {reason}")
                    if args.curves:
                        for (label, dtype, device), curve in result.epochs.items():
                            print(f"  scenario {part.name} {label} {dtype} {device} per-epoch mean loss: "
                                  + " ".join(f"{v:.6g}" for v in curve))
                        for side in result.judgement.sides:
                            for name, points in side.evaluations.items():
                                print(f"  scenario {part.name} {side.label} {side.dtype} {side.device} {name} loss "
                                      "after each epoch: " + " ".join(f"{v:.6g}" for _, v in points))
                    if args.cost:
                        print(cost_line(result))
                    if not result.judgement.ok:
                        failures.append(result.judgement.report())
    finally:
        torch.set_num_threads(threads)
    for note in notes:
        print(note)
    for report in failures:
        print(report)
    print(f"total {time.perf_counter() - started:.1f} s; {'DISAGREEMENT' if failures else 'all agree'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
