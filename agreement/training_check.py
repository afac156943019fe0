"""Public check of a hand-written NumPy optimizer against a ``torch.optim`` optimizer.

    from agreement.training_check import check_optimizer
    check_optimizer(adam_init, adam_update, torch.optim.Adam,
                    hyper=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0))

Your optimizer is two pure functions (optax-style):

    init(params) -> state
    update(params, grads, state, **hyper) -> (params, state)

``params`` and ``grads`` are dicts of NumPy arrays with the same keys; ``state``
is anything your update understands (dicts, tuples, lists, namedtuples of arrays
are all fine). ``hyper`` goes unchanged both to your ``update`` and to the torch
optimizer's constructor, so your update takes torch's names: ``betas=(b1, b2)``
for Adam, not ``beta1``/``beta2``; ``momentum``, ``dampening``, ``nesterov`` for
SGD. Pass every hyperparameter explicitly: torch fills in its own defaults for
the ones you leave out, your update its own. Wrap a differently named update:
``lambda p, g, s, betas, **h: my_update(p, g, s, beta1=betas[0], beta2=betas[1], **h)``.
Options that only torch has (``foreach``, ``fused``, ``capturable``) go in
``torch_options``.

Both optimizers are driven for ``steps`` steps from the same parameters, by the
gradients of the same loss: a built-in well-conditioned quadratic (default; you
test the optimizer alone), or your own pair ``numpy_loss(params, data, **hyper)
-> (loss, grads)`` and ``torch_loss(params, data, **hyper) -> 0-d tensor``.
torch.optim runs in each dtype; your optimizer runs in float64 (the reference)
and in each lower dtype. They are judged step by step with the project's
trajectory tolerance (``agreement/trajectory.py``): each step's rounding in the
dtype, propagated through every later step with your float64 optimizer. A
disagreement raises AssertionError naming the first step and parameter that
diverged.

Where rounding alone would move the float64 trajectory by more than sqrt(u) in
the dtype (an Adam step that normalizes a gradient which is 0 in the math and
rounding noise in float32), the two trajectories are not comparable from that
step on: the steps before it are judged, the rest are not, and the check says
so (a ``TrajectoryHorizonWarning``); an example with no comparable step at all is
skipped with its reason, and a dtype with no judged example raises
``NotComparable``, a ``unittest.SkipTest`` that pytest reports as a skip.

A whole training step ``step(params, state, data) -> (params, state, loss)``
is not checked here: its gradients stay inside it, and the trajectory tolerance
needs them, to inject each step's gradient rounding. Split such a step into a
loss-and-gradient function and an update, and check each (``check_gradients``,
then this).
"""

from __future__ import annotations

import contextlib
import copy
import unittest
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

from agreement import precision
from agreement import strategies as S
from agreement.check import _check_dtypes as _resolved_dtypes
from agreement.check import _largest_size, _tolerance_class
from agreement.compare import Comparison
from agreement.optimizers import OptimizerCase
from agreement.registry import Case, Example
from agreement.run import Unresolvable, torch_dtype, torch_precision
from agreement.run import devices as available_devices
from agreement.strategies import DTYPES
from agreement.tolerance import DEEP_MODEL, ELEMENTWISE, ToleranceClass
from agreement.trajectory import Reference, comparable_steps, judge_steps, judged_arrays, reference_trajectory
from torch_impl.layout import to_numpy
from torch_impl.models import FunctionModule
from torch_impl.train import to_device

__all__ = ["NotComparable", "TrajectoryHorizonWarning", "TrajectorySummary", "assert_optimizer_close",
           "check_optimizer", "quadratic_examples", "quadratic_loss", "quadratic_loss_torch"]

YOURS = "your NumPy optimizer"
# torch.optim constructor options that choose an implementation (loop, multi-tensor, fused kernel), not the math
_IMPLEMENTATION = {"foreach", "fused", "capturable", "differentiable"}


class NotComparable(unittest.SkipTest):
    """Rounding alone decides the trajectory in this dtype from the first step: nothing
    could be judged. A SkipTest, so pytest and unittest report it as a skip with this reason."""


class TrajectoryHorizonWarning(UserWarning):
    """Some trajectories were judged only up to the step where rounding alone stops them being comparable."""


# ---------------------------------------------------------------------------- the built-in loss
# L = sum over parameters k of 1/2 sum h_k (theta_k - c_k)^2, curvatures h in [1/2, 2]: condition number
# at most 4, and targets c away from theta, so that a bug that rescales the gradient (a weight decay of the
# wrong sign) changes Adam's direction, not only the gradient's size, which Adam divides out.

def _target(name):
    return f"{name}/target"


def _curvature(name):
    return f"{name}/curvature"


def quadratic_loss(params: dict, data: dict):
    """The built-in loss, NumPy: ``(L, {k: h_k * (theta_k - c_k)})`` with ``c_k = data["k/target"]``
    and ``h_k = data["k/curvature"]``."""
    loss, grads = 0.0, {}
    for name, p in params.items():
        r = p - data[_target(name)]
        grads[name] = data[_curvature(name)] * r
        loss = loss + 0.5 * np.sum(grads[name] * r)
    return np.asarray(loss), grads


def quadratic_loss_torch(params: dict, data: dict):
    """The built-in loss, torch."""
    return sum(0.5 * (data[_curvature(k)] * (p - data[_target(k)]) ** 2).sum() for k, p in params.items())


def _quadratic_term_scale(example: Example) -> dict:
    # theta - c is one correctly rounded subtraction of exact inputs and h * r one product: each
    # gradient element's rounding is relative to itself, elementwise. A gradient that is exactly 0
    # (theta = c) then carries no injected noise that Adam would normalize into a full step.
    _, grads = quadratic_loss(example.params, example.data)
    return {name: np.abs(g) for name, g in grads.items()}


def _quadratic_data(params: dict, dtype) -> dict:
    """Fixed targets and curvatures for examples that bring parameters only (documented in check_optimizer)."""
    rng = np.random.default_rng(0)
    data = {}
    for name in sorted(params):
        shape = np.shape(params[name])
        data[_target(name)] = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        data[_curvature(name)] = rng.uniform(0.5, 2.0, shape).astype(dtype)
    return data


_SHAPES = [(1,), (3,), (2, 3), (4, 1)]


@st.composite
def quadratic_examples(draw, dtype=np.float64):
    """Examples for the built-in loss: one to three parameters, values in [-2, 2] (exact zeros and ties
    included), curvatures in [1/2, 2], targets c = theta - d with |d| in [0.1, 1]. The residual d stays
    clear of 0: where |gradient| << eps, Adam's step is lr g / eps, a map that multiplies theta - c, and
    every rounding, by lr h / eps (1e5 at the defaults) per step, which no tolerance can judge."""
    names = draw(st.lists(st.sampled_from(["w", "b", "v"]), min_size=1, max_size=3, unique=True))
    residual = S.reals(dtype, 1.0, 0.1) | S.reals(dtype, -0.1, -1.0)
    params, data = {}, {}
    for name in names:
        shape = draw(st.sampled_from(_SHAPES), label=f"shape of {name}")
        params[name] = draw(S.arrays(dtype, shape, 2.0))
        d = draw(hnp.arrays(dtype, shape, elements=residual))
        data[_target(name)] = (params[name] - d).astype(dtype)
        data[_curvature(name)] = draw(S.arrays(dtype, shape, 2.0, 0.5))
    return Example(params, data)


# ---------------------------------------------------------------------------- your functions, guarded

_CONTAINER = "__container__"  # marks a tuple or list turned into a dict, so trajectory.py rounds its arrays


_IMMUTABLE = (int, float, bool, str, bytes, type(None), np.generic)


def _to_tree(state):
    """Your state as nested dicts: trajectory.py injects rounding into the float arrays of nested
    dicts only. NumPy float scalars become 0-d arrays so that they are rounded too."""
    kind = type(state)
    if kind is np.ndarray or kind is dict and all(type(v) is np.ndarray for v in state.values()):
        return state  # the common leaves, without a walk
    if isinstance(state, dict):
        return {k: _to_tree(v) for k, v in state.items()}
    if isinstance(state, tuple | list):
        return {_CONTAINER: kind, **{i: _to_tree(v) for i, v in enumerate(state)}}
    if isinstance(state, np.floating):
        return np.asarray(state)
    return state


def _from_tree(tree):
    """Your state back from ``_to_tree``, its arrays copied (see ``_guarded_optimizer``)."""
    if type(tree) is np.ndarray:
        return tree.copy()
    if isinstance(tree, _IMMUTABLE):
        return tree
    if isinstance(tree, dict) and _CONTAINER in tree:
        kind, items = tree[_CONTAINER], [_from_tree(tree[i]) for i in range(len(tree) - 1)]
        return kind(*items) if hasattr(kind, "_fields") else kind(items)  # namedtuples take fields
    if isinstance(tree, dict):
        return {k: _from_tree(v) for k, v in tree.items()}
    return copy.deepcopy(tree)  # a leaf of another kind (an ndarray subclass, an object): copied


def _note(error: BaseException, text: str) -> None:
    if hasattr(error, "add_note"):  # Python >= 3.11; the traceback is the user's either way
        error.add_note(text)


def _checked_params(new, old: dict, who: str) -> dict:
    if not isinstance(new, dict) or new.keys() != old.keys():
        got = sorted(new) if isinstance(new, dict) else type(new).__name__
        raise ValueError(f"{who} must return params with the keys {sorted(old)}, got {got}")
    out = {}
    for name, value in new.items():
        value, given = np.asarray(value), old[name]
        if value.shape != given.shape:
            raise ValueError(f"{who} returned {name!r} of shape {value.shape}; it was given {given.shape}")
        if value.dtype != given.dtype:
            # torch.optim keeps a parameter's dtype; a float64 scalar (np.float64, not a Python float) in
            # your arithmetic promotes float32 parameters under NumPy 2's promotion rules
            raise AssertionError(f"{who} returned {name!r} as {value.dtype} for {given.dtype} parameters "
                                 f"(torch.optim keeps the dtype)")
        out[name] = value
    return out


def _guarded_optimizer(init, update, label: str) -> OptimizerCase:
    """Your init/update as trajectory.py calls them: on copies (an update that writes into its
    arguments in place would corrupt the stored trajectory that each restart begins from),
    with their results checked, and any exception marked as raised in your code."""

    def guarded_init(params):
        try:
            state = init({k: np.array(v, copy=True) for k, v in params.items()})
        except Exception as error:
            _note(error, f"raised in {YOURS}'s init(params)")
            raise
        return _to_tree(state)

    def guarded_update(params, grads, state, **hyper):
        try:
            params = {k: np.array(v) for k, v in params.items()}  # copies; a NumPy scalar becomes a 0-d array
            result = update(dict(params), dict(grads), _from_tree(state), **hyper)
        except Exception as error:
            _note(error, f"raised in {YOURS}'s update(params, grads, state, **hyper) with hyper {hyper}")
            raise
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"{YOURS}'s update must return (params, state), got {type(result).__name__}")
        return _checked_params(result[0], params, f"{YOURS}'s update"), _to_tree(result[1])

    return OptimizerCase(name=label, torch_name="", init=guarded_init, update=guarded_update, hyper=None,
                         defaults={})


def _guarded_loss(numpy_loss, who: str):
    def loss_and_grads(params, data, **hyper):
        try:
            result = numpy_loss(params, data, **hyper)
        except Exception as error:
            _note(error, f"raised in {who}")
            raise
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise TypeError(f"{who} must return (loss, {{name: gradient}}), got {type(result).__name__}")
        loss, grads = np.asarray(result[0]), {k: np.asarray(g) for k, g in result[1].items()}  # scalars as 0-d arrays
        if set(grads) != set(params):
            raise ValueError(f"{who} returned gradients for {sorted(grads)}; the parameters are {sorted(params)}")
        for name, g in grads.items():
            if np.shape(g) != np.shape(params[name]):
                raise ValueError(f"{who} returned the gradient of {name!r} with shape {np.shape(g)}; "
                                 f"the parameter has shape {np.shape(params[name])}")
        return loss, grads

    return loss_and_grads


def _total_size(example: Example) -> int:
    return sum(int(np.size(v)) for v in example.params.values())


# ---------------------------------------------------------------------------- the torch side

def _torch_name(optimizer) -> str:
    if getattr(torch.optim, optimizer.__name__, None) is optimizer:
        return f"torch.optim.{optimizer.__name__}"
    return f"{optimizer.__module__}.{optimizer.__qualname__}"


def _torch_trajectory(setup: _Setup, example: Example, dtype, device: str):
    """Losses before each step and parameters after it, torch.optim in ``dtype`` on ``device``."""
    tdtype = torch_dtype(dtype)
    params = {k: torch.tensor(np.asarray(v), dtype=tdtype, device=device, requires_grad=True)
              for k, v in example.params.items()}
    data = to_device(example.data, device, tdtype)
    opt = setup.optimizer(list(params.values()), **setup.hyper, **setup.torch_options)
    losses, path = [], []
    for step in range(setup.steps):
        opt.zero_grad(set_to_none=True)
        try:
            loss = setup.torch_loss(params, data, **example.hyper)
        except Exception as error:
            _note(error, f"raised in {setup.torch_loss_name} at step {step + 1}")
            raise
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TypeError(f"{setup.torch_loss_name} must return a 0-d tensor (the loss), got {got}")
        loss.backward()
        unused = sorted(k for k, p in params.items() if p.grad is None)
        if unused:
            raise ValueError(f"{setup.torch_loss_name} does not use the parameters {unused}: they get no "
                             f"gradient, so torch.optim would skip them while {YOURS} updates them")
        opt.step()
        losses.append(float(loss.detach()))
        path.append({k: to_numpy(p).copy() for k, p in params.items()})
    return np.array(losses), path


# ---------------------------------------------------------------------------- one trajectory

@dataclass(frozen=True)
class _Setup:
    case: Case
    opt: OptimizerCase
    optimizer: type
    hyper: dict
    torch_options: dict
    steps: int
    name: str
    torch_name: str
    loss_name: str
    torch_loss: object
    torch_loss_name: str
    builtin_loss: bool


@dataclass
class _Outcome:
    judged: int  # steps judged: all of them, or up to the comparable horizon
    reason: str  # why not all, or ""
    worst: Comparison | None = None  # the comparison nearest its tolerance
    worst_where: str = ""  # which side, step and parameter it was, counted from 1


def _with_loss_data(setup: _Setup, example: Example) -> Example:
    """The built-in loss's fixed targets and curvatures for an example that brings parameters only."""
    if not setup.builtin_loss:
        return example
    if not example.data:
        return Example(example.params, _quadratic_data(example.params, example.dtype), dict(example.hyper))
    missing = sorted({key for k in example.params for key in (_target(k), _curvature(k))} - set(example.data))
    if missing:
        raise ValueError(f"the example's data lacks {missing}, which the built-in loss needs (or give no data: "
                         "fixed targets and curvatures are then used)")
    return example


def _show(example: Example) -> str:
    with np.printoptions(threshold=24, floatmode="unique"):  # values exact, so the example can be rerun
        parts = [f"params {example.params}", f"data {example.data}"]
    if example.hyper:
        parts.append(f"hyper {example.hyper}")
    return ", ".join(parts)


def _failure(setup: _Setup, example: Example, step_results, dtype, actual_name: str, expected_name: str,
             defaults: dict) -> str:
    """The report of the first diverging step: its worst parameter (or the loss), from your side of the table."""
    t = len(step_results) - 1
    results = step_results[t]
    names = [name for _, name in judged_arrays(example.params, setup.case.compare_loss)]  # None: the loss
    failed = sorted(((r, n) for r, n in zip(results, names, strict=True) if not r.ok),
                    key=lambda pair: -pair[0].ratio)
    worst, what = failed[0]
    subject = "the loss" if what is None else f"parameter {what!r}"
    lines = [f"{setup.name}: {actual_name} and {expected_name} part at step {t + 1} of {setup.steps}, {subject}"
             + (" (steps counted from 1, as torch.optim's state['step'])" if t else "")]
    if what is None and precision.is_low(dtype) and t:
        # below float32 each parameter may drift by twice its own rounding (agreement/trajectory.py), so an
        # optimizer that moves them wrongly can stay inside that while the loss, which sums them all, leaves it
        lines.append(f"  the loss is the first to leave its tolerance; in {precision.name(dtype)} each parameter "
                     "is allowed twice its own drift, so a wrong update (of your optimizer, or a loss that "
                     "differs) can show in the loss before any parameter")
    elif what is None:
        lines.append("  the loss is taken before the step, at parameters that agreed"
                     + (f" after step {t}" if t else " (the initial ones)")
                     + ": the two loss functions disagree there, not the optimizers"
                     + ("" if setup.builtin_loss else " (or the loss is much smaller than its terms, which "
                        "cancel: give term_scale a 'loss' entry)"))
    at = f" at index {worst.index}" if worst.index else ""
    lines += [
        f"  worst element{at}: {actual_name} gave {worst.actual!r} where {expected_name} gave {worst.expected!r}",
        f"  abs error {worst.abs_err:.3e}, rel error {worst.rel_err:.3e}; allowed {worst.allowed:.3e} "
        f"({worst.ratio:.3g}x the tolerance: {precision.name(dtype)} rounding of this step"
        + (f" and of the {t} before it, propagated)" if t else ")"),
    ]
    if len(failed) > 1:
        lines.append("  also off at this step: "
                     + ", ".join(f"{n or 'loss'} ({r.ratio:.3g}x)" for r, n in failed[1:]))
    if t:
        lines.append("  step 1 agreed" if t == 1 else f"  steps 1 to {t} agreed")
    lines.append(f"  optimizer hyperparameters: {setup.hyper}")
    rest = {k: v for k, v in defaults.items() if k not in setup.hyper and k not in _IMPLEMENTATION}
    if rest:
        lines.append(f"  {setup.torch_name} used its defaults for the rest: {rest}")
    if setup.torch_options:
        lines.append(f"  torch-only options: {setup.torch_options}")
    lines.append(f"  gradients from: {setup.loss_name}")
    lines.append(f"  example: {_show(example)}")
    return "\n".join(lines)


def _judge_example(setup: _Setup, example: Example, dtype, device: str, defaults: dict,
                   numpy_side: bool = True) -> _Outcome:
    """Judge one example in one dtype on one device; raises AssertionError on a disagreement.
    ``numpy_side``: judge your optimizer in ``dtype`` too (once per dtype, not per device)."""
    example = _with_loss_data(setup, example).astype(dtype)
    # one float64 reference run and rounding spread for the horizon and every side judged against it
    against = Reference(setup.case, setup.opt, example, setup.hyper, setup.steps, dtype)
    judged, reason = comparable_steps(setup.case, setup.opt, example, setup.hyper, setup.steps, dtype,
                                      against=against)
    if judged == 0:
        return _Outcome(0, reason)
    dtype_name = precision.name(dtype)
    expected_name = f"{YOURS} (float64)"
    low = precision.is_low(dtype)
    with torch_precision(dtype):
        torch_run = _torch_trajectory(setup, example, dtype, device)
    # below float32 each side is measured by its own float64 run from the same start (agreement/trajectory.py)
    sides = [(f"{setup.torch_name} ({dtype_name}, {device})", torch_run,
              _torch_trajectory(setup, example, np.float64, device) if low else None)]
    if precision.resolve(dtype) != np.float64 and precision.numpy_computes_in(dtype) and numpy_side:
        try:
            with np.errstate(all="ignore") if low else contextlib.nullcontext():
                losses, path = reference_trajectory(setup.case, setup.opt, example, setup.hyper, setup.steps)
        except AssertionError as error:  # a float32 parameter returned as float64
            raise AssertionError(f"{setup.name} ({dtype_name}): {error}\n  example: {_show(example)}") from None
        own = (against.losses, against.path) if low else None  # your float64 run from this start
        sides.append((f"{YOURS} in {dtype_name}", (losses, path), own))
    worst, where = None, ""
    names = ["the loss" if k is None else f"parameter {k!r}"
             for _, k in judged_arrays(example.params, setup.case.compare_loss)]
    for actual_name, (losses, path), own64 in sides:
        # the full trajectory, the one ``against`` is of; a step past the horizon is not judged
        try:
            step_results = judge_steps(setup.case, setup.opt, example, setup.hyper, dtype, losses, path,
                                       device=actual_name, against=against, own64=own64,
                                       torch_device=device)[:judged]
        except Unresolvable as skip:
            return _Outcome(0, str(skip))
        if low and len(step_results) < judged:
            judged, reason = len(step_results), (
                f"{actual_name}'s own rounding moves a parameter by more than sqrt(u) max(1, |θ|) "
                f"after step {len(step_results)}: from there rounding, not the math, decides the trajectory")
        if not all(r.ok for r in step_results[-1]):
            raise AssertionError(_failure(setup, example, step_results, dtype, actual_name, expected_name,
                                          defaults))
        for t, results in enumerate(step_results):
            for r, what in zip(results, names, strict=True):
                if worst is None or r.ratio > worst.ratio:
                    worst, where = r, f"{actual_name}, step {t + 1}, {what}"
    return _Outcome(judged, reason, worst, where)


# ---------------------------------------------------------------------------- public API

@dataclass
class TrajectorySummary:
    """One dtype on one device: how many examples were judged over all steps, which only up to a
    horizon (judged steps and reason), which not at all (reasons), and the comparison nearest its tolerance."""

    name: str
    dtype: str
    device: str
    steps: int
    examples: int = 0
    partial: list = field(default_factory=list)  # [(steps judged, reason)]
    skipped: list = field(default_factory=list)  # [reason]
    worst: Comparison | None = None
    worst_where: str = ""

    def record(self, outcome: _Outcome) -> None:
        if outcome.judged == 0:
            self.skipped.append(outcome.reason)
            return
        if outcome.judged < self.steps:
            self.partial.append((outcome.judged, outcome.reason))
        else:
            self.examples += 1
        if outcome.worst is not None and (self.worst is None or outcome.worst.ratio > self.worst.ratio):
            self.worst, self.worst_where = outcome.worst, outcome.worst_where

    def __str__(self) -> str:
        text = f"{self.name} ({self.dtype}, {self.device}): {self.examples} examples judged over {self.steps} steps"
        if self.partial:
            text += f", {len(self.partial)} up to a comparable horizon (min {min(j for j, _ in self.partial)} steps)"
        if self.skipped:
            text += f", {len(self.skipped)} not comparable at all"
        if self.worst is not None:
            text += f"; nearest the tolerance: {self.worst.ratio:.3g}x ({self.worst_where})"
        return text


def _build(init, update, torch_optimizer, hyper, numpy_loss, torch_loss, steps, torch_options, tolerance,
           reduction_length, term_scale, name) -> tuple[_Setup, dict]:
    if not callable(init) or not callable(update):
        bad = "init" if not callable(init) else "update"
        raise TypeError(f"{bad} must be a function ({YOURS}'s {bad}), got {type(init if bad == 'init' else update)}")
    if isinstance(torch_optimizer, torch.optim.Optimizer):
        raise TypeError(f"torch_optimizer must be the class ({type(torch_optimizer).__name__}), not an instance: "
                        "the check builds one per trajectory")
    if not (isinstance(torch_optimizer, type) and issubclass(torch_optimizer, torch.optim.Optimizer)):
        raise TypeError(f"torch_optimizer must be a torch.optim.Optimizer class such as torch.optim.Adam, "
                        f"got {torch_optimizer!r}")
    torch_name = _torch_name(torch_optimizer)
    if not isinstance(hyper, dict):
        raise TypeError(f"hyper must be a dict of hyperparameters for both {YOURS} and {torch_name}, "
                        f"got {type(hyper).__name__}")
    torch_options = dict(torch_options or {})
    try:
        probe = torch_optimizer([torch.zeros(1, requires_grad=True)], **hyper, **torch_options)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{torch_name} refuses hyper={hyper}" + (f", torch_options={torch_options}"
                          if torch_options else "") + f": {error}") from error
    defaults = {k: v for k, v in probe.defaults.items() if k not in torch_options}
    if (numpy_loss is None) != (torch_loss is None):
        given_, missing = ("numpy_loss", "torch_loss") if torch_loss is None else ("torch_loss", "numpy_loss")
        raise TypeError(f"{given_} needs its twin {missing}: both sides' gradients must come from the same loss")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if numpy_loss is None:
        if (reduction_length, term_scale) != (None, None) or tolerance is not DEEP_MODEL:
            raise TypeError("tolerance, reduction_length and term_scale describe your own loss; the built-in "
                            "quadratic has its own")
        case = Case(name="__builtin__", kind="user", reference=_guarded_loss(quadratic_loss, "the built-in loss"),
                    twin=lambda shapes, **h: FunctionModule(quadratic_loss_torch, shapes, **h), inputs=None,
                    build=None, tolerance=ELEMENTWISE, reduction_length=_total_size,
                    term_scale=_quadratic_term_scale)
        torch_loss, loss_name = quadratic_loss_torch, "the built-in quadratic loss"
        torch_loss_name = "the built-in quadratic loss (torch)"
    else:
        numpy_name = getattr(numpy_loss, "__name__", "numpy_loss")
        torch_loss_name = f"your torch_loss {getattr(torch_loss, '__name__', '')}".rstrip()
        loss_name = f"your numpy_loss {numpy_name} and torch_loss {getattr(torch_loss, '__name__', '')}".rstrip()
        case = Case(name=numpy_name, kind="user", reference=_guarded_loss(numpy_loss, f"your numpy_loss {numpy_name}"),
                    twin=lambda shapes, **h: FunctionModule(torch_loss, shapes, **h), inputs=None, build=None,
                    tolerance=_tolerance_class(tolerance), reduction_length=reduction_length or _largest_size,
                    term_scale=term_scale)
    label = name or f"{getattr(update, '__name__', 'update')} vs {torch_name}"
    setup = _Setup(case, _guarded_optimizer(init, update, label), torch_optimizer, dict(hyper), torch_options,
                   int(steps), label, torch_name, loss_name, torch_loss, torch_loss_name, numpy_loss is None)
    return setup, defaults


def _check_example(example, where: str) -> Example:
    if not isinstance(example, Example):
        raise TypeError(f"{where} must be agreement.Example(params, data, hyper), got {type(example).__name__}")
    if not example.params or not isinstance(example.params, dict):
        raise ValueError(f"{where}: params must be a non-empty dict of float arrays")
    for k, v in example.params.items():
        if not np.issubdtype(np.asarray(v).dtype, np.floating):
            raise TypeError(f"{where}: parameter {k!r} must be a float array, got {np.asarray(v).dtype}")
    return example


def assert_optimizer_close(init, update, torch_optimizer, hyper: dict, example: Example, *, dtype=np.float64,
                           device: str = "cpu", steps: int = 30, numpy_loss=None, torch_loss=None,
                           torch_options=None, tolerance: ToleranceClass = DEEP_MODEL, reduction_length=None,
                           term_scale=None, name: str | None = None) -> TrajectorySummary:
    """One example, one dtype, one device, no Hypothesis loop: for your own ``@given`` tests.

    Arguments as in ``check_optimizer``. Raises AssertionError naming the first diverging step
    and parameter, NotComparable when rounding decides the trajectory from the first step, and
    warns TrajectoryHorizonWarning when only the first steps could be judged. Returns the summary.
    """
    setup, defaults = _build(init, update, torch_optimizer, hyper, numpy_loss, torch_loss, steps, torch_options,
                             tolerance, reduction_length, term_scale, name)
    dtype = _check_dtypes([dtype])[0]
    if not precision.runs_on(dtype, device):
        raise precision.device_error(dtype, device)
    summary = TrajectorySummary(setup.name, precision.name(dtype), device, setup.steps)
    summary.record(_judge_example(setup, _check_example(example, "example"), dtype, device, defaults))
    _verdict([summary])
    return summary


def _check_dtypes(dtypes) -> list:
    """check.py's, with NumPy dtypes as their scalar types."""
    return [d if precision.emulated(d) else d.type for d in _resolved_dtypes(dtypes)]


def _strategy_for(inputs, dtype):
    """The strategy of Examples that ``inputs`` (a strategy or a function of dtype) gives for ``dtype``;
    _judge_example casts what it draws to ``dtype``."""
    if isinstance(inputs, SearchStrategy):
        return inputs.map(lambda ex: _check_example(ex, "inputs drew an example that"))
    strategy = inputs(dtype)
    if not isinstance(strategy, SearchStrategy):
        raise TypeError(f"inputs(dtype) must return a Hypothesis strategy of agreement.Example, "
                        f"got {type(strategy).__name__}")
    return strategy.map(lambda ex: _check_example(ex, "inputs(dtype) drew an example that"))


def _verdict(summaries: list[TrajectorySummary], failures=()) -> None:
    """Disagreements first (AssertionError), then dtypes with nothing judged (NotComparable),
    then a warning for what was judged only in part."""
    if failures:
        raise AssertionError("\n\n".join(failures))
    empty = [s for s in summaries if s.examples == 0 and not s.partial]
    if empty:
        raise NotComparable("\n".join(
            [f"{s.name} ({s.dtype}, {s.device}): no step could be judged in {len(s.skipped)} example(s); "
             f"first reason: {s.skipped[0]}" for s in empty]
            + [f"judged: {s}" for s in summaries if all(s is not e for e in empty)]))
    partial = [s for s in summaries if s.partial or s.skipped]
    if partial:
        warnings.warn("; ".join(
            f"{s.dtype} on {s.device}: {len(s.partial)} example(s) judged only up to step "
            f"{min((j for j, _ in s.partial), default=0)}, {len(s.skipped)} not at all "
            f"({(s.partial[0][1] if s.partial else s.skipped[0])})" for s in partial),
            TrajectoryHorizonWarning, stacklevel=3)


def check_optimizer(init, update, torch_optimizer, hyper: dict, *, inputs=None, numpy_loss=None, torch_loss=None,
                    steps: int = 30, dtypes=DTYPES, devices=None, max_examples: int = 20, torch_options=None,
                    tolerance: ToleranceClass = DEEP_MODEL, reduction_length=None, term_scale=None,
                    name: str | None = None, derandomize: bool = True, shrink: bool = False) -> list[TrajectorySummary]:
    """Check your NumPy optimizer ``init``/``update`` against ``torch_optimizer`` (a torch.optim class)
    over ``steps`` steps (module docstring), in every dtype of ``dtypes`` on every device of ``devices``
    (default: cpu, and cuda where available).

    ``hyper``: the hyperparameters, passed unchanged to your update and to torch's constructor.
    ``inputs``: an ``agreement.Example``, a list of them, a Hypothesis strategy of them, or a function
    ``dtype -> strategy``. Without ``numpy_loss``/``torch_loss`` the loss is the built-in quadratic
    ``sum_k 1/2 h_k (theta_k - c_k)^2`` and ``inputs`` defaults to its own drawn examples; an Example
    you give may bring parameters only (fixed targets c in [-1, 1] and curvatures h in [1/2, 2] are
    added, seed 0), or data with keys ``"<name>/target"`` and ``"<name>/curvature"``.
    With your own loss, ``inputs`` is required, and ``tolerance``, ``reduction_length`` and
    ``term_scale`` mean what they mean in ``check_gradients``.
    ``max_examples``: Hypothesis examples per dtype and device (fixed examples are all run).
    ``name``: how reports call the check. ``derandomize=False`` draws fresh examples every call.
    ``shrink=True`` lets Hypothesis shrink a failing example (slow: each try runs whole trajectories).

    Returns one TrajectorySummary per dtype and device; raises AssertionError on a disagreement
    (the first diverging step and parameter, Hypothesis's minimal example), NotComparable when
    some dtype had no comparable step in any example.
    """
    setup, defaults = _build(init, update, torch_optimizer, hyper, numpy_loss, torch_loss, steps, torch_options,
                             tolerance, reduction_length, term_scale, name)
    dtypes = _check_dtypes(dtypes)
    devices = list(devices or available_devices())
    if inputs is None:
        if numpy_loss is not None:
            raise TypeError("inputs is required with numpy_loss/torch_loss: the built-in examples are for the "
                            "built-in loss")
        inputs = quadratic_examples
    fixed = [inputs] if isinstance(inputs, Example) else list(inputs) if isinstance(inputs, list | tuple) else None
    if fixed is None and not (isinstance(inputs, SearchStrategy) or callable(inputs)):
        raise TypeError(f"inputs must be an agreement.Example, a list of them, a Hypothesis strategy of them or "
                        f"a function dtype -> strategy, got {type(inputs).__name__}")
    if fixed is not None:
        if not fixed:
            raise ValueError("inputs is an empty list: nothing would be checked")
        fixed = [_check_example(ex, f"inputs[{i}]") for i, ex in enumerate(fixed)]
    summaries, failures = [], []
    for dtype in dtypes:
        runs_on = [d for d in devices if precision.runs_on(dtype, d)]
        if not runs_on:
            warnings.warn(f"{setup.name}: {precision.name(dtype)} runs on {' and '.join(dtype.devices)} only, and "
                          f"none of {devices} is: not checked", stacklevel=2)
        for device in runs_on:
            summary = TrajectorySummary(setup.name, precision.name(dtype), device, setup.steps)
            summaries.append(summary)
            try:
                if fixed is not None:
                    for example in fixed:
                        summary.record(_judge_example(setup, example, dtype, device, defaults,
                                                      device == runs_on[0]))
                else:
                    _search(setup, _strategy_for(inputs, dtype), dtype, device, defaults, summary, max_examples,
                            derandomize, shrink, device == runs_on[0])
            except AssertionError as error:
                # the report shows the example exactly; Hypothesis's notes repeat it, or name harness lines
                failures.append(str(error))
    _verdict(summaries, failures)
    return summaries


def _search(setup, strategy, dtype, device, defaults, summary, max_examples, derandomize, shrink,
            numpy_side) -> None:
    # Without shrinking by default: a trajectory costs about steps^2 optimizer steps (the rounding spread),
    # and Hypothesis's shrinker ran 40 to 75 s on one failure; the report names the step and parameter anyway.
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=max_examples, derandomize=derandomize, database=None, deadline=None, print_blob=False,
              phases=phases, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data):
        example = data.draw(strategy, label="example")
        summary.record(_judge_example(setup, example, dtype, device, defaults, numpy_side))

    check()
