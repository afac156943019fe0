"""What this process's gradient checks found, for the pytest plugin's end-of-run summary.

``check_gradients`` calls ``record`` once per function, dtype and device it checked; the
plugin (agreement/pytest_plugin.py) reads ``records`` at the end of the run, and
under pytest-xdist each worker sends its records to the controller. Records are
plain dicts of str, int and float, so they cross process boundaries as they are.
"""

from __future__ import annotations

_RECORDS: list[dict] = []


def record(name: str, dtype: str, device: str, examples: int, worst_ratio: float, worst_what: str) -> None:
    """Note one check: ``examples`` examples of ``name`` at ``dtype`` on ``device``, whose
    largest error/tolerance ratio was ``worst_ratio`` (1 is at the tolerance), found at
    ``worst_what`` (e.g. "grad W[0, 1]" or "loss")."""
    _RECORDS.append(dict(name=str(name), dtype=str(dtype), device=str(device), examples=int(examples),
                         worst_ratio=float(worst_ratio), worst_what=str(worst_what)))


def records() -> list[dict]:
    """Copies of the records so far, oldest first."""
    return [dict(r) for r in _RECORDS]


def clear() -> None:
    _RECORDS.clear()
