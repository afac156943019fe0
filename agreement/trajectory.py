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

The policy bounds a gradient's rounding by the gradient (or the terms a case
declares) and the loss's by |L|; where terms cancel, code nobody here wrote
rounds by more. A step that fails the analytic bounds is judged again with
measured ones: each step's gradient rounding injected, and the loss allowed, at
what the single-evaluation check allows there (``Reference.measured_spread``,
``_loss_tolerance``), measured only up to that step.

Below float32 (bfloat16, float16, TF32) each side's own drift is measured instead,
against the same side run in float64 from the same start (``_past_horizon``,
docs/low-precision.md).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from agreement import precision
from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.rounding import OWN_SAFETY
from agreement.run import Unresolvable, evaluation_tolerances, term_scales, torch_dtype, torch_precision
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
                       without_grad, grad_rounding=None) -> tuple:
    """One side's rounding bounds at one step: of each gradient at ``params`` (the
    policy's atol on the gradient's term scale, or ``grad_rounding(step)``'s
    elementwise bound where that is larger) and of each parameter ``written`` by the
    update (the policy's bound on θ_s with terms max|θ_{s-1}|, over SAFETY)."""
    loss, grads = _gradients(case, params, example, step, without_grad)
    scales = term_scales(case, example.with_params(params))
    grad_bound = {k: tolerance(case.tolerance, dtype, n, g, term_scale=scales.get(k, 0.0)).atol
                  for k, g in grads.items()}
    if grad_rounding is not None:
        measured = grad_rounding(step)
        grad_bound = {k: np.maximum(b, measured[k]) if k in measured else b for k, b in grad_bound.items()}
    param_bound = {k: tolerance(case.tolerance, dtype, n, v,
                                term_scale=float(np.max(np.abs(params[k]), initial=0.0))).bound(v) / SAFETY
                   for k, v in written.items() if k in grads}
    return loss, grads, grad_bound, param_bound


def rounding_spread(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, base=None,
                    without_grad=(), grad_rounding=None):
    """Per step t: (sum over s < t of |loss effect at t of step s's rounding|,
    {parameter: sum over s <= t of |effect at t of step s's rounding|}), without
    step t's own rounding of θ_t (see the module docstring). ``base``: the float64
    reference run (losses, path, states) when the caller already has it.
    ``grad_rounding(s) -> {name: elementwise bound}``: a measured rounding of the
    gradients at step s's parameters, injected where larger than the analytic one
    (``Reference.measured_spread``). Its first k steps are those of a k-step call with the
    first k steps of ``base``: the random signs are drawn in step order.

    About steps² reference steps: the expensive part of judging a trajectory.
    ``Reference.spread`` computes it once for everything judged against one run."""
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
                                                               without_grad, grad_rounding)
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


class Reference:
    """What a trajectory in ``dtype`` is judged against, computed once: the float64
    reference run from the example cast to ``dtype`` (where both sides start): its
    ``losses`` before each update, parameters (``path``) and optimizer ``states``
    after it; and ``spread``, how ``dtype``'s rounding spreads along it
    (``rounding_spread``), computed where first asked for. Build one per example,
    optimizer, hyperparameters and dtype, and pass it to ``comparable_steps`` and to
    ``judge_steps`` for every side and device judged in that dtype."""

    def __init__(self, case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, without_grad=()):
        self.case, self.opt, self.opt_hyper, self.steps = case, opt, opt_hyper, steps
        self.dtype = precision.resolve(dtype)
        self.example, self.without_grad = example.astype(dtype), without_grad
        ex64 = self.example.astype(np.float64)
        self.losses, self.path, self.states = _run(case, opt, dict(ex64.params), opt.init(ex64.params), ex64,
                                                   opt_hyper, steps, without_grad=without_grad)
        self._key = _request_key(case, opt, self.example, opt_hyper, steps, dtype, without_grad)
        self._measured, self._evaluations = {}, {}  # per torch device; per (step, torch device)

    @functools.cached_property
    def spread(self) -> tuple:
        """``rounding_spread`` along this run; an exception (a perturbed run that
        overflowed) leaves nothing cached, and the next use raises it again."""
        return rounding_spread(self.case, self.opt, self.example, self.opt_hyper, self.steps, self.dtype,
                               (self.losses, self.path, self.states), self.without_grad)

    def measured_spread(self, through: int, torch_device: str = "cpu") -> tuple:
        """``rounding_spread`` up to step ``through`` (at least), with each step's gradient
        rounding at least what the single-evaluation check allows the gradients at that
        step's parameters (``evaluation``). The analytic bound scales a gradient's rounding
        by the gradient, or by the terms a case declares (``term_scale``); a gradient that is
        a sum of terms which cancel rounds by the terms: a user's logistic regression at
        w = 0 sums residuals of ±1/8 into a bias gradient of 1e-4, and torch's float32 step 1
        moved the bias by 10x its analytic bound (census of check_optimizer, seed 22). A
        measurement costs about ten evaluations of each function, so ``judge_steps`` asks
        for this only where the analytic spread fails a step, and only that far."""
        have = self._measured.get(torch_device)
        if have is None or len(have[0]) <= through:
            k = through + 1
            self._measured[torch_device] = rounding_spread(
                self.case, self.opt, self.example, self.opt_hyper, k, self.dtype,
                (self.losses[:k], self.path[:k], self.states[:k]), self.without_grad,
                lambda s: self._gradient_bounds(s, torch_device))
        return self._measured[torch_device]

    def evaluation(self, step: int, torch_device: str = "cpu"):
        """What ``evaluate`` allows an evaluation at the parameters the reference's step
        ``step`` starts from (``run.evaluation_tolerances``), measured once per step and device."""
        key = (step, torch_device)
        if key not in self._evaluations:
            params = self.example.params if step == 0 else self.path[step - 1]
            self._evaluations[key] = evaluation_tolerances(self.case, self.example.with_params(params), self.dtype,
                                                           torch_device)
        return self._evaluations[key]

    def _gradient_bounds(self, step: int, torch_device: str) -> dict:
        tol, (_, grads) = self.evaluation(step, torch_device)
        return {k: tol(k, g, g).bound(g) for k, g in grads.items()}

    def check(self, case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, without_grad=()):
        """Refuse to judge a request this is not the reference of: its tolerance would be another run's."""
        key = _request_key(case, opt, example.astype(dtype), opt_hyper, steps, dtype, without_grad)
        if not (key[0] is self._key[0] and key[1] is self._key[1] and key[2:] == self._key[2:]):
            raise ValueError(f"this Reference is of {self.case.name} with {self.opt.name} {self.opt_hyper}, "
                             f"{self.steps} steps in {self.dtype.name}, from its own example: not of the "
                             f"trajectory asked about ({case.name} with {opt.name} {opt_hyper}, {steps} steps in "
                             f"{precision.name(dtype)})")


def _request_key(case, opt, example: Example, opt_hyper: dict, steps: int, dtype, without_grad) -> tuple:
    """Everything a Reference depends on; case and optimizer compared by identity."""
    arrays = tuple((k, np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
                   for part in (example.params, example.data) for k, v in sorted(part.items()))
    return (case, opt, arrays, repr(example.hyper), repr(sorted(opt_hyper.items())), steps,
            precision.name(dtype), repr([sorted(names) for names in without_grad]))


def _reference(against: Reference | None, case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
               without_grad) -> Reference:
    """``against`` where it is this request's reference, a new one where none is given."""
    if against is None:
        return Reference(case, opt, example, opt_hyper, steps, dtype, without_grad)
    against.check(case, opt, example, opt_hyper, steps, dtype, without_grad)
    return against


def judged_arrays(params: dict, loss: bool = True) -> list[tuple[str, str | None]]:
    """What ``judge_steps`` compares at every step, in its order, as (array, parameter
    name or None): the loss (before the step) where ``loss`` (``Case.compare_loss``),
    then each parameter (after it) by name. Each comparison's ``what`` is
    ``f"step {t} {array}"``; callers that key results by array zip with this list
    instead of reading ``what``."""
    return [*((("loss", None),) if loss else ()), *((f"param {name}", name) for name in sorted(params))]


def judge_steps(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
                reference=None, without_grad=(), against: Reference | None = None,
                own64=None, torch_device: str = "cpu") -> list[list[Comparison]]:
    """Judge a trajectory (losses before each step, parameters after it) against the
    float64 reference: one list of comparisons per step, up to and including the
    first step that diverged. Each comparison names its step. ``without_grad[t]``:
    names of the parameters that got no gradient at step t. The loss is judged only
    where ``case.compare_loss``. ``reference``: another NumPy function to take the
    expected trajectory from (the rounding spread stays the case's own). ``against``:
    the ``Reference`` of this request, when the caller has it. Below float32 the judged
    side's own run in float64, ``own64`` (losses, parameters), is required, and is the
    measure of its rounding (``_past_horizon``). ``device`` names the judged side in
    reports. Where a step fails the analytic bounds, it is judged again with measured ones
    (``Reference.measured_spread``, ``_loss_tolerance``), torch's rounding measured on
    ``torch_device``."""
    steps = len(losses)
    low = precision.is_low(dtype)
    if low and own64 is None:
        raise ValueError(f"judging a trajectory in {precision.name(dtype)} needs the same side's float64 run "
                         "(own64): its own rounding is the measure")
    against = _reference(against, case, opt, example, opt_hyper, steps, dtype, without_grad)
    example = against.example
    ex64 = example.astype(np.float64)
    exp_losses, exp_params = against.losses, against.path
    if reference is not None:
        exp_losses, exp_params, _ = _run(case, opt, dict(ex64.params), opt.init(ex64.params), ex64, opt_hyper,
                                         steps, reference, without_grad=without_grad)
    if low:
        own_losses, own_params = own64
        limit = np.sqrt(unit_roundoff(dtype))
    n = case.reduction_length(example)
    dtype_name = precision.name(dtype)
    context = {"shapes": example.shapes(), "hyper": example.hyper, "optimizer": (opt.name, opt_hyper)}

    def judge_step(t: int, before: Example, spread=None, measured: bool = False) -> list[Comparison]:
        results = []
        for array, name in judged_arrays(exp_params[t], case.compare_loss):
            if name is None:
                actual, expected = losses[t], exp_losses[t]
                terms = term_scales(case, before).get("loss", 0.0)
            else:
                actual, expected = params[t][name], exp_params[t][name]
                terms = float(np.max(np.abs(before.params[name]), initial=0.0))
            if low:  # the float64 bound plus OWN_SAFETY times the side's own drift (_past_horizon)
                own = own_losses[t] if name is None else own_params[t][name]
                gap = tolerance(case.tolerance, np.float64, n, expected, term_scale=terms)
                drift = np.abs(np.asarray(actual, np.float64) - np.asarray(own, np.float64))
                allowed = Tolerance(gap.rtol, gap.atol, measured=OWN_SAFETY * drift)
            else:
                cond = (case.loss_condition(before) if case.loss_condition else 1.0) if name is None else 1.0
                shift = spread[0][t] if name is None else spread[1][t][name]
                bound = tolerance(case.tolerance, dtype, n, expected, cond, term_scale=terms)
                allowed = Tolerance(bound.rtol, bound.atol, SAFETY * shift)
                if measured and name is None:
                    # the reference's own evaluation there, or, for another expected path, one at its point
                    evaluation = (against.evaluation(t, torch_device) if reference is None
                                  else evaluation_tolerances(case, before, dtype, torch_device))
                    allowed = _loss_tolerance(evaluation[0], actual, expected, cond, allowed)
            results.append(compare(actual, expected, allowed, case=case.name, what=f"step {t} {array}",
                                   dtype=dtype_name, device=device, context=context))
        return results

    step_results = []
    for t in range(steps):
        if low and _past_horizon(t, params[t], own_params[t], limit, device, dtype):
            break
        before = ex64.with_params(ex64.params if t == 0 else exp_params[t - 1])
        # how rounding spreads is a property of the true reference: analytic first, measured where that fails
        results = judge_step(t, before, None if low else against.spread)
        if not low and not all(r.ok for r in results):
            results = judge_step(t, before, against.measured_spread(t, torch_device), measured=True)
        step_results.append(results)
        if not all(r.ok for r in results):
            break
    return step_results


def _loss_tolerance(evaluation_tol, actual, expected, cond: float, allowed: Tolerance) -> Tolerance:
    """The loss at step t is an evaluation at θ_{t-1}: its own rounding, plus the earlier steps'
    propagated (``allowed.shift``). The analytic floor bounds that evaluation's rounding by the
    loss's terms where the case declares them (``term_scale``), else by |L|; a loss whose terms
    cancel to a much smaller L rounds by more: a user's logistic loss, softplus(z) - y z with
    terms of 12 and L = 3e-3, in float64; torch's BCE-with-logits at z = -9.8, y = 0 in float32
    (census of check_optimizer on four hand-written optimizers with such a loss: 12 false alarms in
    80 correct runs, 1 after this and ``Reference.measured_spread``).
    So where the analytic bounds fail a step, that term becomes what the single-evaluation check
    (``evaluate``) allows the loss at θ_{t-1} (``evaluation_tol``: the floor plus the rounding
    measured on both functions at nearby inputs), with ``Reference.measured_spread``'s shift.
    Measured only once a step fails the analytic bounds, so a passing comparison, its ratio,
    and the cost of a passing run are unchanged."""
    evaluation = evaluation_tol("loss", actual, expected, cond)
    return Tolerance(allowed.rtol, np.maximum(allowed.atol, evaluation.atol), allowed.shift, evaluation.measured)


def _past_horizon(t: int, side: dict, own: dict, limit: float, device: str, dtype) -> bool:
    """Below float32 the analytic spread (``rounding_spread``) bounds every step's rounding
    at u times its terms, which bfloat16's u = 2^-8 turns into a horizon of one step. As
    for single evaluations (agreement/rounding.py, ``own_rounding``), each side's own
    rounding is measured instead: the same side run in float64 from the same start
    (``own``). At step t the side may differ from the float64 reference by OWN_SAFETY
    times its own drift |θ_t(dtype) - θ_t(side in float64)| plus the float64 bound of
    step t (the two float64 runs' difference). Judging stops at the measured horizon:
    the first step whose own drift exceeds sqrt(u) max(1, |θ|) (``limit`` = sqrt(u)),
    the rule of ``comparable_steps``, where rounding, not the math, decides the
    trajectory; at the first step that is Unresolvable."""
    beyond = [k for k in sorted(side)
              if not np.all(np.abs(np.asarray(side[k], np.float64) - own[k])
                            <= limit * max(1.0, float(np.max(np.abs(own[k]), initial=0.0))))]
    if beyond and t == 0:
        finite = all(np.all(np.isfinite(v)) for v in side.values())
        raise Unresolvable(
            f"{device} in {precision.name(dtype)}: " + (
                "rounding alone moves a parameter by more than sqrt(u) max(1, |θ|) in the first step"
                if finite else "the first step's parameters are not finite where its float64 run's are"),
            f"{beyond[0]!r}, sqrt(u) = {limit:.2g}")
    return bool(beyond)


def judge(case: Case, opt, example: Example, opt_hyper: dict, dtype, losses, params, device: str = "cpu",
          reference=None, without_grad=(), against: Reference | None = None) -> list[Comparison]:
    """The comparisons of the first step that diverged, or of the last step when none did."""
    return judge_steps(case, opt, example, opt_hyper, dtype, losses, params, device, reference, without_grad,
                       against)[-1]


def trajectory_steps(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
                     device: str = "cpu", reference=None, against: Reference | None = None) -> list[list[Comparison]]:
    """torch.optim's trajectory in ``dtype`` on ``device``, judged step by step by ``judge_steps``."""
    losses, params, own64 = torch_trajectory(case, opt, example, opt_hyper, steps, dtype, device)
    return judge_steps(case, opt, example, opt_hyper, dtype, losses, params, f"torch-{device}", reference,
                       against=against, own64=own64, torch_device=device)


def torch_trajectory(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype, device: str = "cpu"):
    """torch.optim's losses and parameters in ``dtype`` from the example cast to it, and below
    float32 the same run in float64 (``own64``, else None), which ``judge_steps`` needs."""
    cast = example.astype(dtype)
    own64 = None
    if precision.is_low(dtype):
        own64 = train.train(case.twin, cast.params, cast.data, cast.hyper, opt.torch_name, opt_hyper, steps,
                            device, torch.float64)
    try:
        with torch_precision(dtype):
            losses, params = train.train(case.twin, cast.params, cast.data, cast.hyper, opt.torch_name, opt_hyper,
                                         steps, device, torch_dtype(dtype))
    except RuntimeError as error:
        if own64 is None:
            raise
        # the same run succeeded in float64: the failure is the precision's (a NaN reached BCELoss)
        raise Unresolvable(f"torch-{device} in {precision.name(dtype)} raised RuntimeError",
                           str(error).splitlines()[0][:160]) from error
    return losses, params, own64


def compare_trajectories(case: Case, opt, example: Example, opt_hyper: dict, steps: int, dtype,
                         device: str = "cpu", reference=None, against: Reference | None = None) -> list[Comparison]:
    """The comparisons of the first step that diverged, or of the last step when none did."""
    return trajectory_steps(case, opt, example, opt_hyper, steps, dtype, device, reference, against)[-1]


def comparable_steps(case: Case, opt, example: Example, hyper: dict, steps: int, dtype, without_grad=(),
                     against: Reference | None = None) -> tuple[int, str]:
    """How many leading steps of the trajectory in ``dtype`` the math, not rounding,
    decides, and why the next one is not ("" when all are). Step t is comparable
    while every step up to it is:

    * It stays where ``dtype`` resolves the case (``Case.valid``): maximize can
      drive sigmoid + BCELoss into saturation, where float32's sigmoid rounds to 1
      and torch's gradient vanishes while float64's does not.
    * Rounding moves no parameter by more than sqrt(u) max(1, |θ|) (``rounding_spread``).
      A symmetric net (equal rows of W2) has hidden-unit gradients that cancel to
      0 exactly in the math; float32 leaves ~1e-8, which Adam and RMSprop
      normalize into a full step of ~lr in a direction rounding chose. Past
      sqrt(u) the second-order effects of such a spread exceed the dtype's
      resolution, so propagating each step's rounding separately no longer
      bounds what follows: neither trajectory is wrong, they are not comparable.

    The spread at step t depends only on the steps up to t, so one run of
    ``steps`` gives every shorter trajectory's verdict too. ``against``: the
    ``Reference`` of this request, which the judge then reuses.
    """
    against = _reference(against, case, opt, example, hyper, steps, dtype, without_grad)
    name = precision.name(dtype)
    start = against.example
    resolved = steps
    if case.valid:
        resolved = next((t for t, p in enumerate([start.params, *against.path]) if not case.valid(
            start.with_params(p), dtype)), steps + 1) - 1
        if resolved < 0:
            return 0, f"{name} does not resolve {case.name} at the initial parameters (Case.valid)"
    if precision.is_low(dtype):
        # measured where the trajectory is judged (``_past_horizon``)
        return (steps, "") if resolved == steps else (resolved, _leaves(resolved, name, case))
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            _, spread = against.spread
    except ValueError as error:  # a perturbed run overflowed: far past the dtype's resolution
        return 0, f"a float64 run perturbed by {name} rounding failed ({error})"
    limit = np.sqrt(unit_roundoff(dtype))
    for t, (moved, path) in enumerate(zip(spread[:resolved], against.path, strict=False)):
        for k in sorted(moved):
            scale = max(1.0, float(np.max(np.abs(path[k]), initial=0.0)))
            worst = float(np.max(moved[k], initial=0.0))
            if not worst <= limit * scale:  # NaN counts as not comparable
                return t, (f"rounding alone in {name} moves parameter {k!r} by up to {worst:.2e} at step {t + 1}, "
                           f"more than sqrt(u) = {limit:.1e} times max(1, |{k}|) = {scale:.3g}: from step {t + 1} "
                           f"on the math no longer decides the trajectory, and neither side can be judged wrong")
    if resolved < steps:
        return resolved, _leaves(resolved, name, case)
    return steps, ""


def _leaves(resolved: int, name: str, case: Case) -> str:
    return (f"after step {resolved + 1} the parameters leave where {name} resolves {case.name} "
            f"(Case.valid): from step {resolved + 1} on the dtype, not the math, decides the trajectory")


def comparable(case: Case, opt, example: Example, hyper: dict, steps: int, dtype, without_grad=(),
               against: Reference | None = None) -> bool:
    """Whether the math, not rounding, decides every step of the trajectory in ``dtype``
    (``comparable_steps``)."""
    return comparable_steps(case, opt, example, hyper, steps, dtype, without_grad, against)[0] == steps
