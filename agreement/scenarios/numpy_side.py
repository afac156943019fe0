"""Each scenario's training run written with NumPy by hand: a ``Program``.

A program is the run taken apart into what the judge (``judge.py``) needs to
replay it in any float dtype and to inject rounding between the parts: the batch
of each step, loss and gradients on a batch, the optimizer's state and update,
and for the rounding model the magnitude of the terms each gradient is formed
from (``agreement/scales.py``) and the length of its reductions.

Batches are plain index arrays: the order is recorded from torch's seeded
DataLoader by the caller (``torch_side.batch_order``) and handed over, so both
sides see the same rows in the same order. This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agreement import scales
from agreement.registry import Example
from agreement.tolerance import DEEP_MODEL, ELEMENTWISE, LINEAR_MODEL, ToleranceClass
from reference import models, optim


@dataclass(frozen=True)
class Program:
    """One training run on the NumPy side.

    params            starting parameters (float64, exact in float32: ``data.exact32``)
    steps             number of optimizer steps
    batch             step -> data dict of that step's batch (float arrays of any float dtype, int labels)
    loss_and_grads    (params, batch) -> (loss, grads), in the arrays' dtype
    init              params -> optimizer state
    update            (params, grads, state) -> (params, state); never mutates its arguments
    term_scale        (params, batch) in float64 -> {"loss": number, name: array}: the magnitude
                      of the terms the loss and each gradient are formed from
    reduction_length  batch -> n for the tolerance policy (agreement/tolerance.py)
    tolerance         the policy's ToleranceClass
    loss_condition    (params, batch) in float64 -> amplification of input rounding in the loss (1 if None)
    evaluations       name -> held-out data dict (scenario 2's validation split), its loss judged as the
                      training loss is, at ``evaluates(step)``: after every ``evaluate_every`` steps (an
                      epoch, as the tutorials print it) and after the last step
    evaluate          (params, data) -> the loss on held-out data, forward only, in the arrays' dtype
    """

    params: dict
    steps: int
    batch: Callable
    loss_and_grads: Callable
    init: Callable
    update: Callable
    term_scale: Callable
    reduction_length: Callable
    tolerance: ToleranceClass
    loss_condition: Callable | None = None
    evaluations: dict = field(default_factory=dict)
    evaluate: Callable | None = None
    evaluate_every: int = 0

    def evaluates(self, step: int) -> bool:
        """Whether the held-out losses are computed after ``step`` (0-based)."""
        return bool(self.evaluations) and ((step + 1) % self.evaluate_every == 0 or step == self.steps - 1)


def check_order(order: Sequence, n: int, steps: int, side: str = "NumPy") -> list[np.ndarray]:
    """The batch order as a list of int64 index arrays, at least ``steps`` long, each
    index in [0, n); a clear error naming the argument and side otherwise."""
    if order is None or len(order) < steps:
        got = "None" if order is None else f"{len(order)} batches"
        raise ValueError(f"order ({side} side) must list at least {steps} batches, got {got}")
    out = []
    for i, idx in enumerate(order[:steps]):
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"order[{i}] ({side} side) must be a non-empty 1-d integer array, got "
                             f"dtype {idx.dtype} shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"order[{i}] ({side} side) indexes rows outside [0, {n}): [{idx.min()}, {idx.max()}]")
        out.append(idx.astype(np.int64))
    return out


def _batcher(data: dict, order, steps: int) -> Callable:
    """step -> the rows ``order[step]`` of every array (all rows when ``order`` is None)."""
    if order is None:
        return lambda step: data
    n = len(next(iter(data.values())))
    order = check_order(order, n, steps)
    return lambda step: {k: v[order[step]] for k, v in data.items()}


def manual_sgd(lr: float) -> tuple[Callable, Callable]:
    """The tutorials' hand-written step ``p -= lr * grad`` (no state), as a pure update."""

    def update(params, grads, state):
        return {k: np.asarray(p - p.dtype.type(lr) * grads[k]) for k, p in params.items()}, state

    return (lambda params: None), update


def torch_sgd(**hyper) -> tuple[Callable, Callable]:
    """torch.optim.SGD's step (reference/optim.py)."""
    return optim.sgd_init, lambda params, grads, state: optim.sgd_update(params, grads, state, **hyper)


def torch_adam(**hyper) -> tuple[Callable, Callable]:
    """torch.optim.Adam's step (reference/optim.py)."""
    return optim.adam_init, lambda params, grads, state: optim.adam_update(params, grads, state, **hyper)


def _example_scale(scale: Callable, **hyper) -> Callable:
    return lambda params, batch: scale(Example(params, batch, hyper))


def _two_layer_length(batch: dict, params: dict) -> int:
    """As the registry's two-layer cases: D_in + H + D_out + N D_out."""
    n, d_in = batch["X"].shape
    hidden, d_out = params["W2"].shape
    return d_in + hidden + d_out + n * d_out


def quadratic(params: dict, data: dict, steps: int, lr: float = 0.1) -> Program:
    """Scenario 1: y = p x_i^2 for one element x_i per step, in order; the loss is y
    itself, dL/dp = x_i^2 (reference.models.scalar_quadratic with upstream 1, x held fixed)."""

    def loss_and_grads(p, batch):
        x = batch["x"]
        loss, grads = models.scalar_quadratic({"p": p["p"], "x": x}, {"upstream": np.ones_like(x)})
        return loss, {"p": grads["p"]}

    def term_scale(p, batch):
        x = batch["x"]
        return scales.scalar_quadratic(Example({"p": p["p"], "x": x}, {"upstream": np.ones_like(x)}))

    init, update = torch_sgd(lr=lr)
    order = [np.array([i % len(data["x"])]) for i in range(steps)]
    return Program(params, steps, _batcher(data, order, steps), loss_and_grads, init, update, term_scale,
                   lambda batch: batch["x"].size, ELEMENTWISE)


def line_validation_loss(params: dict, data: dict):
    """Scenario 2's validation loss, 0.5 mean((x w + b - y)^2) over the held-out split, forward only."""
    r = data["X"] @ params["W"] + params["b"] - data["Y"]
    return r.dtype.type(0.5) * np.mean(r * r)


def line(params: dict, data: dict, order, steps: int, lr=0.03, momentum=0.6, validation: dict | None = None,
         epoch_steps: int = 0, validation_loss: Callable = line_validation_loss) -> Program:
    """Scenario 2: y = x w + b, loss 0.5 mean((y_hat - y)^2) on each mini-batch: the
    reference's MSE and its gradients times 0.5 (exact: a power of two). With
    ``validation``, the loss on that split after every ``epoch_steps`` steps and the last."""

    def loss_and_grads(p, batch):
        loss, grads = models.linear_regression(p, batch, "mean")
        half = loss.dtype.type(0.5)
        return half * loss, {k: half * g for k, g in grads.items()}

    def term_scale(p, batch):
        return {k: 0.5 * v for k, v in scales.linear_regression(Example(p, batch, {"reduction": "mean"})).items()}

    init, update = torch_sgd(lr=lr, momentum=momentum)
    if validation is not None and epoch_steps < 1:
        raise ValueError(f"epoch_steps (NumPy side, scenario 2) must be positive with a validation split, "
                         f"got {epoch_steps}")
    return Program(params, steps, _batcher(data, order, steps), loss_and_grads, init, update, term_scale,
                   lambda batch: batch["X"].shape[1] + batch["Y"].size, LINEAR_MODEL,
                   evaluations={} if validation is None else {"validation": validation},
                   evaluate=validation_loss, evaluate_every=epoch_steps)


def classifier(params: dict, data: dict, order, steps: int, lr: float, optimizer: str = "sgd") -> Program:
    """Scenarios 3 and 7: relu(X W1 + b1) W2 + b2, mean cross-entropy; ``optimizer``
    "sgd" (torch.optim.SGD) or "manual" (the tutorial's hand-written sgd_update)."""
    init, update = torch_sgd(lr=lr) if optimizer == "sgd" else manual_sgd(lr)
    return Program(params, steps, _batcher(data, order, steps),
                   lambda p, batch: models.two_layer_classifier(p, batch, "mean"), init, update,
                   _example_scale(scales.two_layer_classifier, reduction="mean"),
                   lambda batch: _two_layer_length(batch, params), DEEP_MODEL)


def regressor(params: dict, data: dict, steps: int, loss: str, init_update: tuple) -> Program:
    """Scenarios 4 and 5: relu(X W1 [+ b1]) W2 [+ b2], full batch, loss "sse" or "mse"."""
    bias = "b1" in params
    init, update = init_update
    return Program(params, steps, _batcher(data, None, steps),
                   lambda p, batch: models.two_layer_regression(p, batch, loss, bias), init, update,
                   _example_scale(scales.two_layer_regression, loss=loss, bias=bias),
                   lambda batch: _two_layer_length(batch, params), DEEP_MODEL)


def fifteen_loss_and_grads(params: dict, data: dict):
    """Scenario 6, by hand: r_i = w x_i + b - y_i, L = (1/n) sum r_i^2,
    dL/dw = (2/n) sum r_i x_i, dL/db = (2/n) sum r_i."""
    w, b, x, y = params["w"], params["b"], data["x"], data["y"]
    cast = x.dtype.type
    r = w * x + b - y
    n = cast(x.size)
    return np.sum(r * r) / n, {"w": np.asarray(cast(2) / n * np.sum(r * x)), "b": np.asarray(cast(2) / n * np.sum(r))}


def fifteen(params: dict, data: dict, steps: int, lr: float = 1e-2, loss_and_grads=fifteen_loss_and_grads
            ) -> Program:
    """Scenario 6: the hand-derived 2/n formulas and the hand-written update."""

    def term_scale(p, batch):
        # the same formulas on magnitudes, targets negated: every sum adds |terms|
        loss, grads = loss_and_grads({k: np.abs(v) for k, v in p.items()},
                                     {"x": np.abs(batch["x"]), "y": -np.abs(batch["y"])})
        return {"loss": float(loss), **grads}

    init, update = manual_sgd(lr)
    return Program(params, steps, _batcher(data, None, steps), loss_and_grads, init, update, term_scale,
                   lambda batch: batch["x"].size, LINEAR_MODEL)


def _bce_condition(params: dict, batch: dict) -> float:
    """Rounding of p = sigmoid(z) is relative to p, so absolute near p = 1, where
    d log(1 - p) = -dp / (1 - p) amplifies it by 1 / (1 - p). Only where that term
    is weighted, target < 1; log p's error is p's relative error, not amplified."""
    z = batch["X"] @ params["W"] + params["b"]
    q = 1 - 1 / (1 + np.exp(-np.maximum(z, -700.0)))
    weighted = (batch["Y"] < 1) & (q > 0)
    return float(np.max(1 / q[weighted], initial=1.0))


def logistic(params: dict, data: dict, steps: int, lr=0.01, momentum=0.9) -> Program:
    """Scenario 8: sigmoid(X W + b) with BCELoss (mean), torch.optim.SGD with momentum, full batch."""
    init, update = torch_sgd(lr=lr, momentum=momentum)
    return Program(params, steps, _batcher(data, None, steps),
                   lambda p, batch: models.logistic_regression_sigmoid(p, batch, "mean"), init, update,
                   _example_scale(scales.logistic_regression, reduction="mean"),
                   lambda batch: batch["X"].shape[1] + batch["X"].shape[0], LINEAR_MODEL, _bce_condition)


def accuracy(params: dict, data: dict) -> float:
    """Share of rows whose largest logit is the label (scenarios 3 and 7)."""
    X = np.asarray(data["X"], np.float64)
    hidden = np.maximum(X @ params["W1"] + params["b1"], 0)
    return float(np.mean(np.argmax(hidden @ params["W2"] + params["b2"], axis=1) == data["labels"]))
