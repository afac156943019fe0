"""The public optimizer check (agreement/training_check.py), used as a user would: optimizers
written here by hand from torch's documented algorithms, not taken from reference/optim.py."""

from __future__ import annotations

import re
import unittest
from collections import namedtuple

import numpy as np
import pytest
import torch

from agreement.registry import Example
from agreement.tolerance import DEEP_MODEL
from agreement.training_check import (
    NotComparable,
    TrajectoryHorizonWarning,
    _build,
    _torch_trajectory,
    _with_loss_data,
    assert_optimizer_close,
    check_optimizer,
)
from agreement.trajectory import comparable, comparable_steps

# ---------------------------------------------------------------------------- a user's Adam
# torch.optim.Adam's documented algorithm (Kingma & Ba with L2 weight decay added to the gradient):
#   g <- g + weight_decay * p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
#   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

ADAM_HYPER = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)


def adam_init(params):
    return {"t": 0, "m": {k: np.zeros_like(p) for k, p in params.items()},
            "v": {k: np.zeros_like(p) for k, p in params.items()}}


def make_adam(bias_correction=True, eps_inside_sqrt=False, decay_sign=1.0):
    """The correct update, or one with a bug users write."""

    def adam_update(params, grads, state, lr, betas, eps, weight_decay):
        b1, b2 = betas
        t = state["t"] + 1
        new, m_new, v_new = {}, {}, {}
        for k, p in params.items():
            g = grads[k] + decay_sign * weight_decay * p
            m = b1 * state["m"][k] + (1 - b1) * g
            v = b2 * state["v"][k] + (1 - b2) * g * g
            m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
            denom = np.sqrt(v_hat + eps) if eps_inside_sqrt else np.sqrt(v_hat) + eps
            new[k] = p - lr * m_hat / denom
            m_new[k], v_new[k] = m, v
        return new, {"t": t, "m": m_new, "v": v_new}

    return adam_update


adam_update = make_adam()

# ---------------------------------------------------------------------------- a user's SGD with momentum
# torch.optim.SGD: g <- g + weight_decay p; b <- g on the first step, b <- momentum b + (1 - dampening) g
# afterwards; p <- p - lr b. The state is a namedtuple and the buffer is updated in place, as users write it.

SGD_HYPER = dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-3)
SGDState = namedtuple("SGDState", ["step", "buffers"])


def sgd_init(params):
    return SGDState(0, {k: np.zeros_like(p) for k, p in params.items()})


def make_sgd(keep_momentum=True):
    def sgd_update(params, grads, state, lr, momentum, dampening, weight_decay):
        new = {}
        for k, p in params.items():
            g = grads[k] + weight_decay * p
            buf = state.buffers[k]
            if state.step == 0 or not keep_momentum:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            new[k] = p - lr * buf
        return new, SGDState(state.step + 1, state.buffers)

    return sgd_update


sgd_update = make_sgd()

# an example for the built-in loss: parameters only, exactly representable in float32
EXAMPLE = Example({"w": np.array([[0.5, -1.0, 1.5], [2.0, -0.25, 0.0]]), "b": np.array([0.1, -0.3])}, {})


def test_hand_written_adam_passes_30_steps_in_float64_and_float32():
    summaries = check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, max_examples=3,
                                devices=["cpu"])
    assert [(s.dtype, s.steps) for s in summaries] == [("float64", 30), ("float32", 30)]
    # every drawn example judged over all 30 steps: none skipped or cut short by the comparable horizon
    assert all(s.examples == 3 and not s.partial and not s.skipped for s in summaries)


def test_hand_written_sgd_with_momentum_passes():
    other = Example({"w": np.array([3.0, -2.0, 0.0, 1e-3])}, {})
    summaries = check_optimizer(sgd_init, sgd_update, torch.optim.SGD, SGD_HYPER, inputs=[EXAMPLE, other],
                                devices=["cpu"])
    assert all(s.examples == 2 for s in summaries)


def test_one_example_assert_returns_its_summary():
    summary = assert_optimizer_close(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, EXAMPLE,
                                     dtype=np.float32, steps=10)
    assert (summary.dtype, summary.examples, summary.steps) == ("float32", 1, 10)


def test_tolerance_takes_the_same_plain_values_as_check_gradients():
    example = Example({"w": np.array([0.5, -1.0]), "b": np.array([0.2])},
                      {"X": np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]), "y": np.array([1.0, 0.0, 2.0])})
    for tolerance in ("deep-model", 40):
        summary = assert_optimizer_close(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, example, steps=5,
                                         numpy_loss=lsq, torch_loss=lsq_torch, term_scale=lsq_terms,
                                         tolerance=tolerance)
        assert summary.examples == 1


BUGS = {
    "bias correction missing": (adam_init, make_adam(bias_correction=False), torch.optim.Adam, ADAM_HYPER, 1),
    "eps inside the sqrt": (adam_init, make_adam(eps_inside_sqrt=True), torch.optim.Adam, ADAM_HYPER, 1),
    "weight decay with the wrong sign": (adam_init, make_adam(decay_sign=-1.0), torch.optim.Adam, ADAM_HYPER, 1),
    # torch's first step sets the buffer to g, so a dropped momentum shows from step 2
    "momentum dropped": (sgd_init, make_sgd(keep_momentum=False), torch.optim.SGD, SGD_HYPER, 2),
}


@pytest.mark.parametrize("bug", BUGS)
def test_buggy_optimizer_fails_naming_step_and_parameter(bug):
    init, update, optimizer, hyper, first_step = BUGS[bug]
    with pytest.raises(AssertionError) as failure:
        check_optimizer(init, update, optimizer, hyper, inputs=EXAMPLE, devices=["cpu"])
    message = str(failure.value)
    torch_name = f"torch.optim.{optimizer.__name__}"
    header = re.search(rf"{torch_name} \(float64, cpu\) and your NumPy optimizer \(float64\) part at step "
                       r"(\d+) of 30, parameter '(\w+)'", message)
    assert header, message
    assert int(header.group(1)) == first_step and header.group(2) in EXAMPLE.params
    assert f"optimizer hyperparameters: {hyper}" in message
    assert "example: params {'w': array([[" in message


def test_the_buggy_adam_passes_the_first_step_only_where_the_bug_has_no_effect():
    """The weight-decay sign bug needs a nonzero parameter: from 0 it shows one step later."""
    at_zero = Example({"w": np.zeros(3)}, {})
    with pytest.raises(AssertionError, match=r"part at step 2 of 30, parameter 'w'.*\n.*\n.*\n  step 1 agreed"):
        check_optimizer(adam_init, make_adam(decay_sign=-1.0), torch.optim.Adam, ADAM_HYPER, inputs=at_zero,
                        dtypes=[np.float64], devices=["cpu"])


# ---------------------------------------------------------------------------- a loss whose terms cancel
# A user's logistic loss, softplus(z) - y z, with no term_scale: at the example's step 27 its terms are about
# 6.5 and L 1.7e-3, and the float64 loss rounds by 3.4e-17, above the floor (rtol |L|) that the analytic
# bound gives a loss without declared terms (1.17x). A census of check_optimizer on four hand-written
# optimizers found 12 false alarms like it in 80 correct runs (docs/optimizers-and-autograd.md).

def logistic(params, data):
    X, y = data["X"], data["y"]
    z = X @ params["w"] + params["b"]
    r = (0.5 * (1 + np.tanh(0.5 * z)) - y) / len(y)
    return np.mean(np.logaddexp(0, z) - y * z), {"w": X.T @ r, "b": np.sum(r, keepdims=True)}


def logistic_torch(params, data):
    return torch.nn.functional.binary_cross_entropy_with_logits(data["X"] @ params["w"] + params["b"], data["y"])


CANCELLING = Example(
    {"w": np.array([-4.950027075545367e-22, 5.269361095684046e-01, 9.0e-01, -5.300660239507645e-01]),
     "b": np.array([0.9628799555421832])},
    {"X": np.array([[-2.0, -1.0658325765963106e-01, -1.5957162914724261e+00, 0.0],
                    [-2.2250738585072014e-308, 2.6078629438745349e-01, 1.7612072199204846e-125, 3.0]]),
     "y": np.array([1.0, 1.0])})


def test_a_loss_whose_terms_cancel_is_judged_by_its_measured_rounding():
    """Where the floor fails the loss, the trajectory allows what the gradient check allows one
    evaluation of it there (the floor plus rounding measured at nearby inputs), plus the earlier
    steps' propagated rounding: the correct SGD passes all 30 steps; the one that drops its
    momentum is still caught, at step 2, and so is a loss 1e-13 off (relative 1e-13, 4.8x the
    measured bound)."""
    loss = dict(numpy_loss=logistic, torch_loss=logistic_torch)
    summary = assert_optimizer_close(sgd_init, sgd_update, torch.optim.SGD, SGD_HYPER, CANCELLING, **loss)
    assert summary.examples == 1 and summary.worst.ratio <= 1
    with pytest.raises(AssertionError, match="part at step 2 of 30"):
        assert_optimizer_close(sgd_init, make_sgd(keep_momentum=False), torch.optim.SGD, SGD_HYPER, CANCELLING,
                               **loss)

    def off(params, data):
        value, grads = logistic(params, data)
        return value + 1e-13, grads

    with pytest.raises(AssertionError, match="part at step 1 of 30, the loss"):
        assert_optimizer_close(sgd_init, sgd_update, torch.optim.SGD, SGD_HYPER, CANCELLING, numpy_loss=off,
                               torch_loss=logistic_torch)


# At w = 0 every residual is ±1/8 and the bias gradient, their sum, is 1e-4: torch's float32 gradient
# rounds by the residuals, and its step 1 moved the bias by 10x the analytic bound (census seed 22).
AT_ZERO = Example({"w": np.array([0.0, 0.001], np.float32), "b": np.array([-2.1711878e-06], np.float32)},
                  {"X": np.array([[3.0, -2.669923], [0.8563703, -1.3394781], [2.0, 2.5281992],
                                  [0.9999, -0.008556636]], np.float32),
                   "y": np.array([1.0, 0.0, 1.0, 0.0], np.float32)})


def test_a_gradient_whose_terms_cancel_is_judged_by_its_measured_rounding():
    """Where the analytic spread fails a step, each step's gradient rounding is injected at what
    the gradient check allows there (``Reference.measured_spread``): the correct SGD passes in
    float32, the one that drops its momentum is still caught, and so is a learning rate 0.01% off
    (3x the measured bound at step 1)."""
    loss = dict(numpy_loss=logistic, torch_loss=logistic_torch, dtype=np.float32)
    summary = assert_optimizer_close(sgd_init, sgd_update, torch.optim.SGD, SGD_HYPER, AT_ZERO, **loss)
    assert summary.examples == 1 and summary.worst.ratio <= 1
    with pytest.raises(AssertionError, match="part at step 2 of 30, parameter 'w'"):
        assert_optimizer_close(sgd_init, make_sgd(keep_momentum=False), torch.optim.SGD, SGD_HYPER, AT_ZERO,
                               **loss)

    def lr_off(params, grads, state, lr, **hyper):
        return sgd_update(params, grads, state, lr * 1.0001, **hyper)

    with pytest.raises(AssertionError, match="part at step 1 of 30, parameter 'w'"):
        assert_optimizer_close(sgd_init, lr_off, torch.optim.SGD, SGD_HYPER, AT_ZERO, **loss)


# ---------------------------------------------------------------------------- not comparable
# Least squares started at its exact solution: the gradient is 0 in the math and rounding noise in float32,
# which Adam normalizes into a step of about lr in a direction rounding chose.

def lsq(params, data):
    r = data["X"] @ params["w"] + params["b"] - data["y"]
    return 0.5 * np.mean(r * r), {"w": data["X"].T @ r / len(r), "b": np.mean(r, keepdims=True)}


def lsq_torch(params, data):
    r = data["X"] @ params["w"] + params["b"] - data["y"]
    return 0.5 * (r * r).mean()


def lsq_terms(example):
    """Magnitudes of the terms the residual cancels (check_gradients's term_scale)."""
    X, w, b, y = example.data["X"], example.params["w"], example.params["b"], example.data["y"]
    s = np.abs(X) @ np.abs(w) + np.abs(b) + np.abs(y)
    return {"loss": 0.5 * np.mean(s * s), "w": np.abs(X).T @ s / len(s), "b": np.mean(s, keepdims=True)}


def _exact_fit() -> Example:
    rng = np.random.default_rng(3)
    X, w, b = rng.normal(size=(5, 2)), rng.normal(size=2), np.array([0.3])
    return Example({"w": w, "b": b}, {"X": X, "y": X @ w + b})


LSQ = dict(numpy_loss=lsq, torch_loss=lsq_torch, term_scale=lsq_terms)
NO_DECAY = dict(ADAM_HYPER, weight_decay=0.0)  # weight decay would make the gradient at the solution nonzero


def test_a_trajectory_that_rounding_decides_is_reported_not_comparable():
    with pytest.raises(NotComparable, match=r"\(float32, cpu\): no step could be judged.*rounding alone") as skip:
        check_optimizer(adam_init, adam_update, torch.optim.Adam, NO_DECAY, inputs=_exact_fit(), devices=["cpu"],
                        **LSQ)
    assert isinstance(skip.value, unittest.SkipTest)  # pytest and unittest report it as a skip


def test_the_skipped_trajectory_is_decided_by_rounding_in_fact():
    """Not only in the model: torch's float32 first step moves the parameters about as far from the
    float64 reference's first step as that step moves them at all."""
    setup, _ = _build(adam_init, adam_update, torch.optim.Adam, NO_DECAY, lsq, lsq_torch, 1, None, DEEP_MODEL,
                      None, lsq_terms, None)
    example = _exact_fit().astype(np.float32)
    _, (torch_step,) = _torch_trajectory(setup, example, np.float32, "cpu")
    ex64 = example.astype(np.float64)
    reference_step, _ = setup.opt.update(ex64.params, lsq(ex64.params, ex64.data)[1], setup.opt.init(ex64.params),
                                         **NO_DECAY)
    apart = max(np.max(np.abs(torch_step[k] - reference_step[k])) / np.max(np.abs(reference_step[k] - ex64.params[k]))
                for k in ex64.params)
    assert apart > 0.5


def test_a_trajectory_comparable_for_its_first_steps_is_judged_that_far_and_warns():
    with pytest.warns(TrajectoryHorizonWarning, match="judged only up to step"):
        (summary,) = check_optimizer(adam_init, adam_update, torch.optim.Adam, NO_DECAY, inputs=_exact_fit(),
                                     dtypes=[np.float64], devices=["cpu"], **LSQ)
    assert summary.examples == 0 and len(summary.partial) == 1 and 0 < summary.partial[0][0] < 30


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_horizon_of_a_long_trajectory_is_where_shorter_ones_stop_being_comparable(dtype):
    """The check's horizon (trajectory.comparable_steps over all its steps) is the verdict
    comparable() gives each shorter trajectory: a step's verdict depends on the steps up to it."""
    for loss, example in [(LSQ, _exact_fit()), ({}, EXAMPLE)]:
        setup, _ = _build(adam_init, adam_update, torch.optim.Adam, NO_DECAY, loss.get("numpy_loss"),
                          loss.get("torch_loss"), 30, None, DEEP_MODEL, None, loss.get("term_scale"), None)
        example = _with_loss_data(setup, example).astype(dtype)
        horizon, reason = comparable_steps(setup.case, setup.opt, example, setup.hyper, 30, dtype)
        assert (reason == "") == (horizon == 30)
        for steps in {horizon, horizon + 1} & set(range(1, 31)):
            assert comparable(setup.case, setup.opt, example, setup.hyper, steps, dtype) == (steps <= horizon)


# ---------------------------------------------------------------------------- what a user gets wrong

def test_a_float32_parameter_returned_as_float64_is_a_finding():
    def promoting(params, grads, state, **hyper):
        new, state = adam_update(params, grads, state, **hyper)
        return {k: p * np.float64(1.0) for k, p in new.items()}, state  # a NumPy float64 scalar promotes

    with pytest.raises(AssertionError, match=r"your NumPy optimizer's update returned '[wb]' as float64 for float32"):
        check_optimizer(adam_init, promoting, torch.optim.Adam, ADAM_HYPER, inputs=EXAMPLE, devices=["cpu"])


def test_an_exception_in_your_update_says_it_came_from_there():
    def broken(params, grads, state, **hyper):
        raise KeyError("m")

    with pytest.raises(KeyError) as error:
        check_optimizer(adam_init, broken, torch.optim.Adam, ADAM_HYPER, inputs=EXAMPLE, devices=["cpu"])
    assert any("raised in your NumPy optimizer's update" in note for note in getattr(error.value, "__notes__", []))


@pytest.mark.parametrize("call, error, match", [
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam([torch.zeros(1, requires_grad=True)]),
                             ADAM_HYPER), TypeError, "torch_optimizer must be the class"),
    (lambda: check_optimizer(adam_init, adam_update, "Adam", ADAM_HYPER), TypeError, "torch_optimizer must be"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, [("lr", 1e-3)]), TypeError, "hyper must be"),
    (lambda: check_optimizer(sgd_init, sgd_update, torch.optim.SGD, ADAM_HYPER), TypeError,
     r"torch.optim.SGD refuses hyper"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, numpy_loss=lsq, inputs=EXAMPLE),
     TypeError, "numpy_loss needs its twin torch_loss"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, numpy_loss=lsq,
                             torch_loss=lsq_torch), TypeError, "inputs is required"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, inputs=3), TypeError,
     "inputs must be"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, steps=0), ValueError,
     "steps must be"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, dtypes=[np.int32]),
     ValueError, "dtypes: int32"),
    (lambda: check_optimizer(adam_init, lambda p, g, s, **h: ({}, s), torch.optim.Adam, ADAM_HYPER, inputs=EXAMPLE),
     ValueError, "your NumPy optimizer's update must return params with the keys"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER,
                             inputs=Example({"w": np.ones(2)}, {"w/target": np.ones(2)})),
     ValueError, r"lacks \['w/curvature'\]"),
    (lambda: check_optimizer(adam_init, adam_update, torch.optim.Adam, ADAM_HYPER, inputs=_exact_fit(),
                             numpy_loss=lsq, torch_loss=lambda params, data: (data["X"] @ params["w"])[:, None]),
     TypeError, r"must return a 0-d tensor \(the loss\), got shape \(5, 1\)"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
