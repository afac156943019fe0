"""Activations: forward value and derivative, with torch's conventions.

Each ``*_grad(x, upstream)`` returns the vector-Jacobian product
``upstream * f'(x)``: the activation acts elementwise, so its Jacobian is the
diagonal ``diag(f'(x))`` and the product is elementwise. Shapes: ``x`` and
``upstream`` share any shape; the result has that shape and is an ndarray, 0-d
included (NumPy arithmetic on 0-d arrays gives NumPy scalars, which code that
walks arrays by type would miss).
"""

from __future__ import annotations

import numpy as np

from reference import _checks


def _input(x, upstream=None):
    x = _checks.floating("x", x, nonempty=True)
    if upstream is None:
        return x, None
    upstream = _checks.floating("upstream", upstream, shape=x.shape)
    _checks.same_dtype(x=x, upstream=upstream)
    return x, upstream


def relu(x):
    """relu(x) = max(x, 0). Like torch, relu(-0.0) keeps -0.0 and NaN propagates."""
    x, _ = _input(x)
    return np.where(x < 0, np.zeros_like(x), x)


def relu_grad(x, upstream):
    """d relu / dx = 1 where x > 0, else 0: torch's subgradient at exactly 0 (and -0.0) is 0."""
    x, upstream = _input(x, upstream)
    return np.where(x > 0, upstream, np.zeros_like(upstream))


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + e^{-x}), evaluated through e^{-|x|} so it never overflows."""
    x, _ = _input(x)
    return _sigmoid(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(x, upstream):
    """sigmoid'(x) = s (1 - s) with s = sigmoid(x), as torch's backward forms it from the output."""
    x, upstream = _input(x, upstream)
    s = _sigmoid(x)
    return np.asarray(upstream * (1 - s) * s)


def tanh(x):
    x, _ = _input(x)
    return np.asarray(np.tanh(x))


def tanh_grad(x, upstream):
    """tanh'(x) = 1 - t^2 with t = tanh(x), formed from the output as torch does."""
    x, upstream = _input(x, upstream)
    t = np.tanh(x)
    return np.asarray(upstream * (1 - t * t))


def _softplus_hyper(beta, threshold):
    beta = _checks.scalar("beta", beta)
    if beta == 0:
        raise ValueError("beta must be non-zero (softplus divides by it), got 0.0")
    threshold = _checks.scalar("threshold", threshold)
    return beta, threshold


def softplus(x, beta=1.0, threshold=20.0):
    """softplus(x) = log(1 + e^{beta x}) / beta, and x itself where beta x > threshold (torch).

    Evaluated as (max(bx, 0) + log1p(e^{-|bx|})) / beta, which equals the
    textbook form wherever that is finite and never overflows. Deviation from
    torch, by design: with a threshold above the exponential's overflow (beta x
    > 88 in float32, 709 in float64), torch returns inf and a NaN gradient where
    this returns the finite limit. beta may be negative, as torch allows.
    """
    x, _ = _input(x)
    beta, threshold = _softplus_hyper(beta, threshold)
    bx = x * beta
    smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, smooth)


def softplus_grad(x, upstream, beta=1.0, threshold=20.0):
    """d softplus / dx = e^{bx} / (1 + e^{bx}) = sigmoid(bx); exactly 1 where bx > threshold."""
    x, upstream = _input(x, upstream)
    beta, threshold = _softplus_hyper(beta, threshold)
    bx = x * beta
    return np.where(bx > threshold, upstream, upstream * _sigmoid(bx))
