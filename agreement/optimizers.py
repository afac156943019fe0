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


def gradient_noise_deviation(case, opt: OptimizerCase, example, opt_hyper: dict, steps: int, dtype):
    """How far rounding in the gradients alone can move a trajectory, measured.

    Adam and RMSprop divide by a root-mean-square of past gradients: near a
    coordinate whose gradient is 0 (or cancels to within rounding of 0) the map
    g -> g / (|g| + eps) has slope 1/eps, so a gradient rounding error of 1e-16
    becomes a step of lr * 1e-8 / eps. Perturbing the parameters (the growth
    factor of ``agreement.trajectory``) does not see this: it measures how the
    training map carries parameter differences, not how the update amplifies
    the rounding of a gradient that is nearly 0.

    Measured like the growth factor: the float64 reference trajectory is rerun
    with every gradient shifted by the tolerance policy's bound on its rounding
    error in ``dtype`` (``tolerance(...).atol`` with the case's term scale), with
    one fixed random sign per coordinate so a systematic error accumulates over
    the steps. Returns per step (|loss shift|, {parameter: max |shift|}).
    """
    from agreement.registry import Example
    from agreement.run import term_scales
    from agreement.tolerance import tolerance
    from agreement.trajectory import reference_trajectory

    ex64 = example.astype(np.float64)
    n = case.reduction_length(example)
    rng = np.random.default_rng(1)
    signs = {k: rng.choice([-1.0, 1.0], np.shape(v)) for k, v in ex64.params.items()}

    def rounded_reference(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        scales = term_scales(case, Example(params, data, hyper))
        return loss, {k: g + signs[k] * tolerance(case.tolerance, dtype, n, g, term_scale=scales.get(k, 0.0)).atol
                      for k, g in grads.items()}

    base_losses, base = reference_trajectory(case, opt, ex64, opt_hyper, steps)
    moved_losses, moved = reference_trajectory(case, opt, ex64, opt_hyper, steps, rounded_reference)
    shifts = [{k: float(np.max(np.abs(a[k] - b[k]), initial=0)) for k in a} for a, b in zip(base, moved)]
    return np.abs(moved_losses - base_losses), shifts
