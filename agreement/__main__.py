"""``python -m agreement``: the agreement check over every registered case,
printed as a table case x dtype x device with the worst error and its tolerance.
Rows: float64 and float32, then the low precisions bfloat16 and float16 (and TF32
on CUDA), with the examples each could not resolve counted as skipped."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from agreement.check import run_case
from agreement.precision import LOW_PRECISIONS, TF32, name
from agreement.registry import cases
from agreement.run import devices
from agreement.strategies import DTYPES

DESCRIPTION = ("The agreement check over every registered case: Hypothesis examples through the NumPy "
               "reference and torch autograd, printed as a table of case, dtype and device with the worst "
               "error and its tolerance.")


def program_name(argv0: str) -> str:
    """How the user started it: ``python -m agreement`` runs this file as __main__.py,
    the ``gradient-agreement`` script (pyproject's [project.scripts]) under its own name."""
    name = os.path.basename(argv0)
    return "python -m agreement" if name in ("__main__.py", "") else name


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:  # Hypothesis needs at least one example
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=program_name(sys.argv[0]), description=DESCRIPTION)
    parser.add_argument("--examples", type=_positive, default=30,
                        help="Hypothesis examples per case, dtype and device (default 30)")
    parser.add_argument("--cases", default="*", help="glob over case names, e.g. 'two_layer*'")
    parser.add_argument("--random", action="store_true", help="fresh random examples instead of the derandomized set")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE",
                        choices=[name(d) for d in (*DTYPES, *LOW_PRECISIONS)],
                        help="only these precisions (default: all; tf32 needs CUDA)")
    args = parser.parse_args(argv)

    # Small problems, NumPy and torch alternating: one thread each (see conftest.py).
    torch.set_num_threads(1)
    selected = [c for c in cases() if fnmatch.fnmatch(c.name, args.cases)]
    if not selected:
        parser.error(f"no case matches {args.cases!r}")
    print(f"numpy {np.__version__}, torch {torch.__version__}; {args.examples} examples per row; "
          "ratio = worst |error| / tolerance (must be <= 1)")
    header = (f"{'case':30} {'dtype':8} {'device':6} {'ex':>4} {'skip':>4} {'worst ratio':>11} {'abs err':>10} "
              f"{'tol':>10}  where")
    print(header)
    print("-" * len(header))
    failures, skipped, start = [], [], time.perf_counter()
    with threadpool_limits(limits=1):
        for case in selected:
            for dtype in (*DTYPES, *LOW_PRECISIONS):
                if args.dtypes and name(dtype) not in args.dtypes:
                    continue
                for device in devices(dtype):
                    s = run_case(case, dtype, device, args.examples, derandomize=not args.random)
                    w = s.worst
                    allowed = w.allowed if w else float("nan")
                    print(f"{s.case:30} {s.dtype:8} {s.device:6} {s.examples:4d} {sum(s.skipped.values()):4d} "
                          f"{(w.ratio if w else 0):11.3g} {(w.abs_err if w else 0):10.2e} {allowed:10.2e}  "
                          f"{(w.what + ' (' + w.device + ')') if w else ''}{'  FAIL' if not s.ok else ''}")
                    if not s.ok:
                        failures.append(s)
                    if s.skipped:
                        skipped.append(s)
    if not devices(TF32) and (not args.dtypes or "tf32" in args.dtypes):
        print("(tf32: CUDA matrix products only, and torch sees no CUDA device here: no tf32 rows)")
    if skipped:
        print("\nskipped, as beyond the row's precision (counted, not compared):")
        for s in skipped:
            print(f"  {s.case} ({s.dtype}, {s.device}): " + "; ".join(
                f"{n}x {reason}" for reason, n in s.skipped.most_common()))
    print(f"\n{len(selected)} case{'s' if len(selected) != 1 else ''}, {time.perf_counter() - start:.1f}s; "
          f"{'all agree' if not failures else f'{len(failures)} disagreements'}")
    for s in failures:
        print(f"\n{s.failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
