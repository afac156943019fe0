"""The registered cases. Each entry binds a reference function, its torch twin,
input strategies, fixed-size builders and a tolerance class."""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from agreement import scales
from agreement import strategies as S
from agreement.registry import Case, Example, register
from agreement.tolerance import DEEP_MODEL, ELEMENTWISE, LINEAR_MODEL, LOSS, unit_roundoff
from reference import activations as act
from reference import losses, models
from torch_impl import models as tm

# ---------------------------------------------------------------- sizes
# Batch N, then layer widths. "tutorial" is the classic two-layer example
# (N=64, D_in=1000, H=100, D_out=10); "large" is where matrix products dominate.
MODEL_SIZES = {
    "tiny": dict(N=4, D_in=3, H=5, D_out=2),
    "tutorial": dict(N=64, D_in=1000, H=100, D_out=10),
    "large": dict(N=1024, D_in=2048, H=1024, D_out=256),
}
VECTOR_SIZES = {"tiny": (4, 3), "tutorial": (64, 1000), "large": (1024, 2048)}


def _rng(seed):
    return np.random.default_rng(seed)


def _linear_init(rng, d_in, d_out, dtype):
    """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), in reference layout."""
    bound = 1 / np.sqrt(d_in)
    return (rng.uniform(-bound, bound, (d_in, d_out)).astype(dtype),
            rng.uniform(-bound, bound, (d_out,)).astype(dtype))


# ---------------------------------------------------------------- activations
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
        bound = 4.0 if smooth else 1e4
        if smooth and name == "relu":  # away from the kink by construction, not by filtering
            magnitude = S.hnp.arrays(dtype, shape, elements=S.reals(dtype, bound, 1e-2))
            x = draw(magnitude) * draw(S.hnp.arrays(dtype, shape, elements=st.sampled_from([-1.0, 1.0])))
        else:
            x = draw(S.arrays(dtype, shape, bound))
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
        rng = _rng(seed)
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


# ---------------------------------------------------------------- losses
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


_reduction = st.fixed_dictionaries({"reduction": st.sampled_from(["mean", "sum"])})
_mse_hyper = st.fixed_dictionaries({"reduction": st.sampled_from(["mean", "sum"]),
                                    "scale": st.sampled_from([1.0, 0.5])})


def _probabilities(dtype, smooth):
    # Hypothesis reaches the exact edges 0 and 1, where BCELoss's clamps act. The smooth
    # range keeps -log p''' = 2/p^3 small enough for central differences.
    return S.reals(dtype, 0.8, 0.2) if smooth else S.reals(dtype, 1.0, 0.0)


def _soft_labels(dtype, smooth):
    return st.sampled_from([0.0, 1.0]) | S.reals(dtype, 1.0, 0.0)


def _values(bound, smooth_bound):
    return lambda dtype, smooth: S.reals(dtype, smooth_bound if smooth else bound)


def _pair_builder(pred_fn, target_fn, hyper):
    def build(size, dtype, seed=0):
        rng = _rng(seed)
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
    inputs=_elementwise_loss_inputs(_probabilities, _soft_labels, _reduction),
    build=_pair_builder(lambda r, s: r.uniform(0.2, 0.8, s), lambda r, s: r.integers(0, 2, s),
                        {"reduction": "mean"}),
    tolerance=LOSS, reduction_length=_numel, term_scale=scales.bce,
))
register(Case(
    name="bce_with_logits", kind="loss", reference=_loss_reference(losses.bce_with_logits_loss),
    twin=tm.bce_logits_probe,
    inputs=_elementwise_loss_inputs(_values(100.0, 4.0), _soft_labels, _reduction),
    build=_pair_builder(lambda r, s: 3 * r.standard_normal(s), lambda r, s: r.integers(0, 2, s),
                        {"reduction": "mean"}),
    tolerance=LOSS, reduction_length=_numel, term_scale=scales.bce_with_logits,
))


@st.composite
def _cross_entropy_inputs(draw, dtype, smooth=False):
    n, c = draw(S.dims(1, 6)), draw(S.dims(2 if smooth else 1, 6))
    logits = draw(S.arrays(dtype, (n, c), 4.0 if smooth else 1e3))
    labels = draw(S.hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return Example({"pred": logits}, {"labels": labels}, draw(_reduction))


def _cross_entropy_build(size, dtype, seed=0):
    rng = _rng(seed)
    n, c = VECTOR_SIZES[size]
    return Example({"pred": (3 * rng.standard_normal((n, c))).astype(dtype)},
                   {"labels": rng.integers(0, c, n)}, {"reduction": "mean"})


register(Case(
    name="cross_entropy", kind="loss", reference=_loss_reference(losses.cross_entropy_loss, "labels"),
    twin=tm.cross_entropy_probe, inputs=_cross_entropy_inputs, build=_cross_entropy_build,
    tolerance=LOSS, reduction_length=lambda ex: sum(np.shape(ex.params["pred"])), term_scale=scales.cross_entropy,
))


# ---------------------------------------------------------------- models
@st.composite
def _scalar_inputs(draw, dtype, smooth=False):
    n = draw(S.dims(1, 6))
    bound = 4.0 if smooth else 100.0
    return Example({"p": draw(S.scalar(dtype, bound)), "x": draw(S.arrays(dtype, (n,), bound))},
                   {"upstream": draw(S.arrays(dtype, (n,), 10.0))})


def _scalar_build(size, dtype, seed=0):
    rng = _rng(seed)
    n = int(np.prod(VECTOR_SIZES[size]))
    return Example({"p": np.asarray(rng.standard_normal(), dtype=dtype),
                    "x": rng.standard_normal(n).astype(dtype)},
                   {"upstream": rng.standard_normal(n).astype(dtype)})


register(Case(
    name="scalar_quadratic", kind="model", reference=models.scalar_quadratic,
    twin=tm.ScalarQuadratic.from_shapes, inputs=_scalar_inputs, build=_scalar_build,
    tolerance=ELEMENTWISE, reduction_length=lambda ex: ex.params["x"].size, compare_loss=False,
    term_scale=scales.scalar_quadratic,
))


def _dense_arrays(draw, dtype, d_in, d_out, bound, prefix="", bias=True):
    params = {f"W{prefix}": draw(S.arrays(dtype, (d_in, d_out), bound))}
    if bias:
        params[f"b{prefix}"] = draw(S.arrays(dtype, (d_out,), bound))
    return params


def _clear_of_kinks(X, W, b, dtype, smooth=False):
    """No pre-activation of a ReLU may sit within rounding of 0 without being exactly 0.

    A pre-activation that cancels to |z| <= margin * sum|terms| may come out with
    either sign depending on summation order and precision, which flips relu's
    derivative: a difference of convention of rounding, not of the math. Exact
    zeros from all-zero terms stay (they are 0 in every order: the kink itself),
    except for ``smooth`` draws (finite differences), which keep |z| > margin.
    Terms below smallest_normal / u underflow in ``dtype`` (a float32 product
    of 2.5e-28 and 2.5e-28 is 0, in float64 6.3e-56): that sign is rounding's too.
    """
    margin = _margin(dtype, np.shape(X)[1], smooth)
    X, W = np.asarray(X, np.float64), np.asarray(W, np.float64)
    b = np.zeros(W.shape[1]) if b is None else np.asarray(b, np.float64)
    z = X @ W + b
    terms = np.abs(X) @ np.abs(W) + np.abs(b)
    if smooth:
        return bool(np.all(np.abs(z) > margin))
    underflows = terms < np.finfo(dtype).smallest_normal / unit_roundoff(dtype)
    return not np.any(((np.abs(z) <= margin * terms) | underflows) & (terms > 0))


def _margin(dtype, d_in, smooth):
    return 1e-2 if smooth else 4 * (d_in + 1) * unit_roundoff(dtype)


@st.composite
def _linear_inputs(draw, dtype, smooth=False):
    n, d_in, d_out = draw(S.dims(1, 6)), draw(S.dims(1, 5)), draw(S.dims(1, 4))
    bound = 2.0 if smooth else 100.0
    return Example(_dense_arrays(draw, dtype, d_in, d_out, bound),
                   {"X": draw(S.arrays(dtype, (n, d_in), bound)),
                    "Y": draw(S.arrays(dtype, (n, d_out), bound))},
                   draw(_reduction))


def _regression_build(two_layer):
    def build(size, dtype, seed=0):
        rng = _rng(seed)
        s = MODEL_SIZES[size]
        X = rng.standard_normal((s["N"], s["D_in"])).astype(dtype)
        Y = rng.standard_normal((s["N"], s["D_out"])).astype(dtype)
        if two_layer:
            W1, b1 = _linear_init(rng, s["D_in"], s["H"], dtype)
            W2, b2 = _linear_init(rng, s["H"], s["D_out"], dtype)
            return Example(dict(W1=W1, b1=b1, W2=W2, b2=b2), {"X": X, "Y": Y}, {"loss": "sse", "bias": True})
        W, b = _linear_init(rng, s["D_in"], s["D_out"], dtype)
        return Example({"W": W, "b": b}, {"X": X, "Y": Y}, {"reduction": "mean"})

    return build


register(Case(
    name="linear_regression", kind="model", reference=models.linear_regression,
    twin=tm.LinearRegression.from_shapes, inputs=_linear_inputs, build=_regression_build(False),
    tolerance=LINEAR_MODEL, trainable=True, term_scale=scales.linear_regression,
    reduction_length=lambda ex: ex.data["X"].shape[1] + ex.data["Y"].size,
))

# sigmoid + BCELoss loses accuracy as sigmoid(z) nears 0 or 1 (log(1 - p) from a
# rounded p): the logits are kept where that stays meaningful in the dtype.
_MAX_LOGIT = {np.dtype(np.float32): 8.0, np.dtype(np.float64): 15.0}


def _logistic_inputs(head):
    @st.composite
    def inputs(draw, dtype, smooth=False):
        n, d = draw(S.dims(1, 6)), draw(S.dims(1, 5))
        bound = 2.0 if smooth else 100.0
        params = _dense_arrays(draw, dtype, d, 1, bound)
        X = draw(S.arrays(dtype, (n, d), bound))
        limit = 4.0 if smooth else (_MAX_LOGIT[np.dtype(dtype)] if head == "sigmoid" else 100.0)
        z = np.abs(X.astype(np.float64) @ params["W"] + params["b"]).max()
        if z > limit:  # shrink the weights so every logit lies within the limit
            shrink = limit / z
            params = {k: (v * shrink).astype(dtype) for k, v in params.items()}
        Y = draw(S.hnp.arrays(dtype, (n, 1), elements=_soft_labels(dtype, smooth)))
        return Example(params, {"X": X, "Y": Y}, draw(_reduction))

    return inputs


def _logistic_build(size, dtype, seed=0):
    rng = _rng(seed)
    s = MODEL_SIZES[size]
    X = rng.standard_normal((s["N"], s["D_in"])).astype(dtype)
    W, b = _linear_init(rng, s["D_in"], 1, dtype)
    Y = rng.integers(0, 2, (s["N"], 1)).astype(dtype)
    return Example({"W": W, "b": b}, {"X": X, "Y": Y}, {"reduction": "mean"})


def _logits_within_limit(ex, dtype):
    z = ex.data["X"].astype(np.float64) @ ex.params["W"].astype(np.float64) + ex.params["b"]
    return bool(np.all(np.abs(z) <= _MAX_LOGIT[np.dtype(dtype)]))


def _sigmoid_bce_condition(ex):
    """d log(1-p) = -dp / (1-p): a relative rounding of p is amplified by 1/min(p, 1-p)."""
    z = ex.data["X"].astype(np.float64) @ ex.params["W"].astype(np.float64) + ex.params["b"]
    p = 1 / (1 + np.exp(-z))
    return float(np.max(1 / np.minimum(p, 1 - p)))


for _head, _ref, _cond, _valid in [
        ("sigmoid", models.logistic_regression_sigmoid, _sigmoid_bce_condition, _logits_within_limit),
        ("logits", models.logistic_regression_logits, None, None)]:
    register(Case(
        name=f"logistic_regression_{_head}", kind="model", reference=_ref,
        twin=tm.LogisticRegression.with_head(_head), inputs=_logistic_inputs(_head),
        build=_logistic_build, tolerance=LINEAR_MODEL, trainable=True, loss_condition=_cond, valid=_valid,
        term_scale=scales.logistic_regression,
        reduction_length=lambda ex: ex.data["X"].shape[1] + ex.data["X"].shape[0],
    ))


def _two_layer_inputs(classifier):
    @st.composite
    def inputs(draw, dtype, smooth=False):
        n, d_in, h, d_out = (draw(S.dims(1, 5)), draw(S.dims(1, 4)), draw(S.dims(1, 5)),
                             draw(S.dims(2 if classifier else 1, 4)))
        bias = draw(st.booleans())
        bound = 2.0 if smooth else 10.0
        params = {**_dense_arrays(draw, dtype, d_in, h, bound, "1", bias),
                  **_dense_arrays(draw, dtype, h, d_out, bound, "2", bias)}
        X = draw(S.arrays(dtype, (n, d_in), bound))
        assume(_clear_of_kinks(X, params["W1"], params.get("b1"), dtype, smooth))
        if classifier:
            data = {"X": X, "labels": draw(S.hnp.arrays(np.int64, (n,), elements=st.integers(0, d_out - 1)))}
            hyper = {"reduction": draw(st.sampled_from(["mean", "sum"])), "bias": bias}
        else:
            data = {"X": X, "Y": draw(S.arrays(dtype, (n, d_out), bound))}
            hyper = {"loss": draw(st.sampled_from(["sse", "mse"])), "bias": bias}
        return Example(params, data, hyper)

    return inputs


def _classifier_build(size, dtype, seed=0):
    ex = _regression_build(True)(size, dtype, seed)
    n, c = ex.data["Y"].shape
    return Example(ex.params, {"X": ex.data["X"], "labels": _rng(seed + 1).integers(0, c, n)},
                   {"reduction": "mean", "bias": True})


def _two_layer_length(ex):
    n, d_in = ex.data["X"].shape
    h, d_out = ex.params["W2"].shape
    return d_in + h + d_out + n * d_out


register(Case(
    name="two_layer_regression", kind="model", reference=models.two_layer_regression,
    twin=tm.TwoLayerNet.regressor, inputs=_two_layer_inputs(False), build=_regression_build(True),
    tolerance=DEEP_MODEL, trainable=True, reduction_length=_two_layer_length,
    term_scale=scales.two_layer_regression,
))
register(Case(
    name="two_layer_classifier", kind="model", reference=models.two_layer_classifier,
    twin=tm.TwoLayerNet.classifier, inputs=_two_layer_inputs(True), build=_classifier_build,
    tolerance=DEEP_MODEL, trainable=True, reduction_length=_two_layer_length,
    term_scale=scales.two_layer_classifier,
))
