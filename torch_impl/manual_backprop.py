"""The classic two-layer net trained three ways below nn.Module + torch.optim:

* ``train_manual``: plain tensors, forward and backward written by hand, no autograd;
* ``train_autograd``: the same forward on tensors with ``requires_grad``, gradients
  from ``loss.backward()``, the SGD step written by hand under ``no_grad``.

Both use the reference's layout (W of shape (in, out), y = x W + b) as the
tutorial does, and return what ``torch_impl.train.train`` returns: the loss
before each step and the parameters after it, as NumPy arrays.

Loss: "sse" = sum((out - Y)^2) (the tutorial's) or "mse" = its mean.
"""

from __future__ import annotations

import numpy as np
import torch

LOSSES = ("sse", "mse")


def _tensors(params: dict, data: dict, dtype, requires_grad=False):
    params = {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=requires_grad) for k, v in params.items()}
    X = torch.as_tensor(np.asarray(data["X"]), dtype=dtype)
    Y = torch.as_tensor(np.asarray(data["Y"]), dtype=dtype)
    return params, X, Y


def _check(params, loss):
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if set(params) not in ({"W1", "b1", "W2", "b2"}, {"W1", "W2"}):
        raise ValueError(f"params must hold W1, W2 and optionally b1, b2, got {sorted(params)}")


def _forward(p, X):
    pre = X.mm(p["W1"]) + p["b1"] if "b1" in p else X.mm(p["W1"])
    hidden = torch.where(pre < 0, torch.zeros_like(pre), pre)
    out = hidden.mm(p["W2"]) + p["b2"] if "b2" in p else hidden.mm(p["W2"])
    return pre, hidden, out


def relu_active(pre):
    """Where relu passes the gradient: pre > 0, so relu'(0) = 0 as in torch. (The
    classic tutorial zeroes the gradient where pre < 0, which makes relu'(0) = 1.)"""
    return pre > 0


def _snapshot(p):
    return {k: v.detach().numpy().copy() for k, v in p.items()}


def train_manual(params, data, lr: float, steps: int, loss="sse", dtype=torch.float64):
    """Gradients by hand (the tutorial's derivation, with relu'(0) = 0 as torch):
    dout = 2 r (out - Y); dW2 = h^T dout; db2 = 1^T dout; dh = dout W2^T;
    dpre = dh where pre > 0 else 0; dW1 = X^T dpre; db1 = 1^T dpre."""
    _check(params, loss)
    p, X, Y = _tensors(params, data, dtype)
    r = 1.0 if loss == "sse" else 1.0 / Y.numel()
    losses, trajectory = [], []
    for _ in range(steps):
        pre, hidden, out = _forward(p, X)
        diff = out - Y
        losses.append(float((diff * diff).sum() * r))
        d_out = 2 * r * diff
        d_hidden = d_out.mm(p["W2"].t())
        d_pre = torch.where(relu_active(pre), d_hidden, torch.zeros_like(d_hidden))
        grads = {"W2": hidden.t().mm(d_out), "W1": X.t().mm(d_pre)}
        if "b1" in p:
            grads.update(b2=d_out.sum(0), b1=d_pre.sum(0))
        for k, g in grads.items():
            p[k] -= lr * g
        trajectory.append(_snapshot(p))
    return np.array(losses), trajectory


def train_autograd(params, data, lr: float, steps: int, loss="sse", dtype=torch.float64):
    """The same forward with autograd tensors; the update by hand under no_grad,
    then the gradients reset to None (else the next backward adds to them)."""
    _check(params, loss)
    p, X, Y = _tensors(params, data, dtype, requires_grad=True)
    losses, trajectory = [], []
    for _ in range(steps):
        _, _, out = _forward(p, X)
        value = (out - Y).pow(2).sum() if loss == "sse" else (out - Y).pow(2).mean()
        value.backward()
        losses.append(float(value.detach()))
        with torch.no_grad():
            for v in p.values():
                v -= lr * v.grad
                v.grad = None
        trajectory.append(_snapshot(p))
    return np.array(losses), trajectory
