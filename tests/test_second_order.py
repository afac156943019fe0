"""Hand-derived Hessians and Hessian-vector products against torch's double backward.

Every comparison uses the tolerance policy with the case's tolerance class and
reduction length, and a term scale: the same second derivative formed from
absolute values, which bounds the terms a (possibly cancelling) entry is summed from.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement import strategies as S
from agreement.compare import assert_all, compare
from agreement.registry import CASES, cases
from agreement.run import TORCH_DTYPES
from agreement.strategies import DTYPES
from agreement.tolerance import tolerance
from reference import second_order as so
from reference.activations import _sigmoid
from torch_impl import second_order as ts

cases()  # fills the registry
HESSIANS = {  # case -> (reference Hessian, order, hyper added to the example's)
    "scalar_quadratic": (so.scalar_quadratic_hessian, so.SCALAR_ORDER, {}),
    "linear_regression": (so.linear_regression_hessian, so.DENSE_ORDER, {}),
    "logistic_regression_logits": (so.logistic_regression_hessian, so.DENSE_ORDER, {"head": "logits"}),
    "logistic_regression_sigmoid": (so.logistic_regression_hessian, so.DENSE_ORDER, {"head": "sigmoid"}),
}
HVPS = {"two_layer_regression": so.two_layer_regression_hvp, "two_layer_classifier": so.two_layer_classifier_hvp}


def _abs(d):
    return {k: np.abs(np.asarray(v, np.float64)) for k, v in d.items()}


def _hessian_terms(name, ex) -> float:
    """Largest sum of |terms| over the Hessian's entries (float64)."""
    p, d = _abs(ex.params), _abs(ex.data)
    if name == "scalar_quadratic":
        return float(np.max(np.abs(so.scalar_quadratic_hessian(p, d))))
    if name == "linear_regression":
        return float(np.max(so.linear_regression_hessian(p, d, **ex.hyper)))
    # logistic: r X~^T diag(|h terms|) X~. h = p (1 - p) is formed from 1 - p, whose
    # terms are of size 1 (so p near 1 cancels); the sigmoid head adds its two terms.
    X, W, b = np.asarray(ex.data["X"], np.float64), np.asarray(ex.params["W"], np.float64), ex.params["b"]
    prob, y = _sigmoid((X @ W + b)[:, 0]), np.asarray(ex.data["Y"], np.float64)[:, 0]
    h = 1.0 + (np.abs(prob * prob - 2 * prob * y + y) + np.abs((prob - y) * (1 - 2 * prob))
               if name.endswith("sigmoid") else 0)
    Xa = np.abs(np.concatenate([X, np.ones((X.shape[0], 1))], axis=1))
    r = 1 / X.shape[0] if ex.hyper["reduction"] == "mean" else 1.0
    return float(np.max(r * (Xa.T * h) @ Xa))


def _hvp_terms(name, ex, direction) -> float:
    """The R-operator chain on absolute values, all units active, loss factors bounded."""
    X, v = np.abs(np.asarray(ex.data["X"], np.float64)), _abs(direction)
    bias = ex.hyper["bias"]
    if name == "two_layer_regression":
        r = 1.0 if ex.hyper["loss"] == "sse" else 1.0 / ex.data["Y"].size
        Y = -np.abs(np.asarray(ex.data["Y"], np.float64))
        grad, hess = (lambda out: 2 * r * (out - Y)), (lambda out, r_out: 2 * r * r_out)
    else:
        r = 1.0 / X.shape[0] if ex.hyper["reduction"] == "mean" else 1.0
        grad = lambda out: np.full(out.shape, 2 * r)  # |softmax - onehot| <= 1 per logit, 2 summed
        hess = lambda out, r_out: 2 * r * np.broadcast_to(r_out.max(axis=1, keepdims=True), r_out.shape)
    hv = so._two_layer_hvp(_abs(ex.params), X, v, bias, grad, hess)
    return max(float(np.max(a, initial=0.0)) for a in hv.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", HESSIANS)
@given(data=st.data())
def test_hessian_matches_double_backward(name, dtype, data):
    case = CASES[name]
    fn, order, extra = HESSIANS[name]
    example = data.draw(case.inputs(dtype), label="example")
    ex64 = example.astype(np.float64)
    expected = fn(ex64.params, ex64.data, **ex64.hyper, **extra)
    actual = ts.model_hessian(case.twin, example.params, example.data, example.hyper, order,
                              dtype=TORCH_DTYPES[np.dtype(dtype)])
    tol = tolerance(case.tolerance, dtype, case.reduction_length(example), expected,
                    term_scale=_hessian_terms(name, ex64))
    assert_all([compare(actual, expected, tol, case=name, what="hessian", dtype=np.dtype(dtype).name,
                        device="torch-cpu", context={"shapes": example.shapes(), "hyper": example.hyper})])
    assert np.allclose(expected, expected.T, rtol=0, atol=tol.atol), "the hand-derived Hessian must be symmetric"


@st.composite
def _direction(draw, params, dtype):
    return {k: draw(S.arrays(dtype, np.shape(v), 10.0)) for k, v in params.items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", HVPS)
@given(data=st.data())
def test_hessian_vector_product_matches_double_backward(name, dtype, data):
    case = CASES[name]
    example = data.draw(case.inputs(dtype), label="example")
    direction = data.draw(_direction(example.params, dtype), label="direction")
    ex64 = example.astype(np.float64)
    dir64 = {k: v.astype(np.float64) for k, v in direction.items()}
    expected = HVPS[name](ex64.params, ex64.data, dir64, **ex64.hyper)
    actual = ts.model_hvp(case.twin, example.params, example.data, example.hyper, direction,
                          dtype=TORCH_DTYPES[np.dtype(dtype)])
    n = case.reduction_length(example)
    terms = _hvp_terms(name, ex64, dir64)
    assert_all([compare(actual[k], expected[k], tolerance(case.tolerance, dtype, n, expected[k], term_scale=terms),
                        case=name, what=f"hvp {k}", dtype=np.dtype(dtype).name, device="torch-cpu",
                        context={"shapes": example.shapes(), "hyper": example.hyper}) for k in sorted(expected)])


# ---------------------------------------------------------------- mistakes the comparison catches
def _agrees(name, expected, example, order):
    case = CASES[name]
    actual = ts.model_hessian(case.twin, example.params, example.data, example.hyper, order)
    tol = tolerance(case.tolerance, np.float64, case.reduction_length(example), expected,
                    term_scale=_hessian_terms(name, example))
    return compare(actual, expected, tol, case=name, what="hessian", dtype="float64", device="torch-cpu").ok


def test_sigmoid_bce_hessian_needs_torchs_double_backward_epsilon():
    """With the exact p (1 - p) instead of torch's (p + 1e-12)^2 (1 - p + 1e-12)^2
    denominators the float64 comparison fails: torch's epsilon is visible."""
    example = CASES["logistic_regression_sigmoid"].build("tiny", np.float64, 0)
    correct = so.logistic_regression_hessian(example.params, example.data, **example.hyper, head="sigmoid")
    exact = so.logistic_regression_hessian(example.params, example.data, **example.hyper, head="logits")
    assert _agrees("logistic_regression_sigmoid", correct, example, so.DENSE_ORDER)
    assert not _agrees("logistic_regression_sigmoid", exact, example, so.DENSE_ORDER)


def test_linear_regression_hessian_mean_divides_by_all_outputs():
    example = CASES["linear_regression"].build("tiny", np.float64, 0)  # D_out = 2
    correct = so.linear_regression_hessian(example.params, example.data, **example.hyper)
    assert _agrees("linear_regression", correct, example, so.DENSE_ORDER)
    assert not _agrees("linear_regression", correct * example.params["W"].shape[1], example, so.DENSE_ORDER)


def test_gauss_newton_part_alone_is_not_the_hessian():
    """Dropping the second-order term G_O V2^T (the Gauss-Newton approximation) must fail."""
    case = CASES["two_layer_regression"]
    example = case.build("tiny", np.float64, 0)
    rng = np.random.default_rng(0)
    direction = {k: rng.standard_normal(np.shape(v)) for k, v in example.params.items()}
    actual = ts.model_hvp(case.twin, example.params, example.data, example.hyper, direction)
    X = example.data["X"]
    gauss_newton = so._two_layer_hvp(example.params, X, direction, True,
                                     lambda out: 0 * out, lambda out, r_out: 2 * r_out)
    full = so.two_layer_regression_hvp(example.params, example.data, direction, **example.hyper)
    n = case.reduction_length(example)
    tol = lambda e: tolerance(case.tolerance, np.float64, n, e, term_scale=_hvp_terms(case.name, example, direction))
    assert all(compare(actual[k], full[k], tol(full[k]), case="", what=k, dtype="", device="").ok for k in full)
    assert not all(compare(actual[k], gauss_newton[k], tol(full[k]), case="", what=k, dtype="", device="").ok
                   for k in full)


# ---------------------------------------------------------------- bad input
def _dense(d_in=3, d_out=2, n=4, dtype=np.float64):
    params = {"W": np.ones((d_in, d_out), dtype), "b": np.zeros(d_out, dtype)}
    return params, {"X": np.ones((n, d_in), dtype), "Y": np.zeros((n, d_out), dtype)}


def _net():
    params = {"W1": np.ones((3, 4)), "b1": np.zeros(4), "W2": np.ones((4, 2)), "b2": np.zeros(2)}
    return params, {"X": np.ones((5, 3)), "Y": np.zeros((5, 2))}


@pytest.mark.parametrize("call, error, message", [
    (lambda: so.linear_regression_hessian(_dense()[0], {**_dense()[1], "X": np.ones((4, 5))}), ValueError, "W must"),
    (lambda: so.linear_regression_hessian(_dense()[0], {**_dense()[1], "X": np.ones((4, 3), int)}), TypeError,
     "X must have a floating dtype"),
    (lambda: so.linear_regression_hessian(*_dense(), reduction="avg"), ValueError, "reduction must"),
    (lambda: so.logistic_regression_hessian(*_dense(), head="tanh"), ValueError, "head must"),
    (lambda: so.logistic_regression_hessian(*_dense(d_out=2)), ValueError, "W must have shape (3, 1)"),
    (lambda: so.scalar_quadratic_hessian({"p": np.ones(2), "x": np.ones(3)}, {"upstream": np.ones(3)}),
     ValueError, "p must be 0-dimensional"),
    (lambda: so.scalar_quadratic_hessian({"p": np.array(1.0), "x": np.ones(3)}, {"upstream": np.ones(2)}),
     ValueError, "upstream must have shape (3,)"),
    (lambda: so.two_layer_regression_hvp(*_net(), {"W1": np.ones((3, 4))}), ValueError, "direction must"),
    (lambda: so.two_layer_regression_hvp(*_net(), {**_net()[0], "W2": np.ones((2, 4))}), ValueError,
     "direction['W2'] must have shape (4, 2)"),
    (lambda: so.two_layer_regression_hvp(*_net(), {**_net()[0], "b1": np.zeros(4, np.float32)}), TypeError,
     "direction['b1']=float32"),
    (lambda: so.two_layer_classifier_hvp(_net()[0], {"X": _net()[1]["X"], "labels": np.zeros(5)}, _net()[0]),
     TypeError, "labels must have an integer dtype"),
    (lambda: so.two_outputs(np.ones(3), np.ones(2)), ValueError, "w must have shape (3,)"),
    (lambda: so.two_outputs(np.ones(3, int), np.ones(3)), TypeError, "x must have a floating dtype"),
    (lambda: so.two_outputs_weighted_grads(np.ones(3), np.ones(3), np.ones(2), np.ones(3)), ValueError,
     "weight0 must have shape (3,)"),
    (lambda: so.two_outputs_weighted_grads(np.ones(3), np.ones(3), np.ones(3), np.ones(3, np.float32)), TypeError,
     "weight1=float32"),
    (lambda: so.accumulated_gradients([]), ValueError, "passes must be a non-empty list"),
    (lambda: so.accumulated_gradients([{"a": np.ones(2)}, {"b": np.ones(2)}]), ValueError, "passes[1] must have"),
    (lambda: so.accumulated_gradients([{"a": np.ones(2)}, {"a": np.ones(3)}]), ValueError,
     "passes[1]['a'] must have shape (2,)"),
    (lambda: so.accumulated_gradients([{"a": np.ones(2, int)}]), TypeError, "passes[0]['a'] must have a floating"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else v)
def test_bad_input_is_rejected_naming_the_argument(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
