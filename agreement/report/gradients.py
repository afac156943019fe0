"""Element-wise relative error of gradients, NumPy and torch, against the float64 reference.

The verdicts are the harness's own (``agreement.run.evaluate``); the histograms
show the whole distribution behind each verdict's worst element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agreement.registry import Case
from agreement.run import TORCH_DTYPES, evaluate
from torch_impl import train

DTYPES = (np.float32, np.float64)


@dataclass
class ErrorSample:
    """Relative errors |actual - expected| / |expected| of one gradient array."""

    label: str  # "torch float32", "NumPy float32", "torch float64"
    dtype: str
    finite: np.ndarray  # the nonzero, finite relative errors
    identical: int  # elements equal to the reference
    unbounded: int  # nonzero where the reference is exactly zero


@dataclass
class ParameterErrors:
    name: str
    size: int
    samples: list  # of ErrorSample
    rtol: dict  # dtype name -> the policy's rtol for this gradient (torch comparison)


@dataclass
class GradientResult:
    parameters: list  # of ParameterErrors
    comparisons: list  # agreement.run.evaluate's, all dtypes


def relative_errors(actual, expected, label: str, dtype: str) -> ErrorSample:
    actual, expected = np.asarray(actual, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
    err = np.abs(actual - expected)
    identical = int(np.count_nonzero(err == 0))
    unbounded = int(np.count_nonzero((err != 0) & (expected == 0)))
    keep = (err != 0) & (expected != 0)
    return ErrorSample(label, dtype, err[keep] / np.abs(expected[keep]), identical, unbounded)


def gradient_errors(case: Case, size: str, seed: int, device: str) -> GradientResult:
    example = case.build(size, np.float64, seed)
    samples: dict[str, list] = {}
    comparisons = []
    for dtype in DTYPES:
        name = np.dtype(dtype).name
        ex = example.astype(dtype)
        ex64 = ex.astype(np.float64)
        _, expected = case.reference(ex64.params, ex64.data, **ex64.hyper)
        _, torch_grads = train.loss_and_grads(case.twin, ex.params, ex.data, ex.hyper, device,
                                              TORCH_DTYPES[np.dtype(dtype)])
        sides = [("torch", torch_grads)]
        if np.dtype(dtype) != np.float64:
            sides.append(("NumPy", case.reference(ex.params, ex.data, **ex.hyper)[1]))
        for side, grads in sides:
            for param in expected:
                samples.setdefault(param, []).append(
                    relative_errors(grads[param], expected[param], f"{side} {name}", name))
        comparisons += evaluate(case, example, dtype, device)
    parameters = []
    for param in example.params:
        param_samples = samples[param]
        rtol = {c.dtype: c.tol.rtol for c in comparisons
                if c.what == f"grad {param}" and c.device.startswith("torch")}
        parameters.append(ParameterErrors(param, int(np.size(example.params[param])), param_samples, rtol))
    return GradientResult(parameters, comparisons)

