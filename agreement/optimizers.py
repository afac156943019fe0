"""Optimizer table: each entry binds a pure reference update to its torch.optim class.

Trajectory tests, benchmarks and baselines iterate ``OPTIMIZERS``. Adding an
optimizer: ``init``/``update`` in ``reference/optim.py`` and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
