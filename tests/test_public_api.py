"""The public API as a user meets it: errors that say whose they are, inputs in every
form a user passes them, the loss compared by default, and quiet user warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from agreement import Example, assert_gradients_close, check_gradients
from agreement import strategies as S
from agreement.compare import format_ratio


def dense_numpy(params, data):
    """L = sum(u * (x W + b)): dL/dW = x^T u, dL/db = sum_rows u."""
    x, u = data["x"], data["u"]
    out = x @ params["W"] + params["b"]
    return np.sum(u * out), {"W": x.T @ u, "b": u.sum(axis=0)}


def dense_torch(params, data):
    return (data["u"] * (data["x"] @ params["W"] + params["b"])).sum()


@st.composite
def dense_inputs(draw, dtype=np.float64):
    n, i, o = draw(S.dims(1, 4)), draw(S.dims(1, 4)), draw(S.dims(1, 4))
    return Example({"W": draw(S.arrays(dtype, (i, o), 3.0)), "b": draw(S.arrays(dtype, (o,), 3.0))},
                   {"x": draw(S.arrays(dtype, (n, i), 3.0)), "u": draw(S.arrays(dtype, (n, o), 3.0))})


def fixed_dense(dtype=np.float64, n=2, i=3, o=2):
    rng = np.random.default_rng(0)
    return Example({"W": rng.normal(size=(i, o)).astype(dtype), "b": rng.normal(size=o).astype(dtype)},
                   {"x": rng.normal(size=(n, i)).astype(dtype), "u": rng.normal(size=(n, o)).astype(dtype)})


def test_two_distinct_failures_are_one_assertion_error_listing_each():
    """A transposed weight gradient: a shape error where W is not square, a wrong value
    where it is. Hypothesis finds both and raises them as a group; users get one
    AssertionError that lists each."""
    def transposed(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "W": grads["W"].T}

    square_or_not = st.one_of(dense_inputs(), st.builds(fixed_dense, n=st.just(2), i=st.just(2), o=st.just(2)))
    with pytest.raises(AssertionError) as info:
        check_gradients(transposed, dense_torch, square_or_not, dtypes=[np.float64], devices=["cpu"],
                        max_examples=60)
    message = str(info.value)
    assert "2 distinct failures" in message
    assert "returned grad W of shape (2, 1); the parameter W has shape (1, 2)" in message
    assert "grad W disagrees" in message


def test_an_exception_in_the_users_numpy_is_reported_as_theirs_with_traceback_and_example():
    def asserts(params, data):
        assert params["W"].shape[0] < 3, "library: too many inputs"
        return dense_numpy(params, data)

    with pytest.raises(AssertionError) as info:
        check_gradients(asserts, dense_torch, dense_inputs, dtypes=[np.float64], devices=["cpu"], max_examples=40)
    message = str(info.value)
    assert "your NumPy function raised AssertionError: library: too many inputs" in message
    assert "traceback" in message and "in asserts" in message
    assert "Example(" in message  # the example that triggered it


def test_an_exception_in_the_users_torch_is_reported_as_theirs():
    def broken(params, data):
        raise ValueError("no such layer")

    with pytest.raises(AssertionError, match="your torch function raised ValueError: no such layer"):
        assert_gradients_close(dense_numpy, broken, fixed_dense())


def test_a_non_scalar_torch_output_gets_a_one_line_message():
    def keepdim(params, data):
        return dense_torch(params, data).reshape(1, 1)

    with pytest.raises(AssertionError, match=r"returned a tensor of shape \(1, 1\); return a 0-d loss"):
        assert_gradients_close(dense_numpy, keepdim, fixed_dense())


def test_a_wrong_gradient_shape_names_the_users_side_and_the_parameter_shape():
    ex = fixed_dense()
    ex.params["b"] = ex.params["b"][None, :]  # the parameter is (1, 2); the NumPy side returns (2,)

    def flat_b(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"].reshape(-1)}

    with pytest.raises(AssertionError) as info:
        assert_gradients_close(flat_b, dense_torch, ex)
    assert "your NumPy function returned grad b of shape (2,); the parameter b has shape (1, 2)" in str(info.value)


def test_a_loss_off_by_a_factor_of_2_is_caught_by_default():
    def double_loss(params, data):
        loss, grads = dense_numpy(params, data)
        return 2 * loss, grads

    with pytest.raises(AssertionError, match="loss disagrees"):
        check_gradients(double_loss, dense_torch, dense_inputs, devices=["cpu"], max_examples=10)
    check_gradients(double_loss, dense_torch, dense_inputs, devices=["cpu"], max_examples=10, compare_loss=False)


def test_inputs_may_be_a_strategy_a_function_of_dtype_an_example_or_a_list():
    for inputs in (dense_inputs(), dense_inputs, fixed_dense(), [fixed_dense(), fixed_dense(n=1, i=1, o=1)]):
        summaries = check_gradients(dense_numpy, dense_torch, inputs, devices=["cpu"], max_examples=5)
        assert {s.dtype for s in summaries} == {"float64", "float32"} and all(s.examples > 0 for s in summaries)


def test_failures_carry_no_explanation_lines_pointing_into_the_harness():
    def wrong(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"] * 1.01}

    with pytest.raises(AssertionError) as info:
        check_gradients(wrong, dense_torch, dense_inputs, devices=["cpu"], dtypes=[np.float64], max_examples=20)
    assert "Explanation" not in str(info.value) and "agreement/compare.py" not in str(info.value)


def test_a_fixed_example_that_disagrees_is_reported():
    def wrong(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"] * 1.01}

    with pytest.raises(AssertionError, match="example 0: wrong: grad b disagrees"):
        check_gradients(wrong, dense_torch, [fixed_dense()], devices=["cpu"])


def test_ratios_are_compact_and_non_finite_values_are_spelled_out():
    assert format_ratio(1.2345e290) == "1.2e+290x" and format_ratio(2.591) == "2.59x"
    assert format_ratio(float("inf")) == "infinitely many times"

    def nan_grad(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"] * np.nan}

    with pytest.raises(AssertionError) as info:
        assert_gradients_close(nan_grad, dense_torch, fixed_dense())
    message = str(info.value)
    assert "where your NumPy in float64 gave nan" in message and "infinitely many times the tolerance" in message
    assert max(len(word) for word in message.split()) < 60  # no 290-digit numbers


def test_an_nn_module_is_the_torch_side_with_a_parameter_map():
    linear = nn.Linear(3, 2)
    ex = fixed_dense()
    parameters = {"W": ("weight", True), "b": "bias"}  # nn.Linear keeps weight as (out, in)

    def loss(module, data):
        return (data["u"] * module(data["x"])).sum()

    assert_gradients_close(dense_numpy, linear, ex, parameters=parameters, module_loss=loss)
    check_gradients(dense_numpy, linear, st.builds(fixed_dense), parameters=parameters, module_loss=loss,
                    devices=["cpu"], max_examples=5)
    with pytest.raises(AssertionError, match=r"your nn.Module has weight of shape \(2, 3\), which does not fit the "
                                             r"NumPy parameter W of shape \(2, 2\)"):
        assert_gradients_close(dense_numpy, linear, fixed_dense(i=2), parameters=parameters, module_loss=loss)

    def wrong(params, data):
        loss_, grads = dense_numpy(params, data)
        return loss_, {**grads, "W": grads["W"] * 1.01}

    with pytest.raises(AssertionError, match="grad W disagrees"):
        assert_gradients_close(wrong, linear, ex, parameters=parameters, module_loss=loss)
    with pytest.raises(TypeError, match="does not have"):
        assert_gradients_close(dense_numpy, linear, ex, parameters={"W": "weights"}, module_loss=loss)


def test_tolerance_options_are_plain_values_and_name_names_the_check():
    check_gradients(dense_numpy, dense_torch, dense_inputs, tolerance="elementwise", devices=["cpu"], max_examples=3)
    check_gradients(dense_numpy, dense_torch, dense_inputs, tolerance=12, devices=["cpu"], max_examples=3)
    with pytest.raises(ValueError, match="tolerance must be one of"):
        check_gradients(dense_numpy, dense_torch, dense_inputs, tolerance="loose", devices=["cpu"])

    def wrong(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"] + 1}

    with pytest.raises(AssertionError, match="my dense layer: grad b disagrees"):
        check_gradients(wrong, dense_torch, dense_inputs, name="my dense layer", devices=["cpu"], max_examples=3)


def test_only_the_users_own_calls_count_their_warnings():
    """The harness runs your function again to measure its rounding and for finite
    differences; those runs' warnings are not yours to hear about."""
    def noisy(params, data):
        warnings.warn("once per call", RuntimeWarning, stacklevel=1)
        return dense_numpy(params, data)

    (summary,) = check_gradients(noisy, dense_torch, [fixed_dense()], dtypes=[np.float64], devices=["cpu"])
    assert summary.warnings == {"RuntimeWarning: once per call": 1}


def test_user_warnings_are_counted_not_printed():
    def noisy(params, data):
        warnings.warn("overflow in my layer", RuntimeWarning, stacklevel=1)
        return dense_numpy(params, data)

    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        summaries = check_gradients(noisy, dense_torch, dense_inputs, devices=["cpu"], max_examples=20)
    assert not [w for w in escaped if "overflow in my layer" in str(w.message)]
    assert all(s.warnings["RuntimeWarning: overflow in my layer"] > 0 for s in summaries)

    def noisy_and_wrong(params, data):
        loss, grads = noisy(params, data)
        return loss, {**grads, "b": grads["b"] + 1}

    with pytest.raises(AssertionError, match=r"your code raised \d+ warnings \(\d+x RuntimeWarning: overflow"):
        check_gradients(noisy_and_wrong, dense_torch, dense_inputs, devices=["cpu"], max_examples=5)


@given(dense_inputs(np.float32))
def test_assert_gradients_close_fits_inside_a_users_own_given_test(example):
    comparisons = assert_gradients_close(dense_numpy, dense_torch, example)
    assert {c.dtype for c in comparisons} == {"float32"}  # the example's own dtype
    assert {c.device for c in comparisons} == {"torch-cpu", "numpy"}


def test_seeds_draw_different_reproducible_examples():
    seen = {}
    for seed in (1, 2):
        drawn = []

        def record(params, data, drawn=drawn):
            drawn.append(params["W"].tobytes())
            return dense_numpy(params, data)

        check_gradients(record, dense_torch, dense_inputs, dtypes=[np.float64], devices=["cpu"], max_examples=5,
                        seed=seed)
        seen[seed] = drawn
    assert seen[1] != seen[2]


def test_a_numpy_side_that_upcasts_float32_is_noted_and_integer_gradients_refused():
    def upcasting(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {k: g * np.sqrt(1.0) for k, g in grads.items()}  # np.float64 scalar: float32 -> float64

    summaries = check_gradients(upcasting, dense_torch, [fixed_dense()], devices=["cpu"])
    float32 = next(s for s in summaries if s.dtype == "float32")
    assert any("returned grad W in float64 for float32 inputs" in k for k in float32.warnings)

    def integer(params, data):
        loss, grads = dense_numpy(params, data)
        return loss, {**grads, "b": grads["b"].astype(int)}

    with pytest.raises(AssertionError, match="returned grad b of dtype int64; gradients are floating arrays"):
        assert_gradients_close(integer, dense_torch, fixed_dense())


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="torch_fn must be a function"):
        check_gradients(dense_numpy, "dense", dense_inputs)
    with pytest.raises(TypeError, match="inputs must be a Hypothesis strategy"):
        check_gradients(dense_numpy, dense_torch, 3, devices=["cpu"])
    with pytest.raises(TypeError, match="needs parameters="):
        assert_gradients_close(dense_numpy, nn.Linear(3, 2), fixed_dense())
    with pytest.raises(TypeError, match=r"params\['W'\] must be a floating array"):
        assert_gradients_close(dense_numpy, dense_torch, {"W": np.ones((3, 2), int), "b": np.ones(2)},
                               {"x": np.ones((2, 3)), "u": np.ones((2, 2))})


def test_torch_is_the_closer_side_for_tanh_at_4_and_the_verdict_says_so():
    """Issue 10's first example: a correct tanh passes; a wrong one gets the verdict."""
    def tanh_numpy(params, data):
        t = np.tanh(params["x"])
        return np.sum(data["u"] * t), {"x": data["u"] * (1 - t**2)}

    def tanh_torch(params, data):
        return (data["u"] * torch.tanh(params["x"])).sum()

    ex = Example({"x": np.array([4.0])}, {"u": np.array([1.0])})
    assert_gradients_close(tanh_numpy, tanh_torch, ex)

    def tanh_wrong(params, data):  # the derivative at the wrong point: 1 - tanh(x / 2)^2
        t = np.tanh(params["x"])
        return np.sum(data["u"] * t), {"x": data["u"] * (1 - np.tanh(params["x"] / 2) ** 2)}

    with pytest.raises(AssertionError, match="your NumPy differs from autograd; finite differences give .* "
                                             "agreeing with autograd"):
        assert_gradients_close(tanh_wrong, tanh_torch, ex)


def test_the_verdict_blames_torch_where_torch_departs_from_the_mathematics():
    """torch's softplus returns x above its threshold: its derivative at x = 21 is 1.0, the
    mathematics says 0.999999999241744; finite differences side with the NumPy."""
    def softplus_numpy(params, data):
        x = params["x"]
        return np.sum(np.logaddexp(0, x)), {"x": 1 / (1 + np.exp(-x))}

    def softplus_torch(params, data):
        return nn.functional.softplus(params["x"]).sum()

    with pytest.raises(AssertionError, match=r"autograd deviates from the mathematics here; finite differences "
                                             r"give 0.99999999924\d* .* agreeing with your NumPy \(a torch convention"):
        assert_gradients_close(softplus_numpy, softplus_torch, {"x": np.array([21.0])})
