"""The pytest plugin, seen from a user's suite: a small test file run by pytester.

Runs are in-process (fast) except where noted; the plugin sets aside this
session's records and Hypothesis profile for the inner run and gives them back.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import settings

from agreement import _results
from agreement.pytest_plugin import summary_lines

pytest_plugins = ["pytester"]

USER_TESTS = """
from agreement import _results

def test_relu_small():
    _results.record("relu", "float32", "cpu", 12, 0.25, "grad x[0]")

def test_relu_close():
    _results.record("relu", "float32", "cpu", 12, 0.75, "grad x[3]")

def test_relu_float64():
    _results.record("relu", "float64", "cpu", 12, 0.5, "grad x[1]")

def test_dense():
    _results.record("dense", "float64", "cpu", 30, 1e300, "grad W[0, 1]")

def test_softmax():
    _results.record("softmax", "float32", "cpu", 7, 0.0625, "loss")

def test_checks_nothing():
    pass
"""

# What USER_TESTS records, combined: worst first, examples summed over the two relu float32 tests.
EXPECTED_ROWS = [
    r"1e\+300 +30 +dense +float64 +cpu +grad W\[0, 1\]",
    r"0\.75 +24 +relu +float32 +cpu +grad x\[3\]",
    r"0\.5 +12 +relu +float64 +cpu +grad x\[1\]",
    r"0\.0625 +7 +softmax +float32 +cpu +loss",
]


def summary_rows(output: str) -> list[str]:
    """The lines of the "gradient agreement" section after its header lines."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ gradient agreement =+", line))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip() or lines[i].startswith("=")),
               len(lines))
    return [line.strip() for line in lines[start + 3:end]]


def assert_expected_summary(output: str) -> None:
    rows = summary_rows(output)
    assert len(rows) == len(EXPECTED_ROWS), rows
    for row, pattern in zip(rows, EXPECTED_ROWS, strict=True):
        assert re.fullmatch(pattern, row), (row, pattern)


@pytest.fixture(autouse=True)
def keep_hypothesis_profile():
    """Inner runs may load profiles (Hypothesis's --hypothesis-profile does not undo its load)."""
    before = settings.get_current_profile_name()
    yield
    settings.load_profile(before)


def test_summary_lists_each_function_once_worst_first(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    assert_expected_summary(result.stdout.str())


def test_summary_gathers_the_records_of_xdist_workers(pytester):
    # Subprocess workers: slow (each imports torch), and the one test that needs them.
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "-v")
    result.assert_outcomes(passed=6)
    output = result.stdout.str()
    assert "[gw0]" in output and "[gw1]" in output  # both workers ran tests, so both sent records
    assert_expected_summary(output)
    assert output.count("gradient agreement") == 1  # printed by the controller only


def test_no_section_when_nothing_was_checked(pytester):
    pytester.makepyfile(test_user="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "gradient agreement" not in result.stdout.str()


def test_an_inner_run_leaves_this_sessions_records_alone(pytester):
    earlier = _results.records()  # other tests of this session may have recorded checks already
    _results.record("outer", "float64", "cpu", 1, 0.5, "loss")
    try:
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest("-p", "no:cacheprovider")
        assert "outer" not in result.stdout.str()
        assert [r["name"] for r in _results.records()] == [r["name"] for r in earlier] + ["outer"]
    finally:
        _results.clear()
        for r in earlier:
            _results.record(**r)


def test_summary_lines_put_nan_first_and_cut_at_the_limit():
    records = [dict(name=f"f{i}", dtype="float32", device="cpu", examples=1, worst_ratio=0.01 * i, worst_what="loss")
               for i in range(5)]
    records += [dict(name="broken", dtype="float64", device="cuda", examples=3, worst_ratio=math.nan,
                     worst_what="grad b"),
                dict(name="huge", dtype="float64", device="cpu", examples=2, worst_ratio=math.inf, worst_what="loss"),
                dict(name="third", dtype="float64", device="cpu", examples=2, worst_ratio=1 / 3, worst_what="loss")]
    lines = summary_lines(records, limit=3)
    assert [line.split()[0] for line in lines[2:5]] == ["nan", "inf", "0.333"]  # three significant digits
    assert lines[5] == "... 5 more, less close to their tolerance (-v shows all)"
    assert len(summary_lines(records)) == 2 + 8


# --- Hypothesis profiles ---------------------------------------------------------------------------

PRINT_PROFILE = """
from hypothesis import settings

def test_profile():
    print("PROFILE", settings.get_current_profile_name(), settings.default.max_examples)
"""


def profile_seen(result) -> str:
    return re.search(r"PROFILE (\S+ \d+)", result.stdout.str()).group(1)


def test_hypothesis_profile_variable_loads_a_profile_of_the_plugin(pytester, monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
    pytester.makepyfile(test_user=PRINT_PROFILE)
    before = settings.get_current_profile_name()
    assert profile_seen(pytester.runpytest("-s")) == "thorough 400"
    assert settings.get_current_profile_name() == before  # and the plugin put back the one it replaced


def test_a_profile_the_suite_loads_wins_over_the_variable(pytester, monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
    # At a conftest's top level: the plugin's profiles are registered before conftests run.
    # a profile of the suite's own, so the outer session's profile (ci under CI) cannot be the same one
    pytester.makeconftest("from hypothesis import settings\n"
                          "settings.register_profile('suite-own', max_examples=7)\n"
                          "settings.load_profile('suite-own')\n")
    pytester.makepyfile(test_user=PRINT_PROFILE)
    assert profile_seen(pytester.runpytest("-s")) == "suite-own 7"


def test_the_command_line_wins_over_the_variable(pytester, monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
    pytester.makepyfile(test_user=PRINT_PROFILE)
    assert profile_seen(pytester.runpytest("-s", "--hypothesis-profile", "dev")) == "dev 12"


def test_an_unknown_profile_in_the_variable_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "no-such-profile")
    pytester.makepyfile(test_user=PRINT_PROFILE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*HYPOTHESIS_PROFILE='no-such-profile'*not registered*"])


# --- Markers ---------------------------------------------------------------------------------------

def test_markers_are_registered(pytester):
    # Read from --markers: in-process, pytest.mark remembers markers this session's own
    # configuration declared, so --strict-markers would pass without the plugin.
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.slow: long-running checks*", "@pytest.mark.cuda: needs a CUDA device*"])


def test_a_cuda_test_is_skipped_without_cuda(pytester):
    pytester.makepyfile(test_user="""
import pytest, torch

@pytest.mark.cuda
def test_cuda():
    assert torch.cuda.is_available()
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)


def test_markers_the_suite_declares_are_not_declared_twice(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    slow: the suite's own meaning\n")
    output = pytester.runpytest("--markers").stdout.str()
    assert output.count("@pytest.mark.slow:") == 1 and "the suite's own meaning" in output
    assert output.count("@pytest.mark.cuda:") == 1


# --- A real check ----------------------------------------------------------------------------------

REAL_CHECK = """
import numpy as np
import torch
from hypothesis import strategies as st
from agreement import Example, check_gradients
from agreement.strategies import arrays


def square(params, data):
    return np.sum(params["w"] ** 2), {"w": 2 * params["w"]}


def square_torch(params, data):
    return (params["w"] ** 2).sum()


def test_square():
    check_gradients(square, square_torch, lambda dtype: st.builds(Example, st.fixed_dictionaries(
        {"w": arrays(dtype, 3, 10.0)}), st.just({})), name="square", max_examples=5, dtypes=[np.float64],
        devices=["cpu"])
"""


def test_a_real_check_appears_in_the_summary(pytester):
    # check_gradients records itself; its row must match what it checked.
    pytester.makepyfile(test_user=REAL_CHECK)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    rows = summary_rows(result.stdout.str())
    assert len(rows) == 1 and re.fullmatch(r"\S+ +5 +square +float64 +cpu +.*", rows[0]), rows
    assert float(rows[0].split()[0]) < 1
