"""The tolerance policy: one rule, derived from the dtype and the computation.

A result element computed in floating point with unit roundoff ``u`` through
a chain of ``d`` elementary operations and reductions of total length ``n``
carries a forward error bounded (to first order) by ``(d + n) u`` times the
magnitude of the terms it was formed from (Higham, *Accuracy and Stability of
Numerical Algorithms*, ch. 3-4: the gamma_n bound). That worst case assumes
every rounding error has the same sign; with errors that behave as independent
zero-mean variables the bound is ``lambda sqrt(d + n) u`` with probability at least
``1 - 2 (d + n) exp(-lambda^2 / 2)`` (Higham & Mary, "A New Approach to
Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5), 2019).
With ``lambda = 8`` that probability of a false alarm is below 3e-14 per step,
so the policy takes the smaller of the two bounds: the worst case for short
chains (d + n <= 64, every drawn test shape), the probabilistic one for long
reductions (the tutorial and large sizes). Hence, per compared array:

    k     = depth + n
    steps = min(k, LAMBDA * sqrt(k))
    rtol  = SAFETY * steps * u * cond
    atol  = rtol * scale + k * smallest_normal(dtype)

* ``u``      half the dtype's machine epsilon (2^-24 for float32, 2^-53 for float64);
* ``depth``  from the case's tolerance class (elementwise ops, transcendental
             calls at up to a few ulps each, chained layers);
* ``n``      the case's reduction length on the drawn shapes (sum of the lengths
             of the reductions along the longest chain);
* ``scale``  the magnitude of the terms: the case's own bound on the size of
             the terms of each element (``agreement/scales.py``: sums of |terms|,
             and 1 - tanh(x)^2 or sigmoid(z) - y, which cancel to a small result
             whose rounding error stays the size of the terms), elementwise and
             at least |expected|; without one, normwise: the largest |expected|
             element of the compared array;
* ``cond``   extra amplification of input rounding the case declares where the
             math has it (for example log(1 - p) near p = 1); 1 otherwise;
* the ``smallest_normal`` floor covers results that underflow in the lower
             precision (error below the dtype's normal range is not resolvable);
* ``SAFETY = 2`` because both sides of a comparison round (NumPy and torch in
             the same dtype), each within the bound.

Comparisons run in torch.testing's direction: ``expected`` is the
higher-precision side (the float64 NumPy reference), and an element passes when
``|actual - expected| <= atol + rtol * |expected|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agreement import precision
from agreement.precision import unit_roundoff

SAFETY = 2.0
LAMBDA = 8.0


@dataclass(frozen=True)
class ToleranceClass:
    """How many rounding steps a case's outputs carry besides its reductions."""

    name: str
    depth: int


ELEMENTWISE = ToleranceClass("elementwise", depth=8)  # an activation and its derivative: a few ops, exp/log at <= 4 ulp
LOSS = ToleranceClass("loss", depth=16)  # a loss: log-sum-exp or log terms, clamps, a reduction's scaling
LINEAR_MODEL = ToleranceClass("linear-model", depth=16)  # dense layer + loss
DEEP_MODEL = ToleranceClass("deep-model", depth=32)  # dense, relu, dense, loss, and the backward chain


@dataclass(frozen=True)
class Tolerance:
    """Allowed |actual - expected| = atol + rtol |expected| + shift + measured.

    ``atol + rtol |expected|`` is the analytic floor of this module; ``shift``
    (elementwise, 0 for single evaluations) is the measured propagation of earlier
    rounding that trajectory comparisons add (agreement/trajectory.py);
    ``measured`` (elementwise) is the rounding measured on the input itself
    (agreement/rounding.py)."""

    rtol: float
    atol: np.ndarray | float
    shift: np.ndarray | float = 0.0
    measured: np.ndarray | float = 0.0

    def floor(self, expected: np.ndarray) -> np.ndarray:
        # rtol 0 (low precision folds it into atol): no 0 * inf where the reference is infinite
        return self.atol + (self.rtol * np.abs(expected) if self.rtol else np.zeros(np.shape(expected)))

    def bound(self, expected: np.ndarray) -> np.ndarray:
        return self.floor(expected) + self.shift + self.measured


def tolerance(cls: ToleranceClass, dtype, n: int, expected: np.ndarray, cond: float = 1.0,
              term_scale=0.0) -> Tolerance:
    """``term_scale``: a number (normwise, with the largest |expected|) or an array
    of the expected's shape (elementwise, with |expected|); see the module docstring."""
    k = cls.depth + max(int(n), 1)
    steps = min(k, LAMBDA * np.sqrt(k))
    rtol = SAFETY * steps * unit_roundoff(dtype) * max(cond, 1.0)
    if np.ndim(term_scale):
        scale = np.maximum(np.asarray(term_scale, np.float64), np.abs(expected))
    else:
        magnitudes = np.abs(np.asarray(expected, np.float64))
        scale = max(float(np.max(magnitudes[np.isfinite(magnitudes)], initial=0.0)), float(term_scale))
    atol = rtol * scale + k * float(precision.finfo(dtype).smallest_normal)
    return Tolerance(rtol, atol)
