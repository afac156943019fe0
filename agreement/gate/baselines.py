"""Stored gradient baselines: what is recorded, the file format, atomic writes, strict loading.

For every registered case at a fixed size and seed, a baseline holds the
float64 NumPy reference (loss, every parameter's gradient, and for trainable
cases a short trajectory per optimizer in ``OPTIMIZERS``), plus the worst
error of every float32/float64 result (torch per device, NumPy float32) and of
every bfloat16/float16 gradient evaluation (torch per device, NumPy float16)
against that reference, as the tolerance policy's ratio ``err / tol``.

Format: one JSON file per (case, size, seed), ``baselines/<case>.<size>.seed<k>.json``.
JSON because a changed number shows up as a changed line in review, because
Python writes floats in the shortest form that reads back to the same double
(exact round trip), and because nothing in it can execute: the files are parsed
by ``json.loads`` only, never unpickled (no ``np.load``, so no ``allow_pickle``
to get wrong), and a file that looks like a pickle, ``.npy`` or zip archive is
refused by name before parsing.

Writes are atomic: the new text goes to a temporary file in the same
directory, is flushed and fsynced, then ``os.replace``d over the old one, so an
interrupted regeneration leaves every file either old or new, never partial.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from agreement import precision
from agreement.compare import Comparison
from agreement.environment import blas_libraries
from agreement.optimizers import OPTIMIZERS
from agreement.precision import LOW_PRECISIONS
from agreement.registry import Case, Example
from agreement.run import devices, evaluate, expected
from agreement.trajectory import Reference, compare_trajectories, judged_arrays

FORMAT = "gradient-agreement-baseline"
FORMAT_VERSION = 1
SIZE = "tiny"  # the gate runs in seconds; larger sizes would make the JSON unreviewable
SEEDS = (0,)
STEPS = 5  # trajectory length: enough for momentum/bias-correction state to matter
DTYPES = (np.float32, np.float64)  # evaluations and trajectories
ENV_DIRECTORY = "GRADIENT_BASELINES"


class BaselineError(Exception):
    """A baseline file that is missing, unreadable, not ours, or malformed."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def directory() -> Path:
    """``$GRADIENT_BASELINES`` if set, else ``baselines/`` at the repository root."""
    env = os.environ.get(ENV_DIRECTORY)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "baselines"


def filename(case_name: str, size: str = SIZE, seed: int = 0) -> str:
    return f"{case_name}.{size}.seed{seed}.json"


# ---------------------------------------------------------------- measuring
@dataclass(frozen=True)
class Budgeted:
    """What one worst error is of: a dtype and device, and an array ("loss", "grad W")
    of one evaluation, or ("loss", "param W") of an ``optimizer``'s trajectory, where
    it is per optimizer and array, not per step, so that it stays comparable when the
    step it occurs at moves. In the file it is ``worst_errors[group][name]``."""

    dtype: str
    device: str
    array: str
    optimizer: str | None = None

    @property
    def group(self) -> str:
        return f"{self.dtype}/{self.device}"

    @property
    def name(self) -> str:
        return f"{self.optimizer} trajectory {self.array}" if self.optimizer else self.array

    @property
    def steps(self) -> int:
        """Evaluations the result's rounding accumulates over (the budget's floor scales with it)."""
        return STEPS if self.optimizer else 1


def budget_groups(dtypes=(*DTYPES, *LOW_PRECISIONS)) -> dict:
    """Every (dtype, device) a baseline can hold worst errors for, by its name in the
    file: torch on each device the precision runs on, and NumPy below float64 where NumPy
    computes in the precision."""
    groups = {}
    for dtype in dtypes:
        torch_devices = [f"torch-{d}" for d in ("cpu", "cuda") if precision.runs_on(dtype, d)]
        numpy = precision.numpy_computes_in(dtype) and precision.name(dtype) != "float64"
        for device in (*torch_devices, *(("numpy",) if numpy else ())):
            groups[f"{precision.name(dtype)}/{device}"] = (precision.name(dtype), device)
    return groups


@dataclass
class Measurement:
    """Everything a baseline records, computed now for one case, size and seed."""

    example: Example
    loss: float | None
    grads: dict
    trajectories: dict  # optimizer -> {"hyper", "losses" (steps,), "params" {name: (steps, ...)}}
    comparisons: dict = field(default_factory=dict)  # Budgeted -> Comparison
    # (optimizer, dtype name) -> the trajectory.Reference its trajectories were judged against, which the
    # drift check judges the recorded float64 trajectory against too: each reference run and spread once
    references: dict = field(default_factory=dict)

    def grouped(self) -> dict:
        """The comparisons as the file holds their worst errors: {group: {name: Comparison}}."""
        out: dict = {}
        for b, c in sorted(self.comparisons.items(), key=lambda item: (item[0].group, item[0].name)):
            out.setdefault(b.group, {})[b.name] = c
        return out


def measure(case: Case, size: str = SIZE, seed: int = 0) -> Measurement:
    example = case.build(size, np.float64, seed)
    loss, grads = expected(case, example)
    m = Measurement(example, float(loss) if case.compare_loss else None,
                    {k: np.asarray(v, np.float64) for k, v in grads.items()}, {})
    if case.trainable:
        for opt in OPTIMIZERS.values():
            for dtype in DTYPES:
                m.references[opt.name, np.dtype(dtype).name] = Reference(case, opt, example, opt.defaults, STEPS,
                                                                         dtype)
            recorded = m.references[opt.name, "float64"]  # the example is float64: its own reference run
            m.trajectories[opt.name] = {"hyper": dict(opt.defaults), "losses": recorded.losses,
                                        "params": {k: np.stack([p[k] for p in recorded.path])
                                                   for k in recorded.path[0]}}
    for dtype in (*DTYPES, *LOW_PRECISIONS):  # TF32 records on CUDA only
        for device in devices(dtype):
            for c in evaluate(case, example, dtype, device):
                m.comparisons[Budgeted(c.dtype, c.device, c.what)] = c
            if case.trainable and not precision.is_low(dtype):
                for opt in OPTIMIZERS.values():
                    judged = compare_trajectories(case, opt, example, opt.defaults, STEPS, dtype, device,
                                                  against=m.references[opt.name, np.dtype(dtype).name])
                    for (array, _), c in zip(judged_arrays(example.params, case.compare_loss), judged,
                                             strict=True):
                        m.comparisons[Budgeted(c.dtype, c.device, array, opt.name)] = dataclasses.replace(
                            c, what=f"{opt.name} {c.what}")
    return m


def comparison_scale(c: Comparison) -> float:
    """The policy's magnitude of the compared array: atol = rtol * scale + steps * smallest_normal,
    so atol / rtol is the scale to within the underflow floor."""
    return float(np.max(c.tol.atol)) / c.tol.rtol if c.tol.rtol else 0.0


def environment() -> dict:
    """Provenance: what the values were recorded with (never a reason to rewrite them)."""
    blas = [{k: lib[k] for k in ("internal_api", "version", "architecture")} for lib in blas_libraries()]
    return {"numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(), "blas": blas,
            "devices": devices()}


def record(case: Case, size: str = SIZE, seed: int = 0, m: Measurement | None = None) -> dict:
    """The baseline document for ``case`` (JSON-ready)."""
    m = m or measure(case, size, seed)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "case": {"name": case.name, "kind": case.kind, "size": size, "seed": seed,
                 "tolerance_class": case.tolerance.name, "shapes": shapes_of(m.example),
                 "hyper": m.example.hyper},
        "recorded_with": environment(),
        "reference": {"loss": m.loss, "grads": {k: v.tolist() for k, v in sorted(m.grads.items())}},
        "trajectories": {name: {"hyper": t["hyper"], "steps": STEPS, "losses": t["losses"].tolist(),
                                "params": {k: v.tolist() for k, v in sorted(t["params"].items())}}
                         for name, t in m.trajectories.items()},
        "worst_errors": {group: {name: {"ratio": c.ratio, "abs_err": c.abs_err, "scale": comparison_scale(c)}
                                 for name, c in whats.items()}
                         for group, whats in m.grouped().items()},
    }


def shapes_of(example: Example) -> dict:
    return {k: list(v) for k, v in sorted(example.shapes().items())}


# ---------------------------------------------------------------- storing
def write_atomic(path: Path, doc: dict) -> None:
    """Write ``doc`` as JSON to ``path`` so that readers see the old file or the new one, never a part."""
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"  # serialize first: a failure here touches nothing
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_BINARY_SIGNATURES = [(b"\x80", "a Python pickle"), (b"\x93NUMPY", "a NumPy .npy file"),
                      (b"PK\x03\x04", "a zip archive (.npz?)")]


def _reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def load(path) -> dict:
    """Read and validate one baseline file; raises BaselineError saying what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BaselineError(path, "missing: record it with `python -m agreement.gate --regenerate`") from None
    except OSError as e:
        raise BaselineError(path, f"unreadable: {e.strerror}") from None
    for signature, kind in _BINARY_SIGNATURES:
        if raw.startswith(signature):
            raise BaselineError(path, f"is {kind}, not JSON: refused unread (baselines are never unpickled)")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BaselineError(path, "is not UTF-8 text: corrupted or not a baseline") from None
    except json.JSONDecodeError as e:
        raise BaselineError(path, f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): "
                                  "truncated or corrupted") from None
    except ValueError as e:
        raise BaselineError(path, f"contains a {e}") from None
    _validate(path, doc)
    return doc


def _require(path, condition, where, expected):
    if not condition:
        raise BaselineError(path, f"malformed: {where} must be {expected}")


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def as_array(path, value, where) -> np.ndarray:
    """A stored nested list as a float64 array; rejects ragged lists and non-numbers."""
    def leaves_ok(v):
        return all(leaves_ok(x) for x in v) if isinstance(v, list) else _is_number(v)

    _require(path, leaves_ok(value), where, "a number or nested lists of numbers")
    try:
        return np.asarray(value, dtype=np.float64)
    except ValueError:
        raise BaselineError(path, f"malformed: {where} is a ragged list, not an array") from None


def _validate(path, doc) -> None:
    _require(path, isinstance(doc, dict), "the document", "a JSON object")
    _require(path, doc.get("format") == FORMAT, "format", repr(FORMAT))
    _require(path, doc.get("format_version") == FORMAT_VERSION, "format_version", FORMAT_VERSION)
    for key in ("case", "recorded_with", "reference", "trajectories", "worst_errors"):
        _require(path, isinstance(doc.get(key), dict), key, "an object")
    case = doc["case"]
    _require(path, isinstance(case.get("name"), str) and isinstance(case.get("size"), str), "case.name/size",
             "strings")
    _require(path, isinstance(case.get("seed"), int), "case.seed", "an integer")
    _require(path, isinstance(case.get("shapes"), dict), "case.shapes", "an object")
    loss = doc["reference"].get("loss")
    _require(path, loss is None or _is_number(loss), "reference.loss", "a number or null")
    _require(path, isinstance(doc["reference"].get("grads"), dict), "reference.grads", "an object")
    for name, values in doc["reference"]["grads"].items():
        as_array(path, values, f"reference.grads.{name}")
    for opt, t in doc["trajectories"].items():
        where = f"trajectories.{opt}"
        _require(path, isinstance(t, dict) and isinstance(t.get("hyper"), dict) and isinstance(t.get("params"), dict)
                 and isinstance(t.get("steps"), int), where, "an object with hyper, steps, losses, params")
        _require(path, as_array(path, t.get("losses"), f"{where}.losses").shape == (t["steps"],),
                 f"{where}.losses", f"{t['steps']} numbers")
        for name, values in t["params"].items():
            _require(path, as_array(path, values, f"{where}.params.{name}").shape[:1] == (t["steps"],),
                     f"{where}.params.{name}", f"{t['steps']} steps")
    for key, whats in doc["worst_errors"].items():
        _require(path, isinstance(whats, dict), f"worst_errors.{key}", "an object")
        for what, entry in whats.items():
            _require(path, isinstance(entry, dict) and all(_is_number(entry.get(k)) and entry[k] >= 0
                                                           for k in ("ratio", "abs_err", "scale")),
                     f"worst_errors.{key}.{what}", "an object of non-negative ratio, abs_err, scale")
