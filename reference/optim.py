"""Optimizer updates as pure functions on explicit state (optax-style init/update).

``state = sgd_init(params)``; ``params, state = sgd_update(params, grads, state, **hyper)``.
Nothing is mutated. A parameter whose gradient is ``None`` is left untouched,
state included, as torch skips parameters whose ``.grad`` is None.
"""

from __future__ import annotations

import numpy as np

from reference import _checks


def sgd_hyper(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
              nesterov=False, maximize=False) -> dict:
    """Validate SGD hyperparameters as torch.optim.SGD's constructor does."""
    hyper = dict(
        lr=_checks.scalar("lr", lr, low=0.0),
        momentum=_checks.scalar("momentum", momentum, low=0.0),
        dampening=_checks.scalar("dampening", dampening),
        weight_decay=_checks.scalar("weight_decay", weight_decay, low=0.0),
        nesterov=bool(nesterov),
        maximize=bool(maximize),
    )
    if nesterov and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
        raise ValueError("nesterov requires momentum > 0 and dampening == 0 "
                         f"(got momentum={hyper['momentum']}, dampening={hyper['dampening']})")
    return hyper


def sgd_init(params: dict) -> dict:
    """Momentum buffers start absent: torch creates each on its parameter's first step."""
    return {name: None for name in params}


def sgd_update(params: dict, grads: dict, state: dict, **hyper):
    """One torch.optim.SGD step (single-tensor path), per parameter p with gradient g:

        g <- -g                      if maximize
        g <- g + weight_decay * p    if weight_decay != 0
        if momentum != 0:
            b <- g                                    on the first step (no dampening)
            b <- momentum * b + (1 - dampening) * g   afterwards
            g <- g + momentum * b  if nesterov else b
        p <- p - lr * g
    """
    h = sgd_hyper(**hyper)
    new_params, new_state = dict(params), dict(state)
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            continue
        p = _checks.floating(name, p, nonempty=False)
        g = _checks.floating(f"grads[{name!r}]", g, shape=p.shape, nonempty=False)
        _checks.same_dtype(**{name: p, f"grads[{name!r}]": g})
        cast = p.dtype.type
        if h["maximize"]:
            g = -g
        if h["weight_decay"] != 0:
            g = g + cast(h["weight_decay"]) * p
        if h["momentum"] != 0:
            buf = state.get(name)
            if buf is None:
                buf = np.array(g, copy=True)
            else:
                buf = cast(h["momentum"]) * buf + cast(1 - h["dampening"]) * g
            new_state[name] = buf
            g = g + cast(h["momentum"]) * buf if h["nesterov"] else buf
        new_params[name] = p - cast(h["lr"]) * g
    return new_params, new_state
