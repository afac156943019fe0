"""The eight scenarios of issue 12, each wiring a NumPy ``Program`` (numpy_side) to
the torch forms the tutorial writes (torch_side), on the same data, starting
parameters and batch order, and judged by ``judge.judge_run``.

A scenario has one or more parts; a part is one NumPy program and the torch forms
that compute the same math (scenario 4's NumPy form by hand, torch tensors by
hand, autograd and a custom autograd.Function all share one program; its
nn.Sequential and Adam forms have programs of their own). ``build(short)`` makes
the parts at full length, or short for the default test suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from agreement.scenarios import data, numpy_side, torch_side
from agreement.scenarios.judge import Judgement, Side, judge_run

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
SEED = 0  # the DataLoaders' generator seed


@dataclass(frozen=True)
class Part:
    name: str
    program: numpy_side.Program
    forms: dict  # label -> (torch dtype, device) -> iterator of (loss, params)
    epoch_steps: int | None = None  # steps per epoch, for the per-epoch loss curve
    metric: Callable | None = None  # final params -> a number printed with the row (accuracy)
    metric_name: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    build: Callable  # short: bool -> list[Part]
    notes: str = ""


@dataclass
class PartResult:
    part: Part
    judgement: Judgement
    epochs: dict = field(default_factory=dict)  # side key -> per-epoch mean losses


def _form(fn, params, arrays, steps, **hyper):
    return lambda dtype, device: fn(params, arrays, dtype=dtype, device=device, steps=steps, **hyper)


def _quadratic(short):
    params, arrays = data.quadratic(10 if short else 100)
    steps = len(arrays["x"])
    return [Part("1", numpy_side.quadratic(params, arrays, steps),
                 {"torch.optim.SGD per element": _form(torch_side.quadratic, params, arrays, steps)})]


def _line(short):
    params, train, validation = data.line()
    # short: batches of 64 over 1000 rows, so every epoch ends with a partial batch of 40
    batch_size, steps = (64, 20) if short else (100, 100)
    epoch_steps = -(-len(train["X"]) // batch_size)
    order = torch_side.batch_order(len(train["X"]), batch_size, steps, SEED)
    # the validation loss after every epoch (and after the last step, which ends the short run mid-epoch)
    return [Part("2", numpy_side.line(params, train, order, steps, validation=validation, epoch_steps=epoch_steps),
                 {"DataLoader + SGD momentum": _form(torch_side.line, params, train, steps, batch_size=batch_size,
                                                     seed=SEED, validation=validation, epoch_steps=epoch_steps)},
                 epoch_steps=epoch_steps)]


def _blobs(short):
    params, arrays = data.blobs()
    steps = 10 if short else 100
    return [Part("3", numpy_side.classifier(params, arrays, None, steps, lr=0.02),
                 {"nn + CrossEntropyLoss + SGD": _form(torch_side.blobs, params, arrays, steps)},
                 metric=lambda p: numpy_side.accuracy(p, arrays), metric_name="accuracy")]


def _tutorial(short):
    by_hand, layers, arrays = data.tutorial_net()
    steps = 10 if short else 500
    hand = numpy_side.regressor(by_hand, arrays, steps, "sse", numpy_side.manual_sgd(1e-6))
    nn_sgd = numpy_side.regressor(layers, arrays, steps, "sse", numpy_side.manual_sgd(1e-4))
    adam = numpy_side.regressor(layers, arrays, steps, "sse", numpy_side.torch_adam(lr=1e-4))
    return [Part("4 by hand", hand, {"tensors by hand": _form(torch_side.tensors_by_hand, by_hand, arrays, steps),
                                     "autograd": _form(torch_side.autograd_by_hand, by_hand, arrays, steps),
                                     "autograd.Function": _form(torch_side.custom_function, by_hand, arrays, steps)}),
            Part("4 nn", nn_sgd, {"nn.Sequential + MSELoss(sum)": _form(torch_side.nn_by_hand, layers, arrays,
                                                                         steps)}),
            Part("4 optim", adam, {"optim.Adam": _form(torch_side.nn_adam, layers, arrays, steps)})]


def _parabola(short):
    params, arrays = data.parabola()
    steps = 10 if short else 200
    return [Part("5", numpy_side.regressor(params, arrays, steps, "mse", numpy_side.torch_sgd(lr=0.2)),
                 {"Net + MSELoss + SGD": _form(torch_side.parabola, params, arrays, steps)})]


def _fifteen(short):
    params, arrays = data.fifteen_points()
    steps = 10 if short else 30
    return [Part("6", numpy_side.fifteen(params, arrays, steps),
                 {"autograd, update by hand": _form(torch_side.fifteen, params, arrays, steps)})]


def _mnist(short):
    params, arrays = data.mnist_shaped(1000 if short else 60000)
    batch_size = 100
    steps = len(arrays["X"]) // batch_size  # one epoch
    order = torch_side.batch_order(len(arrays["X"]), batch_size, steps, SEED)
    return [Part("7", numpy_side.classifier(params, arrays, order, steps, lr=1e-2, optimizer="manual"),
                 {"DataLoader + manual sgd_update": _form(torch_side.mnist, params, arrays, steps,
                                                          batch_size=batch_size, seed=SEED)},
                 epoch_steps=steps, metric=lambda p: numpy_side.accuracy(p, arrays), metric_name="accuracy")]


def _logistic(short):
    params, arrays = data.clusters()
    steps = 20 if short else 1000
    return [Part("8", numpy_side.logistic(params, arrays, steps),
                 {"nn.Linear + Sigmoid + BCELoss + SGD momentum": _form(torch_side.logistic, params, arrays, steps)})]


SCENARIOS = {s.name: s for s in [
    Scenario("1-quadratic", "y = p x^2, SGD lr 0.1, one update per element of x", _quadratic),
    Scenario("2-linear-regression", "y = w x + b, N = 1000 + 100, DataLoader(100, shuffle), 10 epochs, "
             "SGD lr 0.03 momentum 0.6, 0.5 MSE", _line),
    Scenario("3-blobs", "2-10-2 ReLU classifier, two blobs of 100, CrossEntropyLoss, SGD lr 0.02, 100 steps",
             _blobs),
    Scenario("4-two-layer", "64-1000-100-10, sum of squares, 500 steps: by hand (lr 1e-6) in NumPy, tensors, "
             "autograd, autograd.Function; nn.Sequential (lr 1e-4); optim.Adam (lr 1e-4)", _tutorial),
    Scenario("5-parabola", "1-10-1 ReLU net on y = x^2 + noise, MSELoss, SGD lr 0.2, 200 steps", _parabola),
    Scenario("6-fifteen-points", "y = w x + b on 15 fixed points, hand-derived 2/n gradients, lr 1e-2, "
             "30 iterations", _fifteen),
    Scenario("7-mnist-shaped", "784-200-10 classifier, CrossEntropyLoss, manual sgd_update lr 1e-2, batch 100, "
             "one epoch", _mnist,
             notes="generated data of MNIST's shape (60000 x 784 bytes / 255, 10 classes, seeded NumPy RNG), "
                   "not MNIST: it cannot be downloaded here"),
    Scenario("8-logistic", "nn.Linear(2, 1) + Sigmoid + BCELoss on two clusters, SGD lr 0.01 momentum 0.9, "
             "1000 iterations", _logistic),
]}


def run_part(part: Part, dtypes, devices, runs: int | None = None, stop_at_failure: bool = False,
             program: numpy_side.Program | None = None) -> PartResult:
    """Every form of ``part`` in every dtype on every device, with the NumPy side in each
    dtype, judged in one lock-step pass. ``program``: a replacement NumPy program (tests
    use it for deliberately wrong steps)."""
    program = program or part.program
    sides = []
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        if dtype not in TORCH_DTYPES:
            raise ValueError(f"dtype (scenario {part.name}) must be float32 or float64, got {dtype}")
        sides.append(Side("numpy", dtype))
        for device in devices:
            for label, make in part.forms.items():
                sides.append(Side(label, dtype, device, make(TORCH_DTYPES[dtype], device)))
    extra = {} if runs is None else {"runs": runs}
    judgement = judge_run(program, sides, name=f"scenario {part.name}", stop_at_failure=stop_at_failure, **extra)
    epochs = {}
    if part.epoch_steps:
        for side in judgement.sides:
            losses = np.asarray(side.losses)
            epochs[(side.label, side.dtype, side.device)] = [
                float(np.mean(losses[i:i + part.epoch_steps])) for i in range(0, len(losses), part.epoch_steps)]
    return PartResult(part, judgement, epochs)
