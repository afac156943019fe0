"""Element-wise relative error of gradients, NumPy and torch, against the float64 reference.

The verdicts are the harness's own (``agreement.run.evaluate``); the histograms
show the whole distribution behind each verdict's worst element. Below float32
(bfloat16, float16; TF32 on CUDA) each element's tolerance is twice the side's
own rounding there (agreement/rounding.py), so no single rtol exists; the
figure's marker for those dtypes is the median over the elements of the
allowed relative error, allowed / |expected|, of the torch comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agreement import precision
from agreement.precision import LOW_PRECISIONS
from agreement.registry import Case
from agreement.run import Unresolvable, devices, evaluate, torch_dtype, torch_precision
from agreement.run import expected as reference_in_float64
from torch_impl import train


def report_dtypes(device: str) -> list:
    """float32 and float64, then the low precisions that run on ``device`` (TF32: CUDA only),
    in the order of agreement.precision.LOW_PRECISIONS."""
    return [np.dtype(np.float32), np.dtype(np.float64), *(d for d in LOW_PRECISIONS if device in devices(d))]


@dataclass
class ErrorSample:
    """Relative errors |actual - expected| / |expected| of one gradient array."""

    label: str  # "torch float32", "NumPy float32", "torch float64", "torch bfloat16", "NumPy float16"
    dtype: str
    finite: np.ndarray  # the nonzero, finite relative errors
    identical: int  # elements equal to the reference
    unbounded: int  # nonzero where the reference is exactly zero


@dataclass
class ParameterErrors:
    name: str
    size: int
    samples: list  # of ErrorSample
    rtol: dict  # dtype name -> the policy's rtol for this gradient (torch comparison); float32, float64
    # low precision dtype name -> median over the nonzero reference elements of the torch
    # comparison's allowed |error| / |expected| (its rtol is 0: the tolerance is per element)
    median_allowed: dict = field(default_factory=dict)


@dataclass
class GradientResult:
    parameters: list  # of ParameterErrors
    comparisons: list  # agreement.run.evaluate's, every dtype compared
    skipped: dict = field(default_factory=dict)  # dtype name -> why evaluate could not compare it (Unresolvable)


def relative_errors(actual, expected, label: str, dtype: str) -> ErrorSample:
    actual, expected = np.asarray(actual, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
    err = np.abs(actual - expected)
    identical = int(np.count_nonzero(err == 0))
    unbounded = int(np.count_nonzero((err != 0) & (expected == 0)))
    keep = (err != 0) & (expected != 0)
    return ErrorSample(label, dtype, err[keep] / np.abs(expected[keep]), identical, unbounded)


def median_allowed(comparison, expected) -> float | None:
    """The median of allowed / |expected| over the elements whose reference is nonzero;
    None where every one is 0 (no relative tolerance to draw)."""
    expected = np.asarray(expected, np.float64)
    allowed = np.broadcast_to(comparison.tol.bound(expected), expected.shape)
    keep = expected != 0
    return float(np.median(allowed[keep] / np.abs(expected[keep]))) if np.any(keep) else None


def gradient_errors(case: Case, size: str, seed: int, device: str) -> GradientResult:
    example = case.build(size, np.float64, seed)
    samples: dict[str, list] = {param: [] for param in example.params}
    expected_by_dtype, comparisons, skipped = {}, [], {}
    for dtype in report_dtypes(device):
        name = precision.name(dtype)
        # evaluate first: where the precision cannot hold this example it says why, and the dtype is left out
        try:
            comparisons += evaluate(case, example, dtype, device)
        except Unresolvable as skip:
            skipped[name] = str(skip)
            continue
        ex = example.astype(dtype)
        _, expected = reference_in_float64(case, ex)
        expected_by_dtype[name] = expected
        with torch_precision(dtype):
            _, torch_grads = train.loss_and_grads(case.twin, ex.params, ex.data, ex.hyper, device,
                                                  torch_dtype(dtype))
        sides = [("torch", torch_grads)]
        if name != "float64" and precision.numpy_computes_in(dtype):
            with np.errstate(all="ignore"):  # float16 overflow would have made evaluate skip the dtype
                sides.append(("NumPy", case.reference(ex.params, ex.data, **ex.hyper)[1]))
        for side, grads in sides:
            for param in expected:
                samples[param].append(relative_errors(grads[param], expected[param], f"{side} {name}", name))
    parameters = []
    for param in example.params:
        torch_side = [c for c in comparisons if c.what == f"grad {param}" and c.device.startswith("torch")]
        rtol = {c.dtype: c.tol.rtol for c in torch_side if not precision.is_low(c.dtype)}
        medians = {c.dtype: median_allowed(c, expected_by_dtype[c.dtype][param]) for c in torch_side
                   if precision.is_low(c.dtype)}
        parameters.append(ParameterErrors(param, int(np.size(example.params[param])), samples[param], rtol,
                                          {k: v for k, v in medians.items() if v is not None}))
    return GradientResult(parameters, comparisons, skipped)
