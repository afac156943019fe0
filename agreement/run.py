"""Evaluate one case on one example: both implementations against the float64 reference."""

from __future__ import annotations

import numpy as np
import torch

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.rounding import Measurement, input_magnitude, measure
from agreement.tolerance import Tolerance, tolerance
from torch_impl import train

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def expected(case: Case, example: Example):
    """The reference in float64 on the example's values (exact upcast of the drawn dtype)."""
    ex64 = example.astype(np.float64)
    return case.reference(ex64.params, ex64.data, **ex64.hyper)


def term_scales(case: Case, example: Example) -> dict:
    return case.term_scale(example.astype(np.float64)) if case.term_scale else {}


def _torch_call(case: Case, device: str):
    """Torch's loss and gradients; the module is built once per dtype and reloaded for
    each evaluation (one example's measurement evaluates it at several nearby inputs)."""
    modules = {}

    def call(example: Example, dtype):
        torch_dtype = TORCH_DTYPES[np.dtype(dtype)]
        if torch_dtype not in modules:
            modules[torch_dtype] = train.build(case.twin, example.params, example.hyper, device, torch_dtype)
        return train.loss_and_grads_of(modules[torch_dtype], example.params, example.data, device, torch_dtype)

    return call


def _numpy_call(reference):
    def call(example: Example):
        return reference(example.params, example.data, **example.hyper)

    return call


def _tolerances(case, example, dtype, measurement: Measurement):
    """``tol(key, actual, expected, cond)``: the analytic floor (normwise on each array) plus
    the rounding measured on this input; what it needs of the example is computed once, for
    every side judged against it."""
    n = case.reduction_length(example)
    input_scale = input_magnitude(example)
    # A case's own analytic magnitude of its loss's terms, where it declares one: the one
    # rounding no measurement sees is a fixed one on data, (1 - y) with y = 2e-10 in
    # BCE-with-logits, which float32 absorbs whole and no nearby input re-rounds.
    loss_terms = term_scales(case, example).get("loss", 0.0)

    def tol(key, actual, expected, cond=1.0):
        # normwise: relative to the array's largest element. An elementwise floor leaves
        # results that are 0 in the mathematics to the measurement alone, and float32
        # can under-measure them systematically: 1 - 2e-9 rounds to exactly 1 at every
        # nearby input (two_layer_classifier, logits [-18, 3, -18, -18]).
        terms = loss_terms if key == "loss" else 0.0
        floor = tolerance(case.tolerance, dtype, n, expected, cond, terms)
        fallback = measurement.degenerate(key, np.shape(expected)) & (np.asarray(actual, np.float64) != expected)
        atol = floor.atol if not np.any(fallback) else np.where(
            fallback, tolerance(case.tolerance, dtype, n, expected, cond, max(terms, input_scale)).atol, floor.atol)
        measured = measurement.bound(key, np.shape(expected))
        return Tolerance(floor.rtol, atol, measured=0.0 if measured is None else measured)

    return tol


def _compare_side(case, example, side: str, loss, grads, exp_loss, exp_grads, dtype, device, tol,
                  names: dict) -> list[Comparison]:
    """One side (``side`` "numpy" or "torch") against the float64 reference, within ``tol``
    (``_tolerances``)."""
    dtype_name = np.dtype(dtype).name
    context = {"shapes": {k: tuple(v) for k, v in example.shapes().items()}, "hyper": example.hyper}
    actual_name, expected_name = names[side], names["expected"]

    def cmp(actual, expected, key, what, cond=1.0):
        expected = np.asarray(expected, np.float64)
        if np.shape(actual) != expected.shape:
            raise AssertionError(f"{case.name}: {what} from {actual_name} has shape {np.shape(actual)}, but "
                                 f"{expected_name} has shape {expected.shape}")
        return compare(actual, expected, tol(key, actual, expected, cond), case=case.name, what=what,
                       dtype=dtype_name, device=device, context=context, actual_name=actual_name,
                       expected_name=expected_name)

    out = []
    if case.compare_loss:
        if np.ndim(loss) != 0 or np.ndim(exp_loss) != 0:
            raise AssertionError(f"{case.name}: the loss must be a scalar; {actual_name} gave shape "
                                 f"{np.shape(loss)}, {expected_name} gave shape {np.shape(exp_loss)}")
        cond = case.loss_condition(example) if case.loss_condition else 1.0
        out.append(cmp(loss, exp_loss, "loss", "loss", cond))
    extra, missing = sorted(set(grads) - set(exp_grads)), sorted(set(exp_grads) - set(grads))
    if extra or missing:
        raise AssertionError(f"{case.name}: gradients of {extra or missing} come from "
                             f"{actual_name if extra else expected_name} only")
    for name in sorted(exp_grads):
        if grads[name] is None:
            raise AssertionError(f"{case.name}: {name} received no gradient from {actual_name}")
        out.append(cmp(grads[name], exp_grads[name], name, f"grad {name}"))
    return out


DEFAULT_NAMES = {"expected": "the NumPy reference in float64"}


def compare_other(case: Case, example: Example, dtype, loss, grads, label: str, device: str = "cpu"
                  ) -> list[Comparison]:
    """A third implementation's ``loss`` and ``grads`` (in ``dtype``, on ``example``) against
    the float64 reference, judged as torch is: the floor plus the rounding measured on
    the reference and on torch (e.g. the reference's fast path, reference/fast.py)."""
    dtype = np.dtype(dtype)
    numpy_call, torch_call = _numpy_call(case.reference), _torch_call(case, device)
    example = example.astype(dtype)
    exp_loss, exp_grads = numpy_call(example.astype(np.float64))
    measurement = measure(numpy_call, torch_call, example, dtype, numpy64=(exp_loss, exp_grads),
                          **({"numpy_own": (exp_loss, exp_grads)} if dtype == np.float64 else {}))
    names = {**DEFAULT_NAMES, label: f"{label} in {dtype.name}"}
    return _compare_side(case, example, label, loss, grads, exp_loss, exp_grads, dtype, label,
                         _tolerances(case, example, dtype, measurement), names)


def evaluate(case: Case, example: Example, dtype, device: str = "cpu", reference=None,
             names: dict | None = None) -> list[Comparison]:
    """Torch (``device``) in ``dtype``, and NumPy in ``dtype`` when that is not float64,
    each compared with the float64 NumPy reference, within the analytic floor plus
    the rounding measured on this example (agreement/rounding.py). ``reference``
    overrides the case's NumPy function (used to show the comparison catches a
    wrong one); ``names``: what reports call "numpy", "torch" and "expected"."""
    dtype = np.dtype(dtype)
    numpy_call, torch_call = _numpy_call(reference or case.reference), _torch_call(case, device)
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    exp_loss, exp_grads = numpy_call(ex64)
    t_loss, t_grads = torch_call(example, dtype)
    n_out = numpy_call(example) if dtype != np.float64 else None
    measurement = measure(numpy_call, torch_call, example, dtype, numpy_own=n_out or (exp_loss, exp_grads),
                          numpy64=(exp_loss, exp_grads),
                          torch_own=(t_loss, t_grads),
                          torch64=(t_loss, t_grads) if dtype == np.float64 else None)
    names = {**DEFAULT_NAMES, "numpy": f"NumPy in {dtype.name}",
             "torch": f"torch autograd ({dtype.name}, {device})", **(names or {})}
    tol = _tolerances(case, example, dtype, measurement)
    out = _compare_side(case, example, "torch", t_loss, t_grads, exp_loss, exp_grads, dtype, f"torch-{device}",
                        tol, names)
    if n_out is not None:
        out += _compare_side(case, example, "numpy", *n_out, exp_loss, exp_grads, dtype, "numpy", tol, names)
    if not all(c.ok for c in out):
        values = {"numpy64": exp_grads, "torch": t_grads, **({"numpy": n_out[1]} if n_out is not None else {})}
        from agreement import verdict  # finite_differences imports this module

        verdict.explain(out, lambda params: numpy_call(ex64.with_params(params))[0], ex64, values, names)
    return out
