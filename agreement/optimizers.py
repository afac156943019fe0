"""Optimizer table: each entry binds a pure reference update to its torch.optim class.

Trajectory tests, benchmarks and baselines iterate ``OPTIMIZERS``. Adding an
optimizer: ``init``/``update`` in ``reference/optim.py`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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


OPTIMIZERS: dict[str, OptimizerCase] = {}


def register(opt: OptimizerCase) -> OptimizerCase:
    OPTIMIZERS[opt.name] = opt
    return opt


register(OptimizerCase(
    name="sgd", torch_name="SGD", init=optim.sgd_init, update=optim.sgd_update, hyper=S.sgd_hyper,
    defaults=dict(lr=1e-2, momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=True, maximize=False),
))


# Adam and RMSprop divide by a root-mean-square of past gradients, so their
# step is about lr per coordinate whatever the gradient's scale: lr bounds the
# distance travelled. eps stays positive: torch accepts eps = 0, but a
# coordinate whose gradient is exactly 0 (a dead ReLU unit) then gets 0/0 = NaN.
def _optional(value, strategy):
    """The default (the value users leave alone) or a drawn one."""
    return st.sampled_from([value]) | strategy


@st.composite
def adam_hyper(draw, dtype=np.float64, decoupled=False):
    return dict(
        lr=draw(S.hyper_value(dtype, 0.0, 0.1)),
        betas=(draw(_optional(0.9, S.hyper_value(dtype, 0.0, 0.99))),
               draw(_optional(0.999, S.hyper_value(dtype, 0.0, 0.9999)))),
        eps=draw(_optional(1e-8, S.hyper_value(dtype, 1e-10, 1e-1))),
        weight_decay=draw(_optional(1e-2 if decoupled else 0.0, S.hyper_value(dtype, 0.0, 0.1))),
        amsgrad=draw(st.booleans()),
        maximize=draw(st.booleans()),
    )


def adamw_hyper(dtype=np.float64):
    return adam_hyper(dtype, decoupled=True)


@st.composite
def rmsprop_hyper(draw, dtype=np.float64):
    # alpha stays >= 0.5: at smaller alpha the centered variance s - g_avg^2 is a
    # difference of nearly equal numbers (alpha (1 - alpha) g^2 after one step)
    # whose rounding is not a property of either implementation.
    return dict(
        lr=draw(S.hyper_value(dtype, 0.0, 0.05)),
        alpha=draw(_optional(0.99, S.hyper_value(dtype, 0.5, 0.999))),
        eps=draw(_optional(1e-8, S.hyper_value(dtype, 1e-10, 1e-1))),
        weight_decay=draw(_optional(0.0, S.hyper_value(dtype, 0.0, 0.1))),
        momentum=draw(_optional(0.0, S.hyper_value(dtype, 0.0, 0.99))),
        centered=draw(st.booleans()),
        maximize=draw(st.booleans()),
    )


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


