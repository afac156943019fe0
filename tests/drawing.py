"""Many draws of a strategy at once, for tests that count what a strategy produces."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings


def draws(strategy, n: int = 200) -> list:
    """``n`` values of ``strategy`` (fewer if Hypothesis runs out of distinct ones): generation
    only, no explicit examples, no database replay, no shrinking, the same values every run."""
    seen = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        seen.append(value)

    collect()
    return seen
