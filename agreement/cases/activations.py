"""Activation cases: the activation's input is the parameter, probed with a drawn upstream gradient."""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from agreement import scales
from agreement import strategies as S
from agreement.cases.common import VECTOR_SIZES, seeded
from agreement.registry import Case, Example, register
from agreement.tolerance import ELEMENTWISE, unit_roundoff
from reference import activations as act
from torch_impl import models as tm


def _activation_reference(forward, backward):
    def reference(params, data, **hyper):
        x, u = params["x"], data["upstream"]
        grad = backward(x, u, **hyper)  # validates x against upstream before they meet
        return np.sum(u * forward(x, **hyper)), {"x": grad}

    reference.__name__ = f"{forward.__name__}_probe"
    return reference


def _softplus_hyper(dtype):
    # beta of either sign (torch allows both); the threshold stays below
    # exp's overflow (see reference.activations.softplus for torch's inf there)
    beta = S.hyper_value(dtype, 0.25, 8.0) | S.hyper_value(dtype, -8.0, -0.25)
    return st.fixed_dictionaries({"beta": beta, "threshold": S.hyper_value(dtype, -5.0, 40.0)})


def _branch_is_clear(x, hyper, dtype, margin):
    """softplus switches branch at beta*x = threshold; where the product is within
    rounding of the threshold the branch is decided by rounding, not by the math."""
    if "beta" not in hyper:
        return True
    bx = np.asarray(x, np.float64) * hyper["beta"]
    return not np.any(np.abs(bx - hyper["threshold"]) <= margin * max(abs(hyper["threshold"]), 1.0))


def _activation_inputs(name, hyper_strategy):
    @st.composite
    def inputs(draw, dtype, smooth=False):
        shape = draw(st.tuples(S.dims(1, 6)) | st.tuples(S.dims(1, 4), S.dims(1, 4)))
        bound = 4.0 if smooth else S.within_range(dtype, 1e4, 2)  # the probe sums upstream x
        if smooth and name == "relu":  # away from the kink by construction, not by filtering
            magnitude = S.hnp.arrays(dtype, shape, elements=S.reals(dtype, bound, 1e-2))
            x = draw(magnitude) * draw(S.hnp.arrays(dtype, shape, elements=st.sampled_from([-1.0, 1.0])))
        else:
            x = draw(S.arrays(dtype, shape, bound))
            if not smooth:
                # exact zeros, relu's kink and every activation's centre, in about half the
                # draws: over [-1e4, 1e4] Hypothesis draws few of them (2 draws in 30)
                kinks = draw(S.hnp.arrays(np.bool_, shape, elements=st.booleans(), fill=st.nothing()))
                x = np.where(kinks, np.zeros_like(x), x)
        hyper = draw(hyper_strategy(dtype)) if hyper_strategy else {}
        if smooth:
            assume(_branch_is_clear(x, hyper, dtype, 1e-2))
        else:
            assume(_branch_is_clear(x, hyper, dtype, 8 * unit_roundoff(dtype)))
        # a zero upstream element hides that element's derivative: the kinks to probe are in x
        upstream = draw(S.hnp.arrays(dtype, shape, elements=S.reals(dtype, 10.0).filter(lambda v: v != 0)))
        return Example({"x": x}, {"upstream": upstream}, hyper)

    return inputs


def _vector_builder(hyper=None):
    def build(size, dtype, seed=0):
        rng = seeded(seed)
        shape = VECTOR_SIZES[size]
        return Example({"x": (3 * rng.standard_normal(shape)).astype(dtype)},
                       {"upstream": rng.standard_normal(shape).astype(dtype)}, dict(hyper or {}))

    return build


for _name, _fwd, _bwd, _hyper, _defaults in [
    ("relu", act.relu, act.relu_grad, None, None),
    ("sigmoid", act.sigmoid, act.sigmoid_grad, None, None),
    ("tanh", act.tanh, act.tanh_grad, None, None),
    ("softplus", act.softplus, act.softplus_grad, _softplus_hyper, {"beta": 1.0, "threshold": 20.0}),
]:
    register(Case(
        name=_name, kind="activation",
        reference=_activation_reference(_fwd, _bwd),
        twin=tm.ActivationProbe.for_activation(_name),
        inputs=_activation_inputs(_name, _hyper),
        build=_vector_builder(_defaults),
        tolerance=ELEMENTWISE, term_scale=scales.activation,
        reduction_length=lambda ex: 1,
        compare_loss=False,
    ))
