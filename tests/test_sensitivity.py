"""The comparisons can fail: a reference that is wrong by a small factor, or that
breaks one of torch's conventions, is caught by torch and by finite differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agreement import finite_differences
from agreement.optimizers import OPTIMIZERS
from agreement.registry import Example, cases
from agreement.run import evaluate
from agreement.trajectory import compare_trajectories
from reference import activations as act
from reference import losses

CASES = cases()
PARAMS = [(c, name) for c in CASES for name in c.build("tiny", np.float64, 0).params]


def _scaled(case, name, factor):
    def reference(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, {**grads, name: grads[name] * factor}

    return reference


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("case", "name"), PARAMS, ids=[f"{c.name}-{n}" for c, n in PARAMS])
def test_gradient_off_by_a_factor_of_1_001_is_caught(case, name, dtype):
    example = case.build("tiny", dtype, 0)
    results = evaluate(case, example, dtype, reference=_scaled(case, name, 1.001))
    failed = [r for r in results if not r.ok]
    assert [r.what for r in failed if r.device.startswith("torch")] == [f"grad {name}"]
    assert "worst element at index" in failed[0].report()


@pytest.mark.parametrize(("case", "name"), PARAMS, ids=[f"{c.name}-{n}" for c, n in PARAMS])
def test_finite_differences_catch_a_factor_of_1_001(case, name):
    comparisons, _ = finite_differences.check(case, case.build("tiny", np.float64, 0), _scaled(case, name, 1.001))
    assert [c.what for c in comparisons if not c.ok] == [f"grad {name} vs FD"]


def test_rounding_scale_change_is_not_flagged():
    """A change of one ulp in every gradient element stays within the policy."""
    for case in CASES:
        ex = case.build("tiny", np.float64, 0)

        def nudged(params, data, case=case, **hyper):
            loss, grads = case.reference(params, data, **hyper)
            return loss, {k: np.nextafter(g, np.inf) for k, g in grads.items()}

        assert all(r.ok for r in evaluate(case, ex, np.float64, reference=nudged)), case.name


def _case(name):
    return next(c for c in CASES if c.name == name)


def test_relu_subgradient_at_zero_is_torchs():
    """relu'(0) = 1 (the other valid subgradient) disagrees with torch at exact zeros."""
    case = _case("relu")
    ex = Example({"x": np.array([0.0, -0.0, 1.0, -1.0])}, {"upstream": np.ones(4)})

    def relu_grad_one_at_zero(params, data):
        x, u = params["x"], data["upstream"]
        return np.sum(u * act.relu(x)), {"x": np.where(x >= 0, u, 0.0)}

    assert all(r.ok for r in evaluate(case, ex, np.float64))
    failed = [r for r in evaluate(case, ex, np.float64, reference=relu_grad_one_at_zero) if not r.ok]
    assert failed and failed[0].index == (0,)


def test_bce_without_torchs_clamps_is_caught():
    case = _case("bce")
    ex = Example({"pred": np.array([0.0, 0.5, 1.0])}, {"target": np.array([1.0, 0.5, 0.0])}, {"reduction": "mean"})

    def unclamped(params, data, reduction):
        p, y = params["pred"], data["target"]
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            return loss, {"pred": (p - y) / (p * (1 - p)) / p.size}

    assert all(r.ok for r in evaluate(case, ex, np.float64))
    assert not all(r.ok for r in evaluate(case, ex, np.float64, reference=unclamped))


def test_softmax_backward_missing_the_one_hot_is_caught_with_nonuniform_upstream():
    """softmax - onehot without the onehot: caught, whatever labels are drawn."""
    case = _case("cross_entropy")
    ex = case.build("tiny", np.float64, 0)

    def no_onehot(params, data, reduction):
        loss, _ = losses.cross_entropy_loss(params["pred"], data["labels"], reduction)
        return loss, {"pred": np.exp(losses.log_softmax(params["pred"])) / len(data["labels"])}

    assert not all(r.ok for r in evaluate(case, ex, np.float64, reference=no_onehot))


def test_softplus_threshold_ignored_is_caught():
    case = _case("softplus")
    ex = Example({"x": np.array([2.0, 30.0])}, {"upstream": np.array([1.0, -2.0])}, {"beta": 1.0, "threshold": 1.0})

    def no_threshold(params, data, beta, threshold):
        x, u = params["x"], data["upstream"]
        return np.sum(u * np.log1p(np.exp(beta * x)) / beta), {"x": u / (1 + np.exp(-beta * x))}

    assert all(r.ok for r in evaluate(case, ex, np.float64))
    assert not all(r.ok for r in evaluate(case, ex, np.float64, reference=no_threshold))


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_trajectory_names_the_first_step_that_diverged(opt_name):
    """A gradient 0.1% off on one parameter makes the trajectory diverge; the
    report names the first step where it does."""
    opt = OPTIMIZERS[opt_name]
    case = _case("two_layer_regression")
    ex = case.build("tiny", np.float64, 0)
    results = compare_trajectories(case, opt, ex, opt.defaults, 5, np.float64, reference=_scaled(case, "W1", 1.001))
    failed = [r for r in results if not r.ok]
    assert failed, "a 0.1% gradient error went unnoticed"
    assert all(r.what.startswith("step 0 ") for r in failed), [r.what for r in failed]
    assert all(r.ok for r in compare_trajectories(case, opt, ex, opt.defaults, 5, np.float64))


def _sgd_variant(mutation):
    """torch.optim.SGD's formula written a second time, with one step changed."""

    def update(params, grads, state, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
               maximize=False):
        new_params, new_state = dict(params), dict(state)
        for name, p in params.items():
            g = grads[name]
            if mutation == "decay before maximize":
                g = -(g + weight_decay * p) if maximize else g + weight_decay * p
            else:
                g = -g if maximize else g
                g = g + weight_decay * p
            buf = state.get(name)
            if buf is None:
                buf = (1 - dampening) * g if mutation == "dampening on the first step" else g
            else:
                buf = momentum * buf + (1 - dampening) * g
            new_state[name] = buf
            if nesterov:
                g = buf if mutation == "nesterov uses the buffer" else g + momentum * buf
            else:
                g = buf
            new_params[name] = p - lr * g
        return new_params, new_state

    return dataclasses.replace(OPTIMIZERS["sgd"], update=update, init=lambda params: {k: None for k in params})


@pytest.mark.parametrize(("mutation", "hyper"), [
    (None, dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1, maximize=True)),
    ("dampening on the first step", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("decay before maximize", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("nesterov uses the buffer", dict(lr=0.05, momentum=0.9, nesterov=True)),
])
def test_sgd_formula_mistakes_are_caught(mutation, hyper):
    """The trajectory comparison accepts torch's SGD written again correctly
    (the first row) and rejects each single-step mistake."""
    case = _case("two_layer_regression")
    ex = case.build("tiny", np.float64, 0)
    results = compare_trajectories(case, _sgd_variant(mutation), ex, hyper, 4, np.float64)
    assert all(r.ok for r in results) == (mutation is None), [r.report() for r in results if not r.ok][:1]
