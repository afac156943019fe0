"""Evaluate one case on one example: both implementations against the float64 reference."""

from __future__ import annotations

import numpy as np
import torch

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.tolerance import tolerance
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


def _compare_all(case, example, loss, grads, exp_loss, exp_grads, dtype, device) -> list[Comparison]:
    n = case.reduction_length(example)
    dtype_name = np.dtype(dtype).name
    shapes = {k: tuple(v) for k, v in example.shapes().items()}
    context = {"shapes": shapes, "hyper": example.hyper}
    scales = term_scales(case, example)
    out = []
    if case.compare_loss:
        cond = case.loss_condition(example) if case.loss_condition else 1.0
        tol = tolerance(case.tolerance, dtype, n, exp_loss, cond, scales.get("loss", 0.0))
        out.append(compare(loss, exp_loss, tol,
                           case=case.name, what="loss", dtype=dtype_name, device=device, context=context))
    missing = set(exp_grads) ^ set(grads)
    if missing:
        raise AssertionError(f"{case.name}: parameters {sorted(missing)} are on one side only "
                             f"({dtype_name}, {device})")
    for name in sorted(exp_grads):
        if grads[name] is None:
            raise AssertionError(f"{case.name}: {name} received no gradient ({dtype_name}, {device})")
        out.append(compare(grads[name], exp_grads[name],
                           tolerance(case.tolerance, dtype, n, exp_grads[name], term_scale=scales.get(name, 0.0)),
                           case=case.name, what=f"grad {name}", dtype=dtype_name, device=device,
                           context=context))
    return out


def evaluate(case: Case, example: Example, dtype, device: str = "cpu", reference=None) -> list[Comparison]:
    """Torch (``device``) in ``dtype``, and NumPy in ``dtype`` when that is not float64,
    each compared with the float64 NumPy reference. ``reference`` overrides the
    case's NumPy function (used to show the comparison catches a wrong one)."""
    reference = reference or case.reference
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    exp_loss, exp_grads = reference(ex64.params, ex64.data, **ex64.hyper)
    t_loss, t_grads = train.loss_and_grads(case.twin, example.params, example.data, example.hyper,
                                           device, TORCH_DTYPES[np.dtype(dtype)])
    out = _compare_all(case, example, t_loss, t_grads, exp_loss, exp_grads, dtype, f"torch-{device}")
    if np.dtype(dtype) != np.float64:
        n_loss, n_grads = reference(example.params, example.data, **example.hyper)
        out += _compare_all(case, example, n_loss, n_grads, exp_loss, exp_grads, dtype, "numpy")
    return out
