"""The gate's own reliability: what it catches, what it must not, and how its files survive abuse."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from agreement import trajectory
from agreement.gate import baselines, command, regression, report
from agreement.optimizers import OPTIMIZERS
from agreement.registry import cases

CASES = {c.name: c for c in cases()}
CASE = CASES["two_layer_regression"]  # trainable, four parameters: gradients, trajectories, budgets
STORED = baselines.directory()


def with_gradients(case, transform):
    """``case`` whose NumPy reference passes its gradients through ``transform(grads, dtype)``."""
    def reference(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, transform(dict(grads), np.asarray(next(iter(params.values()))).dtype)

    return dataclasses.replace(case, reference=reference)


def copy_baseline(tmp_path, name=CASE.name) -> Path:
    target = tmp_path / baselines.filename(name)
    shutil.copyfile(STORED / baselines.filename(name), target)
    return target


def edit_baseline(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def kinds(result) -> set:
    return {f.kind for f in result.findings}


# ---------------------------------------------------------------- what the gate must catch, and not
def test_one_ulp_change_in_every_gradient_passes():
    def one_ulp(grads, dtype):
        return {k: v * (1 + np.finfo(dtype).eps) for k, v in grads.items()}

    result = regression.check_case(with_gradients(CASE, one_ulp), STORED)
    assert result.ok, result.report()


def test_factor_1001_on_one_gradient_fails_and_says_where():
    def shift_w1(grads, dtype):
        grads["W1"] = grads["W1"] * 1.001
        return grads

    result = regression.check_case(with_gradients(CASE, shift_w1), STORED)
    drift = [f for f in result.findings if f.kind == "drift" and f.what == "grad W1"]
    assert len(drift) == 1, result.report()
    f = drift[0]
    assert (f.case, f.dtype, f.device) == (CASE.name, "float64", "numpy")
    assert f.current / f.baseline == pytest.approx(1.001, rel=1e-9)
    assert f.error > f.tolerance
    assert not any(f.kind == "drift" and f.what.startswith("grad") and f.what != "grad W1" for f in result.findings)
    torch_side = {(f.dtype, f.device) for f in result.findings if f.kind == "agreement" and f.what == "grad W1"}
    assert {("float32", "torch-cpu"), ("float64", "torch-cpu")} <= torch_side
    assert "grad W1 (float64, numpy): baseline" in result.report()


def test_error_budget_catches_growth_within_tolerance():
    """64 float32 ulps of W1's largest element on its NumPy float32 gradient (about 9 ulps of the
    policy's term scale): inside the tolerance (no agreement failure; float64 untouched, so no
    drift) but far beyond twice the recorded error of under one ulp, and above the floor."""
    def float32_noise(grads, dtype):
        if dtype == np.float32:
            grads["W1"] = (grads["W1"] * (1 + 64 * np.finfo(np.float32).eps)).astype(np.float32)
        return grads

    result = regression.check_case(with_gradients(CASE, float32_noise), STORED)
    assert kinds(result) == {"budget"}, result.report()
    [f] = result.findings
    assert (f.what, f.dtype, f.device) == ("grad W1", "float32", "numpy")
    assert f.baseline < f.tolerance < f.current < 1


@pytest.mark.parametrize("recorded, now, ulps, steps, fails", [
    (0.01, 0.019, 10, 1, False),  # within the margin
    (0.01, 0.021, 10, 1, True),  # beyond it, error above the floor (4 ulps)
    (0.01, 0.5, 3, 1, False),  # below the floor: rounding noise whatever the ratio
    (0.0, 1e-3, 5, 1, True),
    (0.01, 0.5, 10, 5, False),  # a 5-step trajectory's floor is 20 ulps
    (0.01, 0.5, 21, 5, True),
])
def test_budget_rule(recorded, now, ulps, steps, fails):
    scale = 3.0
    allowed, floor = regression.budget_limits(recorded, "float32", scale, steps)
    abs_err = ulps * float(np.finfo(np.float32).eps) * scale
    assert (now > allowed and abs_err > floor) == fails


def test_check_is_deterministic():
    first, second = (regression.check_case(CASE, STORED).to_json() for _ in range(2))
    assert first == second


# ---------------------------------------------------------------- damaged and foreign baselines
def only_baseline_finding(result, *needles):
    assert kinds(result) == {"baseline"}, result.report()
    text = result.report()
    for needle in needles:
        assert needle in text, text


def test_missing_baseline_fails(tmp_path):
    only_baseline_finding(regression.check_case(CASE, tmp_path), "missing", "--regenerate")


def test_truncated_baseline_fails(tmp_path):
    path = copy_baseline(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    only_baseline_finding(regression.check_case(CASE, tmp_path), "not valid JSON", "truncated")


def test_corrupted_bytes_fail(tmp_path):
    path = copy_baseline(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 4] = b"\xff\xfe\x00\x13"
    path.write_bytes(bytes(raw))
    only_baseline_finding(regression.check_case(CASE, tmp_path), "not UTF-8")


def test_edited_number_is_drift(tmp_path):
    """A hand-edited (or bit-flipped but still valid) number is caught as drift against the file."""
    path = copy_baseline(tmp_path)
    edit_baseline(path, lambda d: d["reference"]["grads"]["b2"].__setitem__(0, d["reference"]["grads"]["b2"][0] * 2))
    result = regression.check_case(CASE, tmp_path)
    assert any(f.kind == "drift" and f.what == "grad b2" for f in result.findings), result.report()


class _Tripwire:
    """Unpickling this touches a file: proof of whether a loader ever unpickles."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_pickle_is_refused_unread(tmp_path, protocol):
    marker = tmp_path / "unpickled"
    path = tmp_path / baselines.filename(CASE.name)
    path.write_bytes(pickle.dumps({"doc": _Tripwire(marker)}, protocol=protocol))
    result = regression.check_case(CASE, tmp_path)
    only_baseline_finding(result, "pickle" if protocol >= 2 else "not valid JSON")
    assert not marker.exists()


def test_npz_is_refused(tmp_path):
    path = tmp_path / baselines.filename(CASE.name)
    with open(path, "wb") as f:
        np.savez(f, W1=np.zeros(3))
    only_baseline_finding(regression.check_case(CASE, tmp_path), "zip archive")


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["reference"]["grads"].__setitem__("W1", [[1.0, 2.0], [3.0]]), "ragged"),
    (lambda d: d["reference"]["grads"].__setitem__("W1", [["1.0"]]), "nested lists of numbers"),
    (lambda d: d.__setitem__("format_version", 99), "format_version"),
    (lambda d: d["worst_errors"]["float32/torch-cpu"]["grad W1"].__setitem__("ratio", -1), "non-negative"),
])
def test_malformed_baseline_fails(tmp_path, edit, needle):
    edit_baseline(copy_baseline(tmp_path), edit)
    only_baseline_finding(regression.check_case(CASE, tmp_path), needle)


def test_non_finite_number_is_refused(tmp_path):
    path = copy_baseline(tmp_path)
    path.write_text(path.read_text().replace('"loss": ', '"loss": NaN, "was": ', 1))
    only_baseline_finding(regression.check_case(CASE, tmp_path), "non-finite")


def test_baseline_of_other_shapes_fails(tmp_path):
    copy_baseline(tmp_path)
    bigger = dataclasses.replace(CASE, build=lambda size, dtype, seed=0: CASE.build("tutorial", dtype, seed))
    only_baseline_finding(regression.check_case(bigger, tmp_path), "shapes", "regenerate")


def test_array_of_other_shape_fails(tmp_path):
    edit_baseline(copy_baseline(tmp_path), lambda d: d["reference"]["grads"]["W1"].pop())
    result = regression.check_case(CASE, tmp_path)
    assert any(f.kind == "baseline" and f.what == "grad W1" and "recorded shape (2, 5)" in f.detail
               for f in result.findings), result.report()


def test_baseline_of_another_case_fails(tmp_path):
    shutil.copyfile(STORED / baselines.filename("two_layer_classifier"), tmp_path / baselines.filename(CASE.name))
    only_baseline_finding(regression.check_case(CASE, tmp_path), "two_layer_classifier")


def test_stale_file_is_reported(tmp_path):
    copy_baseline(tmp_path)
    (tmp_path / "renamed_case.tiny.seed0.json").write_text("{}")
    assert [p.name for p in regression.stale_files(tmp_path, [CASE])] == ["renamed_case.tiny.seed0.json"]


# ---------------------------------------------------------------- writing and regenerating
def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = copy_baseline(tmp_path)
    before = path.read_bytes()

    def interrupted(*args):
        raise KeyboardInterrupt

    for where in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(baselines.os, where, interrupted)
            with pytest.raises(KeyboardInterrupt):
                baselines.write_atomic(path, {"format": "new"})
        assert path.read_bytes() == before
        assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_interrupted_regeneration_leaves_every_file_whole(tmp_path, monkeypatch):
    names = ["mse", "bce"]
    for name in names:
        copy_baseline(tmp_path, name)
    untouched = (tmp_path / baselines.filename("bce")).read_bytes()
    calls = []
    real_measure = baselines.measure

    def measure_then_interrupt(case, *args):
        calls.append(case.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_measure(case, *args)

    monkeypatch.setattr(baselines, "measure", measure_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        command.regenerate(names, tmp_path, out=lambda line: None)
    baselines.load(tmp_path / baselines.filename("mse"))  # rewritten whole
    assert (tmp_path / baselines.filename("bce")).read_bytes() == untouched


def test_regeneration_prints_what_changed(tmp_path):
    edit_baseline(copy_baseline(tmp_path, "mse"), lambda d: d["reference"].__setitem__("loss", 1.0))
    lines = []
    assert command.regenerate(["mse"], tmp_path, out=lines.append) == 0
    assert lines[0] == "mse.tiny.seed0.json:"
    assert lines[1].startswith("  because DRIFT mse: loss (float64, numpy): baseline 1.0")
    assert any(line.startswith("  loss: max change") for line in lines)
    lines.clear()
    command.regenerate(["mse"], tmp_path, out=lines.append)
    assert lines == ["mse.tiny.seed0.json: kept: every value within its drift tolerance and error budget"]
    assert command.regenerate(["no_such_case"], tmp_path, out=lines.append) == 2


def as_if_recorded_elsewhere(doc):
    """What another machine's recording of the same values looks like: other provenance,
    the reference one rounding apart, worst errors that differ by noise within the budget."""
    doc["recorded_with"].update(platform="Linux-another-kernel", blas=[{"internal_api": "openblas",
                                                                       "version": "0.3.0", "architecture": "Zen"}])
    grads = doc["reference"]["grads"]
    grads["W1"] = np.nextafter(np.asarray(grads["W1"]), np.inf).tolist()
    for whats in doc["worst_errors"].values():
        for entry in whats.values():
            entry["ratio"] *= 1.5


def test_regeneration_keeps_a_file_whose_values_have_not_moved(tmp_path):
    """Provenance and noise are no reason to rewrite: the file stays byte for byte, with
    its own provenance, and the output says so (all 14 files were rewritten before)."""
    path = copy_baseline(tmp_path)
    edit_baseline(path, as_if_recorded_elsewhere)
    before = path.read_bytes()
    lines = []
    assert command.regenerate([CASE.name], tmp_path, out=lines.append) == 0
    assert path.read_bytes() == before
    assert lines[0] == f"{path.name}: kept: every value within its drift tolerance and error budget"
    assert any("provenance kept: recorded with blas" in line and "Zen" in line for line in lines[1:])


def test_regeneration_rewrites_a_file_whose_values_moved_or_when_forced(tmp_path):
    path = copy_baseline(tmp_path)
    edit_baseline(path, as_if_recorded_elsewhere)
    edit_baseline(path, lambda d: d["reference"]["grads"].__setitem__(
        "W1", (np.asarray(d["reference"]["grads"]["W1"]) * 1.001).tolist()))
    lines = []
    command.regenerate([CASE.name], tmp_path, out=lines.append)
    assert lines[0] == f"{path.name}:"
    assert lines[1].startswith("  because DRIFT two_layer_regression: grad W1 (float64, numpy)")
    assert baselines.load(path)["recorded_with"] == baselines.environment()
    edit_baseline(path, as_if_recorded_elsewhere)
    lines.clear()
    command.regenerate([CASE.name], tmp_path, out=lines.append, force=True)
    assert lines[0] == f"{path.name}: rewritten (--force)"
    assert baselines.load(path)["recorded_with"] == baselines.environment()


def test_force_needs_regenerate(capsys):
    with pytest.raises(SystemExit):
        command.main(["--force"])
    assert "--force only applies with --regenerate" in capsys.readouterr().err


def test_budget_entries_are_keyed_by_structure_not_by_reading_what(monkeypatch):
    """The worst errors are filed by dtype, device, array and optimizer as measured, so a
    comparison's ``what`` (free text for people) can say anything."""
    real = baselines.compare_trajectories

    def renamed(*args, **kwargs):
        return [dataclasses.replace(c, what=f"step ? of {i}") for i, c in enumerate(real(*args, **kwargs))]

    monkeypatch.setattr(baselines, "compare_trajectories", renamed)
    m = baselines.measure(CASE)
    stored = baselines.load(STORED / baselines.filename(CASE.name))["worst_errors"]
    assert {g: sorted(w) for g, w in m.grouped().items()} == {g: sorted(w) for g, w in stored.items()}
    steps = {b.name: b.steps for b in m.comparisons}
    assert steps["sgd trajectory param W1"] == baselines.STEPS and steps["grad W1"] == 1


def _count_calls(monkeypatch, module, name, key) -> dict:
    """How often ``module.name`` is called, per ``key(args, kwargs)``; None keys are not counted."""
    counts: dict = {}
    real = getattr(module, name)

    def counted(*args, **kwargs):
        k = key(args, kwargs)
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return counts


def _arrays_key(params: dict) -> tuple:
    return tuple((k, np.asarray(v).dtype.str, np.asarray(v).tobytes()) for k, v in sorted(params.items()))


@pytest.mark.parametrize("how", ["check", "regenerate"])
def test_the_gate_computes_each_reference_trajectory_and_spread_once(how, tmp_path, monkeypatch):
    """Per case, optimizer and start (the float64 example, and the example cast to
    float32), one float64 reference trajectory and one rounding spread per dtype,
    whatever judges them: every dtype and device, and the drift check of the recorded
    trajectory. All go through trajectory._run from step 0 and trajectory.rounding_spread."""
    def run_key(args, kwargs):  # _run(case, opt, params, state, example, opt_hyper, steps, reference, start, ...)
        start = kwargs.get("start", args[8] if len(args) > 8 else 0)
        return None if start else (args[1].name, _arrays_key(args[2]), args[6])

    runs = _count_calls(monkeypatch, trajectory, "_run", run_key)
    spreads = _count_calls(monkeypatch, trajectory, "rounding_spread", lambda args, kwargs: (
        args[1].name, np.dtype(args[5]).name, _arrays_key(args[2].params), args[4]))
    if how == "check":
        assert regression.check_case(CASE, STORED).ok
    else:
        copy_baseline(tmp_path)
        assert command.regenerate([CASE.name], tmp_path, out=lambda line: None) == 0
    trajectories = len(OPTIMIZERS) * len(baselines.DTYPES) * len(baselines.SEEDS)
    assert len(runs) == len(spreads) == trajectories  # every start was judged, from the float64 and float32 examples
    assert set(runs.values()) == set(spreads.values()) == {1}, (runs.values(), spreads.values())


def test_written_file_reads_back_exactly(tmp_path):
    doc = baselines.load(STORED / baselines.filename(CASE.name))
    path = tmp_path / "copy.json"
    baselines.write_atomic(path, doc)
    assert baselines.load(path) == doc
    assert path.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- reports
def failing_outcomes():
    result = regression.CaseResult(CASE.name, "baselines/x.json", [regression.Finding(
        "drift", CASE.name, "grad W1", "float64", "numpy", 0.5, 0.5005, 5e-4, 3e-15, "worst element at (0, 1)")])
    return [report.Outcome("tests.test_baselines::test_x", "failed", "DRIFT ...", result),
            report.Outcome("tests.test_agreement::test_y", "failed", "line one\nline two"),
            report.Outcome("tests.test_agreement::test_z", "passed")]


def test_markdown_names_case_parameter_dtype_device_values():
    text = report.markdown(failing_outcomes(), 1, "ci")
    assert "❌ failed" in text
    assert "| drift | two_layer_regression | grad W1 | float64 | numpy | 0.5 | 0.5005 | 5.000e-04 | 3.000e-15 |" in text
    assert "tests.test_agreement::test_y" in text and "line two" in text


def test_console_summary_and_verdict():
    text = report.console(failing_outcomes(), 1, ["junit.xml"])
    assert text.startswith("== gradient regression gate: FAILED")
    assert "1 passed, 2 failed" in text
    assert not report.passed([], 0)  # no results is not a pass


# ---------------------------------------------------------------- the command, end to end (subprocess)
@pytest.fixture
def only_with_slow_selected(request):
    """These run the gate command (a pytest subprocess, ~20 s each): only under ``-m slow``."""
    expr = request.config.option.markexpr or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip("slow: run with -m slow")


def run_gate(tmp_path, baseline_dir, *pytest_args, monkeypatch):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    reports = tmp_path / "reports"
    code = command.main(["--baselines", str(baseline_dir), "--report-dir", str(reports),
                      "--suite", "tests/test_baselines.py", "--", "-q", *pytest_args])
    return code, report.read_junit(reports / "junit.xml"), (reports / "summary.md").read_text(), summary


@pytest.mark.slow
@pytest.mark.usefixtures("only_with_slow_selected")
def test_gate_command_fails_on_a_shifted_baseline(tmp_path, monkeypatch):
    shutil.copytree(STORED, tmp_path / "baselines")
    path = tmp_path / "baselines" / baselines.filename(CASE.name)
    edit_baseline(path, lambda d: d["reference"]["grads"].__setitem__(
        "W1", (np.asarray(d["reference"]["grads"]["W1"]) * 1.001).tolist()))
    code, outcomes, text, step_summary = run_gate(tmp_path, tmp_path / "baselines", monkeypatch=monkeypatch)
    assert code != 0
    failed = [o for o in outcomes if o.status == "failed"]
    assert [o.result.case for o in failed] == [CASE.name]
    assert "| drift | two_layer_regression | grad W1 | float64 | numpy |" in text
    assert step_summary.read_text() == text


@pytest.mark.slow
@pytest.mark.usefixtures("only_with_slow_selected")
def test_gate_verdict_is_the_same_under_xdist(tmp_path, monkeypatch):
    def verdict(*args):
        code, outcomes, text, _ = run_gate(tmp_path, STORED, *args, monkeypatch=monkeypatch)
        return code, [(o.test, o.status, o.result.to_json() if o.result else "") for o in outcomes], text

    serial = verdict()
    assert serial[0] == 0
    assert verdict("-n", "2") == serial
