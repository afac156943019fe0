"""Magnitude of the terms each compared quantity is formed from.

The tolerance policy bounds rounding error relative to the terms a result was
summed or subtracted from, not to the result: 1 - tanh(x)^2 near |x| = 3 or
sigmoid(z) - y near y = 1 cancel, and their rounding error stays the size of
the terms (about 1) while the result is small. Each function here returns, per
compared key, an upper bound on that magnitude: a number for "loss", and for
each parameter an array of its shape (element by element, so that one large
element of a gradient does not loosen the check of the others).

For the models it is obtained by running the reference itself on absolute
values (weights, inputs and biases made non-negative and targets negated): every
sum then adds magnitudes instead of cancelling, which is exactly the sum of
|terms| for the affine parts, and an upper bound through ReLU (every unit
counted active). Scales stay within the NumPy reference's own arithmetic.
"""

from __future__ import annotations

import numpy as np

from reference import models
from reference.losses import BCE_GRAD_EPS


def _r(reduction, size):
    return 1.0 / size if reduction == "mean" else 1.0


def _abs(d):
    return {k: np.abs(np.asarray(v, np.float64)) for k, v in d.items()}


def activation(ex):
    """f'(x) <= 1 for every activation here, and f' is formed from terms of size 1
    (1 - t^2, (1 - s) s), so the gradient's terms are bounded by |upstream|."""
    return {"x": np.abs(ex.data["upstream"]).astype(np.float64)}


def mse(ex):
    p, t = np.abs(ex.params["pred"]).astype(np.float64), np.abs(ex.data["target"]).astype(np.float64)
    r = _r(ex.hyper.get("reduction", "mean"), p.size) * ex.hyper.get("scale", 1.0)
    return {"loss": r * float(np.sum((p + t) ** 2)), "pred": 2 * r * (p + t)}


def bce(ex):
    """(p - y) / max(p (1 - p), eps): p and y are exact inputs, so p - y is exact
    where they are close (Sterbenz) and rounds relative to itself elsewhere; the
    gradient's error is relative to its own size, element by element. Both log
    terms of the loss are <= 0, so the loss's terms never cancel either."""
    p, y = ex.params["pred"].astype(np.float64), ex.data["target"].astype(np.float64)
    r = _r(ex.hyper.get("reduction", "mean"), p.size)
    return {"pred": r * np.abs(p - y) / np.maximum(p * (1 - p), BCE_GRAD_EPS)}


def bce_with_logits(ex):
    z, y = np.abs(ex.params["pred"]).astype(np.float64), np.abs(ex.data["target"]).astype(np.float64)
    r = _r(ex.hyper.get("reduction", "mean"), z.size)
    return {"loss": r * float(np.sum(z + z * y + np.log1p(np.exp(-z)))), "pred": r * (1 + y)}


def _cross_entropy_loss_terms(logit_size, r):
    """log(sum_j e^{z_j - max}) is the log of a sum of size 1..C, whose rounding
    leaves an absolute error of the size of 1, however small the loss; the
    logits' own rounding enters twice (max z and z_y)."""
    return r * float(np.sum(2 * logit_size + 1))


def cross_entropy(ex):
    """Gradient softmax - onehot: terms of size <= 1 each, times the reduction."""
    z = np.abs(ex.params["pred"]).astype(np.float64)
    r = _r(ex.hyper.get("reduction", "mean"), z.shape[0])
    return {"loss": _cross_entropy_loss_terms(z.max(axis=1), r), "pred": np.full(z.shape, 2 * r)}


def _by_absolute_values(reference, flip=("Y",)):
    def scale(ex):
        data = _abs(ex.data)
        for key in flip:
            if key in data:
                data[key] = -data[key]
        loss, grads = reference(_abs(ex.params), data, **ex.hyper)
        return {"loss": float(abs(loss)), **grads}

    return scale


scalar_quadratic = _by_absolute_values(models.scalar_quadratic, flip=())
linear_regression = _by_absolute_values(models.linear_regression)
two_layer_regression = _by_absolute_values(models.two_layer_regression)
# sigmoid + BCE has the same gradient, sigmoid(z) - y, and same-sized loss terms
# as the logits form, whose reference accepts the negated targets.
logistic_regression = _by_absolute_values(models.logistic_regression_logits)


def two_layer_classifier(ex):
    """The dense backward on magnitudes, from |softmax - onehot| <= 2 r per logit."""
    X = np.abs(ex.data["X"]).astype(np.float64)
    params = _abs(ex.params)
    weights = (params["W1"], params.get("b1"), params["W2"], params.get("b2"))
    pre = X @ weights[0] + (0 if weights[1] is None else weights[1])
    logits = pre @ weights[2] + (0 if weights[3] is None else weights[3])
    n, c = logits.shape
    r = _r(ex.hyper.get("reduction", "mean"), n)
    d_out = np.full((n, c), 2 * r)
    grads = models._two_layer_backward(X, weights, pre, pre, d_out)
    return {"loss": _cross_entropy_loss_terms(logits.max(axis=1), r), **grads}

