"""Compute every section and assemble the page.

Threads: the report alternates NumPy and torch on small arrays, where two
thread pools competing for the cores cost more than they gain, so both are
held to one thread while it runs (threadpoolctl for BLAS, torch.set_num_threads
for torch's intra-op pool) and torch's setting is restored afterwards. On CUDA,
TF32 is switched off for the run (and restored) so float32 means float32.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from agreement import precision
from agreement.registry import Case, cases
from agreement.report import bench, environment, figures, gradients, training, views
from agreement.report.config import ReportConfig
from agreement.report.page import CUDA_COLUMNS, SUMMARY_COLUMNS, CaseSection, Figure, render
from agreement.run import tf32
from agreement.scenarios.catalog import SCENARIOS, Scenario, run_part

TITLE = "Gradient agreement report"
# Work units per case for the progress bar: training, gradients, data-space view, benchmarks.
PARTS = 4
DTYPES = (np.float32, np.float64)  # the scenarios' sides
# A dtype the example or trajectory is beyond (agreement.run.Unresolvable): no verdict, and
# no failure either; the section's note carries the reason.
SKIPPED_CELL = ("not comparable (see notes)", None)


def selected_cases(names) -> list[Case]:
    available = {c.name: c for c in cases()}
    if names is None:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"cases: unknown {unknown}; registered cases are {sorted(available)}")
    return [available[n] for n in names]


def selected_scenarios(names) -> list[Scenario]:
    """agreement.scenarios' scenarios by full name or number ("4" for 4-two-layer); None: all."""
    if names is None:
        return list(SCENARIOS.values())
    chosen = []
    for name in names:
        matches = [s for s in SCENARIOS.values() if name in (s.name, s.name.split("-")[0])]
        if not matches:
            raise ValueError(f"scenarios: unknown {name!r}; the scenarios are {sorted(SCENARIOS)}")
        chosen += [s for s in matches if s not in chosen]
    return chosen


@contextlib.contextmanager
def _controlled_numerics():
    """One thread per library, floating-point warnings off, TF32 off (float32 means float32)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), np.errstate(all="ignore"), tf32(False):
            yield
    finally:
        torch.set_num_threads(threads)


def _ratio_cell(comparisons) -> tuple[str, bool]:
    worst = max(comparisons, key=lambda c: c.ratio)
    return f"{worst.ratio:.2g} ({worst.what})", worst.ok


def _training_part(section, case, config):
    result = training.training(case, config.size, config.steps, config.seed, config.device)
    for name, run in result.runs.items():
        text, ok = _ratio_cell([run.worst])
        if run.failed_step is not None:
            text = f"fails at step {run.failed_step}: {text}"
        elif run.horizon is not None:
            text = f"{text}; comparable for {run.horizon} of {run.steps} steps"
            section.notes.append(
                f"Trajectory {name}: judged up to step {run.horizon - 1}; from step {run.horizon} on, torch's own "
                f"{name} rounding moves a parameter by more than sqrt(u) max(1, |θ|) (its float64 run from the "
                "same start is the measure), so rounding, not the math, decides the trajectory.")
        section.summary[f"trajectory {name}"] = (text, ok)
        if f"trajectory {name}" not in (*SUMMARY_COLUMNS, *CUDA_COLUMNS) and not ok:  # no column: say it here
            section.notes.append(f"Trajectory {name}: {text}.")
        if run.numpy_note and precision.numpy_computes_in(name):  # bfloat16's absence is the figure caption's
            section.notes.append(f"Trajectory {name}: no NumPy curve: {run.numpy_note}.")
    for name, reason in result.skipped.items():
        section.summary[f"trajectory {name}"] = SKIPPED_CELL
        section.notes.append(f"Trajectory {name} left out: {reason}.")
    if result.lr_note:
        section.notes.append(f"Trajectories: {result.lr_note}.")
    if not case.trainable:
        section.notes.append("Not a trainable model: SGD here minimizes the probe's scalar directly.")
    low = [name for name in result.runs if precision.is_low(name)]
    section.figures.append(Figure(
        "Training curves and their divergence", figures.training_figure(result, config.dpi),
        f"{config.steps} SGD steps from the '{config.size}' example (seed {config.seed}), in "
        f"{', '.join(result.runs)}. Top: loss before each step, NumPy (pale lines; NumPy has no bfloat16) and "
        "torch (markers). Bottom: |torch loss - float64 reference loss| per step, each dtype from its own "
        "rounded start, and the tolerance agreement.trajectory applies at each judged step; dotted: the NumPy "
        "reference's own drift in that dtype. "
        + (f"Below float32 ({', '.join(low)}) the tolerance is twice torch's own rounding, measured by the same "
           "torch run in float64, and judging stops at the measured horizon (a dotted vertical line). "
           if low else "")
        + "Gaps: exactly equal, or overflowed (log scale has no 0).",
        f"{case.name}: loss curves and per-step divergence"))


def _gradient_part(section, case, config):
    result = gradients.gradient_errors(case, config.size, config.seed, config.device)
    for dtype in [precision.name(d) for d in gradients.report_dtypes(config.device)]:
        if dtype in result.skipped:
            section.summary[f"gradients {dtype}"] = SKIPPED_CELL
            section.notes.append(f"Gradients {dtype} left out: {result.skipped[dtype]}.")
            continue
        picked = [c for c in result.comparisons if c.dtype == dtype and c.device.startswith("torch")]
        section.summary[f"gradients {dtype}"] = _ratio_cell(picked)
        failed = [c for c in result.comparisons if c.dtype == dtype and not c.ok and not c.device.startswith("torch")]
        if failed:  # the summary's cell is torch's; NumPy in the dtype is a second side (float32, float16)
            section.notes.append(f"Gradients {dtype}: NumPy in {dtype} fails: {_ratio_cell(failed)[0]}.")
    section.figures.append(Figure(
        "Gradient error per parameter", figures.gradient_figure(result, config.dpi),
        f"Element-wise relative error |g - g_ref| / |g_ref| of each gradient on the '{config.size}' example "
        f"(seed {config.seed}), against the float64 NumPy reference from the same rounded input, torch on "
        f"{config.device} in each dtype and NumPy in float32 and float16 (NumPy has no bfloat16); exact matches "
        "are counted, not drawn. Vertical lines: for float32 and float64 the policy's rtol; elements right of it "
        "can still pass, since the policy judges each element against the magnitude of the terms it was summed "
        "from (its atol), not against its own size. Below float32 there is no single rtol: each element may "
        "differ by twice torch's own rounding there (its float64 run's distance) plus a float64 floor, and the "
        "line is the median over the elements of that allowed relative error."
        + (f" Left out: {', '.join(result.skipped)} (the example is beyond it; see the note)."
           if result.skipped else ""),
        f"{case.name}: histograms of gradient relative error"))


def _view_part(section, case, config):
    fit = views.fit(case, config.fit_steps, config.seed, config.device)
    if fit is not None:
        what = "fitted curve" if fit.spec.kind == "regression" else "decision boundary"
        section.figures.append(Figure(
            f"The {what} on data", figures.fit_figure(fit, config.dpi),
            f"Plot-friendly {'1-D' if fit.spec.kind == 'regression' else '2-D'} data (seed {config.seed}), "
            f"{config.fit_steps} SGD steps in float32 on both sides from the same initial parameters.",
            f"{case.name}: {what} from NumPy and torch parameters"))
        return
    s = views.function_slice(case, config.slice_points, config.seed, config.device)
    if case.kind == "activation":
        title, inputs = "The function and its derivative", "a single element, upstream gradient 1"
    else:
        title, inputs = "The loss along one coordinate", "other inputs from the 'tiny' example"
    section.figures.append(Figure(
        title, figures.slice_figure(s, config.dpi),
        f"{s.value_label} and its derivative as {s.coordinate} varies ({inputs}, float64): "
        "NumPy reference against torch autograd.",
        f"{case.name}: {s.value_label} and its derivative"))


def _benchmark_part(section, case, config, run):
    rows = run.for_case(case.name) if run else []
    if rows:
        section.figures.append(Figure(
            "Benchmarks", figures.benchmark_figure(rows, config.dpi),
            f"From {run.path.name}: median time per call and achieved GFLOP/s as a fraction of the measured "
            "matrix-product peak, per backend (colour) and dtype (float32 solid, float64 dashed).",
            f"{case.name}: benchmark time and peak fraction against size"))
    elif run:
        section.notes.append(f"No benchmarks for this case in {run.path.name}.")


def _section(case, config, run, progress) -> CaseSection:
    section = CaseSection(case.name, case.kind)
    for part in (_training_part, _gradient_part, _view_part):
        try:
            part(section, case, config)
        except Exception as exc:  # noqa: BLE001 - one failing part must not hide the rest of the report
            section.errors.append(f"{part.__name__.strip('_')}: {type(exc).__name__}: {exc}\n"
                                  + "".join(traceback.format_exc(limit=-3)))
        progress.update(1)
    _benchmark_part(section, case, config, run)
    progress.update(1)
    return section


def _scenario_section(scenario: Scenario, config: ReportConfig) -> CaseSection:
    """A training scenario's section: each part run NumPy vs torch in float32 and float64 and judged
    by the long-run judge (agreement.scenarios), its loss curves and |NumPy - torch| per step."""
    section = CaseSection(f"scenario-{scenario.name}", "training scenario")
    section.notes.append(scenario.title + (f" ({scenario.notes})" if scenario.notes else "")
                         + (". Short version (the test suite's)." if config.short_scenarios else "."))
    worst = {}
    try:
        for part in scenario.build(config.short_scenarios):
            result = run_part(part, DTYPES, [config.device])
            j = result.judgement
            for side in j.sides:
                ratio, ok = worst.get(side.dtype, (0.0, True))
                worst[side.dtype] = (max(ratio, side.worst_ratio), ok and side.ok)
                if not side.ok:
                    section.notes.append(f"Part {part.name}: {side.label} ({side.dtype}) first diverges at step "
                                         f"{side.first_failing_step}: {side.failure.what}.")
            for dtype, reason in j.horizon_reason.items():
                if reason:
                    section.notes.append(f"Part {part.name}, {dtype}: comparable up to step {j.horizon[dtype]} "
                                         f"of {j.steps}: {reason}.")
            held_out = ", ".join(sorted({name for s in j.sides for name in s.evaluations}))
            section.figures.append(Figure(
                f"Part {part.name}: loss curves and |NumPy - torch|",
                figures.scenario_figure(result, config.dpi),
                f"{j.steps} steps on {config.device}, both sides from the same parameters on the same batches. "
                "Top: the loss of each step's batch before its update, NumPy (pale lines) and each torch form "
                "(markers), float32 and float64"
                + (f"; the {held_out} loss after each epoch (diamonds NumPy, squares torch)" if held_out else "")
                + ". Bottom: |NumPy loss - torch loss| per step and its tolerance: twice the long-run judge's "
                "bound on each side's distance from the float64 reference (each side is judged against that "
                "reference within the bound). A dotted vertical line marks the comparable horizon, from which "
                "rounding, not the math, decides the trajectory and no step is judged; no line: comparable to "
                "the end. Gaps: exactly equal.",
                f"scenario {part.name}: loss curves and divergence against tolerance"))
    except Exception as exc:  # noqa: BLE001 - one failing scenario must not hide the rest of the report
        section.errors.append(f"scenario: {type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-3)))
    for dtype, (ratio, ok) in worst.items():
        section.summary[f"trajectory {dtype}"] = (f"{ratio:.2g} (worst over steps, sides)", ok)
    return section


def benchmark_summary(config: ReportConfig):
    """The latest saved run (or None), the sentence introducing it, and its details."""
    path = bench.latest(config.benchmarks)
    where = config.benchmarks or bench.DEFAULT_ROOT
    if path is None:
        return None, (f"No saved benchmark run found in {where}. Save one with "
                      "`pytest benchmarks --benchmark-only --benchmark-autosave` (or pass --benchmarks FILE)."), []
    run = bench.load(path)
    details = [("file", str(path)), ("saved", run.datetime), ("machine", run.machine), ("commit", run.commit),
               ("benchmarks", f"{len(run.rows)} with this project's extra_info"
                              + (f", {run.skipped} others skipped" if run.skipped else ""))]
    return run, "The most recent saved pytest-benchmark run; its figures are in each case's section.", details


def build_report(config: ReportConfig, command: str | None = None) -> tuple[str, list[CaseSection]]:
    """The page's HTML and its sections (for callers that check the verdicts)."""
    chosen = selected_cases(config.cases)
    scenarios = selected_scenarios(config.scenarios)
    run, bench_header, bench_details = benchmark_summary(config)
    sections = []
    with _controlled_numerics():
        env = environment.describe(config, training.OPTIMIZER.defaults, command)
        with tqdm(total=PARTS * len(chosen) + len(scenarios), desc="report", unit="part", file=sys.stderr,
                  disable=(not config.progress) if config.progress is not None else None) as progress:
            for case in chosen:
                progress.set_postfix_str(case.name)
                sections.append(_section(case, config, run, progress))
            for scenario in scenarios:
                progress.set_postfix_str(scenario.name)
                sections.append(_scenario_section(scenario, config))
                progress.update(1)
    return render(TITLE, env, sections, bench_header, bench_details), sections


def write_report(config: ReportConfig, out: Path, command: str | None = None) -> list[CaseSection]:
    html, sections = build_report(config, command)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return sections
