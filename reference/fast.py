"""Training steps for the dense models with every buffer allocated once.

``reference.models`` and ``reference.optim`` are written to be read: each call
validates its inputs and returns new arrays. This module computes the same math
for repeated training steps, as a tuned NumPy program would:

* every intermediate and gradient lives in a buffer allocated at construction
  and is written with ``out=``; parameters, momentum and gradients are the three
  rows of one flat block, and the SGD step is one matrix product from the block
  to a second one (``SGD``);
* transposed operands are passed as views (``X.T``), which BLAS reads with its
  transpose flag instead of copying;
* the ReLU's input is overwritten by its output; its derivative is taken from
  the output (relu(z) = 0 exactly where z <= 0, torch's relu'(0) = 0);
* scalars are cast to the arrays' dtype, so float32 stays float32;
* inputs are validated once, by running the readable reference on them.

``for_reference(models.f)`` returns the class computing ``f``. Results agree
with the readable reference, and ``SGD`` with ``optim.sgd_update``, to rounding
(sums are formed in another order); tests/test_fast_reference.py checks both.
"""

from __future__ import annotations

import numpy as np

from reference import losses, models, optim
from reference.activations import _sigmoid

ALIGN = 16  # elements: each array in a flat buffer starts on a 64-byte boundary
PARAMS, MOMENTUM, GRADS = 0, 1, 2  # rows of a block


def _layout(shapes: dict) -> tuple[dict, int]:
    """Offsets of each array in a flat buffer, and the buffer's length."""
    offsets, total = {}, 0
    for name, shape in shapes.items():
        offsets[name] = total
        total += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
    return offsets, total


def _views(flat: np.ndarray, shapes: dict, offsets: dict) -> dict:
    """C-contiguous views into ``flat``, one per shape."""
    return {name: flat[offsets[name]:offsets[name] + int(np.prod(shape, dtype=np.int64))].reshape(shape)
            for name, shape in shapes.items()}


class _Model:
    """Holds ``params`` (advanced by an optimizer) and ``grads`` (rewritten by
    ``loss_and_grads()``), both dicts of arrays in reference layout. The caller's
    parameters are copied; its data arrays are used as they are where already
    C-contiguous (the two-layer nets copy X into a buffer of their own).

    Storage: two blocks, each three flat rows (parameters, momentum, gradients,
    every array a view into its row). ``current`` names the block in use; an
    optimizer writes the next parameters and momentum into the other block in one
    BLAS call and switches ``current`` (``SGD``), so nothing is updated in place."""

    reference = None  # the readable function this class computes

    def __init__(self, params, data, **hyper):
        type(self).reference(params, data, **hyper)  # its validation, with its error messages
        self.data = {k: np.ascontiguousarray(v) for k, v in data.items()}
        self.hyper = hyper
        self.dtype = self.data["X"].dtype
        stored = self._storage({k: np.shape(v) for k, v in params.items()})
        offsets, total = _layout(stored)
        self.blocks = np.zeros((2, 3, total), self.dtype)
        # per block, per row (parameters, momentum, gradients): the stored arrays, and the
        # parameters as views into them
        self._stored = [tuple(_views(block[row], stored, offsets) for row in (PARAMS, MOMENTUM, GRADS))
                        for block in self.blocks]
        self._views = [tuple(self._parameters(arrays) for arrays in rows) for rows in self._stored]
        self.current = 0
        for name, value in params.items():
            self.params[name][...] = value

    def _storage(self, shapes: dict) -> dict:
        """Name -> shape of the arrays a block row holds; by default one per parameter."""
        return shapes

    def _parameters(self, stored: dict) -> dict:
        """The parameters (reference names and shapes) as views into the stored arrays."""
        return stored

    def folds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(array, the part of it the math's products use) for each buffer that carries
        more than the math (a folded bias row, a column of ones); none by default."""
        return []

    @property
    def params(self) -> dict:
        return self._views[self.current][0]

    @property
    def momentum(self) -> dict:
        """The optimizer's momentum buffers (zeros until its first step)."""
        return self._views[self.current][1]

    @property
    def grads(self) -> dict:
        return self._views[self.current][2]

    def _cast(self, value):
        return self.dtype.type(value)


def _squared_error(pred, target, out, reduction, cast):
    """MSE with torch's reduction: ``out`` receives dL/dpred = 2 r (pred - target); returns L."""
    np.subtract(pred, target, out=out)
    total = np.vdot(out, out)  # sum of squares, one BLAS pass, no temporary
    r = cast(1.0 / out.size) if reduction == "mean" else cast(1.0)
    np.multiply(out, cast(2) * r, out=out)
    return total / cast(out.size) if reduction == "mean" else total


class _Linear(_Model):
    """X W + b and a loss on it; subclasses supply ``_loss(z, Y, reduction) -> (L, dL/dz)``.
    The logistic models' (N, 1) logits and loss are cheap next to the two
    matrix-vector products, so the readable loss functions compute them."""

    def __init__(self, params, data, reduction="mean"):
        super().__init__(params, data, reduction=reduction)
        self.out = np.empty_like(self.data["Y"])

    def loss_and_grads(self):
        X, Y, p, g = self.data["X"], self.data["Y"], self.params, self.grads
        np.matmul(X, p["W"], out=self.out)
        self.out += p["b"]
        loss, d_out = self._loss(self.out, Y, self.hyper["reduction"])
        np.matmul(X.T, d_out, out=g["W"])
        np.sum(d_out, axis=0, out=g["b"])
        return loss


class LinearRegression(_Linear):
    reference = staticmethod(models.linear_regression)

    def _loss(self, z, Y, reduction):
        """MSE, its gradient written over the predictions."""
        return _squared_error(z, Y, z, reduction, self._cast), z


class LogisticRegressionLogits(_Linear):
    reference = staticmethod(models.logistic_regression_logits)

    @staticmethod
    def _loss(z, Y, reduction):
        return losses.bce_with_logits_loss(z, Y, reduction)


class LogisticRegressionSigmoid(_Linear):
    reference = staticmethod(models.logistic_regression_sigmoid)

    @staticmethod
    def _loss(z, Y, reduction):
        prob = _sigmoid(z)
        loss, d_prob = losses.bce_loss(prob, Y, reduction)
        return loss, d_prob * (1 - prob) * prob


class _TwoLayer(_Model):
    """relu(X W1 + b1) W2 + b2; subclasses supply the loss on the output.

    Each bias is stored as one more row of its weight matrix, and each layer's input
    carries a column of ones, so a layer is one product, [x, 1] [[W], [b]] = x W + b,
    and its gradient is one product too, [x, 1]^T d = [[dW], [db]]: no broadcast
    bias addition (2.6 us for b1 on the tutorial's 64 x 100 float32, against 1.2 us
    for a same-shape addition) and no bias-gradient sums. The data's copy is the
    first columns of [X, 1]; the hidden activations are the first columns of
    [relu(X W1 + b1), 1], whose ones column no ReLU changes. ``folds()`` names
    those parts, so that the benchmarks' floor (the step's products timed alone,
    benchmarks/floor.py) times the math's products, without the folded bias.

    ``CLASS_MAJOR``: the output (N, D_out) is stored column by column (a transposed
    view of a C-ordered (D_out, N) buffer), computed as W2^T h^T. A loss that
    reduces over each row (softmax) then runs one vectorised pass per class over
    all N samples instead of one short reduction per row; the backward products
    read the view with BLAS's transpose flag."""

    CLASS_MAJOR = False

    def __init__(self, params, data, bias=True, **hyper):
        super().__init__(params, data, bias=bias, **hyper)
        X, ones = self.data["X"], int(bias)
        (n, d_in), (width, d_out) = X.shape, self.params["W2"].shape
        self.width = width
        self.inputs = np.ones((n, d_in + ones), self.dtype)  # [X, 1]
        self.inputs[:, :d_in] = X
        self.data["X"] = self.inputs[:, :d_in]
        self.hidden = np.ones((n, width + ones), self.dtype)  # [relu(X W1 + b1), 1]
        self.d_hidden = np.empty_like(self.hidden)  # its last column, d_out b2, is not used
        self.active = np.empty_like(self.hidden)  # relu'(pre) as 1.0 / 0.0 (and 1 for the ones)
        self.d_out = np.empty((d_out, n), self.dtype).T if self.CLASS_MAJOR else np.empty((n, d_out), self.dtype)
        self.ones = np.ones(n, self.dtype)
        # the ReLU against an array of zeros: a scalar operand takes ufunc's broadcasting
        # path, 3.9 us on the tutorial's 64 x 100 float32 where same-shape arrays take 1.2
        self.zeros = np.zeros_like(self.hidden)
        self.ones_hidden = np.ones_like(self.hidden)

    def _storage(self, shapes):
        ones = int(self.hyper["bias"])
        (d_in, width), (_, d_out) = shapes["W1"], shapes["W2"]
        return {"layer1": (d_in + ones, width), "layer2": (width + ones, d_out)}

    def _parameters(self, stored):
        layer1, layer2 = stored["layer1"], stored["layer2"]
        if not self.hyper["bias"]:
            return {"W1": layer1, "W2": layer2}
        return {"W1": layer1[:-1], "b1": layer1[-1], "W2": layer2[:-1], "b2": layer2[-1]}

    def folds(self):
        if not self.hyper["bias"]:
            return []
        width, d_in = self.width, self.inputs.shape[1] - 1
        stored, grads = self._stored[self.current][PARAMS], self._stored[self.current][GRADS]
        return [(self.inputs, self.inputs[:, :d_in]), (self.hidden, self.hidden[:, :width]),
                (self.d_hidden, self.d_hidden[:, :width]),
                *((layers["layer1"], layers["layer1"][:-1]) for layers in (stored, grads)),
                *((layers["layer2"], layers["layer2"][:-1]) for layers in (stored, grads))]

    def loss_and_grads(self):
        stored, grads = self._stored[self.current][PARAMS], self._stored[self.current][GRADS]
        layer1, layer2, hidden, d_hidden = stored["layer1"], stored["layer2"], self.hidden, self.d_hidden
        np.matmul(self.inputs, layer1, out=hidden[:, :self.width])  # X W1 + b1
        np.maximum(hidden, self.zeros, out=hidden)
        if self.CLASS_MAJOR:
            np.matmul(layer2.T, hidden.T, out=self.d_out.T)
        else:
            np.matmul(hidden, layer2, out=self.d_out)
        loss = self._loss_and_gradient(self.d_out)  # d_out now holds dL/dout
        np.matmul(hidden.T, self.d_out, out=grads["layer2"])  # [[dW2], [db2]]
        np.matmul(self.d_out, layer2.T, out=d_hidden)
        # relu' from the output h = max(pre, 0), which is +0 where pre <= 0 (torch's
        # relu'(0) = 0) and positive elsewhere: min(ceil(h), 1) is exactly 0.0 / 1.0 there,
        # two plain SIMD passes (2.1 us on the tutorial's 64 x 100 float32, where a
        # comparison cast to floats took 4.0, np.sign 4.9 and np.heaviside 17); a multiply,
        # where a masked copy branches on a random mask (4.5 vs 0.6 ms at the large size).
        # A NaN in h makes that row's output, and so its dh, NaN whatever the mask.
        np.ceil(hidden, out=self.active)
        np.minimum(self.active, self.ones_hidden, out=self.active)
        d_hidden *= self.active
        np.matmul(self.inputs.T, d_hidden[:, :self.width], out=grads["layer1"])  # [[dW1], [db1]]
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
    CLASS_MAJOR = True  # the softmax's row maxima and sums, one pass per class (64 x 10: 11.9 vs 15 us)

    def __init__(self, params, data, reduction="mean", bias=True):
        super().__init__(params, data, bias=bias, reduction=reduction)
        n, classes = self.d_out.shape
        # one-hot labels, in the logits' layout: the picked logits are one dot product
        # and the gradient's "- onehot / r" one subtraction, where fancy indexing cost
        # two gathers
        onehot = np.zeros((classes, n), self.dtype)
        onehot[self.data["labels"], np.arange(n)] = 1
        self.scale = self._cast(1) / self._cast(n) if reduction == "mean" else self._cast(1)
        self.onehot_by_class = onehot
        self.onehot_scaled = onehot * self.scale
        self.row = np.empty(n, self.dtype)
        self.log_row = np.empty(n, self.dtype)
        self.scale_row = np.full(n, self.scale)  # r as an array: a scalar operand takes the slower broadcast path
        self.ones_classes = np.ones(classes, self.dtype)

    def _loss_and_gradient(self, logits):
        """Cross-entropy: with s = logits - max, L_n = log sum exp(s_n) - s_n[y_n];
        dL/dlogits = (softmax - onehot) r, softmax = exp(s) / sum exp(s), r = 1/N
        (mean) or 1 (sum), applied as exp(s) (r / sum exp(s)) - r onehot."""
        # by_class: the C-ordered (classes, N) buffer under the logits' view; a per-sample
        # row broadcast over it is 1.4 us against 1.7 over the transposed view
        row, by_class = self.row, logits.T
        np.maximum.reduce(by_class, axis=0, out=row)  # NaN propagates, as np.max's
        by_class -= row
        picked = np.vdot(self.onehot_by_class, by_class)  # sum over n of s_n[y_n]
        np.exp(by_class, out=by_class)
        np.matmul(self.ones_classes, by_class, out=row)  # sums of exp(s) per sample
        np.log(row, out=self.log_row)
        total = np.vdot(self.ones, self.log_row) - picked
        np.divide(self.scale_row, row, out=row)
        by_class *= row
        by_class -= self.onehot_scaled
        return total * self.scale


class SGD:
    """``optim.sgd_update`` for a fast model, as one matrix product per step.

    Every SGD option makes the step linear in (θ, momentum b, gradient g):
    with s = -1 under maximize (else 1) and g1 = s g + wd θ,

        b' = g1 on the first step,  m b + (1 - dampening) g1 after;
        θ' = θ - lr (g1 + m b')  with Nesterov,  θ - lr b'  without,
             θ - lr g1           with momentum 0 (no buffer).

    So [θ'; b'] = C [θ; b; g], C a 2x3 matrix of the hyperparameters: one BLAS
    call reads the model's current block once and writes the other block's
    parameter and momentum rows (no temporaries, no pass per operation). On the
    tutorial net's 101k float32 parameters, on the AMD EPYC of
    docs/benchmarks.md: eight elementwise NumPy passes 108 us, two
    matrix-vector products (one per output row) 80 us, the product 75 us. The
    products and sums are rounded differently from ``optim.sgd_update``'s eight
    operations, so the two agree to rounding, not bit for bit
    (tests/test_fast_reference.py)."""

    def __init__(self, model: _Model, **hyper):
        self.h = optim.sgd_hyper(**hyper)
        self.model = model
        self.first = self.h["momentum"] != 0  # the buffer is created on the first step, as torch does
        self.coefficients = {first: self._coefficients(first).astype(model.dtype) for first in (True, False)}
        self.rows = 2 if self.h["momentum"] != 0 else 1

    def _coefficients(self, first: bool) -> np.ndarray:
        """C, columns in block row order (θ, b, g)."""
        h = self.h
        lr, m, wd = h["lr"], h["momentum"], h["weight_decay"]
        theta = np.array([1.0, 0.0, 0.0])
        g1 = np.array([wd, 0.0, -1.0 if h["maximize"] else 1.0])
        if m == 0:
            return np.stack([theta - lr * g1, np.zeros(3)])
        b = g1 if first else np.array([0.0, m, 0.0]) + (1 - h["dampening"]) * g1
        step = g1 + m * b if h["nesterov"] else b
        return np.stack([theta - lr * step, b])

    def update(self) -> None:
        """One step on the model's current gradients; the model then reads the other block."""
        model = self.model
        source, target = model.blocks[model.current], model.blocks[1 - model.current, :self.rows]
        np.matmul(self.coefficients[self.first][:self.rows], source, out=target)
        model.current = 1 - model.current
        self.first = False

    def state(self) -> tuple:
        """Which block is current, its parameters and momentum (copied), and whether
        the next step is the first (for ``restore``)."""
        model = self.model
        return model.current, model.blocks[model.current, :GRADS].copy(), self.first

    def restore(self, saved: tuple) -> None:
        current, rows, self.first = saved
        self.model.current = current
        np.copyto(self.model.blocks[current, :GRADS], rows)


_MODELS = {cls.reference: cls for cls in (LinearRegression, LogisticRegressionLogits, LogisticRegressionSigmoid,
                                          TwoLayerRegression, TwoLayerClassifier)}


def for_reference(function):
    """The fast class for a readable model function, or None where there is none."""
    return _MODELS.get(function)
