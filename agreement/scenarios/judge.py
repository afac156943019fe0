"""The long-run judge: every step of a run of hundreds of steps judged against the
float64 NumPy reference, at the cost of a few reference runs.

What it judges. Each side (NumPy in float32, torch in float32 or float64 on a
device) yields per step the loss on that step's batch before the update and the
parameters after it. The expected values are the NumPy program run in float64
from the same (float32-exact) parameters on the same (float32-exact) batches.

The tolerance of step t. A correct run in dtype d differs from the float64
reference by its own rounding at step t plus every earlier step's rounding as
the training map has carried it to t. With e_s the rounding committed at step s
(in the gradient, the optimizer state, the written parameters) and J(t, s) the
derivative of θ_t with respect to a change at step s, to first order

    θ_t(d) - θ_t(float64) = sum_{s <= t} J(t, s) e_s.

agreement/trajectory.py measures every J(t, s) e_s separately, restarting the
reference at every s: about steps² / 2 reference steps (125,000 for a 500-step
run). Here the sum is sampled instead, as Monte-Carlo arithmetic does (Parker's
MCA, CADNA, Verificarlo): K = RUNS float64 runs of the same program advance in
lock-step with the reference, each injecting rounding of random sign at every
step. Run k at step t is the reference plus sum_s J(t, s) ξ_{k,s} |e_s|, one draw
of the sum above, through the full nonlinear map (a ReLU unit a perturbation
flips, a denominator near eps, a state that damps and later expands are in it).
Its largest deviation from the reference is the rounding spread: K + 2 runs'
cost instead of steps² / 2.

What is injected at step s, per element:

* the gradient: its rounding measured at that step, |g_32(θ_s, x_s) - g_64(θ_s, x_s)|,
  the program evaluated in float32 on the reference's parameters and batch
  rounded to float32 (the probe: one float32 evaluation per step);
* the written parameters: u |θ_s| + UPDATE_DEPTH u |θ_s - θ_{s-1}|, derived: the
  last operation θ - δ rounds once relative to its result; the chain forming δ
  (at most UPDATE_DEPTH elementwise operations, Adam's being the longest) rounds
  relative to δ;
* every float in the optimizer state: STATE_DEPTH u relative (a moment update:
  g*g, (1 - β) times that, β m, the sum).

Correlated rounding. The same batch at nearly the same parameters rounds the
same way step after step, and θ - lr g loses the same low bits each time: such
errors add up linearly in t, where independent ones grow like sqrt(t). So the
runs come in two kinds: even runs draw fresh signs at every step (independent
rounding), odd runs keep one sign pattern per element for the whole run
(rounding that repeats). The spread is the largest over both kinds.

The tolerance of step t, per compared array (the loss, each parameter):

    |actual - expected| <= floor_t + SAFETY * spread_t

* floor_t: the policy's bound for that array (agreement/tolerance.py) with the
  step's reduction length, on the magnitude of the loss's terms
  (agreement/scales.py) or on max|θ_{t-1}| (a parameter): its own rounding;
* spread_t: the largest deviation over the K runs and the array's elements
  (normwise, as the floor: the largest element of many random sums is a stable
  statistic, one element's largest of K draws may sit near 0 by chance); for
  the loss, the largest |L_t(run k) - L_t|;
* SAFETY = 2 (the policy's): torch's rounding is not NumPy's, whose size the
  probe measured; both sides round.

One set of runs for both dtypes. Rounding enters linearly, so runs injected at
float32's u give float64's spread times u_64 / u_32, as long as they stay in the
linear regime: up to float32's comparable horizon. From there float64 continues
with runs of its own, started from the shared runs' deviations of the step
before scaled down to u_64, and injecting at u_64.

The comparable horizon. Past a spread of sqrt(u) relative to a parameter's size
the second-order terms of rounding exceed the dtype's resolution and the sum
above no longer describes the difference: two correct runs part because
rounding decides (Adam's normalised steps on gradients that rounding sets the
sign of, a symmetric net, a saturated unit, chaos). The first step where the
spread exceeds sqrt(u) max(1, max|θ_t|) in some parameter, or turns non-finite,
is the comparable horizon in that dtype: steps before it are judged, from it on
none is, and the verdict says so, naming the parameter and the spread. A run is
never passed by ignoring it: the horizon is a property of the float64 reference
and its perturbed twins only, never of the sides judged, and it is reported with
every verdict.

What the method assumes: that the injected magnitudes bound the real ones (the
probe measures NumPy's float32 rounding, SAFETY covers another implementation's;
the write and state bounds are worst cases) and that the real rounding's signs
are somewhere between independent and fixed, the two kinds of runs. A rounding
that grows against the dynamics in some other pattern would escape it.

Measured cost: docs/scenarios.md (scenario 4, 500 steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from agreement.compare import Comparison, compare
from agreement.tolerance import SAFETY, Tolerance, tolerance, unit_roundoff

RUNS = 4  # perturbed float64 runs per dtype (K)
UPDATE_DEPTH = 8  # elementwise operations in an optimizer's parameter update (Adam's, the longest here)
STATE_DEPTH = 4  # roundings in one moment update: g*g, (1 - beta)*that, beta*m, the sum
PROBE = np.dtype(np.float32)  # the dtype whose gradient rounding is measured at every step


@dataclass
class Side:
    """One implementation's run: ``run`` yields (loss, params) after every step.
    ``run`` None with label "numpy": the NumPy program itself, run here in ``dtype``."""

    label: str
    dtype: np.dtype
    device: str = "cpu"
    run: Iterator | None = None


@dataclass
class SideVerdict:
    label: str
    dtype: str
    device: str
    losses: list = field(default_factory=list)  # per step, as the side computed them
    judged: int = 0  # steps judged
    worst_ratio: float = 0.0  # largest error/tolerance over the judged steps and arrays
    worst_at: str = ""  # "step t array" of that ratio
    failure: Comparison | None = None  # the first comparison that failed (its ``what`` names the step)
    seconds: float = 0.0
    final: dict = field(default_factory=dict)  # parameters after the last step
    evaluations: dict = field(default_factory=dict)  # name -> [(step, held-out loss)], as the side computed them

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def first_failing_step(self) -> int | None:
        return None if self.failure is None else int(self.failure.what.split()[1])


@dataclass
class Judgement:
    name: str
    steps: int
    reference_losses: np.ndarray
    horizon: dict  # dtype name -> first step not comparable (steps: all comparable)
    horizon_reason: dict  # dtype name -> why, "" when all comparable
    sides: list
    seconds: dict  # "reference", "scales", "perturbed", "compare", "numpy"
    # name -> [(step, float64 reference's held-out loss)] (scenario 2's validation split)
    reference_evaluations: dict = field(default_factory=dict)
    # dtype name -> per step, the allowed |loss - reference loss| (NaN from the comparable horizon on)
    loss_bounds: dict = field(default_factory=dict)
    # dtype name -> name -> [(step, allowed |held-out loss - reference's|)]
    evaluation_bounds: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(side.ok for side in self.sides)

    def report(self) -> str:
        lines = []
        for side in self.sides:
            if side.failure is not None:
                lines.append(f"{self.name}: {side.label} ({side.dtype}, {side.device}) first diverges at step "
                             f"{side.first_failing_step} of {self.steps}")
                lines.append(side.failure.report())
        return "\n".join(lines)


def _cast(arrays: dict, dtype) -> dict:
    """Float arrays in ``dtype``; integer arrays (labels, indices) kept."""
    return {k: np.asarray(v).astype(dtype, copy=False) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
            for k, v in arrays.items()}


def _exact(arrays: dict, dtype, what: str) -> dict:
    """``arrays`` in ``dtype``, refusing values ``dtype`` would round: the float64
    reference must see the values the dtype run sees (data.exact32)."""
    cast = _cast(arrays, dtype)
    for k, v in arrays.items():
        if np.asarray(v).dtype.kind == "f" and not np.array_equal(np.asarray(v, np.float64), cast[k]):
            raise ValueError(f"{what}[{k!r}] (NumPy side) is not exactly representable in {np.dtype(dtype).name}; "
                             "round it through float32 first (agreement.scenarios.data.exact32)")
    return cast


class _Signs:
    """Random ±1 arrays: windows at random offsets into one pool of random signs.
    Drawing fresh signs for every element of every injection cost a quarter of
    the judge's time; a window's signs are independent across its elements, and
    two windows at different random offsets pair each element with independent signs."""

    POOL = 1 << 20

    def __init__(self, rng):
        self.rng = rng
        self.pool = rng.integers(0, 2, 2 * self.POOL).astype(np.float64) * 2 - 1
        self.kept = {}

    def __call__(self, shape, key=None) -> np.ndarray:
        """Fresh signs, or with ``key`` the same signs at every call with that key."""
        if key is not None:
            if key not in self.kept:
                self.kept[key] = self(shape)
            return self.kept[key]
        size = int(np.prod(shape, dtype=np.int64))
        if size > self.POOL:
            return self.rng.integers(0, 2, shape).astype(np.float64) * 2 - 1
        start = int(self.rng.integers(0, self.POOL))
        return self.pool[start:start + size].reshape(shape)


def _round_state(state, signs, relative: float, key):
    """Every float array of the optimizer state moved by ``relative`` with random signs
    (kept under ``key`` and the array's place in the state, unless ``key`` is None)."""
    if isinstance(state, dict):
        return {k: _round_state(v, signs, relative, None if key is None else (*key, k)) for k, v in state.items()}
    if isinstance(state, np.ndarray) and state.dtype.kind == "f":
        return state * (1 + relative * signs(state.shape, key))
    return state


def numpy_run(program, dtype) -> Iterator:
    """The NumPy program in ``dtype``: (loss, params) after every step."""
    params = _exact(program.params, dtype, "params")
    state = program.init(params)
    for t in range(program.steps):
        loss, grads = program.loss_and_grads(params, _cast(program.batch(t), dtype))
        params, state = program.update(params, grads, state)
        yield float(loss), params


def _ratio(actual, expected: np.ndarray, tol: Tolerance) -> float:
    """The largest |actual - expected| / allowed; infinite for NaN, Inf or a shape mismatch."""
    actual = np.asarray(actual, np.float64)
    if actual.shape != expected.shape:
        return np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(actual - expected)
        if not np.all(np.isfinite(err)):
            return np.inf
        return float(np.max(err / tol.bound(expected), initial=0.0))


def _toward(tree, reference, factor: float):
    """``reference + factor (tree - reference)`` for every float array of a (nested) tree;
    the rest (step counts, absent state) kept."""
    if isinstance(tree, dict):
        return {k: _toward(v, reference[k], factor) for k, v in tree.items()}
    if isinstance(tree, np.ndarray) and tree.dtype.kind == "f":
        return reference + factor * (tree - reference)
    return tree


def _held_out_deviation(program, runs: list, held_out: dict, expected: dict) -> dict:
    """name -> the largest |held-out loss of a perturbed run - the reference's|: the
    spread of the held-out losses, as ``_advance``'s of the training loss."""
    deviation = dict.fromkeys(expected, 0.0)
    with np.errstate(all="ignore"):
        for params, _ in runs:
            for name, value in expected.items():
                try:
                    run_value = float(program.evaluate(params, held_out[name]))
                except ValueError:  # a run turned non-finite: far past the horizon
                    run_value = np.nan
                deviation[name] = max(deviation[name], abs(run_value - value))
                if np.isnan(run_value):
                    deviation[name] = np.inf
    return deviation


def _advance(program, runs: list, batch: dict, loss, grads: dict, probe_error: dict, ref: dict, new_ref: dict,
             u: float, signs, key) -> tuple:
    """One step of every perturbed run with rounding of unit roundoff ``u`` injected; returns
    the runs, the largest loss deviation and each parameter's largest deviation from the reference."""
    grad_bound = {k: v * (u / unit_roundoff(PROBE)) for k, v in probe_error.items()}
    # the write's last operation, θ - δ, rounds relative to θ; the chain forming δ relative to δ
    write_bound = {k: u * np.abs(v) + UPDATE_DEPTH * u * np.abs(v - ref[k]) for k, v in new_ref.items()}
    loss_dev, param_dev = 0.0, dict.fromkeys(new_ref, 0.0)
    out = []
    with np.errstate(all="ignore"):
        for run, (params, state) in enumerate(runs):
            # odd runs keep one sign pattern for the whole run: rounding that repeats step after
            # step (the same batch at nearly the same parameters); even runs draw fresh signs
            kept = run % 2 == 1
            try:
                run_loss, run_grads = program.loss_and_grads(params, batch)
                run_grads = {k: g + signs(np.shape(g), (*key, run, "grad", k) if kept else None) * grad_bound[k]
                             for k, g in run_grads.items()}
                params, state = program.update(params, run_grads, state)
            except ValueError:  # the reference refuses non-finite values: far past the horizon
                run_loss, params = np.nan, {k: np.full(np.shape(v), np.nan) for k, v in new_ref.items()}
            params = {k: v + signs(np.shape(v), (*key, run, "write", k) if kept else None) * write_bound[k]
                      for k, v in params.items()}
            state = _round_state(state, signs, STATE_DEPTH * u, (*key, run, "state") if kept else None)
            out.append((params, state))
            loss_dev = max(loss_dev, abs(float(run_loss) - float(loss)))
            for k in new_ref:
                param_dev[k] = max(param_dev[k], float(np.max(np.abs(params[k] - new_ref[k]), initial=0.0)))
    return out, loss_dev, param_dev


def judge_run(program, sides: list[Side], name: str = "", runs: int = RUNS, seed: int = 0,
              stop_at_failure: bool = False, clock: Callable = time.perf_counter) -> Judgement:
    """Run the float64 reference, ``runs`` perturbed float64 runs per dtype and every
    side in lock-step, judging each side at every step up to its dtype's comparable
    horizon (module docstring). ``stop_at_failure``: stop once every side has failed."""
    if not sides:
        raise ValueError("sides (judge) must name at least one side")
    if runs < 1:
        raise ValueError(f"runs (judge) must be at least 1, got {runs}")
    dtypes = sorted({np.dtype(s.dtype) for s in sides}, key=lambda d: d.itemsize)
    for d in dtypes:
        if d not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype (side) must be float32 or float64, got {d}")
    steps = program.steps
    signs = _Signs(np.random.default_rng(seed))
    seconds = dict(reference=0.0, probe=0.0, scales=0.0, perturbed=0.0, compare=0.0, numpy=0.0)
    ref = _exact(program.params, np.float64, "params")
    for d in dtypes:
        _exact(program.params, d, "params")
    ref_state = program.init(ref)
    # one set of perturbed runs at the largest u judged serves every dtype (module docstring)
    groups = [{"u": unit_roundoff(dtypes[0]), "dtypes": dtypes, "key": (), "runs":
               [(ref, program.init(ref)) for _ in range(runs)]}]
    horizon = {d.name: steps for d in dtypes}
    reason = {d.name: "" for d in dtypes}
    verdicts, runners = [], []
    for side in sides:
        verdicts.append(SideVerdict(side.label, np.dtype(side.dtype).name, side.device))
        is_reference = side.run is None and np.dtype(side.dtype) == np.float64
        runners.append("reference" if is_reference else side.run or numpy_run(program, side.dtype))
    ref_losses = []
    cls = program.tolerance
    held_out = {name: _cast(d, np.float64) for name, d in program.evaluations.items()}
    side_held_out = {d.name: {name: _exact(v, d, f"evaluations[{name!r}]") for name, v in program.evaluations.items()}
                     for d in dtypes}
    reference_evaluations = {name: [] for name in held_out}
    loss_bounds = {d.name: [] for d in dtypes}
    evaluation_bounds = {d.name: {name: [] for name in held_out} for d in dtypes}
    for t in range(steps):
        start = clock()
        raw = program.batch(t)
        batch = _cast(raw, np.float64)
        loss, grads = program.loss_and_grads(ref, batch)
        ref_state_before = ref_state
        new_ref, ref_state = program.update(ref, grads, ref_state)
        ref_losses.append(float(loss))
        # the held-out losses after this step's update (scenario 2's validation loss after each epoch)
        ref_evals = ({name: float(program.evaluate(new_ref, v)) for name, v in held_out.items()}
                     if program.evaluates(t) else {})
        for name, value in ref_evals.items():
            reference_evaluations[name].append((t, value))
        seconds["reference"] += clock() - start
        start = clock()
        # the gradient's actual rounding, once per step: the program in float32 on the reference's
        # parameters and batch rounded to float32, against the float64 gradient
        _, probe_grads = program.loss_and_grads(_cast(ref, PROBE), _exact(raw, PROBE, "batch"))
        probe_error = {k: np.abs(np.asarray(probe_grads[k], np.float64) - g) for k, g in grads.items()}
        seconds["probe"] += clock() - start
        start = clock()
        scale = program.term_scale(ref, batch)
        n = program.reduction_length(batch)
        cond = program.loss_condition(ref, batch) if program.loss_condition else 1.0
        seconds["scales"] += clock() - start
        tolerances = {}
        start = clock()
        pending = [g for g in groups if any(t < horizon[d.name] for d in g["dtypes"])]
        while pending:
            group = pending.pop()
            active = [d for d in group["dtypes"] if t < horizon[d.name]]
            previous = group["runs"]
            group["runs"], loss_dev, param_dev = _advance(program, previous, batch, loss, grads, probe_error,
                                                           ref, new_ref, group["u"], signs, group["key"])
            for d in active:  # largest u first: it reaches its horizon first
                factor = unit_roundoff(d) / group["u"]
                for k, dev in param_dev.items():
                    limit = np.sqrt(unit_roundoff(d)) * max(1.0, float(np.max(np.abs(new_ref[k]), initial=0.0)))
                    if not dev * factor <= limit:  # NaN included
                        horizon[d.name] = t
                        reason[d.name] = (f"from step {t} on, {runs} float64 runs perturbed by {d.name} rounding "
                                          f"part from the reference by {dev * factor:.2e} in {k}, beyond sqrt(u) x "
                                          f"max(1, |{k}|) = {limit:.2e}: rounding, not the math, decides the "
                                          "trajectory")
                        break
            rest = [d for d in active if horizon[d.name] > t]
            if len(rest) < len(active) and rest:
                # a dtype with smaller u outlives the linear regime of these runs: it continues with runs
                # of its own, their deviations so far scaled down to its u (valid up to the last step)
                u_rest = max(unit_roundoff(d) for d in rest)
                factor = u_rest / group["u"]
                group["dtypes"] = [d for d in group["dtypes"] if d not in rest]
                split = {"u": u_rest, "dtypes": rest, "key": ("split", t),
                         "runs": [(_toward(p, ref, factor), _toward(st, ref_state_before, factor))
                                  for p, st in previous]}
                groups.append(split)
                pending.append(split)
                continue
            for d in rest:
                factor = unit_roundoff(d) / group["u"]
                loss_floor = tolerance(cls, d, n, loss, cond, term_scale=scale["loss"])
                tolerances[d.name] = {"loss": Tolerance(loss_floor.rtol, loss_floor.atol,
                                                        SAFETY * loss_dev * factor)}
                for k, v in new_ref.items():
                    floor = tolerance(cls, d, n, v, term_scale=float(np.max(np.abs(ref[k]), initial=0.0)))
                    tolerances[d.name][k] = Tolerance(floor.rtol, floor.atol, SAFETY * param_dev[k] * factor)
            if ref_evals and rest:
                # a held-out loss is judged as the training loss: the policy's floor on that data at the
                # updated parameters, plus SAFETY times the perturbed runs' spread of that loss
                eval_dev = _held_out_deviation(program, group["runs"], held_out, ref_evals)
                for name, value in ref_evals.items():
                    data64 = held_out[name]
                    eval_cond = program.loss_condition(new_ref, data64) if program.loss_condition else 1.0
                    eval_scale = program.term_scale(new_ref, data64)["loss"]
                    for d in rest:
                        factor = unit_roundoff(d) / group["u"]
                        floor = tolerance(cls, d, program.reduction_length(data64), value, eval_cond,
                                          term_scale=eval_scale)
                        tolerances[d.name][f"{name} loss"] = Tolerance(floor.rtol, floor.atol,
                                                                       SAFETY * eval_dev[name] * factor)
        seconds["perturbed"] += clock() - start
        for d in dtypes:
            tols = tolerances.get(d.name)
            loss_bounds[d.name].append(float(tols["loss"].bound(np.float64(loss))) if tols else np.nan)
            for name, value in ref_evals.items():
                bound = float(tols[f"{name} loss"].bound(np.float64(value))) if tols else np.nan
                evaluation_bounds[d.name][name].append((t, bound))
        for side, verdict, runner in zip(sides, verdicts, runners, strict=True):
            if stop_at_failure and verdict.failure is not None:
                continue
            start = clock()
            side_evals = {}
            if runner == "reference":
                side_loss, side_params, side_evals = float(loss), new_ref, ref_evals
            else:
                # a torch form yields (loss, params) or, with held-out data, (loss, params, {name: loss})
                side_loss, side_params, *rest_of_step = next(runner)
                if side.run is None and ref_evals:  # the NumPy program in the side's dtype
                    side_evals = {name: float(program.evaluate(side_params, side_held_out[verdict.dtype][name]))
                                  for name in ref_evals}
                elif rest_of_step:
                    side_evals = rest_of_step[0]
            elapsed = clock() - start
            verdict.seconds += elapsed
            if side.run is None:
                seconds["numpy"] += elapsed
            verdict.losses.append(float(side_loss))
            verdict.final = side_params
            for name in ref_evals:
                if name not in side_evals:
                    raise ValueError(f"{side.label} ({side.dtype}) gave no {name} loss at step {t}")
                verdict.evaluations.setdefault(name, []).append((t, float(side_evals[name])))
            tols = tolerances.get(verdict.dtype)
            if tols is None or verdict.failure is not None:
                continue
            start = clock()
            expected = {"loss": np.float64(loss), **new_ref}
            actual = {"loss": side_loss, **side_params}
            for name, value in ref_evals.items():
                expected[f"{name} loss"], actual[f"{name} loss"] = np.float64(value), side_evals[name]
            for key in ["loss", *sorted(new_ref), *(f"{name} loss" for name in ref_evals)]:
                if key not in actual:
                    raise ValueError(f"{side.label} ({side.dtype}) gave no parameter {key!r} at step {t}")
                ratio = _ratio(actual[key], np.asarray(expected[key], np.float64), tols[key])
                what = f"step {t} {key if key.endswith('loss') else 'param ' + key}"
                if ratio > verdict.worst_ratio or not verdict.worst_at:
                    verdict.worst_ratio, verdict.worst_at = ratio, what
                if ratio > 1.0 and verdict.failure is None:
                    verdict.failure = compare(actual[key], expected[key], tols[key], case=name, what=what,
                                              dtype=verdict.dtype, device=f"torch-{side.device}"
                                              if side.run is not None else "numpy",
                                              actual_name=f"{side.label} ({verdict.dtype}, {side.device})")
            verdict.judged = t + 1
            seconds["compare"] += clock() - start
        ref = new_ref
        if stop_at_failure and all(v.failure is not None for v in verdicts):
            break
    return Judgement(name, steps, np.array(ref_losses), horizon, reason, verdicts, seconds, reference_evaluations,
                     loss_bounds, evaluation_bounds)
