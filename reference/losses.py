"""Losses with torch.nn semantics. Each ``*_loss`` returns ``(loss, d loss / d input)``.

``reduction`` is ``"mean"`` (divide by the number of elements, or of samples
for cross-entropy) or ``"sum"``, as in torch. The loss is a NumPy scalar of the
input's dtype; the gradient an ndarray of the input's shape, 0-d included.
"""

from __future__ import annotations

import numpy as np

from reference import _checks
from reference.activations import _sigmoid

REDUCTIONS = ("mean", "sum")
BCE_LOG_CLAMP = -100.0  # torch.nn.BCELoss clamps each log term at -100
# torch's BCE backward divides by max(p (1 - p), EPSILON) where EPSILON is the
# C++ constant `float EPSILON = 1e-12`: the float32 value 9.999999960041972e-13,
# used as is in float64 too (visible as 1.000000004e12 in the slope at p = 0).
BCE_GRAD_EPS = float(np.float32(1e-12))


def _pair(pred_name, pred, target):
    pred = _checks.floating(pred_name, pred)
    target = _checks.floating("target", target, shape=pred.shape)
    _checks.same_dtype(**{pred_name: pred, "target": target})
    return pred, target


def mse_loss(pred, target, reduction="mean", scale=1.0):
    """L = scale * reduce((pred - target)^2).

    dL/dpred = scale * 2 (pred - target) * r, r = 1/numel for mean, 1 for sum.
    ``scale=0.5`` gives the 0.5 * MSE form whose gradient is the plain residual.
    Shapes: pred, target any shape (equal); gradient like pred.
    """
    pred, target = _pair("pred", pred, target)
    _checks.choice("reduction", reduction, REDUCTIONS)
    scale = pred.dtype.type(_checks.scalar("scale", scale, low=0.0, low_open=True))
    with np.errstate(over="ignore"):
        diff = pred - target
        squares = diff * diff
    loss, r = _checks.reduce(squares, reduction)
    return scale * loss, np.asarray(scale * 2 * r * diff)


def bce_loss(prob, target, reduction="mean"):
    """Binary cross-entropy on probabilities, torch.nn.BCELoss semantics.

    l_i = -(y_i max(log p_i, -100) + (1 - y_i) max(log1p(-p_i), -100))
    (log1p as torch evaluates it: accurate for tiny p, where log(1 - p) rounds to 0).
    dl_i/dp_i = (p_i - y_i) / (p_i (1 - p_i)), with the denominator clamped at
    1e-12 as torch's backward does (so p = 0 or 1 gives a large finite slope).
    Shapes: prob, target any shape (equal), both in [0, 1].
    """
    prob, target = _pair("prob", prob, target)
    _checks.in_unit_interval("prob", prob)
    _checks.in_unit_interval("target", target)
    _checks.choice("reduction", reduction, REDUCTIONS)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(prob), BCE_LOG_CLAMP)
        log_q = np.maximum(np.log1p(-prob), BCE_LOG_CLAMP)
    per_element = -(target * log_p + (1 - target) * log_q)
    loss, r = _checks.reduce(per_element, reduction)
    denom = np.maximum((1 - prob) * prob, prob.dtype.type(BCE_GRAD_EPS))
    return loss, np.asarray(r * (prob - target) / denom)


def bce_with_logits_loss(logits, target, reduction="mean"):
    """Binary cross-entropy on logits z, torch.nn.BCEWithLogitsLoss semantics.

    l_i = -(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))
        = max(z, 0) - z y + log(1 + e^{-|z|})      (stable for any z)
    dl_i/dz_i = sigmoid(z_i) - y_i.
    """
    logits, target = _pair("logits", logits, target)
    _checks.choice("reduction", reduction, REDUCTIONS)
    per_element = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    loss, r = _checks.reduce(per_element, reduction)
    return loss, np.asarray(r * (_sigmoid(logits) - target))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy_loss(logits, labels, reduction="mean"):
    """Softmax cross-entropy on logits with integer labels, torch.nn.CrossEntropyLoss semantics.

    l_n = -log softmax(z_n)[y_n] = logsumexp(z_n) - z_n[y_n].
    dl_n/dz_n = softmax(z_n) - onehot(y_n); mean divides by the batch size N.
    Shapes: logits (N, C), labels (N,) integers in [0, C); gradient (N, C).
    """
    logits = _checks.floating("logits", logits, ndim=2)
    n, c = logits.shape
    labels = _checks.labels("labels", labels, n=n, num_classes=c)
    _checks.choice("reduction", reduction, REDUCTIONS)
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss, r = _checks.reduce(-logp[rows, labels], reduction)
    grad = np.exp(logp)
    grad[rows, labels] -= 1
    return loss, r * grad
