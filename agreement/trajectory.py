"""K optimizer steps on both sides from identical parameters, compared step by step.

Two correct implementations start equal, differ by rounding at each step, and
the training map carries earlier differences forward. The tolerance at step t
has two measured parts, both computed with the float64 reference:

* growth ``G_t = |Δθ_t| / |Δθ_0|`` (at least 1): the trajectory rerun from
  parameters perturbed by a relative ``PERTURBATION`` shows how the map amplifies
  parameter differences; it multiplies the policy's single-evaluation tolerance,
  accumulated over t+1 steps:  ``tolerance(case, dtype, n, θ_t) * (t + 1) * G_t``,
  with the terms of θ_t = θ_{t-1} - update taken as max|θ_{t-1}| and those of the
  loss from the case's term scales (and loss_condition) at θ_{t-1};
* gradient-noise shift: the trajectory rerun with every gradient moved by the
  policy's bound on its rounding error in ``dtype`` (one fixed random sign per
  coordinate, so a systematic error accumulates), and every stored optimizer
  state element rounded once per step, shows how far rounding moves each element.
  It matters for Adam and RMSprop, whose g / (sqrt(v) + eps) has slope 1/eps where
  a gradient coordinate is near 0, and for centered RMSprop's s - mean^2, which
  cancels. ``SAFETY`` times that shift is added elementwise.
"""

from __future__ import annotations

import numpy as np

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.run import TORCH_DTYPES, term_scales
from agreement.tolerance import SAFETY, Tolerance, tolerance, unit_roundoff
from torch_impl import train

PERTURBATION = 1e-6


def reference_trajectory(case: Case, opt, example: Example, opt_hyper: dict, steps: int, reference=None,
                         round_state=None):
    """Losses before each update and parameters after it, with the NumPy reference.
    ``round_state(state) -> state`` is applied after every update (rounding emulation)."""
    reference = reference or case.reference
    params, state = dict(example.params), opt.init(example.params)
    losses, trajectory = [], []
    for _ in range(steps):
        loss, grads = reference(params, example.data, **example.hyper)
        params, state = opt.update(params, grads, state, **opt_hyper)
        if round_state is not None:
            state = round_state(state)
        losses.append(loss)
        trajectory.append(params)
    return np.array(losses, dtype=np.float64), trajectory


STATE_UPDATE_DEPTH = 4  # roundings in one moment update: g*g, (1 - beta)*that, beta*m, the sum


def _state_rounding(dtype, direction: float = 1.0, seed: int = 2):
    """Every float the optimizer stores (momentum, first and second moments,
    RMSprop's running mean) is formed by ``STATE_UPDATE_DEPTH`` rounded operations
    in ``dtype``: each element is moved by that many u, relative, with a sign fixed
    per element so the error accumulates over steps. RMSprop's centered variance
    s - mean^2 cancels as the gradient settles, and this is where that shows."""
    u = STATE_UPDATE_DEPTH * unit_roundoff(dtype)
    rng = np.random.default_rng(seed)
    signs = {}

    def round_state(tree, path=()):
        if isinstance(tree, dict):
            return {k: round_state(v, (*path, k)) for k, v in tree.items()}
        if isinstance(tree, np.ndarray) and tree.dtype.kind == "f":
            sign = signs.setdefault(path, direction * rng.choice([-1.0, 1.0], tree.shape))
            return tree * (1 + u * sign)
        return tree

    return round_state


def _max_abs_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in a)


def growth(case: Case, opt, example: Example, opt_hyper: dict, steps: int, base=None) -> np.ndarray:
    """G_t for t = 0..steps-1 (see module docstring). ``base``: the float64
    reference trajectory (losses, params) when the caller already has it."""
    ex64 = example.astype(np.float64)
    rng = np.random.default_rng(0)
    shifted = {k: v * (1 + PERTURBATION * rng.choice([-1.0, 1.0], np.shape(v))) for k, v in ex64.params.items()}
    delta0 = _max_abs_diff(shifted, ex64.params) or PERTURBATION
    _, base = base or reference_trajectory(case, opt, ex64, opt_hyper, steps)
    _, moved = reference_trajectory(case, opt, ex64.with_params(shifted), opt_hyper, steps)
    return np.array([max(1.0, _max_abs_diff(a, b) / delta0) for a, b in zip(base, moved, strict=True)])


def gradient_noise_shift(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, base=None):
    """Per step: (|loss shift|, {parameter: |shift| array}) from rounding (module docstring).

    Rounding's sign is unknown, and for Adam and RMSprop it matters (a shift along
    g barely moves g / sqrt(v), one against it can flip the step), so the rerun is
    done with each fixed sign pattern and its negation, and the larger shift kept."""
    ex64 = example.astype(np.float64)
    n = case.reduction_length(example)
    rng = np.random.default_rng(1)
    pattern = {k: rng.choice([-1.0, 1.0], np.shape(v)) for k, v in ex64.params.items()}
    base_losses, base = base or reference_trajectory(case, opt, ex64, opt_hyper, steps)
    loss_shift = np.zeros(steps)
    shifts = [{k: np.zeros(np.shape(v)) for k, v in ex64.params.items()} for _ in range(steps)]
    for direction in (1.0, -1.0):

        def rounded_reference(params, data, direction=direction, **hyper):
            loss, grads = case.reference(params, data, **hyper)
            scales = term_scales(case, Example(params, data, hyper))
            return loss, {k: g + direction * pattern[k] * tolerance(case.tolerance, dtype, n, g,
                                                                    term_scale=scales.get(k, 0.0)).atol
                          for k, g in grads.items()}

        moved_losses, moved = reference_trajectory(case, opt, ex64, opt_hyper, steps, rounded_reference,
                                                   _state_rounding(dtype, direction))
        loss_shift = np.maximum(loss_shift, np.abs(moved_losses - base_losses))
        for t, (a, b) in enumerate(zip(base, moved, strict=True)):
            shifts[t] = {k: np.maximum(shifts[t][k], np.abs(a[k] - b[k])) for k in a}
    return loss_shift, shifts


def judge_steps(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
                reference=None) -> list[list[Comparison]]:
    """Judge a trajectory (losses before each step, parameters after it) against the
    float64 reference: one list of comparisons per step, up to and including the
    first step that diverged. Each comparison names its step."""
    steps = len(losses)
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    exp_losses, exp_params = reference_trajectory(case, opt, ex64, opt_hyper, steps, reference)
    # the measured growth and rounding shift are properties of the true reference
    base = (exp_losses, exp_params) if reference is None else None
    g = growth(case, opt, example, opt_hyper, steps, base)
    loss_shift, param_shift = gradient_noise_shift(case, opt, example, opt_hyper, steps, dtype, base)
    n = case.reduction_length(example)
    dtype_name = np.dtype(dtype).name
    context = {"shapes": example.shapes(), "hyper": example.hyper, "optimizer": (opt.name, opt_hyper)}
    step_results = []
    for t in range(steps):
        scale = (t + 1) * g[t]
        before = ex64.with_params(ex64.params if t == 0 else exp_params[t - 1])

        def tol(expected, terms, shift, cond=1.0):
            base = tolerance(case.tolerance, dtype, n, expected, cond, term_scale=terms)
            return Tolerance(base.rtol * scale, base.atol * scale, SAFETY * shift)

        cond = case.loss_condition(before) if case.loss_condition else 1.0
        loss_tol = tol(exp_losses[t], term_scales(case, before).get("loss", 0.0), loss_shift[t], cond)
        results = [compare(losses[t], exp_losses[t], loss_tol, case=case.name, what=f"step {t} loss",
                           dtype=dtype_name, device=device, context=context)]
        for name in sorted(exp_params[t]):
            previous = float(np.max(np.abs(before.params[name]), initial=0.0))
            results.append(compare(params[t][name], exp_params[t][name],
                                   tol(exp_params[t][name], previous, param_shift[t][name]),
                                   case=case.name, what=f"step {t} param {name}", dtype=dtype_name,
                                   device=device, context=context))
        step_results.append(results)
        if not all(r.ok for r in results):
            break
    return step_results


def judge(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
          reference=None) -> list[Comparison]:
    """The comparisons of the first step that diverged, or of the last step when none did."""
    return judge_steps(case, opt, example, opt_hyper, dtype, losses, params, device, reference)[-1]


def trajectory_steps(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
                     device: str = "cpu", reference=None) -> list[list[Comparison]]:
    """torch.optim's trajectory in ``dtype`` on ``device``, judged step by step by ``judge_steps``."""
    cast = example.astype(dtype)
    losses, params = train.train(case.twin, cast.params, cast.data, cast.hyper, opt.torch_name, opt_hyper,
                                 steps, device, TORCH_DTYPES[np.dtype(dtype)])
    return judge_steps(case, opt, example, opt_hyper, dtype, losses, params, f"torch-{device}", reference)


def compare_trajectories(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
                         device: str = "cpu", reference=None) -> list[Comparison]:
    """The comparisons of the first step that diverged, or of the last step when none did."""
    return trajectory_steps(case, opt, example, opt_hyper, steps, dtype, device, reference)[-1]


def comparable(case: Case, opt, example: Example, hyper: dict, steps: int, dtype) -> bool:
    """Whether the math, not rounding, decides the float64 trajectory in ``dtype``.

    * It stays where ``dtype`` resolves the case (``Case.valid``): maximize can
      drive sigmoid + BCELoss into saturation, where float32's sigmoid rounds to 1
      and torch's gradient vanishes while float64's does not.
    * Gradient rounding alone moves no parameter by more than sqrt(u) relative
      (``gradient_noise_shift``). A symmetric net (equal rows of W2) has hidden-unit
      gradients that cancel to 0 exactly in the math; float32 leaves ~1e-8, which
      Adam and RMSprop normalize into a full step of ~lr in a direction rounding
      chose. Past sqrt(u) the second-order effects of such a shift exceed the
      dtype's resolution, so the growth factor's first-order propagation no longer
      bounds what follows: neither trajectory is wrong, they are not comparable.
    """
    base = reference_trajectory(case, opt, example.astype(np.float64), hyper, steps)
    path = base[1]
    if case.valid and not all(case.valid(example.with_params(p), dtype) for p in [example.params, *path]):
        return False
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            _, shifts = gradient_noise_shift(case, opt, example, hyper, steps, dtype, base)
    except ValueError:  # the shifted run overflowed: far past the dtype's resolution
        return False
    limit = np.sqrt(unit_roundoff(dtype))
    return all(np.max(shift[k], initial=0.0) <= limit * max(1.0, float(np.max(np.abs(p[k]), initial=0.0)))
               for shift, p in zip(shifts, path, strict=True) for k in shift)
