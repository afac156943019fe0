"""Element-wise comparison with a report a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agreement.tolerance import Tolerance


def format_ratio(ratio: float) -> str:
    """Error/tolerance compactly: 2.59x, 1.2e+290x; never hundreds of digits."""
    if np.isnan(ratio):
        return "nan"
    if np.isinf(ratio):
        return "infinitely many times"
    return f"{ratio:.3g}x" if ratio < 1e4 else f"{ratio:.2g}x"


def side_name(device: str, dtype: str) -> str:
    """What a report calls the side that produced ``actual``."""
    if device.startswith("torch-"):
        return f"torch autograd ({dtype}, {device.removeprefix('torch-')})"
    if device == "numpy":
        return f"NumPy in {dtype}"
    return device


@dataclass
class Comparison:
    """The worst element of one compared array."""

    case: str
    what: str  # parameter name, "loss", or "step 3 / W1"
    dtype: str
    device: str
    shape: tuple
    index: tuple
    actual: float
    expected: float
    abs_err: float
    rel_err: float
    tol: Tolerance
    ratio: float  # abs_err / allowed at the worst element (>1 fails)
    allowed: float = 0.0  # the tolerance at the worst element
    context: dict = field(default_factory=dict)
    actual_name: str = ""  # who computed actual, e.g. "torch autograd (float32, cpu)"
    expected_name: str = "the NumPy reference in float64"
    notes: list = field(default_factory=list)  # verdicts added after the comparison (agreement/verdict.py)

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0

    def _at_index(self, value) -> float:
        return float(np.broadcast_to(value, self.shape)[self.index]) if np.ndim(value) else float(value)

    def tolerance_parts(self) -> str:
        parts = [f"floor {self._at_index(self.tol.floor(np.float64(self.expected))):.3e} "
                 f"(rtol {self.tol.rtol:.3e}, atol {self._at_index(self.tol.atol):.3e})"]
        if np.any(self.tol.measured):
            parts.append(f"measured rounding {self._at_index(self.tol.measured):.3e}")
        if np.any(self.tol.shift):
            parts.append(f"earlier steps' rounding {self._at_index(self.tol.shift):.3e}")
        return " + ".join(parts)

    def report(self) -> str:
        actual_name = self.actual_name or side_name(self.device, self.dtype)
        lines = [
            f"{self.case}: {self.what} disagrees ({self.dtype}, {self.device})",
            f"  shape {self.shape}, worst element at index {self.index}",
            f"  {actual_name} gave {self.actual!r} where {self.expected_name} gave {self.expected!r}",
            f"  abs error {self.abs_err:.3e}, rel error {self.rel_err:.3e}; allowed {self.allowed:.3e} = "
            f"{self.tolerance_parts()}; {format_ratio(self.ratio)} the tolerance",
        ]
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  {k}: {v}" for k, v in self.context.items()]
        return "\n".join(lines)


def compare(actual, expected, tol: Tolerance, *, case: str, what: str, dtype: str, device: str,
            context: dict | None = None, actual_name: str = "",
            expected_name: str = "the NumPy reference in float64") -> Comparison:
    """Compare ``actual`` to ``expected`` (the higher-precision side) and return the worst element.

    NaN or Inf in ``actual`` where ``expected`` is finite, or a shape mismatch,
    counts as an infinite error.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{case}: {what} from {actual_name or side_name(device, dtype)} has shape "
                             f"{actual.shape}, but {expected_name} has shape {expected.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(actual - expected)
        err = np.where(np.isnan(err) & ~(np.isnan(actual) & np.isnan(expected)), np.inf, err)
        err = np.where(np.isnan(actual) & np.isnan(expected), 0.0, err)
        allowed = tol.bound(expected)
        allowed = np.where(np.isnan(allowed), 0.0, allowed)  # a NaN expected allows nothing but NaN
        ratios = np.where(err == 0, 0.0, err / np.where(allowed > 0, allowed, np.inf))
        ratios = np.where((err > 0) & (allowed == 0), np.inf, ratios)
    flat = int(np.argmax(ratios)) if ratios.size else 0
    index = np.unravel_index(flat, expected.shape) if expected.ndim and expected.size else ()
    worst_err = float(err[index]) if err.size else 0.0
    denom = abs(float(expected[index])) if expected.size else 0.0
    return Comparison(
        case=case, what=what, dtype=dtype, device=device, shape=expected.shape,
        index=tuple(int(i) for i in index),
        actual=float(actual[index]) if actual.size else float("nan"),
        expected=float(expected[index]) if expected.size else float("nan"),
        abs_err=worst_err, rel_err=worst_err / denom if denom else float("inf") if worst_err else 0.0,
        tol=tol, ratio=float(ratios[index]) if ratios.size else 0.0,
        allowed=float(allowed[index]) if np.size(allowed) else 0.0, context=dict(context or {}),
        actual_name=actual_name, expected_name=expected_name,
    )


def assert_all(comparisons) -> None:
    failed = [c for c in comparisons if not c.ok]
    if failed:
        raise AssertionError("\n".join(c.report() for c in failed))
