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

DTYPES = (np.float64, np.float32)


def reals(dtype, bound: float, low: float | None = None):
    """Finite floats of ``dtype`` in [low, bound] (low defaults to -bound); the
    bounds are rounded to the nearest value ``dtype`` represents."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    low = -bound if low is None else low
    low, bound = (float(np.asarray(v, dtype=dtype)) for v in (low, bound))
    return st.floats(low, bound, width=width,
                     allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(dtype, shape, bound: float = 100.0, low: float | None = None):
    return hnp.arrays(dtype, shape, elements=reals(dtype, bound, low))


def scalar(dtype, bound: float = 100.0, low: float | None = None):
    return reals(dtype, bound, low).map(lambda v: np.asarray(v, dtype=dtype))


def dims(low: int = 1, high: int = 5):
    return st.integers(low, high)


def hyper_value(dtype, low: float, high: float):
    """A float hyperparameter exactly representable in ``dtype`` (torch casts it)."""
    return reals(dtype, high, low)


@st.composite
def sgd_hyper(draw, dtype=np.float64):
    momentum = draw(st.sampled_from([0.0, 0.9]) | hyper_value(dtype, 0.0, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0]) | hyper_value(dtype, 0.0, 1.0))
    return dict(
        lr=draw(hyper_value(dtype, 0.0, 0.2)),
        momentum=momentum,
        dampening=dampening,
        weight_decay=draw(st.sampled_from([0.0]) | hyper_value(dtype, 0.0, 0.1)),
        nesterov=nesterov,
        maximize=draw(st.booleans()),
    )
