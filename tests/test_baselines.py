"""Every registered case against its stored baseline (the gate's comparison; docs/gate.md).

Fails when NumPy and torch disagree at the baseline's example, when the float64
reference drifts from its recorded values, when a worst error exceeds its
budget, or when a baseline is missing, unreadable or stale. The structured
result is attached to the JUnit XML for the gate's reports.
"""

from __future__ import annotations

import pytest

from agreement.gate import baselines
from agreement.gate.regression import check_case, stale_files
from agreement.gate.report import PROPERTY
from agreement.registry import cases

CASES = cases()


@pytest.mark.parametrize("seed", baselines.SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_matches_its_baseline(case, seed, record_property):
    result = check_case(case, baselines.directory(), baselines.SIZE, seed)
    record_property(PROPERTY, result.to_json())
    if not result.ok:
        pytest.fail(result.report(), pytrace=False)


def test_every_baseline_file_belongs_to_a_case():
    stale = stale_files(baselines.directory(), CASES)
    assert not stale, (f"baseline files no registered case reads: {[p.name for p in stale]}; "
                       "`python -m agreement.gate --regenerate` removes them")
