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
exactly), and M can under-measure systematically: where M absorbs a small
quantity that the compared dtype keeps (1 - 2.3e-10 is exactly 1 in float32),
M's error is capped by that quantity instead of growing with the terms (in
torch's BCE-with-logits at z = -100, y = 2.3e-10, float64 cancels terms of 100
while float32 drops y z = 2.3e-8 whole). So the harness takes samples of two
kinds, with independent roundings:

* in M, scaled: each side at the input itself (cast to M), NumPy also at the
  input with its parameters shrunk towards 0 by eta = 2^-20, 2^-14 and 2^-8
  relative, and torch at 2^-12 where M is the compared dtype: every
  intermediate that depends on the parameters rounds afresh, while signs, exact
  zeros and ties are kept (one factor per distinct value) and the local
  amplification barely changes. The shrunk ones are compared with float64 at
  the same shrunk input, so the move itself is not counted as error; the ones
  at the input with float64 at the input, so they include the rounding of the
  input to M, which is of the size of a first rounding step;
* in float64 comparisons, NumPy against itself in long double where the
  platform has an extended one (x86's 80-bit, for parameters of up to
  ``EXTENDED_MAX_SIZE`` elements): the float64 error itself, including roundings
  that float32 absorbs and that no nearby input re-rounds (log-softmax's
  1 - 1.3e-14 times an upstream of 3, whose float64 rounding is fixed);
* in the compared dtype itself, unscaled: each side's noise between nearby
  inputs, as Moré and Wild's ECnoise estimates a computation's noise. The
  parameters and data move by +a and -a (``NOISE_STEP_ULPS`` ulps, random
  signs; integer-valued data stays), and |f(x + a) + f(x - a) - 2 f(x)| / 2
  cancels the linear change; at that step the curvature term is far below
  rounding, and what remains is the rounding of the evaluations, cancellations
  included, at the compared precision. Noise cannot see an error that varies
  smoothly with the input (a vectorised exp's 1-2 ulp), so where M is the
  compared dtype torch gets its shrunk sample instead of this one.

Per element, ``measured = MEASURED_SAFETY * max_j |sample_j|``, every sample
already in the compared dtype's units (the M samples scaled by u / u_M).
Every sample judges both sides, each side's own evaluation in M included. For
torch in float32 that means torch's own rounding: the harness checks your NumPy,
not torch's arithmetic, so torch in float32 against NumPy in float64 fails where
the two *functions* differ by more than 32 times torch's own float32 rounding (a
layer norm of width 1 cancels 718 - 718 in torch's fused backward and leaves one
ulp, 6e-5, which no other sample shows). For NumPy in float32 it means that the
comparison catches what float32 breaks (overflow to inf or NaN, a result
absorbed to 0) while the rounding your formula amplifies is measured, not
blamed: without its own sample the verdict would rest on luck (a layer norm
over a constant row has a float32 mean that is exact at some values and not at
others), and a float32-only code path shows in the shrunk samples anyway. Why 32: if samples and the judged
error are draws from the same zero-mean distribution (Gaussian for many
comparable roundings; one dominant rounding is no worse), the judged difference
of two sides has standard deviation sqrt(2) sigma, and the chance that all R
samples fall below 1/S of it is about E|Z|^R (0.8 sqrt(2) / S)^R: 5e-8 per
element for R = 5 and S = 32, smaller for more samples (there are 7 to 9 per
element when none is skipped: 4 to 5 of NumPy, 2 to 3 of torch, 1 against long
double where there is one).

A non-finite sample (overflow in M), a subnormal one (its precision is below
u_M) or a run that raised (a user function that refuses float32) is no
information and is skipped; the analytic floor still applies. So is an element
whose samples are all exactly 0 on one side: that side computed it identically
in both precisions, as when log-sigmoid's 34 + 1.7e-15 is absorbed to 34 in
float64 too and torch's BCE-with-logits loss at z = -34 comes out exactly 0
(the mathematics says 1.7e-15); and so is an element that all of a side's runs
in M lost (absorbed, subnormal or not finite), since only those runs see a
rounding that varies smoothly with the input. Such an element's error is below the rounding
of terms that no measurement can see; the floor there takes the largest input
magnitude as the magnitude of the terms (``_tolerances`` in agreement/run.py).
Measurement runs are harness runs (``harness_runs``): their warnings, NumPy's
floating-point ones and the user's own, are silenced and not counted as the
user's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from agreement import precision
from agreement.registry import Example
from agreement.tolerance import unit_roundoff

MEASURED_SAFETY = 32.0
NUMPY_SHRINKS = (2.0**-20, 2.0**-14, 2.0**-8)
# x86's 80-bit long double (64-bit mantissa); elsewhere it is float64 and measures nothing
EXTENDED = np.finfo(np.longdouble).nmant >= 63
BRANCH = 2.0**-10  # a relative difference from long double past which float64 took another branch
EXTENDED_MAX_SIZE = 1 << 14  # long double has no BLAS: a (1000, 1000) product would take seconds
TORCH_SHRINK = 2.0**-12  # torch's shrunk sample where M is the compared dtype
NOISE_STEP_ULPS = 256  # the noise samples' step, in ulps of the compared dtype
OWN_SAFETY = 2.0  # below float32: the factor on each side's own, exactly measured, rounding


def measurement_dtype(dtype) -> np.dtype:
    """float32 for float64 comparisons; a lower precision measures itself."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float64 else dtype


@dataclass
class Sample:
    """One measured rounding error of one side: loss and gradients, in float64,
    already scaled to the compared dtype."""

    side: str  # "numpy" or "torch"
    loss: float
    grads: dict
    in_m: bool = False  # a run in the measurement precision M, scaled (not long double, not noise)


@dataclass
class Measurement:
    samples: list

    def bound(self, key: str, shape) -> np.ndarray | None:
        """Elementwise MEASURED_SAFETY * max |sample|; None when no sample has this key."""
        found = None
        for s in self.samples:
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
        about how far they are from the mathematics. So are elements where every one of
        a side's runs in M lost them (absorbed, subnormal, not finite): the M runs are
        the only samples that see a rounding which varies smoothly with the input, and
        noise cannot (torch's log-softmax backward at logits [0, 30] rounds
        exp(-9.4e-14) near 1 and leaves 1 ulp of the upstream 1.1 in a 1e-13 result,
        which float32 absorbs whole and nearby inputs round alike)."""
        out = np.zeros(tuple(shape), bool)
        for side in ("numpy", "torch"):
            samples = [s for s in self.samples if s.side == side]
            values = [(s.loss if key == "loss" else s.grads.get(key), s.in_m) for s in samples]
            values = [(v, in_m) for v, in_m in values if v is not None and np.shape(v) == tuple(shape)]
            if values:
                out |= np.all([(np.asarray(v) == 0) | np.isnan(v) for v, _ in values], axis=0)
            in_m = [v for v, in_m in values if in_m]
            if in_m:
                out |= np.all([np.isnan(v) for v in in_m], axis=0)
        return out


def _distinct(v: np.ndarray, cache: dict | None):
    """np.unique(v, return_inverse=True), once per array of one measurement."""
    if cache is not None and id(v) in cache and cache[id(v)][0] is v:
        return cache[id(v)][1]
    found = np.unique(v, return_inverse=True)
    if cache is not None:
        cache[id(v)] = (v, found)
    return found


def shrink(example: Example, eta: float, seed: int, cache: dict | None = None) -> Example:
    """Parameters moved towards 0 by a relative amount in [eta/2, eta], one factor per
    distinct value (ties and exact zeros stay, signs stay)."""
    rng = np.random.default_rng(seed)
    params = {}
    for k, v in example.params.items():
        v = np.asarray(v)
        if v.dtype.kind != "f" or v.size == 0:
            params[k] = v
            continue
        distinct, inverse = _distinct(v, cache)
        factors = 1 - eta * rng.uniform(0.5, 1.0, distinct.shape)
        params[k] = (v * factors[inverse.reshape(v.shape)]).astype(v.dtype)
    return Example(params, example.data, example.hyper)


def _error(low, high, mdtype, scale: float):
    """|low - high| scaled to the compared dtype, with NaN (no information) where the
    low-precision result is non-finite, subnormal, or exactly 0 where float64's is
    not (2e-9 absorbed or underflowed away): such an error is capped by the value
    and no longer scales with u_M. A large but non-zero error (0.5 - 0.5 + 2e-10
    rounding to 3e-8 in float32) is the terms' rounding, and scales."""
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    if low.shape != high.shape:
        return None
    tiny = float(precision.finfo(mdtype).smallest_normal)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(low - high) * scale
        informative = (np.isfinite(low) & np.isfinite(high) & ((np.abs(low) >= tiny) | (low == 0))
                       & ~((low == 0) & (high != 0)))
    return np.where(informative, err, np.nan)


def nudge(example: Example, eta: float, seed: int, cache: dict | None = None) -> tuple[Example, Example]:
    """Parameters and data moved by +a and by -a relative (a in [eta/2, eta], a random
    sign and size per distinct value: ties and exact zeros stay), cast back to their
    dtype. Data moves too, because data such as a target y = 2.3e-10 enters roundings
    (1 - y) that no parameter moves; integer-valued data (masks, one-hot targets,
    counts) stays as it is, since its exact values are usually what it means."""
    rng = np.random.default_rng(seed)

    def move(values: dict, keep_integers: bool):
        plus, minus = {}, {}
        for k, v in values.items():
            v = np.asarray(v)
            if v.dtype.kind != "f" or v.size == 0:
                plus[k] = minus[k] = v
                continue
            distinct, inverse = _distinct(v, cache)
            a = eta * rng.uniform(0.5, 1.0, distinct.shape) * rng.choice([-1.0, 1.0], distinct.shape)
            if keep_integers:
                a = np.where(distinct == np.round(distinct), 0.0, a)
            a = a[inverse].reshape(v.shape)
            plus[k], minus[k] = (v * (1 + a)).astype(v.dtype), (v * (1 - a)).astype(v.dtype)
        return plus, minus

    (p_plus, p_minus), (d_plus, d_minus) = move(example.params, False), move(example.data, True)
    return Example(p_plus, d_plus, example.hyper), Example(p_minus, d_minus, example.hyper)


def _extended_error(low, high, scale: float):
    """|float64 result - long double result|, formed in long double. Past 2^-10 of the
    larger of the value and ``scale`` (the inputs' magnitude, standing for the terms) the
    two took different branches rather than rounded differently (sigmoid + BCE at
    z = 38: float64 rounds p to 1 and clamps the log at -100, long double gives 38):
    no information about rounding. Relative to the value alone, cancellation makes
    rounding look like a branch (tanh'(17.6) = 7e-15 is 7% off in float64)."""
    low, high = np.asarray(low), np.asarray(high)
    if low.shape != high.shape or high.dtype != np.longdouble:
        return None  # the function did not compute in long double: no information
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(low.astype(np.longdouble) - high)
        rounding = err <= BRANCH * np.maximum(np.abs(high), scale)
        err = err.astype(np.float64)
    return np.where(np.isfinite(err) & rounding, err, np.nan)


def _second_difference(plus, minus, base):
    """|f(x + a) + f(x - a) - 2 f(x)| / 2: the linear change cancels, the curvature term
    is below rounding at the step used, and what is left is the rounding of the three
    evaluations (a sample of one evaluation's error, give or take a factor sqrt(6)/2)."""
    plus, minus, base = (np.asarray(v, np.float64) for v in (plus, minus, base))
    if not plus.shape == minus.shape == base.shape:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.abs(plus + minus - 2 * base) / 2
    return np.where(np.isfinite(out), out, np.nan)


_HARNESS_RUN: ContextVar[bool] = ContextVar("harness_run", default=False)


@contextmanager
def harness_runs():
    """Runs of the user's functions that the harness makes for itself (measurements, finite
    differences): their warnings are silenced and not counted as the user's."""
    token = _HARNESS_RUN.set(True)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield
    finally:
        _HARNESS_RUN.reset(token)


def in_harness_run() -> bool:
    return _HARNESS_RUN.get()


def measure(numpy_call: Callable, torch_call: Callable, example: Example, dtype, **given) -> Measurement:
    """Samples of each side's rounding in ``dtype`` (``_measure``), as harness runs."""
    with harness_runs():
        return _measure(numpy_call, torch_call, example, dtype, **given)


def _measure(numpy_call: Callable, torch_call: Callable, example: Example, dtype, *, numpy_own=None,
             numpy64=None, torch_own=None, torch64=None) -> Measurement:
    """Samples of each side's rounding in ``dtype`` (module docstring).

    ``numpy_call(example) -> (loss, grads)`` runs the NumPy function in the
    example's dtype; ``torch_call(example, dtype) -> (loss, grads)`` runs the torch
    function in ``dtype``. ``numpy_own``/``torch_own``: the judged evaluations in
    ``dtype`` when the caller has them (reused); ``numpy64``/``torch64``: each in
    float64 at the example.
    """
    dtype = np.dtype(dtype)
    mdtype = measurement_dtype(dtype)
    scale = unit_roundoff(dtype) / unit_roundoff(mdtype)
    example = example if example.dtype == dtype else example.astype(dtype)
    at_m = example if mdtype == dtype else example.astype(mdtype)
    samples = []

    def add(side, run, combine):
        try:
            outs = run()
        except Exception:  # noqa: BLE001 - a refusal is no information, not a verdict
            return
        loss = combine(*(o[0] for o in outs))
        grads = {}
        for k in outs[0][1]:
            parts = [o[1].get(k) for o in outs]
            if all(p is not None for p in parts):
                e = combine(*parts)
                if e is not None:
                    grads[k] = e
        if loss is not None:
            samples.append(Sample(side, loss, grads, in_m=combine is lower))

    def lower(low, high):
        return _error(low, high, mdtype, scale)

    in_dtype = mdtype == dtype
    distinct: dict = {}  # np.unique of each input, shared by the shrunk and nudged copies

    evaluated = {}  # the evaluations in the compared dtype, run once when the caller has none

    def numpy_d():
        if numpy_own is not None:
            return numpy_own
        if "numpy" not in evaluated:
            evaluated["numpy"] = numpy_call(example)
        return evaluated["numpy"]

    def torch_d():
        if torch_own is not None:
            return torch_own
        if "torch" not in evaluated:
            evaluated["torch"] = torch_call(example, dtype)
        return evaluated["torch"]

    # in the measurement precision, scaled: at the input
    add("numpy",
        lambda: (numpy_d() if in_dtype else numpy_call(at_m),
                 numpy64 if numpy64 is not None else numpy_call(example.astype(np.float64))), lower)
    for i, eta in enumerate(NUMPY_SHRINKS):
        moved = shrink(at_m, eta, seed=i, cache=distinct)
        add("numpy",  # with parameters shrunk by eta
            lambda m=moved: (numpy_call(m), numpy_call(m.astype(np.float64))), lower)
    add("torch",
        lambda: ((torch_d() if in_dtype else torch_call(at_m, mdtype)),
                 (torch64 if torch64 is not None else torch_call(example, np.float64))), lower)

    # against NumPy in long double, where the platform has one: the float64 error itself
    if dtype == np.float64 and EXTENDED and max(np.size(v) for v in example.params.values()) <= EXTENDED_MAX_SIZE:
        add("numpy",  # against long double
            lambda: (numpy_d(), numpy_call(example.astype(np.longdouble))),
            lambda low, high: _extended_error(low, high, input_magnitude(example)))

    # in the compared precision itself: noise between nearby inputs. In float32 (M is the
    # compared dtype) torch is sampled at a shrunk input instead: noise cannot see an error
    # that varies smoothly with the input, such as a vectorised exp's 1-2 ulp, and M can.
    eta = NOISE_STEP_ULPS * 2 * unit_roundoff(dtype)
    plus, minus = nudge(example, eta, seed=len(NUMPY_SHRINKS), cache=distinct)
    add("numpy",  # noise over inputs eta apart in the compared dtype
        lambda: (numpy_call(plus), numpy_call(minus), numpy_d()), _second_difference)
    if in_dtype:
        moved = shrink(at_m, TORCH_SHRINK, seed=len(NUMPY_SHRINKS) + 1, cache=distinct)
        add("torch",
            lambda: (torch_call(moved, mdtype), torch_call(moved, np.float64)), lower)
    else:
        # Inputs outside M's normal range (1e-79 underflows float32) leave the M samples
        # without information; a second noise direction keeps torch at two samples.
        directions = [(plus, minus)] + ([nudge(example, eta, seed=len(NUMPY_SHRINKS) + 2, cache=distinct)]
                                        if not fits(example, mdtype) else [])
        for p, m in directions:
            add("torch",
                lambda p=p, m=m: (torch_call(p, dtype), torch_call(m, dtype), torch_d()),
                _second_difference)
    return Measurement(samples)


@dataclass
class OwnRounding:
    """Below float32: each side's own rounding at the input, exactly (``own_rounding``)."""

    errors: dict  # side -> (loss error, {key: error}), NaN where no information

    def bound(self, side: str, key: str, shape) -> tuple[np.ndarray, np.ndarray]:
        """(OWN_SAFETY * |error|, informative) for one side's array; no information where
        the side was not measured or the shapes differ."""
        loss, grads = self.errors.get(side, (None, {}))
        value = loss if key == "loss" else grads.get(key)
        if value is None or np.shape(value) != tuple(shape):
            return np.zeros(tuple(shape)), np.zeros(tuple(shape), bool)
        informative = np.isfinite(value)
        return OWN_SAFETY * np.where(informative, value, 0.0), informative


def own_rounding(dtype, sides: dict) -> OwnRounding:
    """``sides``: side -> (its (loss, grads) in ``dtype``, its (loss, grads) in float64 at
    the same input). Each side's error against itself, exact: unlike a sample in another
    precision it needs no scaling, so a result absorbed to 0 or subnormal is still its
    own error; only a non-finite one is no information (NaN)."""
    def error(low, high):
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if low.shape != high.shape:
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(low - high)
        return np.where(np.isfinite(err), err, np.nan)

    errors = {}
    for side, ((loss, grads), (loss64, grads64)) in sides.items():
        errors[side] = (error(loss, loss64),
                        {k: e for k in grads if k in grads64 and grads[k] is not None and grads64[k] is not None
                         and (e := error(grads[k], grads64[k])) is not None})
    return OwnRounding(errors)


def input_magnitude(example: Example) -> float:
    """The largest finite |value| among the example's float inputs: where nothing better is
    known, the magnitude of the terms a result is formed from."""
    values = [np.abs(np.asarray(v, np.float64)) for v in (*example.params.values(), *example.data.values())
              if np.asarray(v).dtype.kind == "f" and np.size(v)]
    return max((float(np.max(v[np.isfinite(v)], initial=0.0)) for v in values), default=0.0)


def fits(example: Example, dtype) -> bool:
    """Whether every non-zero float input is a normal number of ``dtype``."""
    info = np.finfo(dtype)
    for v in (*example.params.values(), *example.data.values()):
        if np.asarray(v).dtype.kind != "f":
            continue
        v = np.abs(np.asarray(v, np.float64))
        if np.any((v != 0) & ((v < info.smallest_normal) | (v > info.max))):
            return False
    return True
