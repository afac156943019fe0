"""reference/fast.py against the readable reference it speeds up.

The fast models must give the readable reference's loss and gradients to
rounding (judged by the tolerance policy against the float64 reference, as
the torch twins are), and the fast SGD, one matrix product per step, must give
``optim.sgd_update``'s result to the rounding of the two computations.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement.compare import assert_all
from agreement.optimizers import sgd_hyper
from agreement.registry import cases
from agreement.run import compare_other
from agreement.strategies import DTYPES
from reference import fast, losses, optim

FAST_CASES = [c for c in cases() if fast.for_reference(c.reference) is not None]
dtype_ids = lambda d: np.dtype(d).name


def _fast_model(case, example):
    return fast.for_reference(case.reference)(example.params, example.data, **example.hyper)


def test_every_trainable_model_has_a_fast_path():
    assert {c.name for c in FAST_CASES} == {c.name for c in cases(trainable=True)}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_fast_gradients_match_the_reference(case, dtype, data):
    example = data.draw(case.inputs(dtype), label="example").astype(dtype)
    model = _fast_model(case, example)
    loss = model.loss_and_grads()
    grads = {k: v.copy() for k, v in model.grads.items()}
    assert all(g.dtype == np.dtype(dtype) for g in grads.values()), "a float32 run was upcast"
    assert_all(compare_other(case, example, dtype, loss, grads, "numpy-fast"))


# Roundings in one SGD step, both sides together: optim.sgd_update forms
# s g + wd θ, m b + (1 - d) g1, g1 + m b' and θ - lr u with two each (8); the
# fast step rounds its three coefficients and forms three products and two sums (8).
SGD_ROUNDINGS = 16


def _sgd_magnitudes(params, state, grads, h):
    """Elementwise sums of |term| in the expansion of θ' and b' (the scale their rounding errors have)."""
    out_p, out_b = {}, {}
    for k, p in params.items():
        g1 = np.abs(grads[k]) + h["weight_decay"] * np.abs(p)
        if h["momentum"] == 0:
            out_p[k] = np.abs(p) + h["lr"] * g1
            continue
        b = g1 if state[k] is None else h["momentum"] * np.abs(state[k]) + abs(1 - h["dampening"]) * g1
        out_p[k] = np.abs(p) + h["lr"] * (g1 + h["momentum"] * b if h["nesterov"] else b)
        out_b[k] = b
    return out_p, out_b


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_fast_sgd_matches_sgd_update(case, data):
    """Three steps, each from the same parameters and momentum on both sides (the
    fast model is set to the reference's after each), so every step is judged alone,
    the first (which creates the buffer) included."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    example = data.draw(case.inputs(dtype), label="example").astype(dtype)
    hyper = data.draw(sgd_hyper(dtype), label="sgd")
    model = _fast_model(case, example)
    sgd = fast.SGD(model, **hyper)
    params, state = dict(example.params), optim.sgd_init(example.params)
    _, grads = case.reference(params, example.data, **example.hyper)
    u = np.finfo(dtype).eps / 2
    for step in range(3):
        for name, g in grads.items():
            model.grads[name][...] = g
        sgd.update()
        scale_p, scale_b = _sgd_magnitudes(params, state, grads, hyper)
        params, state = optim.sgd_update(params, grads, state, **hyper)
        for name in params:
            np.testing.assert_allclose(model.params[name], params[name], rtol=0,
                                       atol=SGD_ROUNDINGS * u * np.max(scale_p[name], initial=0.0),
                                       err_msg=f"{name} after step {step}")
            model.params[name][...] = params[name]
            if name in scale_b:
                np.testing.assert_allclose(model.momentum[name], state[name], rtol=0,
                                           atol=SGD_ROUNDINGS * u * np.max(scale_b[name], initial=0.0),
                                           err_msg=f"momentum of {name} after step {step}")
                model.momentum[name][...] = state[name]


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
def test_fast_model_copies_its_inputs_and_validates_like_the_reference(case):
    example = case.build("tiny", np.float64, 0)
    before = {k: v.copy() for k, v in example.params.items()}
    model = _fast_model(case, example)
    sgd = fast.SGD(model, lr=0.1)
    model.loss_and_grads()
    sgd.update()
    for name, value in before.items():
        np.testing.assert_array_equal(example.params[name], value)
        assert not np.array_equal(model.params[name], value), f"{name} was not updated"
    bad = {**example.params, "W": None, "W1": None}
    bad = {k: v for k, v in bad.items() if k in example.params}
    with pytest.raises((TypeError, ValueError)) as fast_error:
        _fast_model(case, type(example)(bad, example.data, example.hyper))
    with pytest.raises((TypeError, ValueError)) as reference_error:
        case.reference(bad, example.data, **example.hyper)
    assert str(fast_error.value) == str(reference_error.value)


def test_sgd_state_round_trip():
    case = FAST_CASES[0]
    model = _fast_model(case, case.build("tiny", np.float64, 0))
    sgd = fast.SGD(model, lr=0.5, momentum=0.9)
    model.loss_and_grads()
    sgd.update()
    saved = sgd.state()
    before = {k: v.copy() for k, v in model.params.items()}
    for _ in range(3):  # an odd number of steps: the other block is current
        model.loss_and_grads()
        sgd.update()
    assert not all(np.array_equal(model.params[k], v) for k, v in before.items())
    sgd.restore(saved)
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value)
    model.loss_and_grads()
    sgd.update()
    after_restore = {k: v.copy() for k, v in model.params.items()}
    sgd.restore(saved)
    model.loss_and_grads()
    sgd.update()
    for name, value in after_restore.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_sgd_coefficients_catch_a_wrong_formula():
    """The tolerance above is tight enough to see a formula mistake: Nesterov's
    look-ahead dropped changes θ' by lr m b', far beyond rounding."""
    case = FAST_CASES[0]
    example = case.build("tiny", np.float64, 0)
    hyper = dict(lr=0.1, momentum=0.9, nesterov=True)
    model = _fast_model(case, example)
    sgd = fast.SGD(model, **hyper)
    sgd.coefficients = {first: fast.SGD(model, lr=0.1, momentum=0.9).coefficients[first] for first in (True, False)}
    _, grads = case.reference(example.params, example.data, **example.hyper)
    for name, g in grads.items():
        model.grads[name][...] = g
    sgd.update()
    params, state = optim.sgd_update(example.params, grads, optim.sgd_init(example.params), **hyper)
    scale_p, _ = _sgd_magnitudes(example.params, optim.sgd_init(example.params), grads, dict(
        optim.sgd_hyper(**hyper)))
    u = np.finfo(np.float64).eps / 2
    assert any(np.max(np.abs(model.params[k] - params[k])) > SGD_ROUNDINGS * u * np.max(scale_p[k]) for k in params)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fast_cross_entropy_shifts_each_row_by_its_own_maximum(dtype, reduction):
    """The row maxima come from a reduction over the transposed view. Rows thousands
    apart (one shifted by a global maximum would underflow to exp = 0 everywhere and
    give an infinite loss) and logits beyond exp's range (±1e4) must give the
    readable cross-entropy's loss and gradient."""
    case = next(c for c in FAST_CASES if c.name == "two_layer_classifier")
    example = case.build("tiny", dtype, 0)
    model = fast.for_reference(case.reference)(example.params, example.data, reduction=reduction)
    n, classes = model.d_out.shape
    logits = np.random.default_rng(0).standard_normal((n, classes)) + np.array([1e4, -1e4, 0.0, 3e3])[:n, None]
    model.d_out[...] = logits
    loss = model._loss_and_gradient(model.d_out)
    expected_loss, expected = losses.cross_entropy_loss(logits.astype(dtype), example.data["labels"], reduction)
    u = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, expected_loss, rtol=64 * u)
    np.testing.assert_allclose(model.d_out, expected, rtol=0, atol=64 * u * np.max(np.abs(expected)))


