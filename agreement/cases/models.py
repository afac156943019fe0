"""Model cases: the scalar model, linear and logistic regression, the two-layer ReLU net."""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from agreement import precision, scales
from agreement import strategies as S
from agreement.cases.common import MODEL_SIZES, VECTOR_SIZES, linear_init, reduction, seeded, soft_labels
from agreement.registry import Case, Example, register
from agreement.tolerance import DEEP_MODEL, ELEMENTWISE, LINEAR_MODEL, unit_roundoff
from reference import models
from torch_impl import models as tm


@st.composite
def _scalar_inputs(draw, dtype, smooth=False):
    n = draw(S.dims(1, 6))
    bound = 4.0 if smooth else S.within_range(dtype, 100.0, 3)  # upstream p x^2
    return Example({"p": draw(S.scalar(dtype, bound)), "x": draw(S.arrays(dtype, (n,), bound))},
                   {"upstream": draw(S.arrays(dtype, (n,), 10.0))})


def _scalar_build(size, dtype, seed=0):
    rng = seeded(seed)
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
    underflows = terms < precision.finfo(dtype).smallest_normal / unit_roundoff(dtype)
    return not np.any(((np.abs(z) <= margin * terms) | underflows) & (terms > 0))


def _margin(dtype, d_in, smooth):
    return 1e-2 if smooth else 4 * (d_in + 1) * unit_roundoff(dtype)


@st.composite
def _linear_inputs(draw, dtype, smooth=False):
    n, d_in, d_out = draw(S.dims(1, 6)), draw(S.dims(1, 5)), draw(S.dims(1, 4))
    bound = 2.0 if smooth else S.within_range(dtype, 100.0, 4)  # (X W + b - Y)^2
    return Example(_dense_arrays(draw, dtype, d_in, d_out, bound),
                   {"X": draw(S.arrays(dtype, (n, d_in), bound)),
                    "Y": draw(S.arrays(dtype, (n, d_out), bound))},
                   draw(reduction))


def _regression_build(two_layer):
    def build(size, dtype, seed=0):
        rng = seeded(seed)
        s = MODEL_SIZES[size]
        X = rng.standard_normal((s["N"], s["D_in"])).astype(dtype)
        Y = rng.standard_normal((s["N"], s["D_out"])).astype(dtype)
        if two_layer:
            W1, b1 = linear_init(rng, s["D_in"], s["H"], dtype)
            W2, b2 = linear_init(rng, s["H"], s["D_out"], dtype)
            return Example(dict(W1=W1, b1=b1, W2=W2, b2=b2), {"X": X, "Y": Y}, {"loss": "sse", "bias": True})
        W, b = linear_init(rng, s["D_in"], s["D_out"], dtype)
        return Example({"W": W, "b": b}, {"X": X, "Y": Y}, {"reduction": "mean"})

    return build


register(Case(
    name="linear_regression", kind="model", reference=models.linear_regression,
    twin=tm.LinearRegression.from_shapes, inputs=_linear_inputs, build=_regression_build(False),
    tolerance=LINEAR_MODEL, trainable=True, term_scale=scales.linear_regression,
    reduction_length=lambda ex: ex.data["X"].shape[1] + ex.data["Y"].size,
))

# sigmoid + BCELoss loses accuracy as sigmoid(z) nears 1 (log(1 - p) from a
# rounded p): the logits are kept where that stays meaningful in the dtype...
# (bfloat16 rounds sigmoid(z) to 1 from z = 6.2, float16 from 8.3: below, 1 - p keeps a few bits)
_MAX_LOGIT = {np.dtype(np.float32): 8.0, np.dtype(np.float64): 15.0, np.dtype(np.float16): 6.0,
              precision.BFLOAT16: 4.0, precision.TF32: 8.0}

# ...except for rows drawn where the sigmoid saturates and torch's BCELoss backward
# divides by max(p (1 - p), 1e-12) (reference.losses.BCE_GRAD_EPS), which changes
# the model's gradient from r (p - y), in the two ranges both dtypes resolve:
# * z in [-80, -30]: p = e^z < 1e-13, dL/dz = r (p - y) p / 1e-12. The clamp starts
#   at -27.6; up to -30 that gradient is still about r, and exp turns z's rounding
#   (u times its terms, ~30 u) into as large a relative error of p, beyond the
#   policy's rtol. -28 is pinned with exact logits (tests/test_sigmoid_saturation.py).
#   p stays a normal float32 down to -87.
# * z in [38, 100]: sigmoid(z) rounds to exactly 1 in float64 (from 37.4) as in float32,
#   so p (1 - p) = 0 and torch's gradient is exactly 0 where the math's is r (1 - y).
#   Between, 1 - p keeps only the bits of e^-z that p's rounding leaves: float32
#   rounds p to 1 from z = 17.3 where float64 does not, and float64 resolves 1 - p
#   to 2^-53 / e^-z (1e-3 at z = 30).
SATURATED_LOGITS = ((-80.0, -30.0), (38.0, 100.0))


def _saturate(draw, dtype, params, X):
    """``(params, X)`` with each row's logit kept (None drawn) or moved into a
    ``SATURATED_LOGITS`` range.

    The move goes through the first input, whose weight is redrawn to at least 1/4
    in magnitude: the logit is then formed from terms about its own size, not from
    a cancellation whose rounding exp would amplify."""
    W = params["W"].copy()
    W[0, 0] = draw(S.reals(dtype, 1.0, 0.25)) * draw(st.sampled_from([-1.0, 1.0]))
    X64, w64 = X.astype(np.float64), W[:, 0].astype(np.float64)
    z = X64 @ w64 + float(params["b"][0])
    targets = st.none() | st.one_of(*(S.reals(dtype, high, low) for low, high in SATURATED_LOGITS))
    for row, target in enumerate(draw(st.lists(targets, min_size=len(z), max_size=len(z)))):
        if target is not None:
            X64[row, 0] += (target - z[row]) / w64[0]
    return {**params, "W": W}, X64.astype(dtype)


def _logistic_inputs(head):
    @st.composite
    def inputs(draw, dtype, smooth=False):
        n, d = draw(S.dims(1, 6)), draw(S.dims(1, 5))
        saturated = head == "sigmoid" and not smooth and draw(st.booleans())
        # saturated draws start from logits of a few units, so that a moved row's
        # terms stay about the size of its logit (see _saturate)
        bound = 2.0 if smooth else 1.0 if saturated else 100.0
        params = _dense_arrays(draw, dtype, d, 1, bound)
        X = draw(S.arrays(dtype, (n, d), bound))
        limit = 4.0 if smooth else (_MAX_LOGIT[precision.resolve(dtype)] if head == "sigmoid" else 100.0)
        z = np.abs(X.astype(np.float64) @ params["W"] + params["b"]).max()
        if z > limit:  # shrink the weights so every logit lies within the limit
            shrink = limit / z
            params = {k: (v * shrink).astype(dtype) for k, v in params.items()}
        if saturated:
            params, X = _saturate(draw, dtype, params, X)
        Y = draw(S.hnp.arrays(dtype, (n, 1), elements=soft_labels(dtype)))
        return Example(params, {"X": X, "Y": Y}, draw(reduction))

    return inputs


def _logistic_build(size, dtype, seed=0):
    rng = seeded(seed)
    s = MODEL_SIZES[size]
    X = rng.standard_normal((s["N"], s["D_in"])).astype(dtype)
    W, b = linear_init(rng, s["D_in"], 1, dtype)
    Y = rng.integers(0, 2, (s["N"], 1)).astype(dtype)
    return Example({"W": W, "b": b}, {"X": X, "Y": Y}, {"reduction": "mean"})


def _logits_within_limit(ex, dtype):
    z = ex.data["X"].astype(np.float64) @ ex.params["W"].astype(np.float64) + ex.params["b"]
    return bool(np.all(np.abs(z) <= _MAX_LOGIT[precision.resolve(dtype)]))


def _sigmoid_bce_condition(ex):
    """d log(1 - p) = -dp / (1 - p): p's rounding (relative to p, so absolute near 1)
    is amplified by 1 / (1 - p). Near p = 0 it is not: log p's error is p's relative
    one, and the rounding of z that exp amplifies there is in the loss's term scale
    (agreement/scales.py). Where p rounds to exactly 1 in float64 (z >= 37.4) the
    clamped log(1 - p) = -100 is exact in either dtype."""
    z = ex.data["X"].astype(np.float64) @ ex.params["W"].astype(np.float64) + ex.params["b"]
    q = 1 - 1 / (1 + np.exp(-np.maximum(z, -700.0)))  # 1 - p as float64 forms it, exp kept finite
    return float(np.max(1 / q[q > 0], initial=1.0))


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
        # ((X W1) W2 - Y)^2, or cross-entropy's logits X W1 W2
        bound = 2.0 if smooth else S.within_range(dtype, 10.0, 3 if classifier else 6)
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
    return Example(ex.params, {"X": ex.data["X"], "labels": seeded(seed + 1).integers(0, c, n)},
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
