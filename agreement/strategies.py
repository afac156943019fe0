"""Hypothesis strategies for arrays, shapes and hyperparameters.

Drawn arrays keep what Hypothesis likes to produce (exact zeros, repeated
values, the interval's edges) because those are the kinks and ties where
implementations go wrong. Subnormals are excluded: their precision is lower
than the dtype's unit roundoff, which the tolerance policy assumes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agreement import precision

DTYPES = (np.float64, np.float32)


def _width(dtype) -> int:
    return precision.storage(dtype).itemsize * 8


def reals(dtype, bound: float, low: float | None = None):
    """Finite floats of ``dtype`` in [low, bound] (low defaults to -bound); the
    bounds are rounded to the nearest value ``dtype`` represents. ``dtype`` may be
    a precision NumPy lacks (agreement/precision.py: bfloat16 values in float32)."""
    dtype = precision.resolve(dtype)
    low = -bound if low is None else low
    low, bound = (_in_dtype(dtype, v) for v in (low, bound))
    drawn = st.floats(low, bound, width=_width(dtype), allow_nan=False, allow_infinity=False,
                      allow_subnormal=False)
    if not precision.emulated(dtype):
        return drawn
    # rounding is monotonic and the bounds are representable: the draw stays in [low, bound]
    return drawn.map(lambda v: _in_dtype(dtype, v))


def within_range(dtype, bound: float, degree: int) -> float:
    """``bound`` lowered where ``dtype``'s range is small: values up to the result raised
    to ``degree`` (the highest power of drawn values a loss's terms form: 4 for a squared
    residual of products) stay below 1/16 of the largest finite value. Only float16
    (largest 65504) is changed by it in practice: degree 4 gives 8, degree 2 gives 64.
    Hypothesis still draws the bound itself often, so sums of such terms reach the
    overflow threshold (and are skipped as beyond the precision, counted) some of the time."""
    return min(float(bound), (float(precision.finfo(dtype).max) / 16) ** (1 / degree))


def arrays(dtype, shape, bound: float = 100.0, low: float | None = None):
    dtype = precision.resolve(dtype)
    return hnp.arrays(dtype, shape, elements=reals(dtype, bound, low))


def scalar(dtype, bound: float = 100.0, low: float | None = None):
    return reals(dtype, bound, low).map(lambda v: precision.round_to(dtype, v))


def dims(low: int = 1, high: int = 5):
    return st.integers(low, high)


def hyper_value(dtype, low: float, high: float):
    """A float hyperparameter exactly representable in ``dtype`` (torch casts it)."""
    return reals(dtype, high, low)


# --- Helpers for users' gradient checks ---------------------------------------------------------
# They follow hypothesis.extra.numpy.arrays: ``dtype`` is a NumPy float dtype, ``shape`` an int, a
# tuple or a strategy of either, and every draw is an array of exactly that dtype.


def _in_dtype(dtype, value: float) -> float:
    """``value`` rounded to ``dtype``: hnp.arrays refuses an element that storing would change."""
    return float(precision.round_to(dtype, value))


def kinky_arrays(dtype, shape, bound: float = 10.0, low: float | None = None, kinks=(0.0,)):
    """Arrays in [low, bound] (low defaults to -bound) where kinks and ties are common.

    Elements come from three sources in about equal shares: an exact kink, a value
    from a tie pool, any value in range. ``kinks`` are the points where the
    function's derivative jumps: 0.0 (the default) for relu, abs or max(x, 0);
    (-1.0, 0.0, 1.0) for hardtanh; () for none. A kink at 0.0 comes with -0.0,
    which code testing signs (np.sign, copysign) treats apart.
    Ties are values repeated from a pool of 1 to 3 drawn per array, for max, sort
    and argmax, which must pick a winner among equals. At a kink or a tie the
    derivative is a convention (a subgradient), and that is where a hand-written
    gradient and autograd most often part. A kink outside [low, bound] raises ValueError.
    """
    dtype = precision.resolve(dtype)
    low = -bound if low is None else low
    points = sorted({_in_dtype(dtype, k) for k in kinks})
    if any(not low <= k <= bound for k in points):
        raise ValueError(f"kinky_arrays: kinks {tuple(kinks)} must lie in [{low}, {bound}]")
    if 0.0 in points:
        points.append(-0.0)
    at_kink = [st.sampled_from(points)] if points else []

    def with_pool(pool):
        return hnp.arrays(dtype, shape, elements=st.one_of(*at_kink, st.sampled_from(pool), reals(dtype, bound, low)))

    return st.lists(reals(dtype, bound, low), min_size=1, max_size=3).flatmap(with_pool)


def low_precision_arrays(dtype, shape, bound: float | None = None):
    """Arrays of ``dtype`` drawn where low precision breaks (made for "bfloat16" and
    float16; any dtype works), from four sources in about equal shares, either sign:

    * the overflow threshold: values about sqrt(largest finite), whose squares overflow
      (256 in float16), and ``bound`` itself (default: 1.1 sqrt(largest finite), 282 in
      float16: larger inputs would make most examples of a loss with squares unresolvable);
    * underflow: values about sqrt(smallest normal), whose products (a gradient x times
      an upstream) fall below the normal range (7.8e-3 in float16), and the smallest
      normal itself;
    * ties after rounding: values from a pool of 1 to 3 per array, drawn in float32 and
      rounded to ``dtype``, so that several nearby float32 values become one (bfloat16
      keeps 8 significant bits);
    * any value in [-bound, bound].

    With ``check_gradients(..., dtypes=["bfloat16", "float16"])`` the examples a precision
    cannot resolve (a loss past float16's 65504) are skipped and counted, the rest compared.
    """
    dtype = precision.resolve(dtype)
    info = precision.finfo(dtype)
    bound = _in_dtype(dtype, 1.1 * np.sqrt(float(info.max)) if bound is None else bound)
    around = [np.sqrt(float(info.max)) * f for f in (0.9, 1.0, 1.1)] + [bound]
    around += [np.sqrt(float(info.smallest_normal)) * f for f in (0.5, 1.0, 2.0)] + [float(info.smallest_normal)]
    with np.errstate(over="ignore"):
        rounded = [_in_dtype(dtype, a) for a in around]
    edges = sorted({v for v in rounded if 0 < v <= bound})
    signed = st.tuples(st.sampled_from(edges), st.booleans()).map(lambda m: -m[0] if m[1] else m[0])

    def with_pool(pool):
        return hnp.arrays(precision.storage(dtype), shape,
                          elements=st.one_of(signed, st.sampled_from(pool), reals(dtype, bound)))

    # reals draws bfloat16 in float32 and rounds: nearby float32 values become one
    return st.lists(reals(dtype, bound), min_size=1, max_size=3).flatmap(with_pool)


def labels(n, classes: int):
    """Integer class labels in [0, classes), int64 as torch's cross_entropy and
    nll_loss want their targets, in an array of shape ``n`` (an int, tuple or strategy).

    The first and last class are drawn for about half the labels: an off-by-one
    in one-hot encoding or in gathering by label shows at the ends of the range.
    """
    if classes < 1:
        raise ValueError(f"labels: classes must be at least 1, got {classes}")
    ends = st.sampled_from(sorted({0, classes - 1}))
    return hnp.arrays(np.int64, n, elements=ends | st.integers(0, classes - 1))


def probabilities(dtype, shape):
    """Values in the open interval (0, 1), about half of them at an edge's last
    representable values: the smallest normal number, eps, 1 - eps and the largest
    value below 1, all computed in ``dtype`` (in float32, 1 - 1e-30 rounds to 1).

    Exact 0 and 1 are never drawn: log(p) and log(1 - p) are infinite there, and
    torch's binary_cross_entropy clamps its logs at -100 where hand-written code
    usually does not, so a disagreement at 0 or 1 measures the clamp, not the
    gradient. Where the closed [0, 1] is wanted, draw ``arrays(dtype, shape, 1.0, 0.0)``.
    """
    dtype = precision.resolve(dtype)
    info = precision.finfo(dtype)
    # 1 - eps and the largest value below 1 (1 - eps/2: the spacing halves below 1)
    edges = sorted({float(info.tiny), float(info.eps), 1 - float(info.eps), 1 - float(info.eps) / 2})
    inside = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True, width=_width(dtype), allow_subnormal=False)
    if precision.emulated(dtype):
        inside = inside.map(lambda v: _in_dtype(dtype, v)).filter(lambda v: 0 < v < 1)
    return hnp.arrays(dtype, shape, elements=st.sampled_from(edges) | inside)


def positive(dtype, shape, bound: float = 100.0, low: float | None = None):
    """Values in [low, bound], all strictly positive: for log, sqrt, variances,
    scales and learning rates.

    ``low`` defaults to ``dtype``'s smallest normal number; Hypothesis draws an
    interval's ends often, so values that small come up. Where the function
    divides by a power of its input, pass a larger ``low`` (1/x**2 overflows
    float32 for x below about 1e-19). A ``low`` that is not positive once rounded
    to ``dtype``, or is subnormal there, raises ValueError.
    """
    dtype = precision.resolve(dtype)
    tiny = float(precision.finfo(dtype).tiny)
    low = tiny if low is None else low
    if not _in_dtype(dtype, low) >= tiny:
        raise ValueError(f"positive: low={low} is not a positive normal {precision.name(dtype)}")
    return arrays(dtype, shape, bound, low)


def batch_shapes(min_dims: int = 2, max_dims: int = 2, min_side: int = 1, max_side: int = 5):
    """Shapes such as (batch, width) or (batch, ..., width) to pass as ``shape``,
    with each side ``min_side`` (1 by default) about half the time.

    Batch 1 and width 1 are where broadcasting, keepdims and squeeze go wrong: a
    (1, 1) result is also a scalar's shape, and a sum over a length-1 axis is the
    identity, which hides a sum over the wrong axis. Arguments as for
    hypothesis.extra.numpy.array_shapes.
    """
    if not 1 <= min_dims <= max_dims or not 0 <= min_side <= max_side:
        raise ValueError(f"batch_shapes: need 1 <= min_dims <= max_dims and 0 <= min_side <= max_side, got "
                         f"dims {min_dims}..{max_dims}, sides {min_side}..{max_side}")
    side = st.just(min_side) | st.integers(min_side, max_side)
    # Not st.lists(side): lists repeat an element more often, and shapes with no side at min_side
    # (the general case) get rarer.
    return st.integers(min_dims, max_dims).flatmap(lambda ndim: st.tuples(*[side] * ndim))


@st.composite
def upstream_gradients(draw, dtype, shape, bound: float = 10.0):
    """The gradient arriving at a function's output (the ``v`` of a vector-Jacobian
    product, ``out.backward(v)``): values in [-bound, bound] of both signs with
    exact zeros common, and never all equal when there are two or more elements.

    A constant upstream gradient (all ones is what ``out.sum().backward()`` sends)
    cannot tell the right backward from one that uses v.T for a square output,
    v[0] broadcast over the batch, or v.mean(); zeros check that an element that
    receives no gradient passes none on.
    """
    dtype = precision.resolve(dtype)
    # Two branches of reals to one of zeros: zeros are then about a third of the elements. With one
    # branch each they are half, and draws with both signs become rarer than in plain arrays.
    elements = st.one_of(st.just(0.0), reals(dtype, bound), reals(dtype, bound).map(lambda x: -x))
    # Every element drawn on its own (no fill value): hnp.arrays fills large arrays with one
    # repeated value, which would make a constant array a common draw.
    v = draw(hnp.arrays(dtype, shape, elements=elements, fill=st.nothing()))
    if v.size >= 2 and np.all(v == v.flat[0]):
        # Make it vary by changing one element rather than rejecting the draw: small arrays are
        # often constant (both elements zero), and many rejections fail Hypothesis's health check.
        where = draw(st.integers(0, v.size - 1))
        v.flat[where] = draw(reals(dtype, bound).filter(lambda x: x != v.flat[0]))
    return v
