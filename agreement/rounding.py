"""Measured rounding: how much each side's computation amplifies rounding, observed
on the very input being checked.

The analytic policy (``agreement/tolerance.py``) bounds rounding relative to the
result's own magnitude. That is sound where a result is not much smaller than
the terms it is formed from, and wrong by orders of magnitude where it is:
1 - tanh(x)^2 at |x| = 4, softmax - onehot near p = 1, a layer norm's gradient
that is exactly 0 in the mathematics, logits near 1024 that differ by 0.07.
Nobody can be asked to derive term magnitudes for their own layer, so the
harness measures them, as kernel test suites do with a "measuring stick"
(FlashAttention's tests judge a low-precision kernel against the error that
plain PyTorch makes in the same precision) and as Monte-Carlo arithmetic does
(CADNA, Verificarlo: several differently rounded runs, their spread estimates
the error).

Method. A result computed in a precision with unit roundoff u carries an error
sum_k c_k delta_k, |delta_k| <= u, where c_k is how much the computation
amplifies its k-th rounding (cancellation makes some c_k large). The same
function evaluated in a *measurement precision* M (float32, or the compared
dtype itself when that is not float64) and compared with its own float64
evaluation on the same, exactly representable, input gives one sample of that
sum with u_M in place of u; scaling by u / u_M turns it into a sample of the
compared dtype's error. Each side is measured separately (NumPy against NumPy in
float64, torch against torch in float64), so a difference between the two
*functions*, a bug, cancels out of every measurement: it never enters the
tolerance.

One sample can be small by luck (an intermediate that happens to round almost
exactly), so the harness takes several, with independent roundings:

* each side at the input itself (cast to M);
* each side at the input with its parameters shrunk towards 0 by a relative
  amount eta (NumPy at eta = 2^-20, 2^-14 and 2^-8, torch at 2^-12): the
  parameters move by many ulps of M, so every intermediate that depends on them
  rounds afresh, while signs, exact zeros and ties are kept (one factor per
  distinct value) and the local amplification barely changes. The evaluation
  in M is compared with float64 at the same moved input, so the move itself
  is not counted as error.

Per element, ``measured = MEASURED_SAFETY * (u / u_M) * max_j |sample_j|``; the
side being judged never contributes its own judged evaluation. Why 32: if
samples and the judged error are draws from the same zero-mean distribution
(Gaussian for many comparable roundings; one dominant rounding is no worse),
the judged difference of two sides has standard deviation sqrt(2) sigma, and
the chance that all R >= 5 samples (each side is judged by at least 5) fall below 1/S of it is about
E|Z|^R (0.8 sqrt(2) / S)^R: 5e-8 per element for R = 5 and S = 32, smaller
for more samples (each side is judged against at least 5).

A non-finite sample (overflow in M), a subnormal one (its precision is below
u_M) or a run that raised (a user function that refuses float32) is no
information and is skipped; the analytic floor still applies. So is an element
whose samples are all exactly 0 on one side: that side computed it identically
in both precisions, as when log-sigmoid's 34 + 1.7e-15 is absorbed to 34 in
float64 too and torch's BCE-with-logits loss at z = -34 comes out exactly 0
(the mathematics says 1.7e-15). Such an element's error is below the rounding
of terms that no measurement can see; the floor there takes the largest input
magnitude as the magnitude of the terms (``evaluate`` in agreement/run.py). Measurement runs
happen with NumPy's floating-point warnings silenced: they are not the user's
computation in the compared dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agreement.registry import Example
from agreement.tolerance import unit_roundoff

MEASURED_SAFETY = 32.0
NUMPY_SHRINKS = (2.0**-20, 2.0**-14, 2.0**-8)
TORCH_SHRINK = 2.0**-12


def measurement_dtype(dtype) -> np.dtype:
    """float32 for float64 comparisons; a lower precision measures itself."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float64 else dtype


@dataclass
class Sample:
    """One measured rounding error of one side: loss and gradients, in float64,
    already scaled to the compared dtype. ``own`` marks the judged evaluation itself."""

    side: str  # "numpy" or "torch"
    label: str  # where it was taken, for the report
    own: bool
    loss: float
    grads: dict


@dataclass
class Measurement:
    samples: list
    unavailable: list  # labels of runs that gave no information, with why

    def bound(self, side: str, key: str, shape) -> np.ndarray | None:
        """Elementwise MEASURED_SAFETY * max |sample| over the samples that may judge
        ``side`` (all but its own); None when no sample has this key."""
        found = None
        for s in self.samples:
            if s.own and s.side == side:
                continue
            value = s.loss if key == "loss" else s.grads.get(key)
            if value is None or np.shape(value) != tuple(shape):
                continue
            value = np.where(np.isfinite(value), np.abs(value), 0.0)
            found = value if found is None else np.maximum(found, value)
        return None if found is None else MEASURED_SAFETY * found

    def degenerate(self, key: str, shape) -> np.ndarray:
        """Elements where one side's every sample is exactly 0 or no information: that
        side computed them identically in M and in float64 (an absorption such as
        34 + 1.7e-15 = 34, or an exact copy) or lost them in M, which says nothing
        about how far they are from the mathematics."""
        out = np.zeros(tuple(shape), bool)
        for side in ("numpy", "torch"):
            values = [s.loss if key == "loss" else s.grads.get(key) for s in self.samples if s.side == side]
            values = [v for v in values if v is not None and np.shape(v) == tuple(shape)]
            if values:
                out |= np.all([(np.asarray(v) == 0) | np.isnan(v) for v in values], axis=0)
        return out

    def count(self, side: str) -> int:
        return sum(1 for s in self.samples if not (s.own and s.side == side))


def shrink(example: Example, eta: float, seed: int) -> Example:
    """Parameters moved towards 0 by a relative amount in [eta/2, eta], one factor per
    distinct value (ties and exact zeros stay, signs stay)."""
    rng = np.random.default_rng(seed)
    params = {}
    for k, v in example.params.items():
        v = np.asarray(v)
        if v.dtype.kind != "f" or v.size == 0:
            params[k] = v
            continue
        distinct, inverse = np.unique(v, return_inverse=True)
        factors = 1 - eta * rng.uniform(0.5, 1.0, distinct.shape)
        params[k] = (v * factors[inverse.reshape(v.shape)]).astype(v.dtype)
    return Example(params, example.data, example.hyper)


def _error(low, high, mdtype, scale: float):
    """|low - high| scaled to the compared dtype, with NaN (no information) where the
    low-precision result is non-finite, subnormal, or saturated: wrong by half its
    own size or more (0 where float64 has 2e-9), so that its error no longer
    scales with u_M."""
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    if low.shape != high.shape:
        return None
    tiny = float(np.finfo(mdtype).smallest_normal)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(low - high) * scale
        informative = (np.isfinite(low) & np.isfinite(high) & ((np.abs(low) >= tiny) | (low == 0))
                       & ~(np.abs(low - high) >= 0.5 * np.abs(high)) | (low == high))
    return np.where(informative, err, np.nan)


def _quiet(fn, *args):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args)


def measure(numpy_call: Callable, torch_call: Callable, example: Example, dtype, *, numpy_own=None,
            torch_own=None, torch64=None) -> Measurement:
    """Samples of each side's rounding in ``dtype`` (module docstring).

    ``numpy_call(example) -> (loss, grads)`` runs the NumPy function in the
    example's dtype; ``torch_call(example, dtype) -> (loss, grads)`` runs the torch
    function in ``dtype``. ``numpy_own``/``torch_own``: the judged evaluations in
    ``dtype`` when the caller has them (reused, marked own); ``torch64``: torch in
    float64 at the example, when the caller has it.
    """
    dtype = np.dtype(dtype)
    mdtype = measurement_dtype(dtype)
    scale = unit_roundoff(dtype) / unit_roundoff(mdtype)
    at_m = example.astype(mdtype)
    samples, unavailable = [], []

    def sample(side, label, own, low_fn, high_fn):
        try:
            low = low_fn()
            high = high_fn()
        except Exception as error:  # noqa: BLE001 - a refusal is no information, not a verdict
            unavailable.append(f"{side} {label}: {type(error).__name__}: {error}")
            return
        loss = _error(low[0], high[0], mdtype, scale)
        grads = {}
        for k, g in low[1].items():
            if k in high[1] and g is not None and high[1][k] is not None:
                e = _error(g, high[1][k], mdtype, scale)
                if e is not None:
                    grads[k] = e
        samples.append(Sample(side, label, own, loss, grads))

    def numpy_at(ex):
        return _quiet(numpy_call, ex)

    def numpy64_at(ex):
        return _quiet(numpy_call, ex.astype(np.float64))

    own_m = mdtype == dtype
    sample("numpy", f"at the input in {mdtype.name}", own_m,
           (lambda: numpy_own) if (own_m and numpy_own is not None) else (lambda: numpy_at(at_m)),
           lambda: numpy64_at(at_m))
    for i, eta in enumerate(NUMPY_SHRINKS):
        moved = shrink(at_m, eta, seed=i)
        sample("numpy", f"with parameters shrunk by {eta:.0e}", False, lambda m=moved: numpy_at(m),
               lambda m=moved: numpy64_at(m))
    t64 = (lambda: torch64) if torch64 is not None else (lambda: _quiet(torch_call, example, np.float64))
    sample("torch", f"at the input in {mdtype.name}", own_m,
           (lambda: torch_own) if (own_m and torch_own is not None) else (lambda: _quiet(torch_call, at_m, mdtype)),
           t64)
    moved = shrink(at_m, TORCH_SHRINK, seed=len(NUMPY_SHRINKS))
    sample("torch", f"with parameters shrunk by {TORCH_SHRINK:.0e}", False,
           lambda: _quiet(torch_call, moved, mdtype), lambda: _quiet(torch_call, moved, np.float64))
    return Measurement(samples, unavailable)
