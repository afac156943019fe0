"""The third opinion: when NumPy and torch disagree, which one the mathematics sides with.

A failed gradient comparison gets a float64 finite-difference estimate of the
worst element (``finite_differences.derivative``: its own step, kinks declined)
and a sentence saying what it shows. A failed comparison in a precision below
float64 also says whether NumPy and torch in that precision agree with each
other: then both carry the same rounding and the discrepancy with float64 is
rounding they share rather than a bug.
"""

from __future__ import annotations

import numpy as np

from agreement.compare import Comparison
from agreement.finite_differences import derivative
from agreement.tolerance import SAFETY


def _at(array, index) -> float:
    return float(np.asarray(array, np.float64)[index])


def finite_difference_note(c: Comparison, fd, numpy_value: float, torch_value: float, names: dict) -> str:
    """``c`` compared one side with the float64 NumPy gradient; ``fd`` estimates its worst element."""
    who, torch_who = names.get("who", "the NumPy reference"), "autograd"
    if not fd.ok:
        return f"finite differences decline to judge: {fd.declined}"
    close = SAFETY * fd.error + c.allowed
    numpy_ok, torch_ok = abs(fd.value - numpy_value) <= close, abs(fd.value - torch_value) <= close
    estimate = f"finite differences give {float(fd.value)!r} (+- {fd.error:.1e})"
    if torch_ok and not numpy_ok:
        return f"{who} differs from {torch_who}; {estimate}, agreeing with {torch_who}"
    if numpy_ok and not torch_ok:
        return (f"{torch_who} deviates from the mathematics here; {estimate}, agreeing with {who} "
                "(a torch convention?)")
    if numpy_ok and torch_ok:
        return f"{estimate}: too coarse to tell the two apart"
    return f"{estimate}, agreeing with neither side"


def shared_rounding_note(c: Comparison, other_value: float, other_name: str) -> str | None:
    """In a low precision: whether the other side, in the same precision, agrees with this one."""
    if c.dtype == "float64" or not np.isfinite(other_value) or not np.isfinite(c.actual):
        return None
    if abs(other_value - c.actual) <= c.allowed:
        return (f"{other_name} gave {other_value!r}, agreeing with it: the discrepancy with float64 looks like "
                f"rounding both share in {c.dtype}, not a bug")
    return None


def explain(comparisons: list[Comparison], numpy_loss, ex64, values: dict, names: dict) -> None:
    """Add notes to each failed gradient comparison. ``numpy_loss(params) -> float``
    is the NumPy loss in float64 at ``ex64``'s data; ``values[side][name]`` the
    gradients each side gave ("numpy64", "torch", and "numpy" below float64)."""
    for c in comparisons:
        if c.ok or not c.what.startswith("grad "):
            continue
        name = c.what.removeprefix("grad ")
        if name not in ex64.params or not np.all(np.isfinite(ex64.params[name])):
            continue
        side = "torch" if c.device.startswith("torch") else "numpy"
        torch_value = _at(values["torch"][name], c.index)
        numpy_value = _at(values["numpy64"][name], c.index)
        fd = derivative(numpy_loss, ex64.params, name, c.index)
        c.notes.append(finite_difference_note(c, fd, numpy_value, torch_value, names))
        other = "numpy" if side == "torch" else "torch"
        if other in values:
            note = shared_rounding_note(c, _at(values[other][name], c.index), names[other])
            if note:
                c.notes.append(note)
