"""Pictures in data space: the function and its derivative along one coordinate
(activations, losses, probes), and the fitted line, curve or decision boundary
on a small plot-friendly data set (regression and classification models).

The builders' data are random in many dimensions; the fits here use 1-D inputs
(regression) or 2-D inputs (classification) generated from ``seed``, trained
with the same SGD on both sides, in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from agreement.optimizers import OPTIMIZERS
from agreement.registry import Case, Example
from agreement.trajectory import reference_trajectory
from torch_impl import train

OPTIMIZER = OPTIMIZERS["sgd"]
FIT_DTYPE = np.float32


# ---------------------------------------------------------------- slices
@dataclass
class Slice:
    """Loss (or f) and its derivative along ``coordinate`` as that coordinate takes ``grid``."""

    coordinate: str
    value_label: str
    grid: np.ndarray
    numpy_value: np.ndarray
    torch_value: np.ndarray
    numpy_grad: np.ndarray
    torch_grad: np.ndarray


# Where the default range (-4, 4) leaves a loss's domain.
_SLICE_RANGES = {"bce": (0.02, 0.98)}


def _slice_example(case: Case, seed: int) -> tuple[Example, str, str]:
    """The example to vary, the parameter varied (at flat index 0), and what the scalar is."""
    built = case.build("tiny", np.float64, seed)
    if case.kind == "activation":
        # upstream 1 on a single element makes the probe's scalar f(x) and its gradient f'(x)
        return Example({"x": np.zeros(1)}, {"upstream": np.ones(1)}, built.hyper), "x", f"{case.name}(x)"
    name = next(iter(built.params))
    return built, name, "loss"


def function_slice(case: Case, points: int, seed: int, device: str) -> Slice:
    example, name, value_label = _slice_example(case, seed)
    grid = np.linspace(*_SLICE_RANGES.get(case.name, (-4.0, 4.0)), points)
    out = {k: np.empty(points) for k in ("nv", "tv", "ng", "tg")}
    for i, v in enumerate(grid):
        params = {k: np.array(p, dtype=np.float64, copy=True) for k, p in example.params.items()}
        params[name].flat[0] = v
        n_loss, n_grads = case.reference(params, example.data, **example.hyper)
        t_loss, t_grads = train.loss_and_grads(case.twin, params, example.data, example.hyper, device,
                                               torch.float64)
        out["nv"][i], out["ng"][i] = n_loss, np.asarray(n_grads[name]).flat[0]
        out["tv"][i], out["tg"][i] = t_loss, np.asarray(t_grads[name]).flat[0]
    coordinate = name if np.size(example.params[name]) == 1 else f"{name}[0]"
    return Slice(coordinate, value_label, grid, out["nv"], out["tv"], out["ng"], out["tg"])


# ---------------------------------------------------------------- fits
def affine(X, p):
    return X @ p["W"] + p["b"]


def two_layer(X, p):
    return np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]


def _dense_init(rng, d_in, d_out, prefix=""):
    """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), in reference layout."""
    bound = 1 / np.sqrt(d_in)
    return {f"W{prefix}": rng.uniform(-bound, bound, (d_in, d_out)),
            f"b{prefix}": rng.uniform(-bound, bound, (d_out,))}


def _line_data(rng, n=48):
    X = rng.uniform(-3, 3, (n, 1))
    return {"X": X, "Y": 0.8 * X - 0.5 + 0.5 * rng.standard_normal((n, 1))}


def _curve_data(rng, n=64):
    X = np.sort(rng.uniform(-3, 3, (n, 1)), axis=0)
    return {"X": X, "Y": np.sin(1.3 * X) + 0.15 * rng.standard_normal((n, 1))}


def _blobs(rng, centers, n_per):
    X = np.concatenate([c + 0.7 * rng.standard_normal((n_per, 2)) for c in centers])
    labels = np.repeat(np.arange(len(centers)), n_per)
    return X, labels


def _binary_data(rng):
    X, labels = _blobs(rng, [(-1.0, -0.8), (1.0, 0.9)], 50)
    return {"X": X, "Y": labels[:, None].astype(np.float64)}


def _multiclass_data(rng):
    X, labels = _blobs(rng, [(-1.6, -0.6), (1.6, -0.6), (0.0, 1.7)], 40)
    return {"X": X, "labels": labels}


@dataclass(frozen=True)
class FitSpec:
    """A plot-friendly problem for one model case."""

    kind: str  # "regression" (1-D input) or "classification" (2-D input)
    data: Callable  # rng -> data dict
    init: Callable  # rng -> params
    hyper: dict
    forward: Callable  # (X, params) -> outputs (predictions, logits)
    lr: float  # chosen so the picture converges within the default fit_steps


FITS = {
    "linear_regression": FitSpec("regression", _line_data, lambda r: _dense_init(r, 1, 1),
                                 {"reduction": "mean"}, affine, 2e-2),
    "two_layer_regression": FitSpec("regression", _curve_data,
                                    lambda r: {**_dense_init(r, 1, 24, "1"), **_dense_init(r, 24, 1, "2")},
                                    {"loss": "mse", "bias": True}, two_layer, 5e-2),
    "logistic_regression_sigmoid": FitSpec("classification", _binary_data, lambda r: _dense_init(r, 2, 1),
                                           {"reduction": "mean"}, affine, 1e-1),
    "logistic_regression_logits": FitSpec("classification", _binary_data, lambda r: _dense_init(r, 2, 1),
                                          {"reduction": "mean"}, affine, 1e-1),
    "two_layer_classifier": FitSpec("classification", _multiclass_data,
                                    lambda r: {**_dense_init(r, 2, 16, "1"), **_dense_init(r, 16, 3, "2")},
                                    {"reduction": "mean", "bias": True}, two_layer, 1e-1),
}


@dataclass
class Fit:
    spec: FitSpec
    data: dict
    initial: dict
    numpy_params: dict
    torch_params: dict
    numpy_losses: np.ndarray
    torch_losses: np.ndarray
    hyper: dict  # the optimizer's

    def predict(self, X, side: str):
        params = self.numpy_params if side == "numpy" else self.torch_params
        return self.spec.forward(np.asarray(X, np.float64), {k: np.asarray(v, np.float64) for k, v in params.items()})


def fit(case: Case, steps: int, seed: int, device: str) -> Fit | None:
    """Train reference and twin on the case's plot-friendly data; None for cases without one."""
    spec = FITS.get(case.name)
    if spec is None:
        return None
    rng = np.random.default_rng(seed)
    example = Example(spec.init(rng), spec.data(rng), dict(spec.hyper)).astype(FIT_DTYPE)
    hyper = {**OPTIMIZER.defaults, "lr": spec.lr}
    n_losses, n_traj = reference_trajectory(case, OPTIMIZER, example, hyper, steps)
    t_losses, t_traj = train.train(case.twin, example.params, example.data, example.hyper, OPTIMIZER.torch_name,
                                   hyper, steps, device, torch.float32)
    return Fit(spec, example.data, example.params, n_traj[-1], t_traj[-1], n_losses,
               np.asarray(t_losses, np.float64), hyper)
