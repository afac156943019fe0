"""The reference returns arrays: every gradient, parameter and optimizer state it
computes is an ``np.ndarray`` of its parameter's shape and dtype, 0-d included.

NumPy turns the result of arithmetic on 0-d arrays into a NumPy scalar
(``np.float64``), which is not an ndarray; code that walks gradients or state
by type (agreement/trajectory.py's rounding injection) then skips it silently or
crashes. The checks run over every registered case and every optimizer, so a
new entry is covered without editing this file.
"""

from __future__ import annotations

import numpy as np
import pytest

from agreement.optimizers import OPTIMIZERS
from agreement.registry import Example, cases
from agreement.strategies import DTYPES
from reference import second_order

DTYPE_IDS = {"ids": lambda d: np.dtype(d).name}


def assert_array_like(value, like: np.ndarray, what: str) -> None:
    assert isinstance(value, np.ndarray), f"{what} is a {type(value).__name__}, not an ndarray"
    assert value.shape == like.shape, f"{what} has shape {value.shape}, expected {like.shape}"
    assert value.dtype == like.dtype, f"{what} has dtype {value.dtype}, expected {like.dtype}"


def _zero_dimensional(example: Example) -> Example | None:
    """The example with every float array shaped like its first parameter reduced
    to its first element as a 0-d array (elementwise cases take any shape); None
    when the first parameter is 0-d already."""
    shape = np.shape(next(iter(example.params.values())))
    if shape == ():
        return None

    def reduce(d):
        return {k: np.asarray(v).reshape(-1)[0].reshape(()).copy() if np.shape(v) == shape else v
                for k, v in d.items()}

    return Example(reduce(example.params), reduce(example.data), dict(example.hyper))


def _examples(case, dtype):
    example = case.build("tiny", dtype, 0)
    yield "tiny", example
    scalar = _zero_dimensional(example)
    if scalar is not None:
        try:
            case.reference(scalar.params, scalar.data, **scalar.hyper)
        except ValueError:  # the case needs more dimensions (a matrix, a batch)
            return
        yield "0-d", scalar


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_case_gradients_are_arrays_of_their_parameter(case, dtype):
    for label, example in _examples(case, dtype):
        loss, grads = case.reference(example.params, example.data, **example.hyper)
        assert np.asarray(loss).dtype == dtype, f"{label}: loss has dtype {np.asarray(loss).dtype}"
        assert set(grads) == set(example.params)
        for name, param in example.params.items():
            assert_array_like(grads[name], param, f"{case.name} ({label}): grads[{name!r}]")


def _params(dtype):
    rng = np.random.default_rng(0)
    return {"scalar": np.asarray(rng.standard_normal(), dtype), "vector": rng.standard_normal(3).astype(dtype),
            "empty": np.zeros((0, 2), dtype), "matrix": rng.standard_normal((2, 3)).astype(dtype)}


# each optimizer with every option that creates state switched on
STATEFUL = {
    "sgd": dict(momentum=0.9, dampening=0.5, weight_decay=0.1, nesterov=False),
    "adam": dict(amsgrad=True, weight_decay=0.1),
    "adamw": dict(amsgrad=True),
    "rmsprop": dict(momentum=0.9, centered=True, weight_decay=0.1),
}


def _arrays_in(state):
    if isinstance(state, dict):
        for value in state.values():
            yield from _arrays_in(value)
    elif state is not None and not isinstance(state, int):
        yield state


@pytest.mark.parametrize("stateful", [False, True], ids=["defaults", "stateful"])
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=lambda o: o.name)
def test_optimizer_params_and_state_are_arrays_of_their_parameter(opt, dtype, stateful):
    assert set(STATEFUL) == set(OPTIMIZERS), "give every optimizer its stateful options here"
    hyper = dict(opt.defaults, **(STATEFUL[opt.name] if stateful else {}))
    params = _params(dtype)
    state = opt.init(params)
    for step in range(3):
        grads = {k: (v + 1).astype(dtype) for k, v in _params(dtype).items()}
        params, state = opt.update(params, grads, state, **hyper)
        for name, like in _params(dtype).items():
            assert_array_like(params[name], like, f"{opt.name} step {step}: params[{name!r}]")
            arrays = list(_arrays_in(state[name]))
            assert arrays or (opt.name == "sgd" and not stateful)
            for value in arrays:
                assert_array_like(value, like, f"{opt.name} step {step}: state[{name!r}]")


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_second_order_gradients_are_arrays_of_their_parameter(dtype):
    x, w = np.asarray(1.5, dtype), np.asarray(-0.5, dtype)
    for name, g in second_order.two_outputs_weighted_grads(x, w, np.asarray(2.0, dtype),
                                                           np.asarray(3.0, dtype)).items():
        assert_array_like(g, x, f"two_outputs_weighted_grads: {name}")
    total = second_order.accumulated_gradients([{"p": x, "v": np.arange(3, dtype=dtype)}] * 3)
    assert_array_like(total["p"], x, "accumulated_gradients: p")
    assert_array_like(total["v"], np.arange(3, dtype=dtype), "accumulated_gradients: v")
