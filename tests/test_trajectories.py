"""K optimizer steps from identical parameters: NumPy reference vs torch.optim,
compared at every step; a failure names the first step that diverged."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agreement import trajectory
from agreement.compare import assert_all
from agreement.optimizers import OPTIMIZERS
from agreement.registry import Case, Example, cases
from agreement.run import devices
from agreement.strategies import DTYPES
from agreement.tolerance import ELEMENTWISE
from agreement.trajectory import (
    Reference,
    comparable,
    comparable_steps,
    compare_trajectories,
    judge_steps,
    rounding_spread,
)
from torch_impl.models import FunctionModule

# Longer trajectories in nightly runs.
MAX_STEPS = 30 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 8


@pytest.mark.parametrize("device", devices())  # torch.optim on CUDA too where present (TF32 is off by default)
@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=lambda o: o.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", cases(trainable=True), ids=lambda c: c.name)
@given(data=st.data())
def test_trajectories_agree(case, dtype, opt, device, data):
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
            against = Reference(case, opt, example, hyper, steps, dtype)  # one run and spread for both below
    except ValueError:  # the reference refuses the non-finite gradients of a diverged run
        assume(False)
    assume(np.all(np.abs(against.losses) < limit)
           and all(np.all(np.abs(v) < limit) for p in against.path for v in p.values()))
    # where the dtype resolves the case and rounding, not the math, would decide the path
    assume(comparable(case, opt, example, hyper, steps, dtype, against=against))
    assert_all(compare_trajectories(case, opt, example, hyper, steps, dtype, device, against=against))


def test_one_reference_serves_the_horizon_and_every_judge_and_refuses_other_requests(monkeypatch):
    """comparable() and the judges of several sides share one rounding_spread
    computation, passed as a Reference; a Reference of another
    request (hyperparameter, dtype, data, steps, skipped gradients) is refused, not
    silently used for a tolerance that is not this trajectory's."""
    case = next(c for c in cases(trainable=True) if c.name == "linear_regression")
    opt = OPTIMIZERS["rmsprop"]
    example = case.build("tiny", np.float64, 0)
    spreads = []
    real = trajectory.rounding_spread
    monkeypatch.setattr(trajectory, "rounding_spread", lambda *args: spreads.append(args) or real(*args))
    against = Reference(case, opt, example, opt.defaults, 3, np.float32)
    assert comparable(case, opt, example, dict(opt.defaults), 3, np.float32, against=against)
    losses, path = against.losses, against.path
    for side in ("torch-cpu", "numpy"):
        assert all(r.ok for step in judge_steps(case, opt, example, opt.defaults, np.float32, losses, path, side,
                                                against=against) for r in step)
    assert len(spreads) == 1
    moved = example.with_params({k: v + 1.0 for k, v in example.params.items()})
    for changed, hyper, steps, dtype, skipped in [(example, dict(opt.defaults, lr=0.02), 3, np.float32, ()),
                                                  (example, opt.defaults, 3, np.float64, ()),
                                                  (moved, opt.defaults, 3, np.float32, ()),
                                                  (example, opt.defaults, 2, np.float32, ()),
                                                  (example, opt.defaults, 3, np.float32, [{"W"}, set(), set()])]:
        with pytest.raises(ValueError, match="not of the trajectory asked about"):
            judge_steps(case, opt, changed, hyper, dtype, losses[:steps], path[:steps], without_grad=skipped,
                        against=against)


def test_comparable_steps_stop_where_the_parameters_leave_what_the_dtype_resolves():
    """Case.valid counts per step: a trajectory is comparable up to the last step whose
    parameters it holds at, and not at all where it fails at the start."""
    case = next(c for c in cases(trainable=True) if c.name == "linear_regression")
    opt = OPTIMIZERS["sgd"]
    example = case.build("tiny", np.float64, 0)
    path = Reference(case, opt, example, opt.defaults, 6, np.float64).path
    for leaves, horizon in [(path[2], 2), (path[0], 0), (example.params, 0)]:
        unresolved = dataclasses.replace(case, valid=lambda ex, dtype, at=leaves: not np.array_equal(ex.params["W"],
                                                                                                     at["W"]))
        steps, reason = comparable_steps(unresolved, opt, example, opt.defaults, 6, np.float64)
        assert (steps, "Case.valid" in reason) == (horizon, True)
        assert [comparable(unresolved, opt, example, opt.defaults, t, np.float64) for t in range(1, 7)] == [
            t <= horizon for t in range(1, 7)]
    assert comparable_steps(case, opt, example, opt.defaults, 6, np.float64) == (6, "")


def _offset_square(params, data):
    """sum(w²), formed as (offset + sum(w²)) - offset: the loss cancels, its gradient does not."""
    return (data["offset"] + np.sum(params["w"] ** 2)) - data["offset"], {"w": 2 * params["w"]}


def _offset_square_torch(params, data):
    return (data["offset"] + (params["w"] ** 2).sum()) - data["offset"]


def test_a_case_that_does_not_compare_its_loss_is_judged_on_its_parameters_only():
    """Case.compare_loss False: the loss is not judged at any step. This user case's
    float32 loss keeps only float32's resolution of the offset (1e4 * 6e-8), about 1e-3
    of the loss itself: without a term scale the analytic floor fails it at step 0, and
    judged, it passes on the rounding measured at each step's parameters, as the gradient
    check measures it (``trajectory._loss_tolerance``); a loss off by more is caught."""
    case = Case(name="offset_square", kind="user", reference=_offset_square,
                twin=lambda shapes, **h: FunctionModule(_offset_square_torch, shapes, **h), inputs=None, build=None,
                tolerance=ELEMENTWISE, reduction_length=lambda ex: ex.params["w"].size, compare_loss=False)
    example = Example({"w": np.array([0.3, -0.7, 0.5])}, {"offset": np.array(1e4)})
    opt = OPTIMIZERS["sgd"]
    judged = compare_trajectories(case, opt, example, opt.defaults, 3, np.float32)
    assert [r.what for r in judged] == ["step 2 param w"]
    assert_all(judged)
    judging_loss = dataclasses.replace(case, compare_loss=True)
    compared = compare_trajectories(judging_loss, opt, example, opt.defaults, 3, np.float32)
    assert [(r.what, r.ok) for r in compared] == [("step 2 loss", True), ("step 2 param w", True)]
    ex32 = example.astype(np.float32)
    losses, params, _ = trajectory.torch_trajectory(judging_loss, opt, ex32, opt.defaults, 3, np.float32)
    off = [loss + 0.1 for loss in losses]  # about 12% of the loss, 100 times float32's resolution of the offset
    judged_off = trajectory.judge_steps(judging_loss, opt, ex32, opt.defaults, np.float32, off, params, "torch-cpu")
    assert [(r.what, r.ok) for r in judged_off[0]] == [("step 0 loss", False), ("step 0 param w", True)]


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
