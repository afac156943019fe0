"""The tutorials' whole training runs (agreement/scenarios/): NumPy by hand against
torch as the tutorial writes it, every step judged against the float64 reference.

Default suite: every scenario short, both dtypes on CPU; a deliberately wrong NumPy
step per scenario, which must fail at the step where it first changes anything;
the batch order; the judge's horizon and its late-step detection. ``-m slow``:
every scenario at full length. ``cuda``: the same on a GPU (skipped without one).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from agreement.run import tf32
from agreement.scenarios import __main__ as cli
from agreement.scenarios import data, numpy_side, torch_side
from agreement.scenarios.catalog import SCENARIOS, run_part
from agreement.scenarios.judge import Side, judge_run, numpy_run
from agreement.tolerance import ELEMENTWISE
from reference import optim

BOTH = [np.float32, np.float64]
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _parts(short: bool):
    return [pytest.param(name, short, id=name) for name in SCENARIOS]


def _assert_agree(results):
    for result in results:
        j = result.judgement
        assert j.ok, j.report()
        # judged to its horizon, every side, every step up to there
        for side in j.sides:
            assert side.judged == j.horizon[side.dtype], (result.part.name, side.label, side.dtype)
            assert len(side.losses) == j.steps


@pytest.mark.parametrize(("name", "short"), _parts(True))
def test_scenario_agrees(name, short):
    results = [run_part(part, BOTH, ["cpu"]) for part in SCENARIOS[name].build(short)]
    _assert_agree(results)
    for result in results:  # the short versions are comparable to the end
        assert all(h == result.judgement.steps for h in result.judgement.horizon.values())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "short"), _parts(False))
def test_scenario_agrees_at_full_length(name, short):
    _assert_agree([run_part(part, BOTH, ["cpu"]) for part in SCENARIOS[name].build(short)])


@pytest.mark.parametrize(("name", "short"), _parts(True))
@pytest.mark.parametrize("mark", [pytest.param(0, marks=CUDA)])
def test_scenario_agrees_on_cuda(name, short, mark):
    with tf32(False):  # float32 products in float32, as the tolerance assumes (torch's default for matmul)
        _assert_agree([run_part(part, BOTH, ["cuda"]) for part in SCENARIOS[name].build(short)])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "short"), _parts(False))
@pytest.mark.parametrize("mark", [pytest.param(0, marks=CUDA)])
def test_scenario_agrees_on_cuda_at_full_length(name, short, mark):
    with tf32(False):
        _assert_agree([run_part(part, BOTH, ["cuda"]) for part in SCENARIOS[name].build(short)])


# ---- deliberately wrong NumPy steps -------------------------------------------------------------

def _scaled_grads(factor, names=None):
    """Gradients (all, or ``names``) times ``factor``: a dropped or doubled constant such as 1/N or 2."""
    def wrap(loss_and_grads):
        def wrong(params, batch):
            loss, grads = loss_and_grads(params, batch)
            return loss, {k: g * g.dtype.type(factor) if names is None or k in names else g for k, g in grads.items()}
        return wrong
    return wrap


def _without_relu_mask(params, batch):
    """The two-layer backward with relu' taken as 1 everywhere (the mask forgotten)."""
    X, Y = batch["X"], batch["Y"]
    hidden = np.maximum(X @ params["W1"], 0)
    d_out = 2 * (hidden @ params["W2"] - Y)
    return np.sum((hidden @ params["W2"] - Y) ** 2), {"W2": hidden.T @ d_out, "W1": X.T @ (d_out @ params["W2"].T)}


def _sgd_without_momentum(lr):
    return lambda params, grads, state: optim.sgd_update(params, grads, state, lr=lr)


def _adam_without_bias_correction(params, grads, state, lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-8):
    new_params, new_state = {}, {}
    for k, p in params.items():
        g = grads[k]
        old = state.get(k) or {"m": np.zeros_like(p), "v": np.zeros_like(p)}
        m, v = beta1 * old["m"] + (1 - beta1) * g, beta2 * old["v"] + (1 - beta2) * g * g
        new_params[k], new_state[k] = p - lr * m / (np.sqrt(v) + eps), {"m": m, "v": v}
    return new_params, new_state


def _fifteen_one_over_n(params, data_):
    """db with 1/n where the derivative of the mean square has 2/n."""
    loss, grads = numpy_side.fifteen_loss_and_grads(params, data_)
    return loss, {**grads, "b": grads["b"] / 2}


# (scenario, part, what is wrong, replacement of the program's fields, step where it first changes anything)
MUTANTS = [
    ("1-quadratic", "1", "dL/dp = 2 x^2 (a factor 2 too many)", dict(wrap=_scaled_grads(2.0)), 0),
    ("2-linear-regression", "2", "momentum dropped", dict(update=_sgd_without_momentum(0.03)), 1),
    ("3-blobs", "3", "cross-entropy gradient missing 1/N", dict(wrap=_scaled_grads(200.0)), 0),
    ("4-two-layer", "4 by hand", "relu' mask forgotten in the backward", dict(loss_and_grads=_without_relu_mask), 0),
    ("4-two-layer", "4 nn", "b2's gradient missing the 2 of d(r^2)/dr", dict(wrap=_scaled_grads(0.5, {"b2"})),
     0),
    ("4-two-layer", "4 optim", "Adam without bias correction",
     dict(init=lambda params: {}, update=_adam_without_bias_correction), 0),
    ("5-parabola", "5", "MSE gradient missing 1/N", dict(wrap=_scaled_grads(100.0)), 0),
    ("6-fifteen-points", "6", "db by 1/n instead of 2/n", dict(loss_and_grads=_fifteen_one_over_n), 0),
    ("7-mnist-shaped", "7", "b1's gradient missing 1/N", dict(wrap=_scaled_grads(100.0, {"b1"})), 0),
    ("8-logistic", "8", "momentum dropped", dict(update=_sgd_without_momentum(0.01)), 1),
]


@pytest.mark.parametrize(("name", "part_name", "wrong", "fields", "first"), MUTANTS,
                         ids=[f"{m[1]}: {m[2]}" for m in MUTANTS])
@pytest.mark.parametrize("dtype", BOTH, ids=["float32", "float64"])
def test_wrong_numpy_step_fails_at_its_first_step(name, part_name, wrong, fields, first, dtype):
    part = next(p for p in SCENARIOS[name].build(True) if p.name == part_name)
    program = part.program
    if "wrap" in fields:  # a change to the program's own gradients
        fields = {"loss_and_grads": fields["wrap"](program.loss_and_grads)}
    wrong_program = dataclasses.replace(program, **fields)
    judgement = run_part(part, [dtype], ["cpu"], program=wrong_program, stop_at_failure=True).judgement
    torch_sides = [s for s in judgement.sides if s.label != "numpy"]
    assert torch_sides and all(not s.ok for s in torch_sides), f"{wrong} passed"
    for side in torch_sides:
        assert side.first_failing_step == first, side.failure.report()
    assert f"first diverges at step {first} of" in judgement.report()


def _validation_on(split):
    return lambda program: dict(evaluations={"validation": split})


def _validation_without_half(program):
    return dict(evaluate=lambda params, data_: 2 * numpy_side.line_validation_loss(params, data_))


@pytest.mark.parametrize("wrong", [_validation_on(data.line()[1]), _validation_without_half],
                         ids=["on the training split", "without the 0.5 factor"])
@pytest.mark.parametrize("dtype", BOTH, ids=["float32", "float64"])
def test_wrong_validation_loss_fails_at_the_first_epochs_end(wrong, dtype):
    """Scenario 2's validation loss is judged after every epoch as the training loss
    is: a NumPy side computing it wrongly fails at the first epoch's end, on that
    loss alone (the training steps agree)."""
    part = SCENARIOS["2-linear-regression"].build(True)[0]
    first = part.epoch_steps - 1  # the last step of the first epoch
    judgement = run_part(part, [dtype], ["cpu"], program=dataclasses.replace(part.program, **wrong(part.program)),
                         stop_at_failure=True).judgement
    (side,) = [s for s in judgement.sides if s.label != "numpy"]
    assert not side.ok, "a wrong validation loss passed"
    assert side.failure.what == f"step {first} validation loss", side.failure.report()


def test_validation_loss_is_compared_after_every_epoch_and_the_last_step():
    part = SCENARIOS["2-linear-regression"].build(True)[0]
    judgement = run_part(part, BOTH, ["cpu"]).judgement
    assert judgement.ok, judgement.report()
    steps = [t for t, _ in judgement.reference_evaluations["validation"]]
    assert steps == [part.epoch_steps - 1, part.program.steps - 1]
    for side in judgement.sides:
        assert [t for t, _ in side.evaluations["validation"]] == steps, side.label
    # the bound is the training loss's kind: positive, of the size of that step's training-loss bound
    # (float32: about 2 % of the loss, the floor on terms of about 100^2 that cancel to a residual of 2)
    for dtype, bounds in judgement.evaluation_bounds.items():
        for (t, bound), (_, value) in zip(bounds["validation"], judgement.reference_evaluations["validation"],
                                          strict=True):
            assert 0 < bound < 0.05 * value and bound < 10 * judgement.loss_bounds[dtype][t], (dtype, t, bound)


def test_the_adam_mutant_differs_from_adam_by_the_bias_correction_alone():
    """The mutant test above is meaningful only if the unchanged program passes the
    same judge: test_scenario_agrees runs it; this checks the manual Adam written for
    the mutant equals reference.optim's Adam once the bias correction is put back,
    so the mutant differs by that correction alone."""
    rng = np.random.default_rng(0)
    p, g = {"w": rng.standard_normal(3)}, {"w": rng.standard_normal(3)}
    ours, _ = _adam_without_bias_correction(p, g, {}, lr=1e-4 * np.sqrt(1 - 0.999) / (1 - 0.9), eps=0.0)
    theirs, _ = optim.adam_update(p, g, optim.adam_init(p), lr=1e-4, eps=0.0)
    np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-12)


# ---- mini-batches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_order_is_the_dataloaders_over_epochs_with_the_last_partial_batch(drop_last):
    n, batch_size, seed = 23, 5, 11
    X = torch.arange(n, dtype=torch.float64)[:, None] * 10
    steps = 3 * (n // batch_size + (0 if drop_last else 1))  # three epochs
    order = torch_side.batch_order(n, batch_size, steps, seed, drop_last)
    seen = [xb[:, 0].numpy() / 10 for xb, _ in torch_side._epochs(
        torch_side.loader([X, torch.zeros(n)], batch_size, seed, drop_last), steps)]
    assert len(seen) == len(order) == steps
    for a, b in zip(order, seen, strict=True):
        np.testing.assert_array_equal(a, b)
    sizes = [len(a) for a in order[:steps // 3]]
    assert sizes == ([5, 5, 5, 5] if drop_last else [5, 5, 5, 5, 3])
    epochs = np.array_split(np.concatenate(order), 3)
    assert not drop_last or all(len(e) == 20 for e in epochs)
    if not drop_last:  # each epoch a permutation, epochs shuffled differently
        assert all(sorted(e) == list(range(n)) for e in epochs)
        assert not np.array_equal(epochs[0], epochs[1])


def test_numpy_side_sees_the_rows_torch_trains_on():
    """Scenario 2 (short: batches of 64, a partial batch of 40 each epoch): the NumPy
    program's batch t is the torch loader's batch t, row for row."""
    part = SCENARIOS["2-linear-regression"].build(True)[0]
    params, train, _ = data.line()
    t = torch_side._tensors(train, torch.float64, "cpu")
    batches = list(torch_side._epochs(torch_side.loader([t["X"], t["Y"]], 64, 0), part.program.steps))
    for step, (xb, yb) in enumerate(batches):
        mine = part.program.batch(step)
        np.testing.assert_array_equal(mine["X"], xb.numpy())
        np.testing.assert_array_equal(mine["Y"], yb.numpy())
    assert len(part.program.batch(15)["X"]) == 1000 - 15 * 64


# ---- the judge ----------------------------------------------------------------------------------

def _map_program(steps, rate):
    """x <- rate x (1 - x) as a 'training run' (loss x, gradient x(1 - x), lr -rate + 1 folded
    into the update): chaotic at rate 4, contracting at rate 2.5."""
    def loss_and_grads(params, batch):
        x = params["x"]
        return np.sum(x), {"x": np.asarray(x * (1 - x))}

    def update(params, grads, state):
        return {"x": np.asarray(params["x"].dtype.type(rate) * grads["x"])}, state

    return numpy_side.Program({"x": data.exact32([0.3, 0.7])}, steps, lambda t: {}, loss_and_grads,
                              lambda p: None, update, lambda p, b: {"loss": float(np.sum(np.abs(p["x"]))),
                                                                     "x": np.abs(p["x"])},
                              lambda b: 2, ELEMENTWISE)


def test_chaotic_run_is_judged_up_to_its_horizon_and_says_why():
    judgement = judge_run(_map_program(60, 4.0), [Side("numpy", np.dtype(np.float32))])
    horizon = judgement.horizon["float32"]
    assert 5 < horizon < 40, horizon  # rounding doubles each step: sqrt(u32) is reached after about 12
    assert "rounding, not the math, decides" in judgement.horizon_reason["float32"]
    assert judgement.sides[0].judged == horizon and judgement.ok
    calm = judge_run(_map_program(60, 2.5), [Side("numpy", np.dtype(np.float32))])
    assert calm.horizon["float32"] == 60 and calm.ok


def test_float64_outlives_float32s_horizon_with_runs_of_its_own():
    """One set of perturbed runs at float32's rounding serves float64 by scaling (linear
    regime); past float32's horizon float64 continues with its own runs, scaled from
    the shared ones. Its horizon then matches a float64-only judgement's (rounding
    doubles each step and sqrt(u) is 2^-12 for float32, 2^-26.5 for float64: about 14
    steps later)."""
    both = judge_run(_map_program(90, 4.0), [Side("numpy", np.dtype(np.float32)), Side("numpy", np.dtype(np.float64))])
    alone = judge_run(_map_program(90, 4.0), [Side("numpy", np.dtype(np.float64))])
    assert both.horizon["float32"] + 10 < both.horizon["float64"] < 90
    assert abs(both.horizon["float64"] - alone.horizon["float64"]) <= 3, (both.horizon, alone.horizon)


def test_a_wrong_side_is_still_failed_before_the_horizon():
    """The horizon ends judging; it never excuses what came before it."""
    def wrong():
        for t, (loss, params) in enumerate(numpy_run(_map_program(60, 4.0), np.float32)):
            yield loss, ({"x": params["x"] * np.float32(1.01)} if t == 3 else params)

    judgement = judge_run(_map_program(60, 4.0), [Side("wrong", np.dtype(np.float32), run=wrong())])
    assert judgement.sides[0].first_failing_step == 3


def test_a_small_error_late_in_a_long_run_is_caught_at_its_step():
    """Every step is judged, not just the last: an error of 1e-4 relative in b at step
    400 of scenario 8 (float32) fails at step 400."""
    part = SCENARIOS["8-logistic"].build(False)[0]
    program = dataclasses.replace(part.program, steps=420)

    def late():
        for t, (loss, params) in enumerate(numpy_run(program, np.float32)):
            yield loss, ({**params, "b": params["b"] * np.float32(1 + 1e-4)} if t == 400 else params)

    judgement = judge_run(program, [Side("late", np.dtype(np.float32), run=late())], stop_at_failure=True)
    assert judgement.sides[0].first_failing_step == 400, judgement.report()


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_input_is_refused_naming_the_argument_and_side():
    with pytest.raises(ValueError, match=r"order \(NumPy side\) must list at least 5 batches"):
        numpy_side.check_order([np.arange(3)], 10, 5)
    with pytest.raises(ValueError, match=r"order\[0\] \(NumPy side\) indexes rows outside \[0, 10\)"):
        numpy_side.check_order([np.array([3, 12])], 10, 1)
    with pytest.raises(ValueError, match=r"order\[0\] \(NumPy side\) must be a non-empty 1-d integer array"):
        numpy_side.check_order([np.array([0.5])], 10, 1)
    with pytest.raises(ValueError, match=r"batch_size \(torch side\) must be a positive integer"):
        torch_side.batch_order(10, 0, 3, seed=0)
    with pytest.raises(ValueError, match=r"batch_size \(torch side\) 20 > n 10 with drop_last"):
        torch_side.batch_order(10, 20, 3, seed=0, drop_last=True)
    program = dataclasses.replace(_map_program(3, 2.5), params={"x": np.array([0.1, 0.2])})
    with pytest.raises(ValueError, match=r"params\['x'\] \(NumPy side\) is not exactly representable in float32"):
        judge_run(program, [Side("numpy", np.dtype(np.float32))])
    with pytest.raises(ValueError, match=r"dtype \(side\) must be float32 or float64"):
        judge_run(_map_program(3, 2.5), [Side("numpy", np.dtype(np.float16))])
    with pytest.raises(ValueError, match=r"sides \(judge\) must name at least one side"):
        judge_run(_map_program(3, 2.5), [])


# ---- independence and the command -------------------------------------------------------------

def test_the_two_sides_stay_independent():
    """The NumPy side and the judge load no torch (at run time); the torch side imports
    no reference (its modules' import lines; torch_impl's are tests/test_conventions.py's)."""
    code = ("import sys, agreement.scenarios.numpy_side, agreement.scenarios.judge; "
            "print(sorted(m for m in ('torch', 'torch_impl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    imported = re.findall(r"^(?:from|import) (\w+)", inspect.getsource(torch_side), re.M)
    assert "reference" not in imported and "torch" in imported


def test_command_prints_the_table_and_exits_zero_when_all_agree(capsys):
    assert cli.main(["--short", "--scenario", "6", "--dtype", "float64", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "autograd, update by hand" in out and "all agree" in out
    assert cli.main(["--list"]) == 0
    assert "7-mnist-shaped" in capsys.readouterr().out


def test_command_exits_one_and_names_the_step_on_a_disagreement(monkeypatch, capsys):
    scenario = SCENARIOS["6-fifteen-points"]

    def wrong_build(short):
        return [dataclasses.replace(part, program=dataclasses.replace(part.program,
                                                                      loss_and_grads=_fifteen_one_over_n))
                for part in scenario.build(short)]

    monkeypatch.setitem(SCENARIOS, scenario.name, dataclasses.replace(scenario, build=wrong_build))
    assert cli.main(["--short", "--scenario", "6", "--dtype", "float64", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "first diverges at step 0 of 10" in out and "DISAGREEMENT" in out


def test_command_refuses_unknown_scenarios_and_absent_devices():
    with pytest.raises(SystemExit, match="--scenario: unknown scenario 'nine'"):
        cli.main(["--scenario", "nine"])
    with pytest.raises(SystemExit, match="--device: expected cpu or cuda"):
        cli.main(["--device", "tpu"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device cuda: no CUDA device"):
            cli.main(["--device", "cuda"])
