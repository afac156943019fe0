"""Training steps for the dense models with every buffer allocated once.

``reference.models`` and ``reference.optim`` are written to be read: each call
validates its inputs and returns new arrays. This module computes the same math
for repeated training steps, as a tuned NumPy program would:

* every intermediate and gradient lives in a buffer allocated at construction
  and is written with ``out=``; parameters, gradients and momentum each live in
  one flat buffer, which the optimizer updates in place, a call per operation;
* transposed operands are passed as views (``X.T``), which BLAS reads with its
  transpose flag instead of copying;
* the ReLU's input is overwritten by its output; its derivative is taken from
  the output (relu(z) = 0 exactly where z <= 0, torch's relu'(0) = 0);
* scalars are cast to the arrays' dtype, so float32 stays float32;
* inputs are validated once, by running the readable reference on them.

``for_reference(models.f)`` returns the class computing ``f``. Results agree
with the readable reference to rounding (sums may be formed in another order);
the SGD update performs the same operations in the same order, so it matches
``optim.sgd_update`` exactly. tests/test_fast_reference.py checks both.
"""

from __future__ import annotations

import numpy as np

from reference import losses, models, optim
from reference.activations import _sigmoid

ALIGN = 16  # elements: each array in a flat buffer starts on a 64-byte boundary


def _flat(shapes: dict, dtype) -> tuple[np.ndarray, dict]:
    """One zeroed buffer and a dict of C-contiguous views into it, one per shape.

    Parameters, gradients and momentum live in flat buffers, so the optimizer
    updates all of them with one call per operation instead of one per array.
    """
    offsets, total = {}, 0
    for name, shape in shapes.items():
        offsets[name] = total
        total += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
    flat = np.zeros(total, dtype)
    views = {name: flat[offsets[name]:offsets[name] + int(np.prod(shape, dtype=np.int64))].reshape(shape)
             for name, shape in shapes.items()}
    return flat, views


class _Model:
    """Holds ``params`` (updated in place by an optimizer) and ``grads`` (rewritten by
    ``loss_and_grads()``), both dicts of arrays in reference layout, views into the
    flat buffers ``flat_params`` and ``flat_grads``. The caller's arrays are copied."""

    reference = None  # the readable function this class computes

    def __init__(self, params, data, **hyper):
        type(self).reference(params, data, **hyper)  # its validation, with its error messages
        self.data = {k: np.ascontiguousarray(v) for k, v in data.items()}
        self.hyper = hyper
        self.dtype = self.data["X"].dtype
        shapes = {k: np.shape(v) for k, v in params.items()}
        self.flat_params, self.params = _flat(shapes, self.dtype)
        self.flat_grads, self.grads = _flat(shapes, self.dtype)
        for name, value in params.items():
            self.params[name][...] = value

    def _cast(self, value):
        return self.dtype.type(value)


def _squared_error(pred, target, out, reduction, cast):
    """MSE with torch's reduction: ``out`` receives dL/dpred = 2 r (pred - target); returns L."""
    np.subtract(pred, target, out=out)
    total = np.vdot(out, out)  # sum of squares, one BLAS pass, no temporary
    r = cast(1.0 / out.size) if reduction == "mean" else cast(1.0)
    np.multiply(out, cast(2) * r, out=out)
    return total / cast(out.size) if reduction == "mean" else total


class LinearRegression(_Model):
    reference = staticmethod(models.linear_regression)

    def __init__(self, params, data, reduction="mean"):
        super().__init__(params, data, reduction=reduction)
        self.pred = np.empty_like(self.data["Y"])

    def loss_and_grads(self):
        X, Y, p, g = self.data["X"], self.data["Y"], self.params, self.grads
        np.matmul(X, p["W"], out=self.pred)
        self.pred += p["b"]
        loss = _squared_error(self.pred, Y, self.pred, self.hyper["reduction"], self._cast)
        np.matmul(X.T, self.pred, out=g["W"])
        np.sum(self.pred, axis=0, out=g["b"])
        return loss


class _LogisticRegression(_Model):
    """The (N, 1) logits and loss are cheap next to the two matrix-vector products,
    so the readable loss function computes them."""

    def __init__(self, params, data, reduction="mean"):
        super().__init__(params, data, reduction=reduction)
        self.logits = np.empty_like(self.data["Y"])

    def loss_and_grads(self):
        X, Y, p, g = self.data["X"], self.data["Y"], self.params, self.grads
        np.matmul(X, p["W"], out=self.logits)
        self.logits += p["b"]
        loss, d_logits = self._loss(self.logits, Y, self.hyper["reduction"])
        np.matmul(X.T, d_logits, out=g["W"])
        np.sum(d_logits, axis=0, out=g["b"])
        return loss


class LogisticRegressionLogits(_LogisticRegression):
    reference = staticmethod(models.logistic_regression_logits)

    @staticmethod
    def _loss(z, Y, reduction):
        return losses.bce_with_logits_loss(z, Y, reduction)


class LogisticRegressionSigmoid(_LogisticRegression):
    reference = staticmethod(models.logistic_regression_sigmoid)

    @staticmethod
    def _loss(z, Y, reduction):
        prob = _sigmoid(z)
        loss, d_prob = losses.bce_loss(prob, Y, reduction)
        return loss, d_prob * (1 - prob) * prob


class _TwoLayer(_Model):
    """relu(X W1 + b1) W2 + b2; subclasses supply the loss on the output."""

    def __init__(self, params, data, bias=True, **hyper):
        super().__init__(params, data, bias=bias, **hyper)
        n, hidden, d_out = self.data["X"].shape[0], self.params["W1"].shape[1], self.params["W2"].shape[1]
        self.hidden = np.empty((n, hidden), self.dtype)
        self.d_hidden = np.empty_like(self.hidden)
        self.active = np.empty((n, hidden), self.dtype)  # relu'(pre) as 1.0 / 0.0
        self.d_out = np.empty((n, d_out), self.dtype)

    def loss_and_grads(self):
        X, p, g, h, dh = self.data["X"], self.params, self.grads, self.hidden, self.d_hidden
        bias = self.hyper["bias"]
        np.matmul(X, p["W1"], out=h)
        if bias:
            h += p["b1"]
        np.maximum(h, 0, out=h)
        np.matmul(h, p["W2"], out=self.d_out)
        if bias:
            self.d_out += p["b2"]
        loss = self._loss_and_gradient(self.d_out)  # d_out now holds dL/dout
        np.matmul(h.T, self.d_out, out=g["W2"])
        np.matmul(self.d_out, p["W2"].T, out=dh)
        # relu' from the output h = max(pre, 0) >= 0: sign(h) is 1 where pre > 0 and 0
        # where pre <= 0 (torch's relu'(0) = 0); a multiply is a plain SIMD pass, where
        # a masked copy branches on a random mask (4.5 vs 0.6 ms at the large size).
        np.sign(h, out=self.active)
        dh *= self.active
        np.matmul(X.T, dh, out=g["W1"])
        if bias:
            np.sum(self.d_out, axis=0, out=g["b2"])
            np.sum(dh, axis=0, out=g["b1"])
        return loss


class TwoLayerRegression(_TwoLayer):
    reference = staticmethod(models.two_layer_regression)

    def __init__(self, params, data, loss="sse", bias=True):
        super().__init__(params, data, bias=bias, loss=loss)

    def _loss_and_gradient(self, out):
        reduction = "sum" if self.hyper["loss"] == "sse" else "mean"
        return _squared_error(out, self.data["Y"], out, reduction, self._cast)


class TwoLayerClassifier(_TwoLayer):
    reference = staticmethod(models.two_layer_classifier)

    def __init__(self, params, data, reduction="mean", bias=True):
        super().__init__(params, data, bias=bias, reduction=reduction)
        n = self.data["X"].shape[0]
        self.rows, self.labels = np.arange(n), self.data["labels"]
        self.row_scalar = np.empty((n, 1), self.dtype)

    def _loss_and_gradient(self, logits):
        """Cross-entropy: with s = logits - max, L_n = log sum exp(s_n) - s_n[y_n];
        dL/dlogits = (softmax - onehot) r, softmax = exp(s) / sum exp(s)."""
        rows, labels, m = self.rows, self.labels, self.row_scalar
        np.max(logits, axis=1, keepdims=True, out=m)
        logits -= m
        picked = logits[rows, labels]
        np.exp(logits, out=logits)
        np.sum(logits, axis=1, keepdims=True, out=m)
        logits /= m
        np.log(m, out=m)
        total = np.sum(m[:, 0] - picked, dtype=self.dtype)
        logits[rows, labels] -= 1
        if self.hyper["reduction"] == "mean":
            r = self._cast(1.0 / len(rows))
            logits *= r
            return total / self._cast(len(rows))
        return total


class SGD:
    """``optim.sgd_update`` in place on a flat parameter buffer: the same operations
    in the same order (a product with 1 - dampening = 1 is exact and skipped).
    ``update(flat_grads)`` overwrites the gradients (the model rewrites them each step).

    The update runs over ``CHUNK`` elements at a time: its seven or so passes then
    read parameters, gradients and momentum from main memory once and work in
    the cache, instead of streaming a large model through memory on every pass.
    The arithmetic is elementwise, so chunking changes no result.
    """

    # Elements per chunk: the four arrays' chunks take 2 MiB in float32 (a core's L2
    # here) and 4 MiB in float64. Measured on the large two-layer net's 2.4M
    # parameters, one thread: float64 13.5 -> 5.8 ms, float32 3.7 -> 3.1 ms per update.
    CHUNK = 131072

    def __init__(self, flat_params: np.ndarray, **hyper):
        self.h = optim.sgd_hyper(**hyper)
        self.params = flat_params
        self.buffer = None  # created on the first step, as torch does
        self.scratch = np.empty_like(flat_params)

    def update(self, g: np.ndarray) -> None:
        first = self.buffer is None and self.h["momentum"] != 0
        if first:
            self.buffer = np.empty_like(g)
        for start in range(0, g.size, self.CHUNK):
            part = slice(start, start + self.CHUNK)
            self._update(self.params[part], g[part], self.scratch[part],
                         None if self.buffer is None else self.buffer[part], first)

    def _update(self, p, g, tmp, buf, first):
        h, cast = self.h, p.dtype.type
        if h["maximize"]:
            np.negative(g, out=g)
        if h["weight_decay"] != 0:
            np.multiply(p, cast(h["weight_decay"]), out=tmp)
            g += tmp
        if h["momentum"] != 0:
            if first:
                np.copyto(buf, g)
            else:
                buf *= cast(h["momentum"])
                if h["dampening"] != 0:
                    np.multiply(g, cast(1 - h["dampening"]), out=tmp)
                    buf += tmp
                else:
                    buf += g
            if h["nesterov"]:
                np.multiply(buf, cast(h["momentum"]), out=tmp)
                g += tmp
            else:
                g = buf
        np.multiply(g, cast(h["lr"]), out=tmp)
        p -= tmp

    def state(self) -> tuple:
        """Parameters and momentum, copied (for ``restore``)."""
        return self.params.copy(), None if self.buffer is None else self.buffer.copy()

    def restore(self, saved: tuple) -> None:
        np.copyto(self.params, saved[0])
        if saved[1] is None:
            self.buffer = None
        else:
            np.copyto(self.buffer, saved[1])


_MODELS = {cls.reference: cls for cls in (LinearRegression, LogisticRegressionLogits, LogisticRegressionSigmoid,
                                          TwoLayerRegression, TwoLayerClassifier)}


def for_reference(function):
    """The fast class for a readable model function, or None where there is none."""
    return _MODELS.get(function)
