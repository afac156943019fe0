"""Every public reference function rejects bad input with an error that names
the argument and says what was expected, instead of broadcasting or returning NaN."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agreement.registry import cases
from reference import activations as act
from reference import losses, optim

CASES = cases()
# The loss functions name their first argument by what it is.
ARG_NAMES = {"bce": {"pred": "prob"}, "bce_with_logits": {"pred": "logits"}, "cross_entropy": {"pred": "logits"}}


def _float_keys(example):
    return [("params", k) for k, v in example.params.items() if np.asarray(v).dtype.kind == "f"] + \
           [("data", k) for k, v in example.data.items() if np.asarray(v).dtype.kind == "f"]


def _call(case, example):
    return case.reference(example.params, example.data, **example.hyper)


def _mutated(example, where, key, value):
    ex = example.astype(np.float64)
    getattr(ex, where)[key] = value
    return ex


def _name(case, key):
    return ARG_NAMES.get(case.name, {}).get(key, key)


ARRAY_CASES = [(c, where, key) for c in CASES for where, key in _float_keys(c.build("tiny", np.float64, 0))]
IDS = [f"{c.name}-{key}" for c, _, key in ARRAY_CASES]


@pytest.mark.parametrize(("case", "where", "key"), ARRAY_CASES, ids=IDS)
def test_integer_dtype_is_rejected(case, where, key):
    ex = case.build("tiny", np.float64, 0)
    bad = _mutated(ex, where, key, np.round(getattr(ex, where)[key]).astype(np.int64))
    with pytest.raises(TypeError, match=rf"{_name(case, key)}\b.*floating dtype"):
        _call(case, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("case", "where", "key"), ARRAY_CASES, ids=IDS)
def test_non_finite_values_are_rejected(case, where, key, value):
    ex = case.build("tiny", np.float64, 0)
    arr = np.array(getattr(ex, where)[key], dtype=np.float64, copy=True)
    arr.flat[0] = value
    with pytest.raises(ValueError, match=rf"{_name(case, key)}\b.*finite"):
        _call(case, _mutated(ex, where, key, arr))


@pytest.mark.parametrize(("case", "where", "key"), ARRAY_CASES, ids=IDS)
def test_wrong_ndim_is_rejected(case, where, key):
    ex = case.build("tiny", np.float64, 0)
    with pytest.raises(ValueError, match=r"must (be \d-dimensional|have shape)"):
        _call(case, _mutated(ex, where, key, getattr(ex, where)[key][..., None]))


# Extra logit columns are more classes, which is valid input.
SHAPED = [a for a in ARRAY_CASES if np.ndim(getattr(a[0].build("tiny", np.float64, 0), a[1])[a[2]]) > 0
          and (a[0].name, a[2]) != ("cross_entropy", "pred")]


@pytest.mark.parametrize(("case", "where", "key"), SHAPED, ids=[f"{c.name}-{k}" for c, _, k in SHAPED])
def test_wrong_shape_is_rejected(case, where, key):
    """One more column (or element): the shapes no longer fit together. The error
    names whichever argument is checked against the others first."""
    ex = case.build("tiny", np.float64, 0)
    arr = getattr(ex, where)[key]
    wider = np.concatenate([arr, arr[..., :1]], axis=-1)
    names = {_name(case, k) for k in list(ex.params) + list(ex.data)}
    with pytest.raises(ValueError, match=r"must (have shape|be)") as info:
        _call(case, _mutated(ex, where, key, wider))
    assert any(re.search(rf"\b{re.escape(n)}\b", str(info.value)) for n in names), str(info.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_empty_batch_is_rejected(case):
    ex = case.build("tiny", np.float64, 0)
    batch_led = {"activation": ("params", "data"), "loss": ("params", "data"), "model": ("data",)}[case.kind]
    if case.name == "scalar_quadratic":
        batch_led = ("data",)
        ex.params["x"] = ex.params["x"][:0]
    for where in batch_led:
        for k, v in getattr(ex, where).items():
            getattr(ex, where)[k] = v[:0]
    with pytest.raises(ValueError, match="empty"):
        _call(case, ex)


MIXABLE = [a for a in ARRAY_CASES if len(_float_keys(a[0].build("tiny", np.float64, 0))) > 1]


@pytest.mark.parametrize(("case", "where", "key"), MIXABLE, ids=[f"{c.name}-{k}" for c, _, k in MIXABLE])
def test_mixed_float_dtypes_are_rejected(case, where, key):
    ex = case.build("tiny", np.float64, 0)
    bad = _mutated(ex, where, key, getattr(ex, where)[key].astype(np.float32))
    with pytest.raises(TypeError, match="share one floating dtype"):
        _call(case, bad)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "model"], ids=lambda c: c.name)
def test_unexpected_parameter_is_rejected(case):
    ex = case.build("tiny", np.float64, 0)
    ex.params["W3"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected entries \['W3'\]"):
        _call(case, ex)


@pytest.mark.parametrize("case", [c for c in CASES if "labels" in c.build("tiny", np.float64, 0).data],
                         ids=lambda c: c.name)
@pytest.mark.parametrize(("labels", "error", "message"), [
    (lambda y, c: np.full_like(y, c), ValueError, r"labels must lie in \[0, \d+\)"),
    (lambda y, c: np.full_like(y, -1), ValueError, r"labels must lie in \[0, \d+\)"),
    (lambda y, c: y.astype(np.float64), TypeError, "labels must have an integer dtype"),
    (lambda y, c: y[:-1], ValueError, r"labels must have shape"),
], ids=["too-large", "negative", "float", "short"])
def test_bad_labels_are_rejected(case, labels, error, message):
    ex = case.build("tiny", np.float64, 0)
    n_classes = (ex.params["pred"] if "pred" in ex.params else ex.params["W2"]).shape[1]
    ex.data["labels"] = labels(ex.data["labels"], n_classes)
    with pytest.raises(error, match=message):
        _call(case, ex)


@pytest.mark.parametrize(("case_name", "hyper", "message"), [
    ("mse", {"reduction": "avg"}, "reduction must be one of"),
    ("mse", {"scale": 0.0}, "scale must be > 0"),
    ("bce", {"reduction": "none"}, "reduction must be one of"),
    ("cross_entropy", {"reduction": None}, "reduction must be one of"),
    ("linear_regression", {"reduction": "batchmean"}, "reduction must be one of"),
    ("two_layer_regression", {"loss": "l1"}, "loss must be one of"),
    ("two_layer_classifier", {"reduction": "max"}, "reduction must be one of"),
    ("softplus", {"beta": 0.0}, "beta must be non-zero"),
    ("two_layer_regression", {"bias": "no"}, "bias must be True or False"),
    ("two_layer_classifier", {"bias": 1}, "bias must be True or False"),
    ("softplus", {"threshold": float("nan")}, "threshold must be finite"),
    ("softplus", {"beta": "1"}, "beta must be a real number"),
])
def test_invalid_hyperparameters_are_rejected(case_name, hyper, message):
    case = next(c for c in CASES if c.name == case_name)
    ex = case.build("tiny", np.float64, 0)
    with pytest.raises((ValueError, TypeError), match=message):
        case.reference(ex.params, ex.data, **{**ex.hyper, **hyper})


def test_probabilities_outside_unit_interval_are_rejected():
    with pytest.raises(ValueError, match=r"prob must lie in \[0, 1\]"):
        losses.bce_loss(np.array([1.5, 0.5]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        losses.bce_loss(np.array([0.5, 0.5]), np.array([2.0, 0.0]))


def test_two_layer_without_bias_rejects_bias_parameters():
    case = next(c for c in CASES if c.name == "two_layer_regression")
    ex = case.build("tiny", np.float64, 0)
    with pytest.raises(ValueError, match=r"unexpected entries \['b1', 'b2'\]"):
        case.reference(ex.params, ex.data, loss="sse", bias=False)


def test_cross_entropy_needs_a_class_column():
    with pytest.raises(ValueError, match=r"logits must not be empty, got shape \(2, 0\)"):
        losses.cross_entropy_loss(np.zeros((2, 0)), np.array([0, 0]))


@pytest.mark.parametrize("fn", [act.relu, act.sigmoid, act.tanh, act.softplus])
def test_activation_forward_rejects_integers_and_nan(fn):
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        fn(np.arange(3))
    with pytest.raises(ValueError, match="x must contain only finite values"):
        fn(np.array([0.0, np.nan]))


SGD_PARAMS = {"w": np.ones(3)}
SGD_GRADS = {"w": np.full(3, 0.5)}


@pytest.mark.parametrize(("hyper", "message"), [
    ({"lr": -0.1}, "lr must be >= 0"),
    ({"lr": float("inf")}, "lr must be finite"),
    ({"momentum": -0.5}, "momentum must be >= 0"),
    ({"weight_decay": -1e-4}, "weight_decay must be >= 0"),
    ({"nesterov": True}, "nesterov requires momentum > 0 and dampening == 0"),
    ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov requires momentum > 0 and dampening == 0"),
    ({"nesterov": "no", "momentum": 0.9}, "nesterov must be True or False"),
    ({"maximize": 1}, "maximize must be True or False"),
])
def test_sgd_rejects_invalid_hyperparameters(hyper, message):
    with pytest.raises((ValueError, TypeError), match=message):
        optim.sgd_update(SGD_PARAMS, SGD_GRADS, optim.sgd_init(SGD_PARAMS), **hyper)


@pytest.mark.parametrize(("grads", "error", "message"), [
    ({"w": np.ones(4)}, ValueError, r"grads\['w'\] must have shape \(3,\)"),
    ({"w": np.ones(3, dtype=np.int64)}, TypeError, r"grads\['w'\] must have a floating dtype"),
    ({"w": np.array([1.0, np.nan, 0.0])}, ValueError, r"grads\['w'\] must contain only finite"),
    ({"w": np.ones(3, dtype=np.float32)}, TypeError, "share one floating dtype"),
])
def test_sgd_rejects_bad_gradients(grads, error, message):
    with pytest.raises(error, match=message):
        optim.sgd_update(SGD_PARAMS, grads, optim.sgd_init(SGD_PARAMS), lr=0.1)


def test_sgd_rejects_gradients_for_unknown_parameters():
    """A misspelled key would otherwise leave every parameter silently untouched."""
    with pytest.raises(ValueError, match=r"grads has entries \['W'\] that are not in params \['w'\]"):
        optim.sgd_update(SGD_PARAMS, {"W": np.ones(3)}, optim.sgd_init(SGD_PARAMS), lr=0.1)


@pytest.mark.parametrize(("buffer", "error", "message"), [
    (np.ones(1), ValueError, r"state\['w'\] must have shape \(3,\)"),
    (np.ones(3, dtype=np.float32), TypeError, "share one floating dtype"),
])
def test_sgd_rejects_a_momentum_buffer_that_does_not_fit(buffer, error, message):
    with pytest.raises(error, match=message):
        optim.sgd_update(SGD_PARAMS, SGD_GRADS, {"w": buffer}, lr=0.1, momentum=0.9)


def test_missing_parameter_is_named():
    case = next(c for c in CASES if c.name == "linear_regression")
    ex = case.build("tiny", np.float64, 0)
    del ex.params["b"]
    with pytest.raises(ValueError, match="b is missing"):
        _call(case, ex)


def test_only_floating_dtypes_are_accepted():
    with pytest.raises(TypeError, match=r"x must have a floating dtype \(float16, float32, float64 or long double\)"):
        act.relu(np.ones(3, dtype=np.int32))
    assert act.relu(np.ones(3, dtype=np.longdouble)).dtype == np.longdouble
    assert act.relu(np.ones(3, dtype=np.float16)).dtype == np.float16


def test_loss_that_overflows_the_dtype_is_refused():
    big = np.array([3e38], dtype=np.float32)
    with pytest.raises(ValueError, match="the loss overflows float32"):
        losses.mse_loss(big, -big)
