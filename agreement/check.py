"""Public entry points: check your own NumPy gradient against torch autograd.

    from agreement import assert_gradients_close, check_gradients

    # one example, inside your own test (plain or @given), like torch.testing.assert_close
    assert_gradients_close(my_numpy_loss_and_grads, my_torch_loss, params, data)

    # a Hypothesis search of its own
    check_gradients(my_numpy_loss_and_grads, my_torch_loss, inputs)

``numpy_fn(params, data, **hyper) -> (loss, {name: gradient})`` and
``torch_fn(params, data, **hyper) -> 0-d loss tensor`` take dicts of
arrays/tensors with the same keys (an ``nn.Module`` can stand in for
``torch_fn``: see ``assert_gradients_close``). The loss and every gradient are
compared with the float64 NumPy evaluation, within the analytic floor plus the
rounding measured on the example itself (agreement/rounding.py): no error
analysis is asked of the user. A failure raises AssertionError with the worst
element, the tolerance's parts and a finite-difference verdict saying which side
the mathematics agrees with.
"""

from __future__ import annotations

import copy
import os
import sys
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from torch import nn

from agreement import _results, precision
from agreement.compare import Comparison, format_ratio
from agreement.registry import Case, Example
from agreement.rounding import in_harness_run
from agreement.run import TORCH_DTYPES, Unresolvable, evaluate
from agreement.run import devices as available_devices
from agreement.strategies import DTYPES
from agreement.tolerance import DEEP_MODEL, ELEMENTWISE, LINEAR_MODEL, LOSS, ToleranceClass
from torch_impl.models import FunctionModule

if sys.version_info < (3, 11):  # Hypothesis depends on the backport there
    from exceptiongroup import BaseExceptionGroup

TOLERANCE_CLASSES = {c.name: c for c in (ELEMENTWISE, LOSS, LINEAR_MODEL, DEEP_MODEL)}


class UserCodeError(AssertionError):
    """The user's NumPy or torch function raised, or returned something unusable."""


_HARNESS = os.path.dirname(os.path.abspath(__file__))


def _user_error(who: str, error: BaseException | None, what: str) -> UserCodeError:
    """The message names whose code it was; the traceback keeps the user's frames only."""
    lines = [f"{who} {what}"]
    if error is not None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if not os.path.abspath(f.filename).startswith(_HARNESS)]
        text = "".join(traceback.format_list(frames[-8:]) + traceback.format_exception_only(error))
        lines += ["  its traceback (most recent call last):", *("    " + line for line in text.rstrip().splitlines())]
    return UserCodeError("\n".join(lines))


class _Warnings:
    """Warnings raised by user code, counted instead of printed each time."""

    def __init__(self):
        self.counts: Counter = Counter()

    def call(self, fn, *args, **kwargs):
        if in_harness_run():  # the harness's own runs of your function are not yours to hear about
            return fn(*args, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return fn(*args, **kwargs)
            finally:
                for w in caught:
                    self.counts[f"{w.category.__name__}: {w.message}"] += 1

    def summary(self, who: str) -> str:
        return warning_summary(self.counts, who)


def warning_summary(counts: Counter, who: str) -> str:
    """One line: how many warnings, and the three most frequent."""
    if not counts:
        return ""
    total = sum(counts.values())
    top = "; ".join(f"{n}x {text}" for text, n in counts.most_common(3))
    return f"{who} raised {total} warning{'s' * (total != 1)} ({top})"


def _numpy_side(numpy_fn, label: str, caught: _Warnings):
    def reference(params, data, **hyper):
        try:
            out = caught.call(numpy_fn, params, data, **hyper)
        except UserCodeError:
            raise
        except Exception as error:
            raise _user_error(f"{label}: your NumPy function", error,
                              f"raised {type(error).__name__}: {error}") from error
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise _user_error(f"{label}: your NumPy function", None,
                              f"must return (loss, {{name: gradient}}); it returned {type(out).__name__}")
        loss, grads = out
        if np.ndim(loss) != 0:
            raise _user_error(f"{label}: your NumPy function", None,
                              f"returned a loss of shape {np.shape(loss)}; return a scalar (e.g. .sum())")
        missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
        if missing or extra:
            raise _user_error(f"{label}: your NumPy function", None,
                              (f"returned no gradient for {missing}" if missing else "")
                              + ("; " if missing and extra else "")
                              + (f"returned gradients for {extra}, which are not parameters" if extra else ""))
        for k, g in grads.items():
            if np.shape(g) != np.shape(params[k]):
                raise _user_error(f"{label}: your NumPy function", None,
                                  f"returned grad {k} of shape {np.shape(g)}; the parameter {k} has shape "
                                  f"{np.shape(params[k])}")
            kind, given = np.asarray(g).dtype, np.asarray(params[k]).dtype
            if kind.kind != "f":
                raise _user_error(f"{label}: your NumPy function", None,
                                  f"returned grad {k} of dtype {kind}; gradients are floating arrays")
            if given in (np.float32, np.float16) and kind != given and not in_harness_run():
                # not wrong, but then "NumPy in float32" measures float64 code: say so once per key
                caught.counts[f"note: your NumPy returned grad {k} in {kind} for {given} inputs (it computes in "
                              f"{kind}; a NumPy float64 scalar such as np.sqrt(d) promotes {given} arrays)"] += 1
        return loss, {k: np.asarray(g) for k, g in grads.items()}

    return reference


def _scalar(loss, label: str):
    if not isinstance(loss, torch.Tensor):
        raise _user_error(f"{label}: your torch function", None,
                          f"must return a torch tensor; it returned {type(loss).__name__}")
    if loss.ndim != 0:
        raise _user_error(f"{label}: your torch function", None,
                          f"returned a tensor of shape {tuple(loss.shape)}; return a 0-d loss (e.g. .sum())")
    return loss


def _guarded(fn, label: str, caught: _Warnings):
    def call(*args, **kwargs):
        try:
            return _scalar(caught.call(fn, *args, **kwargs), label)
        except UserCodeError:
            raise
        except Exception as error:
            raise _user_error(f"{label}: your torch function", error,
                              f"raised {type(error).__name__}: {error}") from error

    return call


class _ModuleTwin(nn.Module):
    """A user's nn.Module as the torch side: ``parameters`` maps each NumPy parameter
    name to the module's parameter path, or to (path, transposed) where the NumPy
    layout is the transpose (``nn.Linear.weight`` is (out, in))."""

    def __init__(self, module: nn.Module, parameters: dict, loss, hyper: dict):
        super().__init__()
        self.module, self.loss, self.hyper = module, loss, hyper
        self.LAYOUT = {name: (f"module.{spec}", False) if isinstance(spec, str) else (f"module.{spec[0]}", spec[1])
                       for name, spec in parameters.items()}

    def forward(self, **data):
        if self.loss is None:
            return self.module(**data)
        return self.loss(self.module, data, **self.hyper)


def _twin(torch_fn, parameters, module_loss, label: str, caught: _Warnings):
    if isinstance(torch_fn, nn.Module):
        if not parameters:
            raise TypeError(f"{label}: an nn.Module as the torch side needs parameters={{numpy name: module "
                            f"parameter path}} (its parameters: {[n for n, _ in torch_fn.named_parameters()]})")
        missing = [spec if isinstance(spec, str) else spec[0] for spec in parameters.values()]
        missing = [p for p in missing if p not in dict(torch_fn.named_parameters())]
        if missing:
            raise TypeError(f"{label}: parameters= names {missing}, which the module does not have "
                            f"(it has {[n for n, _ in torch_fn.named_parameters()]})")
        loss = _guarded(module_loss, label, caught) if module_loss is not None else None

        def make(shapes, **hyper):
            twin = _ModuleTwin(copy.deepcopy(torch_fn), parameters, loss, hyper)
            for name, (path, transposed) in twin.LAYOUT.items():
                if name not in shapes:
                    continue
                want = tuple(twin.get_parameter(path).shape)
                got = tuple(shapes[name])[::-1] if transposed else tuple(shapes[name])
                if got != want:
                    raise _user_error(f"{label}: your nn.Module", None,
                                      f"has {path.removeprefix('module.')} of shape {want}, which does not fit "
                                      f"the NumPy parameter {name} of shape {tuple(shapes[name])}"
                                      + (" (transposed)" if transposed else ""))
            if loss is None:
                forward = twin.forward
                twin.forward = _guarded(forward, label, caught)
            return twin

        return make
    if not callable(torch_fn):
        raise TypeError(f"{label}: torch_fn must be a function (params, data, **hyper) -> loss tensor or an "
                        f"nn.Module, got {type(torch_fn).__name__}")
    guarded = _guarded(torch_fn, label, caught)
    return lambda shapes, **hyper: FunctionModule(guarded, shapes, **hyper)


def _tolerance_class(tolerance) -> ToleranceClass:
    if isinstance(tolerance, ToleranceClass):
        return tolerance
    if isinstance(tolerance, str) and tolerance in TOLERANCE_CLASSES:
        return TOLERANCE_CLASSES[tolerance]
    if isinstance(tolerance, int) and not isinstance(tolerance, bool) and tolerance > 0:
        return ToleranceClass(f"depth {tolerance}", tolerance)
    raise ValueError(f"tolerance must be one of {sorted(TOLERANCE_CLASSES)} or a positive int (the number of "
                     f"chained rounding steps besides reductions), got {tolerance!r}")


def _largest_size(example) -> int:
    return max(int(np.size(v)) for v in {**example.params, **example.data}.values())


def user_case(numpy_fn, torch_fn, inputs=None, tolerance=DEEP_MODEL, reduction_length=None, term_scale=None,
              compare_loss: bool = True, name: str | None = None, parameters: dict | None = None,
              module_loss=None, caught: _Warnings | None = None) -> Case:
    """A Case for a user's pair of functions (not registered)."""
    label = name or getattr(numpy_fn, "__name__", "numpy_fn")
    caught = caught or _Warnings()
    if not callable(numpy_fn):
        raise TypeError(f"{label}: numpy_fn must be a function (params, data, **hyper) -> (loss, grads), "
                        f"got {type(numpy_fn).__name__}")
    return Case(
        name=label, kind="user", reference=_numpy_side(numpy_fn, label, caught),
        twin=_twin(torch_fn, parameters, module_loss, label, caught), inputs=inputs, build=None,
        tolerance=_tolerance_class(tolerance), reduction_length=reduction_length or _largest_size,
        term_scale=term_scale, compare_loss=compare_loss,
    )


USER_NAMES = {"who": "your NumPy", "expected": "your NumPy in float64"}


def _names(dtype, device) -> dict:
    dtype = precision.name(dtype)
    return {**USER_NAMES, "numpy": f"your NumPy in {dtype}", "torch": f"torch autograd ({dtype}, {device})"}


def _check_dtypes(dtypes) -> list:
    """Each of ``dtypes`` as the harness knows it, or a ValueError (TypeError) naming the argument."""
    resolved = []
    for d in dtypes:
        try:
            resolved.append(precision.resolve(d))
        except TypeError as error:
            raise TypeError(f"dtypes: {d!r} is not a dtype") from error
    for d in resolved:
        if d not in TORCH_DTYPES:
            raise ValueError(f"dtypes: {precision.name(d)} is not one of {[precision.name(t) for t in TORCH_DTYPES]}")
    if not resolved:
        raise ValueError("dtypes is empty: nothing would be checked")
    return resolved


def _example(value, label: str) -> Example:
    if isinstance(value, Example):
        return value
    raise TypeError(f"{label}: inputs must draw agreement.Example(params, data, hyper), got {type(value).__name__}")


def _check_example(case: Case, example: Example, dtype, device: str) -> list[Comparison]:
    for part, values in (("params", example.params), ("data", example.data)):
        for k, v in values.items():
            arr = np.asarray(v)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{case.name}: {part}[{k!r}] must be a numeric array, got dtype {arr.dtype}")
            if part == "params" and arr.dtype.kind != "f":
                raise TypeError(f"{case.name}: params[{k!r}] must be a floating array (gradients are taken of "
                                f"it), got dtype {arr.dtype}")
    if not example.params:
        raise TypeError(f"{case.name}: the example has no params to take gradients of")
    return evaluate(case, example, dtype, device, names=_names(dtype, device))


def assert_gradients_close(numpy_fn, torch_fn, params, data=None, hyper=None, *, dtype=None, device: str = "cpu",
                           name: str | None = None, compare_loss: bool = True, tolerance=DEEP_MODEL,
                           parameters: dict | None = None, module_loss=None) -> list[Comparison]:
    """Assert that ``numpy_fn``'s loss and gradients agree with autograd on ``torch_fn``
    on one example, as ``torch.testing.assert_close`` does for two tensors: no
    Hypothesis loop of its own, so it fits inside your own ``@given`` tests.

    ``params``: dict of parameter arrays (or an ``agreement.Example``, then
    ``data``/``hyper`` come from it); ``data``: dict of other arrays (integer
    arrays such as labels stay integer); ``hyper``: keyword arguments of both
    functions. ``dtype``: the precision both sides compute in (default: the
    params' own dtype; "bfloat16", "float16", "tf32" or a torch dtype for low
    precision, agreement/precision.py), compared with NumPy in float64 on the
    same values (rounded to ``dtype`` first). Raises ``agreement.Unresolvable``
    where ``dtype`` cannot hold the reference's values or a side overflows in it.
    ``torch_fn`` may be an ``nn.Module`` with ``parameters={numpy name: parameter
    path or (path, transposed)}``; it is called as ``module(**data)``, or as
    ``module_loss(module, data, **hyper)`` when its output is not the loss.
    ``tolerance``: "elementwise", "loss", "linear-model", "deep-model" (default) or
    a number of chained rounding steps, for the analytic floor.

    Raises AssertionError listing every disagreeing quantity; returns the comparisons.
    """
    example = params if isinstance(params, Example) else Example(dict(params), dict(data or {}), dict(hyper or {}))
    if not isinstance(example.params, dict) or not example.params:
        raise TypeError("params must be a non-empty dict of arrays or an agreement.Example")
    caught = _Warnings()
    case = user_case(numpy_fn, torch_fn, tolerance=tolerance, compare_loss=compare_loss, name=name,
                     parameters=parameters, module_loss=module_loss, caught=caught)
    # the params' own dtype by default (an integer one is refused by name in _check_example)
    dtype = example.dtype if dtype is None else _check_dtypes([dtype])[0]
    comparisons = _check_example(case, example, dtype, device)
    failed = [c for c in comparisons if not c.ok]
    if failed:
        notes = [caught.summary("your code")] if caught.counts else []
        raise AssertionError("\n".join([*(c.report() for c in failed), *notes]))
    return comparisons


@dataclass
class Summary:
    """The worst comparison seen per (case, dtype, device), and the failure if any."""

    case: str
    dtype: str
    device: str
    examples: int = 0
    worst: Comparison | None = None
    failure: str | None = None
    warnings: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> examples the precision could not resolve

    @property
    def ok(self) -> bool:
        return self.failure is None

    def record(self, comparisons) -> None:
        """One compared example: counted, and its worst comparison kept if the worst so far."""
        self.examples += 1
        worst = max(comparisons, key=lambda c: c.ratio)
        if self.worst is None or worst.ratio > self.worst.ratio:
            self.worst = worst

    def line(self) -> str:
        worst = f"worst {format_ratio(self.worst.ratio)} the tolerance at {self.worst.what}" if self.worst else ""
        return (f"{self.case} ({self.dtype}, {self.device}): {self.examples} examples, {worst}"
                + (f"; {self.skip_line()}" if self.skipped else ""))

    def skip_line(self) -> str:
        total = sum(self.skipped.values())
        top = "; ".join(f"{n}x {reason}" for reason, n in self.skipped.most_common(3))
        return f"{total} skipped as beyond {self.dtype} ({top})"

    def nothing_compared(self) -> None:
        """Every example skipped: a failure, since nothing was checked."""
        if self.examples == 0 and self.skipped and self.failure is None:
            self.failure = f"no example could be compared in {self.dtype}: {self.skip_line()}"


def _describe(error: BaseException) -> str:
    """An exception (or a group of them, as Hypothesis raises for several distinct
    failures) as text with Hypothesis's notes (the falsifying example)."""
    if isinstance(error, BaseExceptionGroup):
        parts = [_describe(e) for e in error.exceptions]
        return f"{len(parts)} distinct failures:\n\n" + "\n\n".join(
            f"[{i}] {part}" for i, part in enumerate(parts, start=1))
    return "\n".join([str(error), *getattr(error, "__notes__", [])])


def _strategy(inputs, dtype, label: str):
    """``inputs``: a strategy of Examples, or a function of dtype returning one."""
    if isinstance(inputs, SearchStrategy):
        return inputs.map(lambda ex: _example(ex, label).astype(dtype))
    if callable(inputs):
        strategy = inputs(dtype)
        if not isinstance(strategy, SearchStrategy):
            raise TypeError(f"{label}: inputs(dtype) must return a Hypothesis strategy of agreement.Example, "
                            f"got {type(strategy).__name__}")
        return strategy
    raise TypeError(f"{label}: inputs must be a Hypothesis strategy of agreement.Example, a function "
                    f"dtype -> such a strategy, an Example or a list of Examples; got {type(inputs).__name__}")


_HYPOTHESIS_SETTINGS = dict(database=None, deadline=None, print_blob=True,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _phases():
    """The loaded profile's phases (a suite may drop shrinking) less explain, which
    would point at the harness's own lines, not the user's."""
    return [p for p in settings.default.phases if p != Phase.explain]


def run_case(case: Case, dtype, device: str, max_examples: int, derandomize: bool = True, seed: int | None = None,
             names: dict | None = None, caught: _Warnings | None = None, inputs=None) -> Summary:
    """Hypothesis over the case's inputs; records the worst ratio and any minimal failure."""
    summary = Summary(case.name, precision.name(dtype), device)
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    strategy = _strategy(inputs if inputs is not None else case.inputs, dtype, case.name)

    def one(example):
        example = _example(example, case.name)
        try:
            comparisons = evaluate(case, example, dtype, device, names=names)
        except Unresolvable as skip:
            summary.skipped[skip.reason] += 1
            return
        summary.record(comparisons)
        failed = [c for c in comparisons if not c.ok]
        if failed:
            raise AssertionError("\n".join(c.report() for c in failed))

    @settings(max_examples=max_examples, derandomize=derandomize and seed is None, phases=_phases(),
              **_HYPOTHESIS_SETTINGS)
    @given(data=st.data())
    def check(data):
        one(data.draw(strategy, label="example"))

    if seed is not None:
        check = hypothesis_seed(seed)(check)
    try:
        check()
    except (AssertionError, BaseExceptionGroup) as error:  # Hypothesis re-raises the shrunk failure, with notes
        summary.failure = _describe(error)
    if caught is not None:
        summary.warnings = Counter(caught.counts)
    summary.nothing_compared()
    return summary


def _fixed(case: Case, examples, dtype, device: str, names: dict) -> Summary:
    summary = Summary(case.name, precision.name(dtype), device)
    failures = []
    for i, example in enumerate(examples):
        try:
            comparisons = _check_example(case, _example(example, case.name).astype(dtype), dtype, device)
        except AssertionError as error:
            failures.append(f"example {i}: {error}")
            continue
        except Unresolvable as skip:
            summary.skipped[skip.reason] += 1
            continue
        summary.record(comparisons)
        failures += [f"example {i}: {c.report()}" for c in comparisons if not c.ok]
    summary.failure = "\n\n".join(failures) or None
    summary.nothing_compared()
    return summary


def check_gradients(numpy_fn, torch_fn, inputs, *, name: str | None = None, dtypes=DTYPES, devices=None,
                    max_examples: int = 50, derandomize: bool = True, seed: int | None = None,
                    compare_loss: bool = True, tolerance=DEEP_MODEL, reduction_length=None, term_scale=None,
                    parameters: dict | None = None, module_loss=None) -> list[Summary]:
    """Check ``numpy_fn``'s loss and gradients against autograd on ``torch_fn`` over a
    Hypothesis search (module docstring), in every dtype of ``dtypes`` on every device.

    ``inputs``: a Hypothesis strategy of ``agreement.Example`` (cast to each dtype),
    a function ``dtype -> strategy``, an ``Example``, or a list of Examples (checked
    as given, no search). ``derandomize`` (default) draws the same examples on every
    call; ``seed=N`` draws a reproducible different set per N. ``tolerance``,
    ``parameters``, ``module_loss``: as in ``assert_gradients_close``;
    ``reduction_length(example)`` (default: the largest array's size) and
    ``term_scale(example) -> {"loss": magnitude of the loss's terms}`` feed the analytic floor
    (agreement/tolerance.py; only the "loss" entry of a term scale is used there) and are rarely needed.

    ``dtypes`` may include the low precisions "bfloat16", "float16" and "tf32" (CUDA
    only), each judged by each side's own rounding (docs/low-precision.md); examples
    they cannot resolve are skipped and counted in ``Summary.skipped``, and a dtype
    where every example was skipped fails.

    Returns one Summary per dtype and device when all agree; raises AssertionError
    listing each failure otherwise. Warnings from your code are counted, not printed.
    """
    caught = _Warnings()
    case = user_case(numpy_fn, torch_fn, None, tolerance, reduction_length, term_scale, compare_loss, name,
                     parameters, module_loss, caught)
    devices = list(devices or available_devices())
    fixed = [inputs] if isinstance(inputs, Example) else list(inputs) if isinstance(inputs, list | tuple) else None
    summaries = []
    for dtype in _check_dtypes(dtypes):
        runs_on = [d for d in devices if precision.runs_on(dtype, d)]
        if not runs_on:
            warnings.warn(f"{case.name}: {precision.name(dtype)} runs on {' and '.join(dtype.devices)} only, and "
                          f"none of {devices} is: not checked", stacklevel=2)
        for device in runs_on:
            caught.counts.clear()
            names = _names(dtype, device)
            if fixed is not None:
                s = _fixed(case, fixed, dtype, device, names)
                s.warnings = Counter(caught.counts)
            else:
                s = run_case(case, dtype, device, max_examples, derandomize, seed, names, caught, inputs)
            summaries.append(s)
            if s.worst is not None:
                _results.record(case.name, s.dtype, device, s.examples, s.worst.ratio, s.worst.what)
    failed = [s for s in summaries if not s.ok]
    if failed:
        parts = [f"{s.case} ({s.dtype}, {s.device}) failed:\n{s.failure}"
                 + (f"\n{warning_summary(s.warnings, 'your code')}" if s.warnings else "") for s in failed]
        raise AssertionError("\n\n".join(parts))
    return summaries
