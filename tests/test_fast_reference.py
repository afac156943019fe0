"""reference/fast.py against the readable reference it speeds up.

The fast models must give the readable reference's loss and gradients to
rounding (judged by the tolerance policy against the float64 reference, as
the torch twins are), and the fast SGD must reproduce ``optim.sgd_update``
bit for bit, since it performs the same operations in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement.compare import assert_all
from agreement.registry import cases
from agreement.run import _compare_all, expected
from agreement.strategies import DTYPES, sgd_hyper
from reference import fast, optim

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
    exp_loss, exp_grads = expected(case, example)
    grads = {k: v.copy() for k, v in model.grads.items()}
    assert all(g.dtype == np.dtype(dtype) for g in grads.values()), "a float32 run was upcast"
    assert_all(_compare_all(case, example, loss, grads, exp_loss, exp_grads, dtype, "numpy-fast"))


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_fast_sgd_reproduces_sgd_update_exactly(case, data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    example = data.draw(case.inputs(dtype), label="example").astype(dtype)
    hyper = data.draw(sgd_hyper(dtype), label="sgd")
    model = _fast_model(case, example)
    sgd = fast.SGD(model.flat_params, **hyper)
    params, state = dict(example.params), optim.sgd_init(example.params)
    # The same gradients on both sides, and every step: only the update is compared,
    # and drawn inputs cannot make a few steps of training overflow.
    _, grads = case.reference(params, example.data, **example.hyper)
    for step in range(3):
        for name, g in grads.items():
            model.grads[name][...] = g
        sgd.update(model.flat_grads)
        params, state = optim.sgd_update(params, grads, state, **hyper)
        for name in params:
            np.testing.assert_array_equal(model.params[name], params[name], err_msg=f"{name} after step {step}")


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
def test_fast_model_copies_its_inputs_and_validates_like_the_reference(case):
    example = case.build("tiny", np.float64, 0)
    before = {k: v.copy() for k, v in example.params.items()}
    model = _fast_model(case, example)
    sgd = fast.SGD(model.flat_params, lr=0.1)
    model.loss_and_grads()
    sgd.update(model.flat_grads)
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
    flat = np.arange(8.0)
    sgd = fast.SGD(flat, lr=0.5, momentum=0.9)
    sgd.update(np.ones(8))
    saved = sgd.state()
    sgd.update(np.ones(8))
    assert not np.array_equal(flat, saved[0])
    sgd.restore(saved)
    np.testing.assert_array_equal(flat, saved[0])
    np.testing.assert_array_equal(sgd.buffer, saved[1])


@given(data=st.data())
def test_chunked_sgd_reproduces_sgd_update_exactly(data):
    """The update runs chunk by chunk; a chunk boundary must change nothing."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    hyper = data.draw(sgd_hyper(dtype), label="sgd")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    p0, grad = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    flat = p0.copy()
    sgd = fast.SGD(flat, **hyper)
    sgd.CHUNK = 7  # boundaries inside the array, and a short last chunk
    params, state = {"p": p0}, optim.sgd_init({"p": p0})
    for step in range(3):
        sgd.update(grad.copy())
        params, state = optim.sgd_update(params, {"p": grad}, state, **hyper)
        np.testing.assert_array_equal(flat, params["p"], err_msg=f"after step {step}")
