"""Checking one case against its stored baseline: the gate's verdict, finding by finding.

Four kinds of finding, each naming case, array, dtype and device:

* ``agreement``  torch (or NumPy float32, float16) and the float64 reference disagree
                 beyond the tolerance policy at the baseline's fixed example;
* ``drift``      the float64 reference moved from its recorded value beyond the
                 policy's float64 tolerance (gradients, loss; trajectories as
                 agreement/trajectory.py judges them);
* ``budget``     a worst error grew beyond its recorded value (error budget below);
* ``baseline``   the file is missing, unreadable, malformed, a pickle, or recorded
                 for a different case, shape, hyperparameters or optimizer set.

Error budget. A worst error ``err/tol`` fails when it exceeds its recorded value
by more than ``MARGIN`` (now > recorded * (1 + MARGIN)) *and* the error exceeds
``FLOOR_ULPS`` units in the last place of the compared array's scale (the
policy's scale), per optimizer step for trajectories. The errors recorded at
these fixed examples are at most 3.2 ulps of the scale for one evaluation and
2.8 ulps after a 5-step trajectory (docs/gate.md); a legitimate change of
summation order (a torch or BLAS upgrade, other SIMD widths) can turn one
rounding into two, doubling an error, so MARGIN = 1 lets an error double and no
more. Below the floor an error is a handful of roundings whatever its ratio, so
1e-20 -> 2e-20 or 0 -> 1 ulp never trips.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from agreement import precision
from agreement.compare import compare
from agreement.gate import baselines
from agreement.optimizers import OPTIMIZERS
from agreement.registry import Case
from agreement.run import devices, term_scales
from agreement.tolerance import tolerance
from agreement.trajectory import judge

KINDS = ("baseline", "drift", "agreement", "budget")  # the order findings are reported in
MARGIN = 1.0
FLOOR_ULPS = 4


@dataclass
class Finding:
    kind: str  # agreement | drift | budget | baseline
    case: str
    what: str  # "grad W1", "loss", "sgd step 2 param W1", "file"
    dtype: str
    device: str
    baseline: float | None = None  # recorded value (drift), float64 reference (agreement), recorded err/tol (budget)
    current: float | None = None
    error: float | None = None  # |current - baseline| (budget: current abs error)
    tolerance: float | None = None  # allowed error (budget: allowed err/tol)
    detail: str = ""

    def report(self) -> str:
        head = f"{self.kind.upper()} {self.case}: {self.what} ({self.dtype}, {self.device})"
        if self.kind == "baseline":
            return f"{head}: {self.detail}"
        if self.kind == "budget":
            return (f"{head}: worst err/tol grew from {self.baseline:.4g} (recorded) to {self.current:.4g}, "
                    f"beyond the budget {self.tolerance:.4g}; {self.detail}")
        label = "float64 reference" if self.kind == "agreement" else "baseline"
        return (f"{head}: {label} {self.baseline!r}, current {self.current!r}, error {self.error:.3e}, "
                f"tolerance {self.tolerance:.3e}; {self.detail}")


@dataclass
class CaseResult:
    case: str
    path: str
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    headroom: dict = field(default_factory=dict)  # budget key -> [recorded max err/tol, current max err/tol]

    @property
    def ok(self) -> bool:
        return not self.findings

    def report(self) -> str:
        lines = [f"{self.case}: {len(self.findings)} finding(s) against {self.path}"]
        return "\n".join(lines + [f.report() for f in self.findings] + [f"note: {n}" for n in self.notes])

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> CaseResult:
        d = json.loads(text)
        return cls(d["case"], d["path"], [Finding(**f) for f in d["findings"]], d["notes"], d["headroom"])


def check_case(case: Case, directory=None, size: str = baselines.SIZE, seed: int = 0,
               measurement: baselines.Measurement | None = None) -> CaseResult:
    """The gate's verdict on one case against its stored baseline. ``measurement``:
    the case measured now, when the caller has it (``--regenerate`` does)."""
    path = (directory or baselines.directory()) / baselines.filename(case.name, size, seed)
    result = CaseResult(case.name, str(path))
    try:
        doc = baselines.load(path)
    except baselines.BaselineError as e:
        result.findings.append(Finding("baseline", case.name, "file", "-", "-", detail=str(e)))
        return result
    result.findings += _identity(case, doc, case.build(size, np.float64, seed), size, seed, path)
    if result.findings:
        return result  # a baseline of something else: comparing its numbers would only add noise
    m = measurement or baselines.measure(case, size, seed)
    result.findings += _drift(case, doc, m, path) + _agreement(m) + _budget(case, doc, m, result)
    result.findings.sort(key=lambda f: KINDS.index(f.kind))
    result.notes += environment_notes(doc["recorded_with"])
    return result


def unrecorded(doc: dict, m: baselines.Measurement) -> list:
    """The worst errors measured now that the baseline does not hold (a device it was
    not recorded on, a new array): recording them is a change of values."""
    recorded = doc["worst_errors"]
    return sorted(b.name + f" ({b.group})" for b in m.comparisons if b.name not in recorded.get(b.group, {}))


def _as_stored(value):
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _identity(case, doc, example, size, seed, path) -> list:
    """Is this the baseline of this case, size, seed, shapes, hyperparameters and optimizers?"""
    recorded, problems = doc["case"], []
    optimizers = {o.name: _as_stored(o.defaults) for o in OPTIMIZERS.values()} if case.trainable else {}
    for what, want, got in [("case", case.name, recorded["name"]), ("size", size, recorded["size"]),
                            ("seed", seed, recorded["seed"]),
                            ("shapes", baselines.shapes_of(example), recorded["shapes"]),
                            ("hyperparameters", _as_stored(example.hyper), recorded.get("hyper")),
                            ("optimizers", sorted(optimizers), sorted(doc["trajectories"]))]:
        if want != got:
            problems.append(Finding("baseline", case.name, what, "-", "-",
                                    detail=f"{path} was recorded for {what} {got}, the registry now gives {want}: "
                                           "regenerate it if the change is intended"))
    for opt, t in doc["trajectories"].items():
        now = optimizers.get(opt)
        if opt in optimizers and (t["hyper"], t["steps"]) != (now, baselines.STEPS):
            problems.append(Finding("baseline", case.name, f"{opt} trajectory", "-", "-",
                                    detail=f"recorded with {t['hyper']} for {t['steps']} steps, now "
                                           f"{now} for {baselines.STEPS}"))
    return problems


def _finding(kind: str, c, what: str | None = None, recorded_is_actual: bool = False) -> Finding:
    """A failed comparison as a finding. ``recorded_is_actual``: the comparison was
    made with the recorded value as its "actual" (``judge``), and the finding
    reports it as the expected one."""
    expected, actual = (c.actual, c.expected) if recorded_is_actual else (c.expected, c.actual)
    return Finding(kind, c.case, what or c.what, c.dtype, c.device, expected, actual, c.abs_err, c.allowed,
                   f"worst element at {c.index} of shape {c.shape}, {c.ratio:.3g}x the tolerance")


def _agreement(m) -> list:
    return [_finding("agreement", c) for whats in m.grouped().values() for c in whats.values() if not c.ok]


def _drift_one(case, what, current, recorded, tol, path):
    recorded = baselines.as_array(path, recorded, what)
    current = np.asarray(current, np.float64)
    if recorded.shape != current.shape:
        return Finding("baseline", case.name, what, "float64", "numpy",
                       detail=f"recorded shape {recorded.shape}, current {current.shape}: regenerate")
    c = compare(current, recorded, tol(recorded), case=case.name, what=what, dtype="float64", device="numpy")
    if c.ok:
        return None
    return _finding("drift", c)


def _drift(case, doc, m, path) -> list:
    """The current float64 reference against the recorded one, within the policy's float64 tolerance."""
    n = case.reduction_length(m.example)
    cond = case.loss_condition(m.example) if case.loss_condition else 1.0
    terms = term_scales(case, m.example)

    def policy(terms=0.0, cond=1.0):
        return lambda recorded: tolerance(case.tolerance, np.float64, n, recorded, cond, terms)

    out = []
    if m.loss is not None:
        if doc["reference"]["loss"] is None:
            out.append(Finding("baseline", case.name, "loss", "float64", "numpy", detail="no recorded loss"))
        else:
            out.append(_drift_one(case, "loss", m.loss, doc["reference"]["loss"],
                                  policy(terms.get("loss", 0.0), cond), path))
    recorded_grads = doc["reference"]["grads"]
    for name in sorted(set(m.grads) | set(recorded_grads)):
        if name not in m.grads or name not in recorded_grads:
            out.append(Finding("baseline", case.name, f"grad {name}", "float64", "numpy",
                               detail=f"{'recorded' if name in recorded_grads else 'computed'} only: regenerate"))
            continue
        out.append(_drift_one(case, f"grad {name}", m.grads[name], recorded_grads[name],
                              policy(terms.get(name, 0.0)), path))
    for opt_name, t in m.trajectories.items():
        out += _drift_trajectory(case, opt_name, t, doc["trajectories"][opt_name], m, path)
    return [f for f in out if f is not None]


def _drift_trajectory(case, opt_name, current, recorded, m, path) -> list:
    """The recorded trajectory judged as agreement/trajectory.py judges torch's, against the
    current float64 reference: the policy's tolerance plus the measured spread of every
    earlier step's rounding (which Adam and RMSprop amplify near zero gradients)."""
    where = f"trajectories.{opt_name}"
    params = {k: baselines.as_array(path, v, f"{where}.params.{k}") for k, v in recorded["params"].items()}
    shapes = {k: v.shape for k, v in current["params"].items()}
    if {k: v.shape for k, v in params.items()} != shapes:
        return [Finding("baseline", case.name, f"{opt_name} trajectory", "float64", "numpy",
                        detail=f"recorded shapes {({k: v.shape for k, v in params.items()})}, now {shapes}: "
                               "regenerate")]
    steps = [{k: v[t] for k, v in params.items()} for t in range(baselines.STEPS)]
    judged = judge(case, OPTIMIZERS[opt_name], m.example, current["hyper"], np.float64,
                   baselines.as_array(path, recorded["losses"], f"{where}.losses"), steps, "numpy",
                   against=m.references[opt_name, "float64"])
    # judge() calls the trajectory it is given "actual": here that is the recorded one
    return [_finding("drift", c, f"{opt_name} {c.what}", recorded_is_actual=True) for c in judged if not c.ok]


def budget_limits(recorded_ratio: float, dtype, scale: float, steps: int = 1) -> tuple[float, float]:
    """(largest err/tol allowed, error floor below which growth is never judged) for a result
    of ``steps`` evaluations (a trajectory rounds anew each step); see the module docstring."""
    return recorded_ratio * (1 + MARGIN), FLOOR_ULPS * steps * float(precision.finfo(dtype).eps) * scale


REQUIRED_DEVICES = ("torch-cpu", "numpy")  # every machine has them; other devices' budgets are notes


def _budget(case, doc, m, result) -> list:
    """Each worst error measured now against its recorded budget. Measured and recorded
    are matched by the structured ``baselines.Budgeted`` of the measurement; a recorded
    group is recognised among ``baselines.budget_groups()`` by its name in the file."""
    out, recorded_all = [], doc["worst_errors"]
    measured: dict = {}
    for b, c in m.comparisons.items():
        measured.setdefault((b.dtype, b.device), {})[b.name] = (b, c)
    known = baselines.budget_groups()
    for group in sorted(set(recorded_all) - set(known)):
        out.append(Finding("baseline", case.name, "worst errors", "-", "-",
                           detail=f"unknown group {group!r}; known: {sorted(known)}: regenerate"))
    for group, (dtype, device) in sorted(known.items()):
        current, recorded = measured.get((dtype, device)), recorded_all.get(group)
        if current is None or recorded is None:
            if current is None and recorded is None:
                continue
            message = (f"no recorded worst errors for {group}" if recorded is None
                       else f"{group} recorded but not measured here (devices now: {devices()})")
            if device in REQUIRED_DEVICES:
                out.append(Finding("baseline", case.name, "worst errors", dtype, device, detail=message))
            else:
                result.notes.append(message)
            continue
        result.headroom[group] = [max((e["ratio"] for e in recorded.values()), default=0.0),
                                  max((c.ratio for _, c in current.values()), default=0.0)]
        for name in sorted(set(current) | set(recorded)):
            if name not in current or name not in recorded:
                out.append(Finding("baseline", case.name, name, dtype, device,
                                   detail=f"worst error {'recorded' if name in recorded else 'measured'} only: "
                                          "regenerate"))
                continue
            (b, c), entry = current[name], recorded[name]
            if not c.ok:
                continue  # reported as an agreement finding already
            allowed, floor = budget_limits(entry["ratio"], dtype, baselines.comparison_scale(c), b.steps)
            if c.ratio > allowed and c.abs_err > floor:
                out.append(Finding("budget", case.name, name, dtype, device, entry["ratio"], c.ratio, c.abs_err,
                                   allowed, f"abs error {c.abs_err:.3e} (recorded {entry['abs_err']:.3e}) is above "
                                            f"the floor {floor:.3e} ({FLOOR_ULPS * b.steps} ulps of scale "
                                            f"{baselines.comparison_scale(c):.3g})"))
    return out


def environment_notes(recorded: dict) -> list:
    now = baselines.environment()
    return [f"recorded with {k} {recorded.get(k)}, running {now[k]}"
            for k in ("numpy", "torch", "python", "machine", "blas") if recorded.get(k) != now[k]]


def stale_files(directory, cases, size: str = baselines.SIZE, seeds=baselines.SEEDS) -> list:
    """Baseline files that no registered case, size and seed would read."""
    wanted = {baselines.filename(c.name, size, s) for c in cases for s in seeds}
    return sorted(p for p in directory.glob("*.json") if p.name not in wanted)
