"""The CI gradient-regression gate (docs/gate.md).

    python -m agreement.gate                         # run the gate
    python -m agreement.gate -- -n auto              # pytest arguments go after --
    python -m agreement.gate --regenerate            # re-record the baselines whose values moved
    python -m agreement.gate --regenerate --case mse # only some cases
    python -m agreement.gate --regenerate --force    # rewrite them all (re-centres the error budgets)

Running the gate: one pytest run of the Hypothesis agreement suite
(tests/test_agreement.py, and its bfloat16 and float16 rows in
tests/test_low_precision.py) under the ``ci`` profile (derandomized) and of the
baseline comparison (tests/test_baselines.py); then a console summary,
``<report-dir>/junit.xml`` and ``<report-dir>/summary.md`` (also appended to
``$GITHUB_STEP_SUMMARY`` when set). The exit status is non-zero when anything
failed. Baselines are only ever written by ``--regenerate``, and only where a
value moved beyond what the gate accepts: provenance (versions, platform, BLAS)
is recorded beside the values, never a reason to rewrite them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from agreement.gate import baselines, regression, report
from agreement.registry import cases

ROOT = Path(__file__).resolve().parents[2]  # the repository: agreement/gate/command.py
SUITE = ("tests/test_agreement.py", "tests/test_low_precision.py::test_every_case_agrees_and_most_draws_are_compared",
         "tests/test_baselines.py")
DEFAULT_REPORT_DIR = ROOT / "out" / "gate"


def run_gate(report_dir: Path, baseline_dir: Path, profile: str, suite, pytest_args) -> int:
    report_dir.mkdir(parents=True, exist_ok=True)
    junit, summary = report_dir / "junit.xml", report_dir / "summary.md"
    junit.unlink(missing_ok=True)  # never report a previous run's results
    env = {**os.environ, "HYPOTHESIS_PROFILE": profile, baselines.ENV_DIRECTORY: str(baseline_dir.resolve())}
    # xunit1: the family whose testcases may carry the <properties> the baseline tests attach
    cmd = [sys.executable, "-m", "pytest", *suite, f"--junitxml={junit}", "-o", "junit_family=xunit1",
           "-p", "no:cacheprovider", *pytest_args]
    print("+", shlex.join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    try:
        outcomes = report.read_junit(junit)
    except (OSError, ET.ParseError) as e:
        print(f"gate: no usable JUnit XML at {junit}: {e}", file=sys.stderr)
        outcomes = []
    text = report.markdown(outcomes, code, profile)
    summary.write_text(text, encoding="utf-8")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(text)
    print(report.console(outcomes, code, [junit, summary]))
    return 0 if report.passed(outcomes, code) else (code or 1)


# ---------------------------------------------------------------- regeneration
def _arrays(doc) -> dict:
    out = {}
    if doc["reference"]["loss"] is not None:
        out["loss"] = np.asarray(doc["reference"]["loss"])
    out.update({f"grad {k}": np.asarray(v) for k, v in doc["reference"]["grads"].items()})
    for opt, t in doc["trajectories"].items():
        out[f"{opt} trajectory losses"] = np.asarray(t["losses"])
        out.update({f"{opt} trajectory param {k}": np.asarray(v) for k, v in t["params"].items()})
    return out


def describe_changes(old: dict, new: dict) -> list[str]:
    """What differs between two baseline documents, one line per item."""
    lines = []
    for section in ("recorded_with", "case"):
        for key in sorted(set(old[section]) | set(new[section])):
            if old[section].get(key) != new[section].get(key):
                lines.append(f"{section} {key}: {old[section].get(key)} -> {new[section].get(key)}")
    before, after = _arrays(old), _arrays(new)
    for label in sorted(set(before) | set(after)):
        a, b = before.get(label), after.get(label)
        if a is None or b is None:
            lines.append(f"{label}: {'added' if a is None else 'removed'}")
        elif a.shape != b.shape:
            lines.append(f"{label}: shape {a.shape} -> {b.shape}")
        elif not np.array_equal(a, b):
            d = np.abs(b - a)
            i = np.unravel_index(np.argmax(d), d.shape)
            where = tuple(int(x) for x in i)
            lines.append(f"{label}: max change {d[i]:.3e} at {where}: {float(a[i])!r} -> {float(b[i])!r}")
    for key in sorted(set(old["worst_errors"]) | set(new["worst_errors"])):
        o, n = old["worst_errors"].get(key, {}), new["worst_errors"].get(key, {})
        for what in sorted(set(o) | set(n)):
            r0, r1 = o.get(what, {}).get("ratio"), n.get(what, {}).get("ratio")
            if r0 != r1:
                change = f" ({r1 / r0 - 1:+.1%})" if r0 and r1 is not None else ""
                lines.append(f"worst error {key} {what}: err/tol {r0 if r0 is None else f'{r0:.4g}'} -> "
                             f"{r1 if r1 is None else f'{r1:.4g}'}{change}")
    return lines or ["unchanged"]


def regenerate(names, directory: Path, out=print, force: bool = False) -> int:
    """Re-record baselines (all cases, or those named) whose values moved, printing the
    changes case by case; ``force``: every one, moved or not."""
    registered = {c.name: c for c in cases()}
    unknown = sorted(set(names) - set(registered))
    if unknown:
        out(f"--case: unknown case(s) {unknown}; registered: {sorted(registered)}")
        return 2
    torch.set_num_threads(1)  # the same thread settings as test sessions (conftest.py)
    status = 0
    with threadpool_limits(limits=1):
        for case in [registered[n] for n in names] if names else registered.values():
            for seed in baselines.SEEDS:
                status |= _regenerate_one(case, seed, directory, out, force)
    if not names:
        for path in regression.stale_files(directory, registered.values()):
            path.unlink()
            out(f"{path.name}: removed (no registered case, size and seed reads it)")
    return status


def _moved(case, seed, directory, old, m) -> list[str]:
    """Why the stored values no longer stand: the gate's findings against them other
    than torch-vs-NumPy agreement (drift beyond the policy's float64 tolerance, an
    error beyond its budget, another case, shapes or hyperparameters), and worst
    errors measured now that it does not hold (a new device or array). Empty when the
    gate accepts the file as it is, whatever machine recorded it."""
    result = regression.check_case(case, directory, baselines.SIZE, seed, measurement=m)
    reasons = [f.report() for f in result.findings if f.kind != "agreement"]
    return reasons + [f"not recorded yet: {what}" for what in regression.unrecorded(old, m)]


def _regenerate_one(case, seed, directory, out, force) -> int:
    path = directory / baselines.filename(case.name, baselines.SIZE, seed)
    try:
        old, problem = baselines.load(path), None
    except baselines.BaselineError as e:
        old, problem = None, e.reason
    m = baselines.measure(case, baselines.SIZE, seed)
    bad = [c for c in m.comparisons.values() if not c.ok]
    reasons = _moved(case, seed, directory, old, m) if old is not None and not force else []
    if old is not None and not force and not reasons:
        out(f"{path.name}: kept: every value within its drift tolerance and error budget")
        for note in regression.environment_notes(old["recorded_with"]):
            out(f"  provenance kept: {note}")
    else:
        doc = baselines.record(case, baselines.SIZE, seed, m)
        try:
            baselines.write_atomic(path, doc)
        except ValueError as e:  # a NaN or Inf in the record: nothing written
            out(f"{path.name}: NOT written: {e}")
            return 1
        out(f"{path.name}:" + (" rewritten (--force)" if force and old is not None else ""))
        for line in [f"because {reason}" for reason in reasons] + (
                describe_changes(old, doc) if old else [f"new baseline (old one {problem})"]):
            out(f"  {line}")
    for c in bad:
        out(f"  WARNING: torch and NumPy disagree here; the gate fails until fixed:\n{c.report()}")
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agreement.gate", description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- go to pytest.")
    parser.add_argument("--regenerate", action="store_true",
                        help="re-record the baselines whose values moved beyond what the gate accepts, "
                             "and print what changed")
    parser.add_argument("--case", action="append", default=[], help="with --regenerate: only this case (repeatable)")
    parser.add_argument("--force", action="store_true",
                        help="with --regenerate: rewrite every selected baseline, moved or not "
                             "(re-centres the error budgets on this machine)")
    parser.add_argument("--baselines", type=Path, default=None, help="baseline directory (default: baselines/)")
    parser.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR, help="where junit.xml and summary.md go")
    parser.add_argument("--profile", default="ci", help="Hypothesis profile for the agreement suite (default: ci)")
    parser.add_argument("--suite", nargs="+", default=list(SUITE), help="test files to run")
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    for option, given in (("--case", args.case), ("--force", args.force)):
        if given and not args.regenerate:
            parser.error(f"{option} only applies with --regenerate")
    directory = args.baselines or baselines.directory()
    if args.regenerate:
        return regenerate(args.case, directory, force=args.force)
    return run_gate(args.report_dir, directory, args.profile, args.suite, pytest_args)
