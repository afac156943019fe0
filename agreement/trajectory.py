"""K optimizer steps on both sides from identical parameters, compared step by step.

Two correct implementations start equal, and each step commits its own
rounding: in the gradient (the policy's bound on its error), in the optimizer
state it stores (``STATE_UPDATE_DEPTH`` u per element) and in the parameters it
writes (the policy's tolerance of θ_s, with terms max|θ_{s-1}|). The training
map carries each step's rounding to every later step, amplified or damped. The
tolerance of step t is therefore measured with the float64 reference
(``rounding_spread``): for every step s <= t, the reference is restarted at
step s with that step's rounding injected (a random sign per element, both the
pattern and its negation, the larger effect kept) and run on unperturbed to t;
the effects at t are summed as magnitudes, since the signs of different steps'
rounding are unknown and independent:

    |θ_t(torch) - θ_t(float64)| <= tolerance(θ_t) + SAFETY * sum_s |effect of step s at t|

and likewise for the loss at step t (evaluated at θ_{t-1}, so only steps s < t
reach it). The first term is step t's own rounding of θ_t; SAFETY because both
sides round.

Injecting at every step, rather than once at the start, matters for adaptive
optimizers. RMSprop's step lr g / sqrt(v) damps parameter differences while |g|
is large and expands them about 5x a step once g nears 0: on logistic
regression a difference made at step 0 had grown 1.5x by step 12, one made at
step 8 had grown 265x. Injecting at the actual rounding size, not a
linearised one, matters for Adam and RMSprop too: g / (sqrt(v) + eps) has
slope 1/eps where a gradient coordinate is near 0, and saturates beyond; and
centered RMSprop's s - mean^2 cancels as the gradient settles, which the state
rounding shows.
"""

from __future__ import annotations

import numpy as np

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.run import TORCH_DTYPES, term_scales
from agreement.tolerance import SAFETY, Tolerance, tolerance, unit_roundoff
from torch_impl import train


def _gradients(case: Case, params: dict, example: Example, step: int, without_grad=(), reference=None):
    """Loss and gradients at ``step``, less those of the parameters named in
    ``without_grad[step]`` (they get no .grad that step, and the optimizer skips them)."""
    loss, grads = (reference or case.reference)(params, example.data, **example.hyper)
    missing = without_grad[step] if step < len(without_grad) else ()
    return loss, {k: g for k, g in grads.items() if k not in missing}


def _run(case: Case, opt, params: dict, state, example: Example, opt_hyper: dict, steps: int, reference=None,
         start: int = 0, without_grad=()):
    """Losses before each update, and parameters and optimizer state after it, for
    steps ``start``, ``start + 1``, ... (``start`` numbers the steps for ``without_grad``)."""
    losses, path, states = [], [], []
    for step in range(start, start + steps):
        loss, grads = _gradients(case, params, example, step, without_grad, reference)
        params, state = opt.update(params, grads, state, **opt_hyper)
        losses.append(loss)
        path.append(params)
        states.append(state)
    return np.array(losses, dtype=np.float64), path, states


def reference_trajectory(case: Case, opt, example: Example, opt_hyper: dict, steps: int, reference=None,
                         without_grad=()):
    """Losses before each update and parameters after it, with the NumPy reference.
    ``without_grad[t]``: names of the parameters that get no gradient at step t."""
    losses, path, _ = _run(case, opt, dict(example.params), opt.init(example.params), example, opt_hyper, steps,
                           reference, without_grad=without_grad)
    return losses, path


STATE_UPDATE_DEPTH = 4  # roundings in one moment update: g*g, (1 - beta)*that, beta*m, the sum


def _signs(rng, tree):
    """A random ±1 array for every float value in a (nested) dict, 0-d included:
    a user's reference may return a 0-d parameter's gradient or state as a NumPy
    scalar, whose rounding counts as much as an array's. None for the rest (step
    counts, absent state)."""
    if isinstance(tree, dict):
        return {k: _signs(rng, v) for k, v in tree.items()}
    if isinstance(tree, (np.ndarray, np.floating, float)) and np.asarray(tree).dtype.kind == "f":
        return rng.choice([-1.0, 1.0], np.shape(tree))
    return None


def _round_state(tree, signs, relative: float):
    """Every float the optimizer stores (momentum, moments, RMSprop's running mean)
    moved by ``relative`` in the direction ``signs`` gives."""
    if isinstance(tree, dict):
        return {k: _round_state(v, signs[k], relative) for k, v in tree.items()}
    if signs is None:
        return tree
    return np.asarray(tree * (1 + relative * signs), dtype=np.asarray(tree).dtype)


def _one_step_rounding(case: Case, dtype, n: int, params: dict, written: dict, example: Example, step: int,
                       without_grad) -> tuple:
    """One side's rounding bounds at one step: of each gradient at ``params`` (the
    policy's atol on the gradient's term scale) and of each parameter ``written``
    by the update (the policy's bound on θ_s with terms max|θ_{s-1}|, over SAFETY)."""
    loss, grads = _gradients(case, params, example, step, without_grad)
    scales = term_scales(case, example.with_params(params))
    grad_bound = {k: tolerance(case.tolerance, dtype, n, g, term_scale=scales.get(k, 0.0)).atol
                  for k, g in grads.items()}
    param_bound = {k: tolerance(case.tolerance, dtype, n, v,
                                term_scale=float(np.max(np.abs(params[k]), initial=0.0))).bound(v) / SAFETY
                   for k, v in written.items() if k in grads}
    return loss, grads, grad_bound, param_bound


_last_spread: list = [None, None]  # [key, result] of the latest rounding_spread call


def _spread_key(case, opt, example: Example, opt_hyper: dict, steps: int, dtype, without_grad) -> tuple:
    """Everything rounding_spread's result depends on; case and optimizer by identity
    (the key holds them, so their ids stay theirs)."""
    arrays = tuple((k, np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
                   for part in (example.params, example.data) for k, v in sorted(part.items()))
    return (case, opt, arrays, repr(example.hyper), repr(sorted(opt_hyper.items())), steps,
            np.dtype(dtype).str, repr([sorted(names) for names in without_grad]))


def _same_key(a, b) -> bool:
    return a is not None and a[0] is b[0] and a[1] is b[1] and a[2:] == b[2:]


def rounding_spread(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, base=None,
                    without_grad=()):
    """Per step t: (sum over s < t of |loss effect at t of step s's rounding|,
    {parameter: sum over s <= t of |effect at t of step s's rounding|}), without
    step t's own rounding of θ_t (see the module docstring). ``base``: the float64
    reference run (losses, path, states) when the caller already has it.

    The latest result is kept: tests ask ``comparable()`` and then judge the same
    trajectory, and this, about steps² reference steps, is the expensive part of both."""
    key = _spread_key(case, opt, example, opt_hyper, steps, dtype, without_grad)
    if not _same_key(_last_spread[0], key):
        _last_spread[:] = [None, None]  # a failed computation leaves nothing behind
        result = _rounding_spread(case, opt, example, opt_hyper, steps, dtype, base, without_grad)
        _last_spread[:] = [key, result]
    return _last_spread[1]


def _rounding_spread(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, base, without_grad):
    ex64 = example.astype(np.float64)
    n = case.reduction_length(example)
    init_state = opt.init(ex64.params)
    base_losses, path, states = base or _run(case, opt, dict(ex64.params), init_state, ex64, opt_hyper, steps,
                                             without_grad=without_grad)
    rng = np.random.default_rng(1)
    relative_state = STATE_UPDATE_DEPTH * unit_roundoff(dtype)
    loss_spread = np.zeros(steps)
    param_spread = [{k: np.zeros(np.shape(v)) for k, v in ex64.params.items()} for _ in range(steps)]
    for s in range(steps):
        before, state = (ex64.params, init_state) if s == 0 else (path[s - 1], states[s - 1])
        _, grads, grad_bound, param_bound = _one_step_rounding(case, dtype, n, before, path[s], ex64, s,
                                                               without_grad)
        grad_sign, param_sign = _signs(rng, grads), _signs(rng, param_bound)
        state_sign = _signs(rng, states[s])
        loss_effect = np.zeros(steps)
        param_effect = [{k: np.zeros(np.shape(v)) for k, v in ex64.params.items()} for _ in range(steps)]
        for direction in (1.0, -1.0):
            moved_grads = {k: g + direction * grad_sign[k] * grad_bound[k] for k, g in grads.items()}
            params, moved_state = opt.update(before, moved_grads, state, **opt_hyper)
            moved_state = _round_state(moved_state, state_sign, direction * relative_state)
            # the step's own rounding of θ_s is the tolerance's first term: it enters from step s + 1 on
            effects = [{k: np.abs(params[k] - path[s][k]) for k in params}]
            params = {k: v + direction * param_sign[k] * param_bound[k] if k in param_bound else v
                      for k, v in params.items()}
            losses, after, _ = _run(case, opt, params, moved_state, ex64, opt_hyper, steps - 1 - s, start=s + 1,
                                    without_grad=without_grad)
            effects += [{k: np.abs(a[k] - b[k]) for k in a} for a, b in zip(after, path[s + 1:], strict=True)]
            for t, effect in enumerate(effects, start=s):
                param_effect[t] = {k: np.maximum(param_effect[t][k], effect[k]) for k in effect}
            loss_effect[s + 1:] = np.maximum(loss_effect[s + 1:], np.abs(losses - base_losses[s + 1:]))
        loss_spread += loss_effect
        for t in range(s, steps):
            param_spread[t] = {k: param_spread[t][k] + param_effect[t][k] for k in param_spread[t]}
    return loss_spread, param_spread


def judged_arrays(params: dict) -> list[tuple[str, str | None]]:
    """What ``judge_steps`` compares at every step, in its order, as (array, parameter
    name or None): the loss (before the step), then each parameter (after it) by name.
    Each comparison's ``what`` is ``f"step {t} {array}"``; callers that key results by
    array zip with this list instead of reading ``what``."""
    return [("loss", None), *((f"param {name}", name) for name in sorted(params))]


def judge_steps(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
                reference=None, without_grad=()) -> list[list[Comparison]]:
    """Judge a trajectory (losses before each step, parameters after it) against the
    float64 reference: one list of comparisons per step, up to and including the
    first step that diverged. Each comparison names its step. ``without_grad[t]``:
    names of the parameters that got no gradient at step t."""
    steps = len(losses)
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    run = _run(case, opt, dict(ex64.params), opt.init(ex64.params), ex64, opt_hyper, steps, reference,
               without_grad=without_grad)
    exp_losses, exp_params = run[:2]
    # how rounding spreads is a property of the true reference
    loss_spread, param_spread = rounding_spread(case, opt, example, opt_hyper, steps, dtype,
                                                run if reference is None else None, without_grad)
    n = case.reduction_length(example)
    dtype_name = np.dtype(dtype).name
    context = {"shapes": example.shapes(), "hyper": example.hyper, "optimizer": (opt.name, opt_hyper)}
    step_results = []
    for t in range(steps):
        before = ex64.with_params(ex64.params if t == 0 else exp_params[t - 1])

        def tol(expected, terms, spread, cond=1.0):
            own = tolerance(case.tolerance, dtype, n, expected, cond, term_scale=terms)
            return Tolerance(own.rtol, own.atol, SAFETY * spread)

        cond = case.loss_condition(before) if case.loss_condition else 1.0
        loss_tol = tol(exp_losses[t], term_scales(case, before).get("loss", 0.0), loss_spread[t], cond)
        results = []
        for array, name in judged_arrays(exp_params[t]):
            if name is None:
                actual, expected, allowed = losses[t], exp_losses[t], loss_tol
            else:
                previous = float(np.max(np.abs(before.params[name]), initial=0.0))
                actual, expected = params[t][name], exp_params[t][name]
                allowed = tol(expected, previous, param_spread[t][name])
            results.append(compare(actual, expected, allowed, case=case.name, what=f"step {t} {array}",
                                   dtype=dtype_name, device=device, context=context))
        step_results.append(results)
        if not all(r.ok for r in results):
            break
    return step_results


def judge(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
          reference=None, without_grad=()) -> list[Comparison]:
    """The comparisons of the first step that diverged, or of the last step when none did."""
    return judge_steps(case, opt, example, opt_hyper, dtype, losses, params, device, reference, without_grad)[-1]


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


def comparable(case: Case, opt, example: Example, hyper: dict, steps: int, dtype, without_grad=()) -> bool:
    """Whether the math, not rounding, decides the float64 trajectory in ``dtype``.

    * It stays where ``dtype`` resolves the case (``Case.valid``): maximize can
      drive sigmoid + BCELoss into saturation, where float32's sigmoid rounds to 1
      and torch's gradient vanishes while float64's does not.
    * Rounding moves no parameter by more than sqrt(u) relative (``rounding_spread``).
      A symmetric net (equal rows of W2) has hidden-unit gradients that cancel to
      0 exactly in the math; float32 leaves ~1e-8, which Adam and RMSprop
      normalize into a full step of ~lr in a direction rounding chose. Past
      sqrt(u) the second-order effects of such a spread exceed the dtype's
      resolution, so propagating each step's rounding separately no longer
      bounds what follows: neither trajectory is wrong, they are not comparable.
    """
    ex64 = example.astype(np.float64)
    base = _run(case, opt, dict(ex64.params), opt.init(ex64.params), ex64, hyper, steps, without_grad=without_grad)
    path = base[1]
    if case.valid and not all(case.valid(example.with_params(p), dtype) for p in [example.params, *path]):
        return False
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            _, spread = rounding_spread(case, opt, example, hyper, steps, dtype, base, without_grad)
    except ValueError:  # a perturbed run overflowed: far past the dtype's resolution
        return False
    limit = np.sqrt(unit_roundoff(dtype))
    return all(np.max(spread[k], initial=0.0) <= limit * max(1.0, float(np.max(np.abs(p[k]), initial=0.0)))
               for spread, p in zip(spread, path, strict=True) for k in spread)
