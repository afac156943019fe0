"""The measured error model (agreement/rounding.py) on the examples that made the
hand-derived term scales cry wolf, and what it must not hide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agreement import Example, assert_gradients_close
from agreement.registry import cases
from agreement.rounding import measure, shrink
from agreement.run import evaluate

CASES = {c.name: c for c in cases()}


def test_two_layer_classifier_with_logits_near_1024_agrees_in_float32():
    """Issue 10's seed-99991 failure: logits near 1024 that differ by 0.07, whose float32
    rounding the softmax amplifies; NumPy and torch float32 agree with each other."""
    case = CASES["two_layer_classifier"]
    ex = Example({"W1": np.full((2, 4), 4.0), "b1": np.zeros(4), "W2": np.full((4, 2), 8.0),
                  "b2": np.array([0.85, 0.77791715])},
                 {"X": np.array([[4.0, 4.0]]), "labels": np.array([0])}, {"reduction": "mean", "bias": True})
    results = evaluate(case, ex, np.float32)
    assert all(r.ok for r in results), "\n".join(r.report() for r in results if not r.ok)


def softmax_ce_numpy(params, data):
    """Mean cross-entropy of softmax(x W + b): dL/dlogits = (softmax - onehot) / N."""
    x, labels = data["x"], data["labels"]
    z = x @ params["W"] + params["b"]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.mean(np.log(p[np.arange(n), labels]))
    d = p.copy()
    d[np.arange(n), labels] -= 1
    d /= n
    return loss, {"W": x.T @ d, "b": d.sum(axis=0)}


def softmax_ce_torch(params, data):
    return torch.nn.functional.cross_entropy(data["x"] @ params["W"] + params["b"], data["labels"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_near_p_1_agrees(dtype):
    """p - 1 cancels where the right class is nearly certain: the error is the size of
    1, however small the gradient."""
    rng = np.random.default_rng(3)
    ex = Example({"W": (rng.normal(size=(4, 3)) * 6).astype(dtype), "b": np.array([9.0, 0.0, -2.0], dtype)},
                 {"x": rng.normal(size=(5, 4)).astype(dtype), "labels": np.zeros(5, np.int64)})
    assert_gradients_close(softmax_ce_numpy, softmax_ce_torch, ex)


def log_softmax_numpy(params, data):
    """L = sum(u * log_softmax(x)); dL/dx = u - softmax(x) sum(u) per row."""
    x, u = params["x"], data["u"]
    z = x - x.max(axis=-1, keepdims=True)
    log_y = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return np.sum(u * log_y), {"x": u - np.exp(log_y) * u.sum(axis=-1, keepdims=True)}


def log_softmax_torch(params, data):
    return (data["u"] * torch.log_softmax(params["x"], dim=-1)).sum()


def test_a_rounding_that_float32_absorbs_and_noise_cannot_see_is_not_blamed():
    """Found by the user-corpus census (seed 200): torch's backward rounds exp(-9.4e-14) next
    to 1 and leaves 1 ulp of the upstream 1.1 in a gradient of 1e-13. float32 absorbs the
    element whole (1 - 9.4e-14 is 1 there), and inputs 256 ulps away round alike, so no
    sample measures it: the element falls back to the inputs' magnitude, as one a side
    computed identically in both precisions does."""
    ex = Example({"x": np.array([[-1.3074750329034982e-101, 30.0], [-1.3074750329034982e-101, 30.0]])},
                 {"u": np.array([[-1.1754943510000000e-038, -1.3074750329034982e-101],
                                 [-1.3074750329034982e-101, 1.1057572970380320e+000]])})
    assert_gradients_close(log_softmax_numpy, log_softmax_torch, ex)


def batch_norm_numpy(params, data, eps=1e-5):
    """Batch norm over axis 0 with the biased variance, L = sum(u * y); the gradients as
    layer_norm_numpy's with the axis swapped."""
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["u"]
    mu, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + eps)
    xhat = (x - mu) / std
    g = u * gamma
    dx = (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0)) / std
    return np.sum(u * (gamma * xhat + beta)), {"x": dx, "gamma": np.sum(u * xhat, axis=0), "beta": u.sum(axis=0)}


def batch_norm_torch(params, data, eps=1e-5):
    y = torch.nn.functional.batch_norm(params["x"], None, None, params["gamma"], params["beta"], True, 0.0, eps)
    return (data["u"] * y).sum()


def test_a_result_both_precisions_lose_to_large_terms_is_not_blamed():
    """Found by the user-corpus census (seed 203): over a constant batch, torch's batch norm
    forms y = x scale + (beta - mean scale) with terms of 520 and loses beta = 4.8e-23 in
    float64 and float32 alike: a loss of exactly 0 where the reference's is not is absorbed,
    and falls back to the inputs' magnitude (noise over nudged inputs sees only a trace)."""
    g, b = 0.8221082698210136, 4.805494884993606e-23
    ex = Example({"x": np.full((2, 3), -2.0), "gamma": np.full(3, g), "beta": np.full(3, b)},
                 {"u": np.array([[0.0, 0.0, 0.0], [g, 0.0, g]])})
    assert_gradients_close(batch_norm_numpy, batch_norm_torch, ex)


def layer_norm_numpy(params, data, eps=1e-5):
    """y = gamma (x - mean) / sqrt(var + eps) + beta over the last axis; with xhat the
    normalised input and g = upstream * gamma, dL/dx = (g - mean(g) - xhat mean(g xhat)) / std."""
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["upstream"]
    mu = x.mean(axis=-1, keepdims=True)
    std = np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) / std
    g = u * gamma
    dx = (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / std
    return np.sum(u * (gamma * xhat + beta)), {"x": dx, "gamma": np.sum(u * xhat, axis=0), "beta": u.sum(axis=0)}


def layer_norm_torch(params, data, eps=1e-5):
    y = torch.nn.functional.layer_norm(params["x"], params["x"].shape[-1:], params["gamma"], params["beta"], eps)
    return (data["upstream"] * y).sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm_gradient_that_is_zero_in_the_mathematics_agrees(dtype):
    """With a constant upstream and gamma, dL/dx is exactly 0 in the mathematics; NumPy
    may give exactly 0 and torch 1e-14: no information in an exact 0, and no 290-digit ratio."""
    rng = np.random.default_rng(0)
    ex = Example({"x": (rng.normal(size=(3, 5)) * 4).astype(dtype), "gamma": np.ones(5, dtype),
                  "beta": np.zeros(5, dtype)}, {"upstream": np.ones((3, 5), dtype)})
    assert_gradients_close(layer_norm_numpy, layer_norm_torch, ex)

    def wrong(params, data):  # forgets the xhat term of the gradient
        loss, grads = layer_norm_numpy(params, data)
        g = data["upstream"] * params["gamma"]
        std = np.sqrt(params["x"].var(axis=-1, keepdims=True) + 1e-5)
        return loss, {**grads, "x": (g - g.mean(axis=-1, keepdims=True)) / std}

    ex.data["upstream"] = rng.normal(size=(3, 5)).astype(dtype)
    with pytest.raises(AssertionError, match="grad x disagrees"):
        assert_gradients_close(wrong, layer_norm_torch, ex)


def test_a_bug_never_enters_its_own_measurement():
    """Each side is measured against itself in float64: a gradient 1% off on the NumPy
    side leaves every NumPy sample as small as the correct one's."""
    case = CASES["two_layer_regression"]
    ex = case.build("tiny", np.float64, 0)

    def scaled(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, {**grads, "W1": grads["W1"] * 1.01}

    def torch_call(example, dtype):
        from agreement.run import _torch_call
        return _torch_call(case, "cpu")(example, dtype)

    def bound(reference):
        m = measure(lambda e: reference(e.params, e.data, **e.hyper), torch_call, ex, np.float64)
        return m.bound("W1", ex.params["W1"].shape)

    assert np.max(bound(scaled)) < 2 * np.max(bound(case.reference)) < 1e-12


def test_shrink_keeps_ties_zeros_and_signs_and_moves_everything_else():
    x = np.array([[0.0, 1.5, -1.5, 1.5], [3.0, -0.0, 3.0, 2.0]], np.float32)
    moved = shrink(Example({"x": x}, {}), 2.0**-12, seed=0).params["x"]
    assert moved.dtype == np.float32
    assert np.array_equal(moved == 0, x == 0) and np.array_equal(np.sign(moved), np.sign(x))
    assert moved[0, 1] == moved[0, 3] and moved[1, 0] == moved[1, 2]  # ties stay ties
    assert np.all((np.abs(moved) < np.abs(x)) | (x == 0))
    relative = np.abs(moved - x)[x != 0] / np.abs(x[x != 0])
    assert np.all((relative > 2.0**-14) & (relative <= 2.0**-12 * 1.01))


def test_a_function_that_refuses_float32_is_measured_by_the_other_side():
    """A NumPy function that insists on float64 gives no float32 samples: the torch
    samples and the analytic floor still judge it, and correct code passes."""
    def strict(params, data):
        if params["x"].dtype != np.float64:
            raise TypeError("float64 only")
        t = np.tanh(params["x"])
        return np.sum(data["u"] * t), {"x": data["u"] * (1 - t**2)}

    def tanh_torch(params, data):
        return (data["u"] * torch.tanh(params["x"])).sum()

    assert_gradients_close(strict, tanh_torch, {"x": np.array([4.0, -3.0, 0.5])}, {"u": np.array([1.0, 2.0, -1.0])})
