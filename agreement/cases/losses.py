"""Loss cases: the loss's first argument (prediction, probability, logits) is the parameter."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from agreement import scales
from agreement import strategies as S
from agreement.cases.common import VECTOR_SIZES, reduction, seeded, soft_labels
from agreement.registry import Case, Example, register
from agreement.tolerance import LOSS
from reference import losses
from torch_impl import models as tm


def _loss_reference(fn, target_key="target"):
    def reference(params, data, **hyper):
        loss, grad = fn(params["pred"], data[target_key], **hyper)
        return loss, {"pred": grad}

    reference.__name__ = fn.__name__
    return reference


def _elementwise_loss_inputs(pred_elements, target_elements, hyper_strategy):
    @st.composite
    def inputs(draw, dtype, smooth=False):
        shape = draw(st.tuples(S.dims(1, 6)) | st.tuples(S.dims(1, 4), S.dims(1, 4)))
        pred = draw(S.hnp.arrays(dtype, shape, elements=pred_elements(dtype, smooth)))
        target = draw(S.hnp.arrays(dtype, shape, elements=target_elements(dtype, smooth)))
        return Example({"pred": pred}, {"target": target}, draw(hyper_strategy))

    return inputs


_mse_hyper = st.fixed_dictionaries({"reduction": st.sampled_from(["mean", "sum"]),
                                    "scale": st.sampled_from([1.0, 0.5])})


def _probabilities(dtype, smooth):
    # Hypothesis reaches the exact edges 0 and 1, where BCELoss's clamps act. The smooth
    # range keeps -log p''' = 2/p^3 small enough for central differences.
    return S.reals(dtype, 0.8, 0.2) if smooth else S.reals(dtype, 1.0, 0.0)


def _values(bound, smooth_bound):
    # (pred - target)^2: degree 2
    return lambda dtype, smooth: S.reals(dtype, smooth_bound if smooth else S.within_range(dtype, bound, 2))


def _targets(dtype, smooth):
    """Soft labels whether or not the draw is smooth: a target is no kink of the loss."""
    return soft_labels(dtype)


def _pair_builder(pred_fn, target_fn, hyper):
    def build(size, dtype, seed=0):
        rng = seeded(seed)
        shape = VECTOR_SIZES[size]
        return Example({"pred": pred_fn(rng, shape).astype(dtype)},
                       {"target": target_fn(rng, shape).astype(dtype)}, dict(hyper))

    return build


def _numel(ex):
    return int(np.size(ex.params["pred"]))


register(Case(
    name="mse", kind="loss", reference=_loss_reference(losses.mse_loss), twin=tm.mse_probe,
    inputs=_elementwise_loss_inputs(_values(100.0, 4.0), _values(100.0, 4.0), _mse_hyper),
    build=_pair_builder(lambda r, s: r.standard_normal(s), lambda r, s: r.standard_normal(s),
                        {"reduction": "mean", "scale": 1.0}),
    tolerance=LOSS, reduction_length=_numel, term_scale=scales.mse,
))
register(Case(
    name="bce", kind="loss", reference=_loss_reference(losses.bce_loss), twin=tm.bce_probe,
    inputs=_elementwise_loss_inputs(_probabilities, _targets, reduction),
    build=_pair_builder(lambda r, s: r.uniform(0.2, 0.8, s), lambda r, s: r.integers(0, 2, s),
                        {"reduction": "mean"}),
    tolerance=LOSS, reduction_length=_numel, term_scale=scales.bce,
))
register(Case(
    name="bce_with_logits", kind="loss", reference=_loss_reference(losses.bce_with_logits_loss),
    twin=tm.bce_logits_probe,
    inputs=_elementwise_loss_inputs(_values(100.0, 4.0), _targets, reduction),
    build=_pair_builder(lambda r, s: 3 * r.standard_normal(s), lambda r, s: r.integers(0, 2, s),
                        {"reduction": "mean"}),
    tolerance=LOSS, reduction_length=_numel, term_scale=scales.bce_with_logits,
))


@st.composite
def _cross_entropy_inputs(draw, dtype, smooth=False):
    n, c = draw(S.dims(1, 6)), draw(S.dims(2 if smooth else 1, 6))
    logits = draw(S.arrays(dtype, (n, c), 4.0 if smooth else 1e3))
    labels = draw(S.hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return Example({"pred": logits}, {"labels": labels}, draw(reduction))


def _cross_entropy_build(size, dtype, seed=0):
    rng = seeded(seed)
    n, c = VECTOR_SIZES[size]
    return Example({"pred": (3 * rng.standard_normal((n, c))).astype(dtype)},
                   {"labels": rng.integers(0, c, n)}, {"reduction": "mean"})


register(Case(
    name="cross_entropy", kind="loss", reference=_loss_reference(losses.cross_entropy_loss, "labels"),
    twin=tm.cross_entropy_probe, inputs=_cross_entropy_inputs, build=_cross_entropy_build,
    tolerance=LOSS, reduction_length=lambda ex: sum(np.shape(ex.params["pred"])), term_scale=scales.cross_entropy,
))
