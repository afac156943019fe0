"""Zero-size parameters, which the reference accepts on purpose because torch
steps them: optimizer updates and accumulated gradients against torch.

A (0, 2) parameter next to an ordinary one: torch.optim creates its state and
counts its steps, and autograd gives it a (0, 2) gradient that accumulates like
any other; the reference must do the same, not refuse it, drop it, or change
its shape or the other parameter's result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agreement.compare import assert_all, compare
from agreement.optimizers import OPTIMIZERS
from agreement.tolerance import ELEMENTWISE, tolerance
from reference import second_order as so

# every option that creates state, so that the empty parameter's state is compared too
STATEFUL = {
    "sgd": dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1),
    "adam": dict(lr=0.1, amsgrad=True, weight_decay=0.1),
    "adamw": dict(lr=0.1, amsgrad=True),
    "rmsprop": dict(lr=0.1, momentum=0.5, centered=True, weight_decay=0.1),
}
STEPS = 3


def _params():
    return {"empty": np.zeros((0, 2)), "w": np.array([0.5, -1.5, 2.0])}


def _grads(step):
    return {"empty": np.zeros((0, 2)), "w": np.array([1.0, -0.5, 0.25]) * (step + 1)}


def _torch_state(state) -> dict:
    """torch.optim's per-parameter state as NumPy (its keys are the reference's)."""
    return {k: int(v) if k == "step" else v.numpy() for k, v in state.items()}


def _compared(actual, expected, what) -> list:
    """The policy's comparison, empty arrays included (shape and dtype are all they have)."""
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape and np.asarray(actual).dtype == expected.dtype, what
    return [compare(actual, expected, tolerance(ELEMENTWISE, np.float64, 1, expected), case="zero-size",
                    what=what, dtype="float64", device="torch-cpu")]


def test_every_optimizer_has_stateful_options_here():
    assert set(STATEFUL) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", STATEFUL)
def test_optimizer_steps_a_zero_size_parameter_as_torch_does(name):
    opt, hyper = OPTIMIZERS[name], STATEFUL[name]
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in _params().items()}
    torch_opt = getattr(torch.optim, opt.torch_name)(list(tensors.values()), **hyper)
    params, state = _params(), opt.init(_params())
    for step in range(STEPS):
        grads = _grads(step)
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        torch_opt.step()
        params, state = opt.update(params, grads, state, **hyper)
        results = []
        for k, t in tensors.items():
            results += _compared(t.detach().numpy(), params[k], f"step {step} param {k}")
            theirs = _torch_state(torch_opt.state[t])
            ours = {"momentum_buffer": state[k]} if name == "sgd" else state[k]
            assert set(ours) <= set(theirs) | {"step"}, (k, sorted(ours), sorted(theirs))
            for key, value in ours.items():
                if key == "step":
                    assert value == theirs["step"], (k, value, theirs["step"])
                else:
                    results += _compared(theirs[key], value, f"step {step} state {k} {key}")
        assert_all(results)


def test_zero_size_gradient_accumulates_as_torch_does():
    """Three backward passes without zeroing: the empty parameter's .grad is a (0, 2)
    array (not None), and the other parameter's sum is unchanged by its company."""
    params = _params()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    passes = 3
    for _ in range(passes):
        ((tensors["empty"] * 2.0).sum() + (tensors["w"] ** 2).sum()).backward()
    single = {"empty": np.zeros((0, 2)), "w": 2 * params["w"]}
    summed = so.accumulated_gradients([single] * passes)
    for k, t in tensors.items():
        assert t.grad is not None, k
        assert summed[k].shape == tuple(t.grad.shape), k
        np.testing.assert_array_equal(t.grad.numpy(), summed[k], err_msg=k)
