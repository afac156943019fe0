"""Test-session settings shared by tests/ and benchmarks/.

Hypothesis profiles (select with ``--hypothesis-profile NAME`` or the
HYPOTHESIS_PROFILE variable):

* ``dev`` (default): few examples per test, fast feedback.
* ``ci``: derandomized (the same examples every run, so CI verdicts repeat),
  no example database, reproduction blobs printed.
* ``thorough``: many more examples, for nightly runs.

Threads: NumPy's BLAS and torch's intra-op pool are each limited to one
thread for the session. Tests alternate NumPy and torch at small sizes, where
two thread pools competing for 2 cores cost far more than they gain.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("dev", max_examples=12, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_common)
settings.register_profile("thorough", max_examples=400, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(1)
_BLAS_LIMIT = threadpool_limits(limits=1)


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run only when selected (``-m slow``)."""
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
