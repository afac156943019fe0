"""Models: each ``f(params, data, **hyper)`` returns ``(loss, grads)``.

``params`` and ``grads`` are dicts of arrays with the same keys and shapes
(a 0-d parameter's gradient is a 0-d array, not a NumPy scalar).
Layout follows the math, not nn.Linear: a dense layer is ``y = x W + b`` with
``W`` of shape (in, out) and ``b`` of shape (out,). Batches are rows.
"""

from __future__ import annotations

import numpy as np

from reference import _checks
from reference.activations import _sigmoid
from reference.losses import bce_loss, bce_with_logits_loss, cross_entropy_loss, mse_loss


def _dense_params(params, names, d_in, bias):
    """Validate a dense layer's W (and b) and return them; b is None without bias."""
    w_name, b_name = names
    W = _checks.floating(w_name, params.get(w_name), ndim=2, shape=(d_in, None))
    b = None
    if bias:
        b = _checks.floating(b_name, params.get(b_name), shape=(W.shape[1],))
    return W, b


def _unexpected(params, allowed):
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ValueError(f"params has unexpected entries {extra}; expected {sorted(allowed)}")


def scalar_quadratic(params, data):
    """y = p x^2 elementwise, loss L = sum(u * y) for an upstream gradient u.

    dL/dp = sum(u x^2)        (p has shape (), x and u share a shape)
    dL/dx = 2 p x u
    """
    _unexpected(params, ("p", "x"))
    p = _checks.floating("p", params.get("p"), ndim=0, nonempty=False)
    x = _checks.floating("x", params.get("x"), ndim=1)
    u = _checks.floating("upstream", data.get("upstream"), shape=x.shape)
    _checks.same_dtype(p=p, x=x, upstream=u)
    loss = np.sum(u * p * x * x)
    return loss, {"p": np.asarray(np.sum(u * x * x)), "x": 2 * p * x * u}


def _dense(X, W, b):
    out = X @ W
    return out if b is None else out + b


def _dense_grads(X, W, b, d_out, prefix=""):
    """Backward of Z = X W + b given dL/dZ: dW = X^T dZ (in, out), db = sum_rows dZ (out,), dX = dZ W^T."""
    grads = {prefix + "W": X.T @ d_out}
    if b is not None:
        grads[prefix + "b"] = d_out.sum(axis=0)
    return grads


def _batch(data, name, d):
    return _checks.floating(name, data.get(name), ndim=2, shape=(None, d))


def linear_regression(params, data, reduction="mean"):
    """Y_hat = X W + b, L = MSE(Y_hat, Y) with torch's reduction.

    dL/dY_hat = 2 (Y_hat - Y) r, r = 1/(N D_out) or 1
    dL/dW = X^T dL/dY_hat   (D_in, D_out);   dL/db = 1^T dL/dY_hat   (D_out,)
    """
    _unexpected(params, ("W", "b"))
    X = _checks.floating("X", data.get("X"), ndim=2)
    W, b = _dense_params(params, ("W", "b"), X.shape[1], bias=True)
    Y = _checks.floating("Y", data.get("Y"), shape=(X.shape[0], W.shape[1]))
    _checks.same_dtype(X=X, W=W, b=b, Y=Y)
    loss, d_pred = mse_loss(_dense(X, W, b), Y, reduction)
    return loss, _dense_grads(X, W, b, d_pred)


def _logistic_inputs(params, data):
    _unexpected(params, ("W", "b"))
    X = _checks.floating("X", data.get("X"), ndim=2)
    W, b = _dense_params(params, ("W", "b"), X.shape[1], bias=True)
    if W.shape[1] != 1:
        raise ValueError(f"W must have shape ({X.shape[1]}, 1) for binary logistic regression, got {W.shape}")
    Y = _checks.floating("Y", data.get("Y"), shape=(X.shape[0], 1))
    _checks.same_dtype(X=X, W=W, b=b, Y=Y)
    return X, W, b, Y


def logistic_regression_sigmoid(params, data, reduction="mean"):
    """p = sigmoid(X W + b), L = BCE(p, Y) (torch.nn.BCELoss, its clamps included).

    dL/dz = dL/dp * p (1 - p)   (chain through the sigmoid; with the clamp this is
    (p - y) r wherever p (1 - p) > 1e-12), then the dense backward.
    """
    X, W, b, Y = _logistic_inputs(params, data)
    z = _dense(X, W, b)
    p = _sigmoid(z)
    loss, d_p = bce_loss(p, Y, reduction)
    d_z = d_p * (1 - p) * p
    return loss, _dense_grads(X, W, b, d_z)


def logistic_regression_logits(params, data, reduction="mean"):
    """z = X W + b, L = BCEWithLogits(z, Y); dL/dz = (sigmoid(z) - Y) r, then the dense backward."""
    X, W, b, Y = _logistic_inputs(params, data)
    loss, d_z = bce_with_logits_loss(_dense(X, W, b), Y, reduction)
    return loss, _dense_grads(X, W, b, d_z)


def _two_layer_forward(params, X, bias):
    _unexpected(params, ("W1", "b1", "W2", "b2") if bias else ("W1", "W2"))
    W1, b1 = _dense_params(params, ("W1", "b1"), X.shape[1], bias)
    W2, b2 = _dense_params(params, ("W2", "b2"), W1.shape[1], bias)
    _checks.same_dtype(**{k: v for k, v in dict(X=X, W1=W1, b1=b1, W2=W2, b2=b2).items() if v is not None})
    pre = _dense(X, W1, b1)
    hidden = np.where(pre > 0, pre, np.zeros_like(pre))
    return (W1, b1, W2, b2), pre, hidden, _dense(hidden, W2, b2)


def _two_layer_backward(X, weights, pre, hidden, d_out):
    """Given dL/dout (N, D_out):
    dW2 = h^T dout (H, D_out), db2 = 1^T dout,
    dh = dout W2^T (N, H), dpre = dh * [pre > 0] (relu'(0) = 0, as torch),
    dW1 = X^T dpre (D_in, H), db1 = 1^T dpre.
    """
    W1, b1, W2, b2 = weights
    grads = _dense_grads(hidden, W2, b2, d_out)
    d_pre = np.where(pre > 0, d_out @ W2.T, np.zeros_like(pre))
    grads = {k + "2": v for k, v in grads.items()}
    grads.update({k + "1": v for k, v in _dense_grads(X, W1, b1, d_pre).items()})
    return grads


def two_layer_regression(params, data, loss="sse", bias=True):
    """out = relu(X W1 + b1) W2 + b2; L = sum((out - Y)^2) ("sse", the classic
    tutorial loss) or mean((out - Y)^2) ("mse"). dL/dout = 2 (out - Y) r, then
    the two-layer backward (see ``_two_layer_backward``).
    Shapes: X (N, D_in), W1 (D_in, H), b1 (H,), W2 (H, D_out), b2 (D_out,), Y (N, D_out).
    """
    _checks.choice("loss", loss, ("sse", "mse"))
    _checks.flag("bias", bias)
    X = _checks.floating("X", data.get("X"), ndim=2)
    weights, pre, hidden, out = _two_layer_forward(params, X, bias)
    Y = _checks.floating("Y", data.get("Y"), shape=out.shape)
    _checks.same_dtype(X=X, Y=Y)
    value, d_out = mse_loss(out, Y, "sum" if loss == "sse" else "mean")
    return value, _two_layer_backward(X, weights, pre, hidden, d_out)


def two_layer_classifier(params, data, reduction="mean", bias=True):
    """logits = relu(X W1 + b1) W2 + b2; L = CrossEntropy(logits, labels).
    dL/dlogits = (softmax(logits) - onehot(labels)) r, then the two-layer backward.
    Shapes: X (N, D_in), labels (N,) integers in [0, C), W2 (H, C).
    """
    _checks.flag("bias", bias)
    X = _checks.floating("X", data.get("X"), ndim=2)
    weights, pre, hidden, logits = _two_layer_forward(params, X, bias)
    value, d_out = cross_entropy_loss(logits, data.get("labels"), reduction)
    return value, _two_layer_backward(X, weights, pre, hidden, d_out)
