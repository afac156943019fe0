"""Optimizer updates as pure functions on explicit state (optax-style init/update).

``state = sgd_init(params)``; ``params, state = sgd_update(params, grads, state, **hyper)``.
Nothing is mutated. A parameter whose gradient is ``None`` is left untouched,
state included, as torch skips parameters whose ``.grad`` is None. Updated
parameters and stored state are ndarrays of their parameter's shape and dtype,
0-d included: NumPy arithmetic on 0-d arrays returns NumPy scalars, which are
converted back (``_arrays``).
"""

from __future__ import annotations

import numpy as np

from reference import _checks


def _with_gradients(params: dict, grads: dict):
    """Yield ``(name, p, g)`` for each parameter that has a gradient, validated:
    a parameter whose gradient is None (or absent) is skipped, as torch skips it."""
    unknown = sorted(set(grads) - set(params))
    if unknown:
        raise ValueError(f"grads has entries {unknown} that are not in params {sorted(params)}")
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            continue
        p = _checks.floating(name, p, nonempty=False)
        g = _checks.floating(f"grads[{name!r}]", g, shape=p.shape, nonempty=False)
        _checks.same_dtype(**{name: p, f"grads[{name!r}]": g})
        yield name, p, g


def _arrays(state: dict) -> dict:
    """One parameter's state with every value but the step count as an ndarray."""
    return {k: v if k == "step" else np.asarray(v) for k, v in state.items()}


def sgd_hyper(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
              nesterov=False, maximize=False) -> dict:
    """Validate SGD hyperparameters as torch.optim.SGD's constructor does."""
    hyper = dict(
        lr=_checks.scalar("lr", lr, low=0.0),
        momentum=_checks.scalar("momentum", momentum, low=0.0),
        dampening=_checks.scalar("dampening", dampening),
        weight_decay=_checks.scalar("weight_decay", weight_decay, low=0.0),
        nesterov=_checks.flag("nesterov", nesterov),
        maximize=_checks.flag("maximize", maximize),
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
    for name, p, g in _with_gradients(params, grads):
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
                buf = _checks.floating(f"state[{name!r}]", buf, shape=p.shape, nonempty=False)
                _checks.same_dtype(**{name: p, f"state[{name!r}]": buf})
                buf = np.asarray(cast(h["momentum"]) * buf + cast(1 - h["dampening"]) * g)
            new_state[name] = buf
            g = g + cast(h["momentum"]) * buf if h["nesterov"] else buf
        new_params[name] = np.asarray(p - cast(h["lr"]) * g)
    return new_params, new_state


def _betas(betas) -> tuple:
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    if not all(isinstance(beta, float) for beta in betas):
        # torch: "betas must be either both floats or both Tensors"; (0, 0.999) is refused
        raise TypeError(f"betas must be a pair of floats, got {tuple(type(b).__name__ for b in betas)}")
    out = []
    for i, beta in enumerate(betas):
        beta = _checks.scalar(f"betas[{i}]", beta, low=0.0)
        if beta >= 1.0:
            raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        out.append(beta)
    return tuple(out)


def adam_hyper(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
               maximize=False, decoupled_weight_decay=False) -> dict:
    """Validate Adam hyperparameters as torch.optim.Adam's constructor does:
    lr, eps, weight_decay >= 0 and each beta in [0, 1). eps = 0 is accepted, as
    by torch, although a zero gradient on a fresh parameter then gives 0/0."""
    return dict(
        lr=_checks.scalar("lr", lr, low=0.0),
        betas=_betas(betas),
        eps=_checks.scalar("eps", eps, low=0.0),
        weight_decay=_checks.scalar("weight_decay", weight_decay, low=0.0),
        amsgrad=_checks.flag("amsgrad", amsgrad),
        maximize=_checks.flag("maximize", maximize),
        decoupled_weight_decay=_checks.flag("decoupled_weight_decay", decoupled_weight_decay),
    )


def adamw_hyper(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                maximize=False) -> dict:
    """torch.optim.AdamW: Adam with decoupled weight decay, whose default is 1e-2 (Adam's is 0)."""
    return adam_hyper(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay=True)


def adam_init(params: dict) -> dict:
    """Per-parameter state starts absent: torch creates it (step 0, zero moments) on the
    parameter's first step with a gradient, so each parameter keeps its own step count."""
    return {name: None for name in params}


adamw_init = adam_init


def adam_update(params: dict, grads: dict, state: dict, **hyper):
    """One torch.optim.Adam step (single-tensor path, the CPU default), per parameter
    p with gradient g and its own step count t (Python floats for the scalars, as torch):

        t <- t + 1
        g <- -g                                    if maximize
        if weight_decay != 0:
            p <- p * (1 - lr * weight_decay)       if decoupled (AdamW), before the moments
            g <- g + weight_decay * p              otherwise (L2: the decay enters m and v)
        m <- m + (1 - beta1) * (g - m)             (torch's lerp_; = beta1 m + (1 - beta1) g)
        v <- beta2 * v + (1 - beta2) * g * g
        v_max <- max(v_max, v); v <- v_max         if amsgrad (the max of the raw v, v_max starts at 0)
        step = lr / (1 - beta1^t)
        denom = sqrt(v) / sqrt(1 - beta2^t) + eps  (eps added after the bias correction, outside the sqrt)
        p <- p - step * m / denom

    State per parameter: ``{"step", "exp_avg", "exp_avg_sq"}`` plus ``"max_exp_avg_sq"``
    with amsgrad. A parameter without a gradient keeps its value and state (t included).
    """
    h = adam_hyper(**hyper)
    beta1, beta2 = h["betas"]
    lr, wd = h["lr"], h["weight_decay"]
    new_params, new_state = dict(params), dict(state)
    for name, p, g in _with_gradients(params, grads):
        cast = p.dtype.type
        old = state.get(name) or {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
        t = old["step"] + 1
        if h["maximize"]:
            g = -g
        if wd != 0:
            if h["decoupled_weight_decay"]:
                p = p * cast(1 - lr * wd)
            else:
                g = g + cast(wd) * p
        m = old["exp_avg"] + cast(1 - beta1) * (g - old["exp_avg"])
        v = cast(beta2) * old["exp_avg_sq"] + cast(1 - beta2) * g * g
        s = {"step": t, "exp_avg": m, "exp_avg_sq": v}
        if h["amsgrad"]:
            v = np.maximum(old.get("max_exp_avg_sq", np.zeros_like(p)), v)
            s["max_exp_avg_sq"] = v
        step_size = lr / (1 - beta1**t)
        denom = np.sqrt(v) / cast((1 - beta2**t) ** 0.5) + cast(h["eps"])
        new_params[name] = np.asarray(p - cast(step_size) * (m / denom))
        new_state[name] = _arrays(s)
    return new_params, new_state


def adamw_update(params: dict, grads: dict, state: dict, **hyper):
    """One torch.optim.AdamW step: ``adam_update`` with decoupled weight decay
    (p <- p (1 - lr wd) before the moments; the decay never enters m or v)."""
    h = adamw_hyper(**hyper)
    return adam_update(params, grads, state, **h)


def rmsprop_hyper(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                  maximize=False) -> dict:
    """Validate RMSprop hyperparameters as torch.optim.RMSprop's constructor does:
    lr, eps, weight_decay, momentum, alpha >= 0. torch sets no upper bound on alpha."""
    return dict(
        lr=_checks.scalar("lr", lr, low=0.0),
        alpha=_checks.scalar("alpha", alpha, low=0.0),
        eps=_checks.scalar("eps", eps, low=0.0),
        weight_decay=_checks.scalar("weight_decay", weight_decay, low=0.0),
        momentum=_checks.scalar("momentum", momentum, low=0.0),
        centered=_checks.flag("centered", centered),
        maximize=_checks.flag("maximize", maximize),
    )


rmsprop_init = adam_init


def rmsprop_update(params: dict, grads: dict, state: dict, **hyper):
    """One torch.optim.RMSprop step (single-tensor path), per parameter p with gradient g:

        g <- -g                                  if maximize
        g <- g + weight_decay * p                if weight_decay != 0 (L2, enters s)
        s <- alpha * s + (1 - alpha) * g * g     (no bias correction)
        if centered:
            g_avg <- g_avg + (1 - alpha) * (g - g_avg)   (torch's lerp_; g_avg starts at 0)
            denom = sqrt(s - g_avg * g_avg) + eps
        else:
            denom = sqrt(s) + eps                (eps outside the sqrt)
        if momentum > 0:
            b <- momentum * b + g / denom        (b starts at 0, not at the first update)
            p <- p - lr * b
        else:
            p <- p - lr * g / denom

    State per parameter: ``{"step", "square_avg"}`` plus ``"momentum_buffer"`` when
    momentum > 0 and ``"grad_avg"`` when centered.
    """
    h = rmsprop_hyper(**hyper)
    alpha, mu = h["alpha"], h["momentum"]
    new_params, new_state = dict(params), dict(state)
    for name, p, g in _with_gradients(params, grads):
        cast = p.dtype.type
        old = state.get(name) or {"step": 0, "square_avg": np.zeros_like(p)}
        if h["maximize"]:
            g = -g
        if h["weight_decay"] != 0:
            g = g + cast(h["weight_decay"]) * p
        sq = cast(alpha) * old["square_avg"] + cast(1 - alpha) * g * g
        s = {"step": old["step"] + 1, "square_avg": sq}
        if h["centered"]:
            g_avg = old.get("grad_avg", np.zeros_like(p))
            g_avg = g_avg + cast(1 - alpha) * (g - g_avg)
            s["grad_avg"] = g_avg
            denom = np.sqrt(sq - g_avg * g_avg) + cast(h["eps"])
        else:
            denom = np.sqrt(sq) + cast(h["eps"])
        if mu > 0:
            buf = cast(mu) * old.get("momentum_buffer", np.zeros_like(p)) + g / denom
            s["momentum_buffer"] = buf
            new_params[name] = np.asarray(p - cast(h["lr"]) * buf)
        else:
            new_params[name] = np.asarray(p - cast(h["lr"]) * (g / denom))
        new_state[name] = _arrays(s)
    return new_params, new_state
