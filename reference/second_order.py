"""Second derivatives and the autograd lessons, derived by hand.

Hessians are returned as one matrix over the parameters flattened in the order
given by each function's ``ORDER`` (each array row-major, reference layout:
``W`` is (in, out)), so entry (i, j) is d^2 L / d theta_i d theta_j.
Hessian-vector products take a ``direction`` dict shaped like ``params`` and
return a dict of the same shapes: H v without forming H.
"""

from __future__ import annotations

import numpy as np

from reference import _checks, models
from reference.activations import _sigmoid
from reference.losses import BCE_GRAD_EPS, cross_entropy_loss, mse_loss

# torch's double backward of BCELoss (binary_cross_entropy_double_backward in
# FunctionsManual.cpp) divides by (p + 1e-12)^2 (1 - p + 1e-12)^2: an additive
# epsilon, unlike the first backward's clamp max(p (1 - p), 1e-12).
BCE_DOUBLE_BACKWARD_EPS = 1e-12

SCALAR_ORDER = ("p", "x")
DENSE_ORDER = ("W", "b")


def scalar_quadratic_hessian(params, data) -> np.ndarray:
    """L = sum(u p x^2) over parameters (p, x), p a scalar, x of length n:

        d2L/dp2 = 0,   d2L/dp dx_i = 2 u_i x_i,   d2L/dx_i dx_j = 2 p u_i [i = j]

    Shape (1 + n, 1 + n), order ``SCALAR_ORDER``.
    """
    models.scalar_quadratic(params, data)  # validates shapes and dtypes
    p, x, u = params["p"], np.ravel(params["x"]), np.ravel(data["upstream"])
    cross = 2 * u * x
    return np.block([[np.zeros((1, 1), x.dtype), cross[None, :]],
                     [cross[:, None], np.diag(2 * p * u)]])


def _augmented(X):
    """X~ = [X, 1]: the bias is the weight of a constant input, so the dense
    layer's parameters flattened as (W row-major, b) are the rows of X~^T."""
    return np.concatenate([X, np.ones((X.shape[0], 1), X.dtype)], axis=1)


def linear_regression_hessian(params, data, reduction="mean") -> np.ndarray:
    """L = r sum_{n,k} (X~_n theta_k - Y_nk)^2 with theta_k = (W[:, k], b[k]).

    Output columns decouple: d2L/dtheta_k dtheta_l = 2 r X~^T X~ [k = l]. With
    W flattened row-major (index i D_out + k) and b after it (i = D_in), that is

        H = 2 r kron(X~^T X~, I_{D_out})      shape ((D_in + 1) D_out,) * 2

    r = 1/(N D_out) for "mean", 1 for "sum". Independent of W, b and Y.
    """
    models.linear_regression(params, data, reduction)  # validates
    X = np.asarray(data["X"])
    Xa = _augmented(X)
    d_out = params["W"].shape[1]
    r = 1.0 / (X.shape[0] * d_out) if reduction == "mean" else 1.0
    return X.dtype.type(2 * r) * np.kron(Xa.T @ Xa, np.eye(d_out, dtype=X.dtype))


def logistic_regression_hessian(params, data, reduction="mean", head="logits") -> np.ndarray:
    """Binary logistic regression, z = X W + b, p = sigmoid(z), L = r sum_n l(z_n, y_n):

        H = r X~^T diag(h) X~      shape (D + 1, D + 1), order ``DENSE_ORDER``

    head="logits" (BCEWithLogitsLoss): dl/dz = p - y, so h = d2l/dz2 = p (1 - p).

    head="sigmoid" (sigmoid + BCELoss): the chain rule through p gives
    h = l''(p) p'^2 + l'(p) p'' with p' = p (1 - p), p'' = p (1 - p)(1 - 2p),
    l'(p) = (p - y) / max(p (1 - p), 1e-12) (the first backward's clamp) and,
    as torch's double backward forms it,
    l''(p) = (p^2 - 2 p y + y) / ((p + e)^2 (1 - p + e)^2), e = 1e-12.
    With e = 0 both terms sum to p (1 - p); with torch's e they differ from it
    by about 2e-12 / min(p, 1 - p) relatively, far above float64 rounding.
    """
    _checks.choice("head", head, ("logits", "sigmoid"))
    ref = models.logistic_regression_logits if head == "logits" else models.logistic_regression_sigmoid
    ref(params, data, reduction)  # validates
    X, Y = np.asarray(data["X"]), np.asarray(data["Y"])[:, 0]
    z = (X @ params["W"] + params["b"])[:, 0]
    p = _sigmoid(z)
    if head == "logits":
        h = p * (1 - p)
    else:
        e = X.dtype.type(BCE_DOUBLE_BACKWARD_EPS)
        slope = p * (1 - p)
        d2l = (p * p - 2 * p * Y + Y) / ((p + e) ** 2 * (1 - p + e) ** 2)
        dl = (p - Y) / np.maximum(slope, X.dtype.type(BCE_GRAD_EPS))
        h = d2l * slope * slope + dl * slope * (1 - 2 * p)
    r = 1.0 / X.shape[0] if reduction == "mean" else 1.0
    Xa = _augmented(X)
    return X.dtype.type(r) * (Xa.T * h) @ Xa


def _direction(params, direction):
    if not isinstance(direction, dict) or set(direction) != set(params):
        got = sorted(direction) if isinstance(direction, dict) else type(direction).__name__
        raise ValueError(f"direction must be a dict with the keys of params {sorted(params)}, got {got}")
    out = {}
    for name, p in params.items():
        out[name] = _checks.floating(f"direction[{name!r}]", direction[name], shape=np.shape(p), nonempty=False)
        _checks.same_dtype(**{name: np.asarray(p), f"direction[{name!r}]": out[name]})
    return out


def _two_layer_hvp(params, X, direction, bias, output_grad, output_hvp):
    """Pearlmutter's R-operator, R(.) = d/da (.)(theta + a v) at a = 0, through
    Z = X W1 + b1, A = relu(Z) = [Z > 0] Z, O = A W2 + b2 and the loss l(O):

    forward   R(Z) = X V1 + c1;  R(A) = [Z > 0] R(Z)   (relu'' = 0, as torch's double backward)
              R(O) = R(A) W2 + A V2 + c2
    backward  G_O = dl/dO,  R(G_O) = (d2l/dO2) R(O)     (``output_hvp``)
              R(dW2) = R(A)^T G_O + A^T R(G_O);  R(db2) = 1^T R(G_O)
              R(G_A) = R(G_O) W2^T + G_O V2^T;   R(G_Z) = [Z > 0] R(G_A)
              R(dW1) = X^T R(G_Z);               R(db1) = 1^T R(G_Z)

    The results (R(dW1), R(db1), R(dW2), R(db2)) are H v.
    """
    (W1, b1, W2, b2), pre, hidden, out = models._two_layer_forward(params, X, bias)
    v = _direction(params, direction)
    active = pre > 0
    r_pre = X @ v["W1"] + (v["b1"] if bias else 0)
    r_hidden = np.where(active, r_pre, np.zeros_like(r_pre))
    r_out = r_hidden @ W2 + hidden @ v["W2"] + (v["b2"] if bias else 0)
    g_out = output_grad(out)
    r_g_out = output_hvp(out, r_out)
    r_g_hidden = r_g_out @ W2.T + g_out @ v["W2"].T
    r_g_pre = np.where(active, r_g_hidden, np.zeros_like(r_g_hidden))
    hv = {"W1": X.T @ r_g_pre, "W2": r_hidden.T @ g_out + hidden.T @ r_g_out}
    if bias:
        hv["b2"] = r_g_out.sum(axis=0)
        hv["b1"] = r_g_pre.sum(axis=0)
    return hv


def two_layer_regression_hvp(params, data, direction, loss="sse", bias=True) -> dict:
    """H v for ``models.two_layer_regression``: l(O) = r sum (O - Y)^2 with r = 1
    ("sse") or 1/(N D_out) ("mse"), so G_O = 2 r (O - Y) and R(G_O) = 2 r R(O).
    See ``_two_layer_hvp`` for the rest of the chain."""
    models.two_layer_regression(params, data, loss, bias)  # validates
    X, Y = np.asarray(data["X"]), np.asarray(data["Y"])
    reduction = "sum" if loss == "sse" else "mean"
    r = X.dtype.type(1.0 if loss == "sse" else 1.0 / Y.size)
    return _two_layer_hvp(params, X, direction, bias,
                          lambda out: mse_loss(out, Y, reduction)[1],
                          lambda out, r_out: 2 * r * r_out)


def two_layer_classifier_hvp(params, data, direction, reduction="mean", bias=True) -> dict:
    """H v for ``models.two_layer_classifier``: l(O) = r sum_n CE(O_n, y_n), so
    G_O = r (S - onehot) with S = softmax(O) by rows, and the softmax Jacobian
    diag(S_n) - S_n S_n^T gives R(G_O)_n = r S_n * (R(O)_n - S_n . R(O)_n)."""
    models.two_layer_classifier(params, data, reduction, bias)  # validates
    X, labels = np.asarray(data["X"]), np.asarray(data["labels"])
    r = X.dtype.type(1.0 / X.shape[0] if reduction == "mean" else 1.0)

    def output_hvp(out, r_out):
        s = np.exp(out - out.max(axis=1, keepdims=True))
        s = s / s.sum(axis=1, keepdims=True)
        return r * s * (r_out - np.sum(s * r_out, axis=1, keepdims=True))

    return _two_layer_hvp(params, X, direction, bias,
                          lambda out: cross_entropy_loss(out, labels, reduction)[1], output_hvp)


def two_outputs(x, w):
    """The tutorial's two outputs of shared inputs: y0 = (x + w)(w + 1), y1 = (x + w) + (w + 1)."""
    x, w = _pair(x, w)
    return (x + w) * (w + 1), (x + w) + (w + 1)


def two_outputs_weighted_grads(x, w, weight0, weight1) -> dict:
    """Gradient of sum(weight0 * y0 + weight1 * y1), what backward through both
    outputs with ``gradient=(weight0, weight1)`` computes (elementwise):

        dy0/dx = w + 1,  dy0/dw = (w + 1) + (x + w) = x + 2 w + 1
        dy1/dx = 1,      dy1/dw = 2
        dx = weight0 (w + 1) + weight1;   dw = weight0 (x + 2 w + 1) + 2 weight1
    """
    x, w = _pair(x, w)
    weight0 = _checks.floating("weight0", weight0, shape=x.shape)
    weight1 = _checks.floating("weight1", weight1, shape=x.shape)
    _checks.same_dtype(x=x, weight0=weight0, weight1=weight1)
    return {"x": np.asarray(weight0 * (w + 1) + weight1), "w": np.asarray(weight0 * (x + 2 * w + 1) + 2 * weight1)}


def _pair(x, w):
    x = _checks.floating("x", x)
    w = _checks.floating("w", w, shape=x.shape)
    _checks.same_dtype(x=x, w=w)
    return x, w


def accumulated_gradients(passes) -> dict:
    """What ``.grad`` holds after several backward passes without zeroing: each
    pass adds its gradient to the previous total, in order (g1 + g2) + g3 ...
    ``passes`` is a non-empty list of gradient dicts with equal keys, shapes and dtypes."""
    if not isinstance(passes, (list, tuple)) or not passes:
        raise ValueError("passes must be a non-empty list of gradient dicts")
    first = passes[0]
    total = {k: np.array(_checks.floating(f"passes[0][{k!r}]", v, nonempty=False)) for k, v in first.items()}
    for i, grads in enumerate(passes[1:], start=1):
        if set(grads) != set(first):
            raise ValueError(f"passes[{i}] must have the keys {sorted(first)}, got {sorted(grads)}")
        for k, v in grads.items():
            v = _checks.floating(f"passes[{i}][{k!r}]", v, shape=total[k].shape, nonempty=False)
            _checks.same_dtype(**{f"passes[0][{k!r}]": total[k], f"passes[{i}][{k!r}]": v})
            total[k] = np.asarray(total[k] + v)  # a 0-d sum is a NumPy scalar
    return total
