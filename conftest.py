"""Test-session settings shared by tests/ and benchmarks/.

Hypothesis profiles ``dev``, ``ci`` and ``thorough`` are the project's pytest
plugin's (agreement/pytest_plugin.py, which describes them). This suite runs
``dev`` unless the HYPOTHESIS_PROFILE variable or ``--hypothesis-profile NAME``
names another.

Threads: NumPy's BLAS and torch's intra-op pool are each limited to one
thread for the session. Tests alternate NumPy and torch at small sizes, where
two thread pools competing for 2 cores cost far more than they gain.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

import agreement.pytest_plugin  # noqa: F401  registers the profiles, also where plugin autoloading is off

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(1)
_BLAS_LIMIT = threadpool_limits(limits=1)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config, items):
    """A test parametrized with ``device="cuda"`` is a ``cuda`` test, so ``-m cuda`` selects
    it. ``slow`` tests run only when selected (``-m slow``) or under the thorough profile."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and str(callspec.params.get("device", "")).startswith("cuda"):
            item.add_marker(pytest.mark.cuda)
    thorough = "thorough" in (os.environ.get("HYPOTHESIS_PROFILE"), config.getoption("hypothesis_profile", None))
    markexpr = config.option.markexpr or ""
    if "slow" in markexpr or "census" in markexpr or thorough:
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
