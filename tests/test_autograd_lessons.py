"""The autograd lessons of the torch tutorials, each against a hand-derived NumPy counterpart:
gradient accumulation, weighted backward through several outputs, a custom
autograd.Function ReLU, and the two-layer net trained by hand, by autograd and by nn + optim.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from agreement import strategies as S
from agreement.compare import assert_all, compare
from agreement.optimizers import OPTIMIZERS
from agreement.registry import CASES, Example, cases
from agreement.run import TORCH_DTYPES, evaluate, term_scales
from agreement.strategies import DTYPES
from agreement.tolerance import ELEMENTWISE, tolerance
from agreement.trajectory import judge
from reference import activations
from reference import second_order as so
from torch_impl import custom_relu, manual_backprop, train

TRAINABLE = cases(trainable=True)


# ---------------------------------------------------------------- accumulation
def _backward_k_times(case, example, k, dtype):
    module = train.build(case.twin, example.params, example.hyper, "cpu", dtype)
    batch = train.to_device(example.data, "cpu", dtype)
    singles = []
    for _ in range(k):
        loss = module(**batch)
        before = train.layout.export(module, "grad")
        loss.backward()
        after = train.layout.export(module, "grad")
        singles.append({n: after[n] - (0 if before[n] is None else before[n]) for n in after})
    return module, loss.detach().numpy(), singles


@given(data=st.data())
def test_backward_without_zeroing_accumulates_and_the_step_uses_the_sum(data):
    case = data.draw(st.sampled_from(TRAINABLE), label="case")
    opt = data.draw(st.sampled_from(list(OPTIMIZERS.values())), label="optimizer")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    example = data.draw(case.inputs(dtype, smooth=True), label="example").astype(dtype)
    hyper = data.draw(opt.hyper(dtype), label="optimizer hyperparameters")
    k = data.draw(st.integers(1, 4), label="backward passes")
    module, loss, _ = _backward_k_times(case, example, k, TORCH_DTYPES[np.dtype(dtype)])
    accumulated = train.layout.export(module, "grad")

    ex64 = example.astype(np.float64)
    _, grads = case.reference(ex64.params, ex64.data, **ex64.hyper)
    expected = so.accumulated_gradients([grads] * k)
    # k - 1 more additions on top of one evaluation, of terms k times as large
    n = case.reduction_length(example) + k - 1
    terms = term_scales(case, ex64)
    assert_all([compare(accumulated[name], expected[name],
                        tolerance(case.tolerance, dtype, n, expected[name], term_scale=k * terms.get(name, 0.0)),
                        case=case.name, what=f"grad {name} after {k} backward passes", dtype=np.dtype(dtype).name,
                        device="torch-cpu") for name in sorted(expected)])

    # the optimizer steps with the accumulated gradient: the reference gets k * g
    torch_opt = getattr(torch.optim, opt.torch_name)(module.parameters(), **hyper)
    torch_opt.step()
    k_times = dataclasses.replace(case, reference=lambda p, d, **h: _scaled(case.reference(p, d, **h), k))
    assert_all(judge(k_times, opt, example, hyper, dtype, np.array([loss]), [train.layout.export(module, "data")],
                     "torch-cpu"))


def _scaled(loss_and_grads, k):
    loss, grads = loss_and_grads
    return loss, so.accumulated_gradients([grads] * k)


@given(k=st.integers(2, 5), dtype=st.sampled_from(DTYPES), data=st.data())
def test_accumulated_grad_is_the_running_sum_of_the_passes(k, dtype, data):
    """Bit for bit: autograd's .grad after k passes is ((g1 + g2) + g3) ... in the dtype."""
    case = data.draw(st.sampled_from(TRAINABLE), label="case")
    example = data.draw(case.inputs(dtype), label="example").astype(dtype)
    module, _, passes = _backward_k_times(case, example, k, TORCH_DTYPES[np.dtype(dtype)])
    accumulated = train.layout.export(module, "grad")
    summed = so.accumulated_gradients([passes[0]] * k)  # every pass computes the same gradient
    for name in accumulated:
        np.testing.assert_array_equal(accumulated[name], summed[name], err_msg=name)


# ---------------------------------------------------------------- several outputs
def _two_output_tensors(x, w, dtype):
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    wt = torch.tensor(w, dtype=dtype, requires_grad=True)
    return xt, wt, (xt + wt) * (wt + 1), (xt + wt) + (wt + 1)


def _weighted_backward_three_ways(x, w, g0, g1, dtype):
    """backward(gradient=...) on the stacked outputs, autograd.grad with grad_outputs,
    and the two outputs' gradients taken separately and added."""
    g0t, g1t = torch.tensor(g0, dtype=dtype), torch.tensor(g1, dtype=dtype)
    xt, wt, y0, y1 = _two_output_tensors(x, w, dtype)
    torch.stack([y0, y1]).backward(gradient=torch.stack([g0t, g1t]))
    stacked = {"x": xt.grad.numpy(), "w": wt.grad.numpy()}
    xt, wt, y0, y1 = _two_output_tensors(x, w, dtype)
    gx, gw = torch.autograd.grad([y0, y1], [xt, wt], grad_outputs=[g0t, g1t])
    xt, wt, y0, y1 = _two_output_tensors(x, w, dtype)
    g0x, g0w = torch.autograd.grad(y0, [xt, wt], grad_outputs=g0t, retain_graph=True)
    g1x, g1w = torch.autograd.grad(y1, [xt, wt], grad_outputs=g1t)
    return {"backward(gradient=)": stacked, "grad(grad_outputs=)": {"x": gx.numpy(), "w": gw.numpy()},
            "per output, added": {"x": (g0x + g1x).numpy(), "w": (g0w + g1w).numpy()}}


@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_weighted_backward_through_two_outputs(dtype, data):
    shape = data.draw(st.tuples(S.dims(1, 5)), label="shape")
    x, w, g0, g1 = (data.draw(S.arrays(dtype, shape, 100.0), label=name) for name in ("x", "w", "weight0", "weight1"))
    c = [a.astype(np.float64) for a in (x, w, g0, g1)]
    expected = so.two_outputs_weighted_grads(*c)
    a = {k: np.abs(v) for k, v in zip("xwuv", c, strict=True)}
    terms = {"x": a["u"] * (a["w"] + 1) + a["v"], "w": a["u"] * (a["x"] + 2 * a["w"] + 1) + 2 * a["v"]}
    results = []
    for how, grads in _weighted_backward_three_ways(x, w, g0, g1, TORCH_DTYPES[np.dtype(dtype)]).items():
        for name in ("x", "w"):
            tol = tolerance(ELEMENTWISE, dtype, 2, expected[name], term_scale=float(np.max(terms[name])))
            results.append(compare(grads[name], expected[name], tol, case="two_outputs", what=f"{how} d/d{name}",
                                   dtype=np.dtype(dtype).name, device="torch-cpu"))
    assert_all(results)
    # the forward values: the same IEEE operations in the same order on both sides
    _, _, t0, t1 = _two_output_tensors(*c[:2], torch.float64)
    for t, y in zip((t0, t1), so.two_outputs(*c[:2]), strict=True):
        np.testing.assert_array_equal(t.detach().numpy(), y)


def test_weighted_backward_is_not_the_unweighted_sum():
    """backward with weights (2, 3) differs from backward of y0 + y1: the weights matter."""
    x, w, g0, g1 = np.array([1.0]), np.array([2.0]), np.array([2.0]), np.array([3.0])
    got = _weighted_backward_three_ways(x, w, g0, g1, torch.float64)["backward(gradient=)"]
    unweighted = so.two_outputs_weighted_grads(x, w, np.ones(1), np.ones(1))
    weighted = so.two_outputs_weighted_grads(x, w, g0, g1)
    assert got["w"][0] == weighted["w"][0] == 2 * (1 + 4 + 1) + 2 * 3 and got["w"][0] != unweighted["w"][0]


# ---------------------------------------------------------------- custom autograd.Function
@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_custom_relu_equals_builtin_and_reference_bit_for_bit(dtype, data):
    shape = data.draw(st.tuples(S.dims(1, 6)), label="shape")
    x = data.draw(S.arrays(dtype, shape, 100.0) | st.just(np.array([0.0, -0.0, -1.0, 1.0], dtype)), label="x")
    upstream = data.draw(S.arrays(dtype, x.shape, 10.0), label="upstream")
    results = {}
    for name, fn in {"custom": custom_relu.manual_relu, "builtin": torch.relu}.items():
        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        y.backward(torch.tensor(upstream))
        results[name] = (y.detach().numpy(), xt.grad.numpy())
    expected = (activations.relu(x), activations.relu_grad(x, upstream))
    for got in results.values():
        for a, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, e)
            np.testing.assert_array_equal(np.signbit(a), np.signbit(e))  # relu(-0.0) is -0.0


@given(data=st.data())
def test_custom_relu_passes_gradcheck_and_gradgradcheck_away_from_the_kink(data):
    x = data.draw(S.arrays(np.float64, data.draw(st.tuples(S.dims(1, 6))), 10.0), label="x")
    x = np.where(np.abs(x) < 1e-3, 1.0, x)  # the finite differences (eps 1e-6) must not straddle 0
    xt = torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(custom_relu.manual_relu, (xt,))
    assert torch.autograd.gradgradcheck(custom_relu.manual_relu, (xt,))


def test_gradcheck_fails_at_the_kink_where_relu_has_no_derivative():
    xt = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(custom_relu.manual_relu, (xt,), raise_exception=False)


class _ReluWithOneAtZero(torch.autograd.Function):
    """A plausible mistake: passing the gradient where x >= 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return upstream * (x >= 0)


def test_relu_derivative_one_at_zero_disagrees_with_builtin():
    for fn, agrees in [(custom_relu.manual_relu, True), (_ReluWithOneAtZero.apply, False)]:
        xt = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
        fn(xt).backward(torch.ones(2, dtype=torch.float64))
        assert np.array_equal(xt.grad.numpy(), activations.relu_grad(np.array([0.0, 2.0]), np.ones(2))) == agrees


@pytest.mark.parametrize("name", ["two_layer_regression", "two_layer_classifier"])
@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_two_layer_net_with_custom_relu_agrees_with_reference(name, dtype, data):
    case = dataclasses.replace(CASES[name], twin=custom_relu.with_custom_relu(CASES[name].twin))
    example = data.draw(case.inputs(dtype), label="example")
    assert_all(evaluate(case, example, dtype))


# ---------------------------------------------------------------- three ways to train
TRAINERS = {
    "manual backprop": manual_backprop.train_manual,
    "autograd tensors": manual_backprop.train_autograd,
    "nn + optim": lambda params, data, lr, steps, loss, dtype: train.train(
        CASES["two_layer_regression"].twin, params, data, {"loss": loss, "bias": "b1" in params}, "SGD",
        {"lr": lr}, steps, "cpu", dtype),
}


@pytest.mark.parametrize("trainer", TRAINERS)
@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_three_ways_to_train_follow_the_reference(trainer, dtype, data):
    case = CASES["two_layer_regression"]
    example = data.draw(case.inputs(dtype, smooth=True), label="example").astype(dtype)
    lr = data.draw(S.hyper_value(dtype, 0.0, float(np.asarray(0.01, dtype))), label="lr")
    steps = data.draw(st.integers(1, 8), label="steps")
    losses, trajectory = TRAINERS[trainer](example.params, example.data, lr, steps, example.hyper["loss"],
                                           dtype=TORCH_DTYPES[np.dtype(dtype)])
    assert_all(judge(case, OPTIMIZERS["sgd"], example, {"lr": lr}, dtype, losses, trajectory, trainer))


def test_tutorial_mask_pre_below_zero_breaks_agreement_at_a_zero_preactivation(monkeypatch):
    """The classic tutorial zeroes the gradient where pre < 0, i.e. relu'(0) = 1. With an
    exactly zero pre-activation (zero input row, zero bias) that disagrees with autograd."""
    case = CASES["two_layer_regression"]
    example = Example({"W1": np.array([[1.0, -1.0]]), "b1": np.zeros(2), "W2": np.array([[1.0], [2.0]]),
                       "b2": np.zeros(1)}, {"X": np.array([[0.0], [1.0]]), "Y": np.array([[1.0], [0.0]])},
                      {"loss": "sse", "bias": True})
    sgd = {"lr": 0.01}
    losses, trajectory = manual_backprop.train_manual(example.params, example.data, 0.01, 3)
    assert_all(judge(case, OPTIMIZERS["sgd"], example, sgd, np.float64, losses, trajectory, "manual"))
    monkeypatch.setattr(manual_backprop, "relu_active", lambda pre: ~(pre < 0))
    losses, trajectory = manual_backprop.train_manual(example.params, example.data, 0.01, 3)
    assert not all(r.ok for r in judge(case, OPTIMIZERS["sgd"], example, sgd, np.float64, losses, trajectory,
                                       "manual, relu'(0) = 1"))
