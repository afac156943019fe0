"""What a person sees when something disagrees, and the public entry points."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

from agreement import Example, check_gradients
from agreement import strategies as S
from agreement.__main__ import main
from agreement.compare import compare
from agreement.run import devices
from agreement.tolerance import Tolerance


def test_report_names_everything_needed_to_act():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = expected.copy()
    actual[1, 0] += 0.5
    report = compare(actual, expected, Tolerance(1e-6, 1e-9), case="demo", what="grad W", dtype="float32",
                     device="torch-cpu", context={"shapes": {"W": (2, 2)}}).report()
    for needle in ["demo", "grad W", "float32", "torch-cpu", "shape (2, 2)", "index (1, 0)", "abs error 5.000e-01",
                   "rel error 1.667e-01", "rtol 1.000e-06", "atol 1.000e-09", "shapes: {'W': (2, 2)}"]:
        assert needle in report, needle


def test_an_empty_array_compares_as_agreeing():
    c = compare(np.zeros((0, 2)), np.zeros((0, 2)), Tolerance(1e-3, 1e-3), case="c", what="w", dtype="float64",
                device="numpy")
    assert c.ok and c.ratio == 0 and c.shape == (0, 2)


def test_nan_against_finite_is_an_infinite_error():
    c = compare(np.array([np.nan]), np.array([1.0]), Tolerance(1e-3, 1e-3), case="c", what="w", dtype="float64",
                device="numpy")
    assert not c.ok and c.ratio == np.inf


# --- check_gradients on a user's own pair of functions -----------------------------------------
def cubic_numpy(params, data):
    """L = sum(u * w^3), dL/dw = 3 w^2 u."""
    w, u = params["w"], data["u"]
    return np.sum(u * w**3), {"w": 3 * w**2 * u}


def cubic_torch(params, data):
    return (data["u"] * params["w"] ** 3).sum()


@st.composite
def cubic_inputs(draw, dtype):
    n = draw(S.dims(1, 5))
    return Example({"w": draw(S.arrays(dtype, (n,), 10.0))}, {"u": draw(S.arrays(dtype, (n,), 10.0))})


def test_check_gradients_accepts_a_correct_gradient():
    summaries = check_gradients(cubic_numpy, cubic_torch, cubic_inputs, max_examples=10, devices=["cpu"])
    assert {s.dtype for s in summaries} == {"float64", "float32"} and all(s.examples > 0 for s in summaries)


def test_check_gradients_reports_a_wrong_gradient_with_a_minimal_example():
    def wrong(params, data):
        loss, grads = cubic_numpy(params, data)
        return loss, {"w": grads["w"] + 1e-3 * data["u"]}

    with pytest.raises(AssertionError) as info:
        check_gradients(wrong, cubic_torch, cubic_inputs, max_examples=20, devices=["cpu"], dtypes=[np.float64])
    message = str(info.value)
    assert "wrong: grad w disagrees (float64, torch-cpu)" in message
    assert "@reproduce_failure" in message or "Falsifying example" in message or "Draw 1" in message


def test_command_line_table_lists_every_dtype_and_device(capsys):
    assert main(["--examples", "2", "--cases", "relu"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[1:3] for line in out.splitlines() if line.startswith("relu ")]
    cuda = torch.cuda.is_available()
    expected = [[d, dev] for d in ("float64", "float32", "bfloat16", "float16") for dev in ("cpu", "cuda")[:1 + cuda]]
    assert rows == expected + ([["tf32", "cuda"]] if cuda else [])
    assert ("no tf32 rows" in out) != cuda
    assert re.search(r"\n1 case, .*all agree", out)


def test_command_line_counts_and_names_the_skipped_examples(capsys):
    # bce in float16: torch's BCELoss backward clamps p (1 - p) at 1e-12, which is 0 in float16
    assert main(["--examples", "30", "--cases", "bce", "--dtypes", "float16"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("bce "))
    compared, skipped = (int(v) for v in row.split()[3:5])
    assert compared + skipped == 30 and skipped > 0
    assert "bce (float16, cpu): " in out
    assert "x torch autograd (float16, cpu) is not finite at grad pred where the float64 reference is" in out


@pytest.mark.parametrize("argv0, prog", [("/venv/bin/gradient-agreement", "gradient-agreement"),
                                         ("/repo/agreement/__main__.py", "python -m agreement")])
def test_command_line_help_is_plain_text_under_the_name_it_was_run_as(argv0, prog, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0])
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.startswith(f"usage: {prog} ") and "``" not in out


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_command_line_rejects_a_non_positive_example_count(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--examples", value, "--cases", "relu"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "argument --examples: expected a positive integer" in err and "Traceback" not in err


def test_command_line_fails_on_unknown_case(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--cases", "nope"])
    assert info.value.code != 0 and "no case matches" in capsys.readouterr().err


def test_readme_example_runs():
    """The README's check_gradients snippet, executed as written."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})


def test_huber_example_agrees():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "check_my_gradient.py"
    spec = importlib.util.spec_from_file_location("check_my_gradient", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summaries = check_gradients(example.huber_numpy, example.huber_torch, example.huber_inputs, max_examples=10)
    # check_gradients raises on a disagreement; what it returns must say what was checked
    assert sorted((s.dtype, s.device) for s in summaries) == sorted(
        (dtype, device) for dtype in ("float32", "float64") for device in devices())
    for s in summaries:
        assert s.case == "huber_numpy" and s.examples == 10, s.line()
        assert (s.worst.dtype, s.worst.device) == (s.dtype, f"torch-{s.device}"), s.line()
        assert 0 < s.worst.ratio <= 1, s.line()  # a rounding error was seen, within the tolerance


def test_check_gradients_names_a_strategy_that_draws_the_wrong_type():
    def tuples(dtype):
        return st.tuples(S.arrays(dtype, (2,), 1.0))

    with pytest.raises(TypeError, match=r"inputs must draw agreement.Example"):
        check_gradients(cubic_numpy, cubic_torch, tuples, max_examples=2, devices=["cpu"])
