"""The strategy helpers for users' gradient checks draw what their docstrings promise.

Each test draws 200 values and checks the helper's range on every draw
and its "often" on the share of draws. The shares are set well below what the
helpers give (measured with Hypothesis 6.170) and above what plain
``agreement.strategies.arrays`` or ``hypothesis.extra.numpy.array_shapes`` give, so
a helper that loses its property fails. Drawing is derandomized: the same values
on every run.
"""

from __future__ import annotations

import numpy as np
import pytest
from drawing import draws
from hypothesis import strategies as st

from agreement.strategies import (
    batch_shapes,
    kinky_arrays,
    labels,
    positive,
    probabilities,
    upstream_gradients,
)

DTYPES = [np.float32, np.float64]


def share(values: list, predicate) -> float:
    return sum(bool(predicate(v)) for v in values) / len(values)


def check_arrays(values: list, dtype, shape) -> None:
    for a in values:
        assert isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.shape == shape
        assert np.all(np.isfinite(a))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kinky_arrays_hit_kinks_and_ties_within_the_bound(dtype):
    values = draws(kinky_arrays(dtype, (3, 4), bound=5.0))
    check_arrays(values, dtype, (3, 4))
    assert all(np.all(np.abs(a) <= 5.0) for a in values)
    assert share(values, lambda a: np.any(a == 0)) > 0.7  # plain arrays: about 0.35
    assert share(values, lambda a: np.any(np.signbit(a[a == 0]))) > 0.3  # -0.0 comes with the kink at 0

    def nonzero_tie(a):  # ties away from the kink, from the per-array pool (without it: about 0.4)
        rest = a[a != 0]
        return np.unique(rest).size < rest.size

    assert share(values, nonzero_tie) > 0.55
    assert share(values, lambda a: np.ptp(a) > 0) > 0.5  # most draws are not one repeated value


def test_kinky_arrays_take_the_kinks_given():
    values = draws(kinky_arrays(np.float64, (3, 4), bound=2.0, kinks=(-1.0, 0.0, 1.0)))
    for kink in (-1.0, 0.0, 1.0):
        assert share(values, lambda a: np.any(a == kink)) > 0.25
    with pytest.raises(ValueError, match="kinks"):
        kinky_arrays(np.float64, 3, bound=0.5, kinks=(1.0,))


def test_labels_are_int64_in_range_with_both_ends_common():
    values = draws(labels(3, 7))
    for a in values:
        assert a.dtype == np.int64 and a.shape == (3,)
        assert np.all((0 <= a) & (a < 7))
    assert share(values, lambda a: np.any(a == 0)) > 0.42
    assert share(values, lambda a: np.any(a == 6)) > 0.42  # plain integers(0, 6): about 0.3
    assert {int(v) for a in values for v in a} == set(range(7))
    with pytest.raises(ValueError, match="classes"):
        labels(3, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probabilities_are_inside_zero_one_and_reach_both_edges(dtype):
    values = draws(probabilities(dtype, (3,)))
    check_arrays(values, dtype, (3,))
    info = np.finfo(dtype)
    below_one = np.nextafter(dtype(1), dtype(0))
    assert all(np.all((a > 0) & (a < 1)) for a in values)
    assert min(a.min() for a in values) == info.tiny  # the smallest normal, no subnormal below it
    assert share(values, lambda a: np.any(a <= info.eps)) > 0.5
    assert share(values, lambda a: np.any(a >= 1 - info.eps)) > 0.25  # plain floats in (0, 1): about 0.03
    assert share(values, lambda a: np.any(a == below_one)) > 0.08


@pytest.mark.parametrize("dtype", DTYPES)
def test_positive_values_are_strictly_positive_down_to_the_smallest_normal(dtype):
    values = draws(positive(dtype, (3,), bound=50.0))
    check_arrays(values, dtype, (3,))
    assert all(np.all((a > 0) & (a <= 50.0)) for a in values)
    assert share(values, lambda a: np.any(a == np.finfo(dtype).tiny)) > 0.2
    assert min(a.min() for a in draws(positive(dtype, 4, bound=5.0, low=0.5))) == dtype(0.5)


def test_positive_refuses_a_low_that_is_not_a_positive_normal_number():
    with pytest.raises(ValueError, match="low"):
        positive(np.float32, 3, low=1e-300)  # 0 in float32
    with pytest.raises(ValueError, match="low"):
        positive(np.float64, 3, low=0.0)


def test_batch_shapes_make_batch_one_and_width_one_common():
    # Drawn with a payload, as a test draws a shape with its arrays: alone, Hypothesis would not
    # repeat an example, and the few shapes with a side of 1 would be thinned out.
    values = [shape for shape, _ in draws(st.tuples(batch_shapes(max_side=6), st.integers(0, 2**30)))]
    assert all(len(s) == 2 and all(1 <= side <= 6 for side in s) for s in values)
    assert share(values, lambda s: s[0] == 1) > 0.4  # hnp.array_shapes: about 0.25
    assert share(values, lambda s: s[-1] == 1) > 0.4
    assert share(values, lambda s: min(s) > 1) > 0.25  # the general case stays common too
    deep = [shape for shape, _ in draws(st.tuples(batch_shapes(2, 4, min_side=2, max_side=3), st.integers()))]
    assert {len(s) for s in deep} == {2, 3, 4}
    assert all(all(2 <= side <= 3 for side in s) for s in deep)
    assert share(deep, lambda s: s[0] == 2) > 0.6  # min_side, not 1, is the common side
    with pytest.raises(ValueError, match="min_dims"):
        batch_shapes(min_dims=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_upstream_gradients_vary_with_zeros_and_both_signs(dtype):
    values = draws(upstream_gradients(dtype, (3, 2), bound=4.0))
    check_arrays(values, dtype, (3, 2))
    assert all(np.all(np.abs(v) <= 4.0) for v in values)
    assert all(np.ptp(v) > 0 for v in values)  # never constant, so never all ones
    assert share(values, lambda v: np.any(v == 0)) > 0.7  # plain arrays: about 0.3
    assert share(values, lambda v: np.any(v > 0) and np.any(v < 0)) > 0.4


def test_upstream_gradients_of_two_elements_are_never_equal():
    # Two elements are where a constant draw is commonest (both zero).
    assert all(v[0] != v[1] for v in draws(upstream_gradients(np.float64, 2)))
