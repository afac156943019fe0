"""Optimizer table: each entry binds a pure reference update to its torch.optim class.

Trajectory tests, benchmarks and baselines iterate ``OPTIMIZERS``. Adding an
optimizer: ``init``/``update`` in ``reference/optim.py`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from agreement import strategies as S
from reference import optim


@dataclass(frozen=True)
class OptimizerCase:
    name: str
    torch_name: str  # attribute of torch.optim
    init: Callable  # params -> state
    update: Callable  # (params, grads, state, **hyper) -> (params, state)
    hyper: Callable  # dtype -> Hypothesis strategy of hyperparameter dicts
    defaults: dict  # fixed hyperparameters for builders, benchmarks and baselines

    def torch_defaults(self) -> dict:
        """torch.optim's own defaults for this table's hyperparameters (its constructor's),
        the values a user leaves alone; ``defaults`` above are the project's choices."""
        constructed = getattr(torch.optim, self.torch_name)([torch.zeros(1, requires_grad=True)]).defaults
        return {key: constructed[key] for key in self.defaults}


OPTIMIZERS: dict[str, OptimizerCase] = {}


def register(opt: OptimizerCase) -> OptimizerCase:
    OPTIMIZERS[opt.name] = opt
    return opt


# Hyperparameters are drawn across the range torch accepts, not the range that
# trains well: weight decay past 1, learning rates that overshoot (the trajectory
# then grows or oscillates), momentum past 1, betas up to the largest value below 1.
# Each is also drawn at its default, the value users leave alone. Trajectory tests
# keep a draw only where the float64 trajectory stays finite and rounding, not the
# math, cannot decide it (agreement.trajectory.comparable); a narrower range here
# would hide from them what those filters are there to judge.
# eps stays positive: torch accepts eps = 0, but a coordinate whose gradient is
# exactly 0 (a dead ReLU unit) then gets 0/0 = NaN.
def _optional(value, strategy):
    """The default (the value users leave alone) or a drawn one."""
    return st.sampled_from([value]) | strategy


def _up_to_one(dtype, low: float, top: float):
    """Values in [low, top] exactly representable in ``dtype``, with values next to 1
    (0.999, 0.9999, 1 - 1e-6 and the last one below 1 in ``dtype``, where 1 - 1e-9
    would round to 1 in float32) drawn often: a uniform draw seldom comes near them."""
    last = np.nextafter(np.asarray(1.0, dtype), np.asarray(0.0, dtype))
    near = sorted({float(np.asarray(v, dtype)) for v in (0.999, 0.9999, 1 - 1e-6)} | {float(last)})
    return st.sampled_from(near) | S.hyper_value(dtype, low, top)


def _below_one(dtype):
    """[0, 1): a beta."""
    return _up_to_one(dtype, 0.0, float(np.nextafter(np.asarray(1.0, dtype), np.asarray(0.0, dtype))))


def _eps(dtype):
    return S.hyper_value(dtype, 1e-10, 1.0)


@st.composite
def sgd_hyper(draw, dtype=np.float64):
    momentum = draw(_optional(0.0, st.sampled_from([0.9]) | S.hyper_value(dtype, 0.0, 2.0)))
    nesterov = momentum > 0 and draw(st.booleans())
    # torch sets no bounds on dampening; outside [0, 1] it scales the gradient by a
    # negative or larger-than-one factor in the same formula
    dampening = 0.0 if nesterov else draw(_optional(0.0, S.hyper_value(dtype, -1.0, 2.0)))
    return dict(
        lr=draw(_optional(1e-3, S.hyper_value(dtype, 0.0, 4.0))),
        momentum=momentum,
        dampening=dampening,
        weight_decay=draw(_optional(0.0, S.hyper_value(dtype, 0.0, 10.0))),
        nesterov=nesterov,
        maximize=draw(st.booleans()),
    )


@st.composite
def adam_hyper(draw, dtype=np.float64, decoupled=False):
    return dict(
        lr=draw(_optional(1e-3, S.hyper_value(dtype, 0.0, 2.0))),
        betas=(draw(_optional(0.9, _below_one(dtype))), draw(_optional(0.999, _below_one(dtype)))),
        eps=draw(_optional(1e-8, _eps(dtype))),
        weight_decay=draw(_optional(1e-2 if decoupled else 0.0, S.hyper_value(dtype, 0.0, 10.0))),
        amsgrad=draw(st.booleans()),
        maximize=draw(st.booleans()),
    )


def adamw_hyper(dtype=np.float64):
    return adam_hyper(dtype, decoupled=True)


@st.composite
def rmsprop_hyper(draw, dtype=np.float64):
    # alpha up to 1: torch sets no upper bound, but past 1 the running mean of squares
    # (alpha s + (1 - alpha) g^2) turns negative and its square root NaN on both sides.
    # Centered, alpha stays >= 0.5: below, the variance s - g_avg^2 is a difference of
    # nearly equal numbers (after one step alpha (1 - alpha) g^2 out of s = (1 - alpha) g^2),
    # which amplifies the update's own rounding of s by 1 / alpha within a single step,
    # where no trajectory filter sees it (at alpha = 0 float32 gives sqrt(-u g^2) = NaN
    # where float64 gives 0).
    centered = draw(st.booleans())
    return dict(
        lr=draw(_optional(1e-2, S.hyper_value(dtype, 0.0, 1.0))),
        alpha=draw(_optional(0.99, _up_to_one(dtype, 0.5 if centered else 0.0, 1.0))),
        eps=draw(_optional(1e-8, _eps(dtype))),
        weight_decay=draw(_optional(0.0, S.hyper_value(dtype, 0.0, 10.0))),
        momentum=draw(_optional(0.0, S.hyper_value(dtype, 0.0, 2.0))),
        centered=centered,
        maximize=draw(st.booleans()),
    )


register(OptimizerCase(
    name="sgd", torch_name="SGD", init=optim.sgd_init, update=optim.sgd_update, hyper=sgd_hyper,
    defaults=dict(lr=1e-2, momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=True, maximize=False),
))
register(OptimizerCase(
    name="adam", torch_name="Adam", init=optim.adam_init, update=optim.adam_update, hyper=adam_hyper,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
))
register(OptimizerCase(
    name="adamw", torch_name="AdamW", init=optim.adamw_init, update=optim.adamw_update, hyper=adamw_hyper,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
))
register(OptimizerCase(
    name="rmsprop", torch_name="RMSprop", init=optim.rmsprop_init, update=optim.rmsprop_update,
    hyper=rmsprop_hyper,
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
))


