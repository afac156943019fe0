"""Training curves of the NumPy reference and its torch twin, and their divergence per step.

The tolerance drawn per step is the one ``agreement.trajectory`` applies: it is
read from ``judge_steps``' comparisons (every step, up to the first that
failed), never re-derived here. Below float32 (bfloat16, float16; TF32 on CUDA)
the judge measures torch's own rounding by the same torch run in float64 from
the same start, and stops at the measured horizon, where rounding, not the math,
decides the trajectory; NumPy has no bfloat16 (agreement/precision.py), so
that dtype has no NumPy curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agreement import precision
from agreement.compare import Comparison
from agreement.optimizers import OPTIMIZERS
from agreement.registry import Case, Example
from agreement.report.gradients import report_dtypes
from agreement.run import Unresolvable, _low_numpy
from agreement.trajectory import Reference, judge_steps, reference_trajectory, torch_trajectory

OPTIMIZER = OPTIMIZERS["sgd"]
# Step sizes tried when SGD's default diverges on a builder's example (sum-reduced
# losses over tutorial-sized batches): each a tenth of the one before.
LR_TRIALS = 8
# A trajectory counts as stable while every parameter stays finite and within
# this factor of the largest initial magnitude (or of 1).
GROWTH_LIMIT = 1e3


@dataclass
class DtypeTrajectory:
    """One dtype's runs. Losses are per step, before each update."""

    dtype: str
    numpy_losses: np.ndarray | None  # the reference computed in this dtype; None: none (see numpy_note)
    torch_losses: np.ndarray  # the twin in this dtype
    reference_losses: np.ndarray  # float64 reference from the same (rounded) start
    checked_steps: list  # steps whose tolerance trajectory_steps reported
    loss_allowed: list  # the allowed |torch loss - reference loss| at those steps (NaN: the loss is not judged)
    loss_errors: list  # trajectory_steps' |torch loss - reference loss| there (= torch_divergence)
    worst: Comparison  # largest error/tolerance ratio over loss and parameters at the last checked step
    numpy_note: str = ""  # why numpy_losses is None: NumPy has no such dtype, or its run failed in it

    @property
    def steps(self) -> int:
        return len(self.torch_losses)

    @property
    def horizon(self) -> int | None:
        """Below float32: the number of leading steps judged, where the judge stopped at
        the measured horizon before the end without a failure; None otherwise."""
        judged = len(self.checked_steps)
        return judged if self.worst.ok and judged < self.steps else None

    @property
    def torch_divergence(self) -> np.ndarray:
        return np.abs(self.torch_losses - self.reference_losses)

    @property
    def numpy_divergence(self) -> np.ndarray | None:
        if self.numpy_losses is None:
            return None
        return np.abs(self.numpy_losses.astype(np.float64) - self.reference_losses)

    @property
    def failed_step(self) -> int | None:
        return self.checked_steps[-1] if not self.worst.ok else None


@dataclass
class TrainingResult:
    opt_hyper: dict
    lr_note: str  # empty, or why the step size differs from SGD's default
    runs: dict  # dtype name -> DtypeTrajectory
    skipped: dict = field(default_factory=dict)  # dtype name -> why its trajectory cannot be judged (Unresolvable)


def _is_stable(example: Example, trajectory) -> bool:
    start = max((float(np.max(np.abs(v), initial=0)) for v in example.params.values()), default=0.0)
    limit = GROWTH_LIMIT * max(start, 1.0)
    return all(np.all(np.isfinite(v)) and float(np.max(np.abs(v), initial=0)) <= limit
               for params in trajectory for v in params.values())


def stable_hyper(case: Case, example: Example, steps: int) -> tuple[dict, str]:
    """SGD's defaults, with the step size divided by 10 until the float64 reference
    trajectory stays finite and bounded (see GROWTH_LIMIT)."""
    hyper = dict(OPTIMIZER.defaults)
    ex64 = example.astype(np.float64)
    for _ in range(LR_TRIALS):
        try:
            with np.errstate(all="ignore"):
                _, trajectory = reference_trajectory(case, OPTIMIZER, ex64, hyper, steps)
            if _is_stable(ex64, trajectory):
                break
        except (ValueError, FloatingPointError):
            pass  # the reference rejects non-finite inputs: diverged
        hyper["lr"] /= 10
    else:
        raise RuntimeError(f"{case.name}: SGD diverges even at lr={hyper['lr'] * 10:g}")
    default_lr = OPTIMIZER.defaults["lr"]
    note = "" if hyper["lr"] == default_lr else (
        f"lr {default_lr:g} (SGD default here) diverges on this example; lowered to {hyper['lr']:g}")
    return hyper, note


def _loss_comparison(comparisons) -> Comparison | None:
    """None where the case's loss is a probe the judge does not compare (``Case.compare_loss``)."""
    return next((c for c in comparisons if c.what.endswith(" loss")), None)


def _step_of(comparison: Comparison) -> int:
    return int(comparison.what.split()[1])  # "step 3 loss" / "step 3 param W"


def _numpy_losses(case, ex, hyper, steps, dtype, against) -> tuple[np.ndarray | None, str]:
    """The NumPy reference's losses computed in ``dtype``, or None and why there are none
    (float64: ``against``'s own run)."""
    if not precision.numpy_computes_in(dtype):
        return None, f"NumPy has no {precision.name(dtype)} (agreement/precision.py): torch only"
    if precision.resolve(dtype) == np.float64:
        return against.losses, ""
    run = lambda e: reference_trajectory(case, OPTIMIZER, e, hyper, steps)[0]  # noqa: E731
    if not precision.is_low(dtype):
        return run(ex), ""
    try:
        return _low_numpy(run, ex, dtype), ""
    except Unresolvable as skip:  # float16 overflow is the precision's, not the reference's
        return None, str(skip)


def _dtype_run(case, example, hyper, steps, dtype, device) -> DtypeTrajectory:
    ex = example.astype(dtype)
    against = Reference(case, OPTIMIZER, ex, hyper, steps, dtype)  # the float64 run from the same (rounded) start
    numpy_losses, numpy_note = _numpy_losses(case, ex, hyper, steps, dtype, against)
    reference_losses = against.losses
    # below float32 the judge measures torch's own rounding: the same torch run in float64 from the same start
    torch_losses, torch_params, own64 = torch_trajectory(case, OPTIMIZER, ex, hyper, steps, dtype, device)
    checked, allowed, errors = [], [], []
    per_step = judge_steps(case, OPTIMIZER, ex, hyper, dtype, torch_losses, torch_params, f"torch-{device}",
                           against=against, own64=own64, torch_device=device)
    for comparisons in per_step:
        loss = _loss_comparison(comparisons)
        step = _step_of(comparisons[0])
        checked.append(step)
        allowed.append(np.nan if loss is None else loss.allowed)
        errors.append(abs(float(torch_losses[step]) - float(reference_losses[step])) if loss is None
                      else loss.abs_err)
    worst = max(per_step[-1], key=lambda c: c.ratio)
    return DtypeTrajectory(precision.name(dtype), numpy_losses, np.asarray(torch_losses, np.float64),
                           reference_losses, checked, allowed, errors, worst, numpy_note)


def training(case: Case, size: str, steps: int, seed: int, device: str) -> TrainingResult:
    """Every dtype the report compares on ``device`` (``report_dtypes``); a low precision
    whose trajectory cannot be judged from the first step is left out with its reason."""
    example = case.build(size, np.float64, seed)
    hyper, note = stable_hyper(case, example, steps)
    runs, skipped = {}, {}
    for dtype in report_dtypes(device):
        try:
            runs[precision.name(dtype)] = _dtype_run(case, example, hyper, steps, dtype, device)
        except Unresolvable as skip:
            skipped[precision.name(dtype)] = str(skip)
    return TrainingResult(hyper, note, runs, skipped)
