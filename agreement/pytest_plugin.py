"""pytest plugin for test suites that check gradients with ``agreement``.

Installing the package registers it (entry point ``pytest11``, name
``gradient_agreement``), so every pytest run in that environment loads it; turn
it off for a run with ``-p no:gradient_agreement``. It does three things.

**Hypothesis profiles** ``dev``, ``ci`` and ``thorough``, registered when the
plugin is imported, before any conftest.py, so a conftest may load them at its
top level:

* ``dev``: 12 examples per test, fast feedback.
* ``ci``: 25 examples, derandomized (the same examples on every run, so CI
  verdicts repeat), no example database, reproduction blobs printed. It
  replaces Hypothesis's built-in ``ci`` profile, which it extends; Hypothesis
  loads ``ci`` by itself when it detects a CI system, and this one then applies.
* ``thorough``: 400 examples, for nightly runs.

All three have no deadline (a first call into torch can take seconds) and do
not fail a test for slow or heavily filtered generation.

Which profile is loaded, latest word first: ``--hypothesis-profile NAME``
(Hypothesis's own plugin, which configures after this one); a profile loaded
by the suite itself (in a conftest.py, which this plugin detects by the current
profile having changed between its start and its configure step); the
``HYPOTHESIS_PROFILE`` environment variable, which this plugin loads only when
neither of the others chose; otherwise Hypothesis's default. The suite wins
over the variable because a conftest that loads a profile may already read the
variable itself, with its own fallback. A name in ``HYPOTHESIS_PROFILE`` that
no one has registered by then is a usage error. Loaded through a conftest's
``pytest_plugins`` instead of the entry point, the plugin starts too late to
tell whether the conftest chose a profile, and then loads none.

**Markers** ``slow`` and ``cuda``, unless the suite declares them already. A
test marked ``cuda`` is skipped when torch sees no CUDA device.

**A summary** at the end of the run, section "gradient agreement": for each
checked function, dtype and device, the number of examples and the worst
error/tolerance ratio (1 is at the tolerance, above 1 fails) with where it was
found, worst first, so a suite shows how close to its tolerances it runs.
Checks record themselves through ``agreement._results``; under pytest-xdist
each worker sends its records to the controller, which prints the summary.
The section appears only when something was checked.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from agreement import _results

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("dev", max_examples=12, **_COMMON)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=400, **_COMMON)

MARKERS = {
    "slow": "long-running checks (deselect with -m 'not slow')",
    "cuda": "needs a CUDA device; skipped when torch sees none",
}
SUMMARY_ROWS = 20  # rows shown without -v; the worst ones, which are the ones to read
_WORKER_KEY = "gradient_agreement_records"
_PROFILE_BEFORE_CONFTESTS = pytest.StashKey[str]()


def _current_profile() -> str:
    return settings.get_current_profile_name()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config):
    # The last moment before conftest.py files run: a profile different from this one at
    # configure time was loaded by the suite.
    early_config.stash[_PROFILE_BEFORE_CONFTESTS] = _current_profile()


@pytest.hookimpl(tryfirst=True)  # before Hypothesis's plugin, so that --hypothesis-profile overrides this
def pytest_configure(config):
    declared = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(_Session(config, _load_profile(config)), "gradient_agreement_session")


def _load_profile(config) -> str | None:
    """Load HYPOTHESIS_PROFILE if the suite did not choose a profile; returns the profile it
    replaced (to restore at the end, for pytest runs nested in one process), or None."""
    name = os.environ.get("HYPOTHESIS_PROFILE")
    before = config.stash.get(_PROFILE_BEFORE_CONFTESTS, None)
    if not name or before is None or _current_profile() != before:
        return None
    try:
        settings.load_profile(name)
    except InvalidArgument as error:  # a name no one registered
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={name!r}: {error}") from None
    return before


class _Session:
    """One pytest run's state: the records gathered from xdist workers, and what to restore."""

    def __init__(self, config, replaced_profile: str | None):
        self.config = config
        self.replaced_profile = replaced_profile
        self.from_workers: list[dict] = []
        # Records made before this run belong to an enclosing one (pytest run in-process, as
        # pytester does); they are set aside and given back when this run ends.
        self.outer_records = _results.records()
        _results.clear()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        if item.get_closest_marker("cuda") is not None:
            import torch  # here, not at the top: only a suite with CUDA tests needs it

            if not torch.cuda.is_available():
                pytest.skip("cuda: torch sees no CUDA device")

    def pytest_sessionfinish(self, session):
        worker_output = getattr(self.config, "workeroutput", None)
        if worker_output is not None:  # an xdist worker: the controller prints the summary
            worker_output[_WORKER_KEY] = _results.records()

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: absent without xdist
    def pytest_testnodedown(self, node, error):
        # A worker that crashed may have sent nothing.
        self.from_workers.extend((getattr(node, "workeroutput", None) or {}).get(_WORKER_KEY, []))

    def pytest_terminal_summary(self, terminalreporter):
        records = self.from_workers + _results.records()
        if not records:
            return
        limit = None if self.config.get_verbosity() > 0 else SUMMARY_ROWS
        terminalreporter.section("gradient agreement")
        for line in summary_lines(records, limit):
            terminalreporter.line(line)

    def pytest_unconfigure(self, config):
        _results.clear()
        for r in self.outer_records:
            _results.record(**r)
        if self.replaced_profile is not None:
            settings.load_profile(self.replaced_profile)


def _badness(ratio: float) -> float:
    """Sort key, larger is worse: NaN (an error that could not be measured) above everything."""
    return math.inf if math.isnan(ratio) else ratio


def combine(records: list[dict]) -> list[dict]:
    """One row per (name, dtype, device): examples summed, the worst ratio and where it was;
    worst first, ties in name order so the output is the same on every run."""
    rows: dict[tuple, dict] = {}
    for r in records:
        key = (r["name"], r["dtype"], r["device"])
        row = rows.setdefault(key, dict(r, examples=0, worst_ratio=-math.inf))
        row["examples"] += r["examples"]
        if _badness(r["worst_ratio"]) > _badness(row["worst_ratio"]):
            row["worst_ratio"], row["worst_what"] = r["worst_ratio"], r["worst_what"]
    return sorted(rows.values(), key=lambda row: (-_badness(row["worst_ratio"]), row["name"], row["dtype"],
                                                  row["device"]))


def summary_lines(records: list[dict], limit: int | None = None) -> list[str]:
    """The summary as text lines, at most ``limit`` rows of functions."""
    rows = combine(records)
    shown = rows if limit is None else rows[:limit]
    table = [("ratio", "examples", "function", "dtype", "device", "worst at")]
    # Three significant digits: a huge ratio prints as 1.23e+300, not as 300 digits.
    table += [(f"{r['worst_ratio']:.3g}", str(r["examples"]), r["name"], r["dtype"], r["device"], r["worst_what"])
              for r in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["worst error/tolerance ratio per checked function (1 is at the tolerance; above 1 fails)"]
    for row in table:
        numbers = [row[0].rjust(widths[0]), row[1].rjust(widths[1])]
        words = [cell.ljust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(numbers + words).rstrip())
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more, less close to their tolerance (-v shows all)")
    return lines
