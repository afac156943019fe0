"""K optimizer steps on both sides from identical parameters, compared step by step.

Tolerance at step t: two correct implementations start equal, differ by
rounding each step, and the training map carries earlier differences forward,
amplified by its sensitivity. The sensitivity is measured, not guessed: the
float64 reference trajectory is rerun from parameters perturbed by a relative
``PERTURBATION``, and the observed growth ``G_t = |Δθ_t| / |Δθ_0|`` (at least 1)
multiplies the policy's single-evaluation tolerance, accumulated over t+1 steps:

    tol_t = tolerance(case, dtype, n, θ_t) * (t + 1) * G_t
"""

from __future__ import annotations

import numpy as np

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.run import TORCH_DTYPES, term_scales
from agreement.tolerance import Tolerance, tolerance
from torch_impl import train

PERTURBATION = 1e-6


def reference_trajectory(case: Case, opt, example: Example, opt_hyper: dict, steps: int, reference=None):
    """Losses before each update and parameters after it, with the NumPy reference."""
    reference = reference or case.reference
    params, state = dict(example.params), opt.init(example.params)
    losses, trajectory = [], []
    for _ in range(steps):
        loss, grads = reference(params, example.data, **example.hyper)
        params, state = opt.update(params, grads, state, **opt_hyper)
        losses.append(loss)
        trajectory.append(params)
    return np.array(losses, dtype=np.float64), trajectory


def growth(case: Case, opt, example: Example, opt_hyper: dict, steps: int) -> np.ndarray:
    """G_t for t = 0..steps-1 (see module docstring), from the float64 reference."""
    ex64 = example.astype(np.float64)
    rng = np.random.default_rng(0)
    shifted = {k: v * (1 + PERTURBATION * rng.choice([-1.0, 1.0], np.shape(v))) for k, v in ex64.params.items()}
    delta0 = max(float(np.max(np.abs(shifted[k] - ex64.params[k]), initial=0)) for k in shifted) or PERTURBATION
    _, base = reference_trajectory(case, opt, ex64, opt_hyper, steps)
    _, moved = reference_trajectory(case, opt, Example(shifted, ex64.data, ex64.hyper), opt_hyper, steps)
    out = []
    for a, b in zip(base, moved):
        delta = max(float(np.max(np.abs(a[k] - b[k]), initial=0)) for k in a)
        out.append(max(1.0, delta / delta0))
    return np.array(out)


def compare_trajectories(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
                         device: str = "cpu", reference=None) -> list[Comparison]:
    """Torch's trajectory in ``dtype`` against the float64 reference trajectory.

    Returns the comparisons of the first step that diverged, or of the last
    step when none did; each names its step.
    """
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    exp_losses, exp_params = reference_trajectory(case, opt, ex64, opt_hyper, steps, reference)
    g = growth(case, opt, example, opt_hyper, steps)
    t_losses, t_params = train.train(case.twin, example.params, example.data, example.hyper, opt.torch_name,
                                     opt_hyper, steps, device, TORCH_DTYPES[np.dtype(dtype)])
    n = case.reduction_length(example)
    dtype_name = np.dtype(dtype).name
    context = {"shapes": example.shapes(), "hyper": example.hyper, "optimizer": (opt.name, opt_hyper)}
    step_results = []
    for t in range(steps):
        scale = (t + 1) * g[t]
        before = ex64.params if t == 0 else exp_params[t - 1]
        loss_terms = term_scales(case, ex64.with_params(before)).get("loss", 0.0)

        def tol(expected, terms=0.0):
            base = tolerance(case.tolerance, dtype, n, expected, term_scale=terms)
            return Tolerance(base.rtol * scale, base.atol * scale)

        results = [compare(t_losses[t], exp_losses[t], tol(exp_losses[t], loss_terms), case=case.name,
                           what=f"step {t} loss", dtype=dtype_name, device=f"torch-{device}", context=context)]
        for name in sorted(exp_params[t]):
            results.append(compare(t_params[t][name], exp_params[t][name], tol(exp_params[t][name]),
                                   case=case.name, what=f"step {t} param {name}", dtype=dtype_name,
                                   device=f"torch-{device}", context=context))
        step_results = results
        if not all(r.ok for r in results):
            break
    return step_results
