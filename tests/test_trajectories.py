"""K optimizer steps from identical parameters: NumPy reference vs torch.optim,
compared at every step; a failure names the first step that diverged."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agreement.compare import assert_all
from agreement.optimizers import OPTIMIZERS
from agreement.registry import cases
from agreement.strategies import DTYPES
from agreement.trajectory import _last_spread, comparable, compare_trajectories, reference_trajectory, rounding_spread

# Longer trajectories in nightly runs.
MAX_STEPS = 30 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 8


@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=lambda o: o.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", cases(trainable=True), ids=lambda c: c.name)
@given(data=st.data())
def test_trajectories_agree(case, dtype, opt, data):
    # smooth draws: bounded values, so that training stays finite, and pre-activations
    # clear of ReLU's kink, which a trajectory could otherwise cross by rounding
    example = data.draw(case.inputs(dtype, smooth=True), label="example")
    hyper = data.draw(opt.hyper(dtype), label="optimizer hyperparameters")
    steps = data.draw(st.integers(1, MAX_STEPS), label="steps")
    # A drawn learning rate may make training diverge; once values approach the
    # dtype's overflow (squares of sqrt(max) overflow) the comparison is of infinities.
    limit = np.sqrt(np.finfo(dtype).max)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            losses, path = reference_trajectory(case, opt, example.astype(np.float64), hyper, steps)
    except ValueError:  # the reference refuses the non-finite gradients of a diverged run
        assume(False)
    assume(np.all(np.abs(losses) < limit) and all(np.all(np.abs(v) < limit) for p in path for v in p.values()))
    # where the dtype resolves the case and rounding, not the math, would decide the path
    assume(comparable(case, opt, example, hyper, steps, dtype))
    assert_all(compare_trajectories(case, opt, example, hyper, steps, dtype))


def test_rounding_spread_is_reused_only_for_the_same_request():
    """comparable() and the judge share one rounding_spread computation; any
    changed input (hyperparameter, dtype, data) computes it anew."""
    case = next(c for c in cases(trainable=True) if c.name == "linear_regression")
    opt = OPTIMIZERS["rmsprop"]
    example = case.build("tiny", np.float64, 0)
    first = rounding_spread(case, opt, example, opt.defaults, 3, np.float32)
    assert rounding_spread(case, opt, example.astype(np.float64), dict(opt.defaults), 3, np.float32) is first
    moved = example.with_params({k: v + 1.0 for k, v in example.params.items()})
    for changed in [(example, dict(opt.defaults, lr=0.02), np.float32), (example, opt.defaults, np.float64),
                    (moved, opt.defaults, np.float32)]:
        again = rounding_spread(case, opt, changed[0], changed[1], 3, changed[2])
        assert again is not first
        _last_spread[:] = [None, None]
        fresh = rounding_spread(case, opt, changed[0], changed[1], 3, changed[2])
        np.testing.assert_array_equal(again[0], fresh[0])


def _as_numpy_scalars(reference):
    """``reference`` with every 0-d gradient returned as a NumPy scalar, as NumPy
    arithmetic on 0-d arrays produces it (np.sum(...) on a 0-d parameter's terms)."""

    def scalars(params, data, **hyper):
        loss, grads = reference(params, data, **hyper)
        return loss, {k: g[()] if np.ndim(g) == 0 else g for k, g in grads.items()}

    return scalars


@pytest.mark.parametrize("opt", [OPTIMIZERS["sgd"], OPTIMIZERS["adam"]], ids=lambda o: o.name)
def test_rounding_spread_injects_rounding_into_numpy_scalars(opt):
    """A 0-d parameter's gradient and state get their rounding injected whether
    they come as 0-d arrays or as NumPy scalars (a user's reference, or arithmetic
    on 0-d arrays, produces the latter): the spread is the same either way.
    The report crashed on scalar_quadratic when the reference returned a scalar."""
    case = next(c for c in cases() if c.name == "scalar_quadratic")
    example = case.build("tiny", np.float64, 0)
    scalar_case = dataclasses.replace(case, reference=_as_numpy_scalars(case.reference))
    assert type(scalar_case.reference(example.params, example.data)[1]["p"]) is np.float64
    hyper = dict(opt.defaults, lr=1e-3)
    _, arrays = rounding_spread(case, opt, example, hyper, 3, np.float32)
    _, scalars = rounding_spread(scalar_case, opt, example, hyper, 3, np.float32)
    assert arrays[-1]["p"] > 0
    for a, s in zip(arrays, scalars, strict=True):
        np.testing.assert_array_equal(s["p"], a["p"])
        np.testing.assert_array_equal(s["x"], a["x"])
