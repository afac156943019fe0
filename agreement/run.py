"""Evaluate one case on one example: both implementations against the float64 reference."""

from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np
import torch

from agreement import precision
from agreement.compare import Comparison, compare
from agreement.precision import BFLOAT16, TF32, resolve
from agreement.registry import Case, Example
from agreement.rounding import Measurement, OwnRounding, harness_runs, input_magnitude, measure, own_rounding
from agreement.tolerance import Tolerance, tolerance
from torch_impl import train

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(np.float16): torch.float16, BFLOAT16: torch.bfloat16, TF32: torch.float32}


def torch_dtype(dtype) -> torch.dtype:
    dtype = resolve(dtype)
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype: torch has no {precision.name(dtype)}; expected one of "
                         f"{[precision.name(d) for d in TORCH_DTYPES]}")
    return TORCH_DTYPES[dtype]


# torch's float32-precision switches. torch >= 2.9 has one per backend and operation
# (``fp32_precision``: "ieee", "tf32", "bf16", or "none" to inherit); once a program has
# used them, reading the older ``allow_tf32`` flags raises ("mix of the legacy and new
# APIs"), and restoring an older flag can leave torch.get_float32_matmul_precision()
# raising. So the new switches are used wherever they exist, the old flags only before.
# oneDNN's (mkldnn) are CPU switches: torch.set_float32_matmul_precision("medium") sets
# its matmul to bfloat16, which a float32 check must not inherit.
_FP32_SWITCHES = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"),
                  ("mkldnn", "matmul"), ("mkldnn", "conv"), ("mkldnn", "rnn"))


@functools.cache  # torch's switch objects live as long as torch; looking them up is half a switch's cost
def _fp32_switches() -> tuple[tuple[object, str], ...]:
    """(switch, its value for TF32 on) for each of torch's fp32_precision switches; none before torch 2.9."""
    found = []
    for backend, op in _FP32_SWITCHES:
        switch = getattr(getattr(torch.backends, backend, None), op, None)
        if switch is not None and hasattr(switch, "fp32_precision"):
            found.append((switch, "tf32" if backend in ("cuda", "cudnn") else "ieee"))
    return tuple(found)


@contextmanager
def tf32(enabled: bool):
    """TF32 on (``enabled``) or off in CUDA's matrix products and cuDNN, every other
    float32 product in float32; torch's switches are restored exactly afterwards."""
    switches = _fp32_switches()
    if switches:
        saved = [switch.fp32_precision for switch, _ in switches]
        for switch, on in switches:
            switch.fp32_precision = on if enabled else "ieee"
    else:  # torch < 2.9
        legacy = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = [flags.allow_tf32 for flags in legacy]
        for flags in legacy:
            flags.allow_tf32 = enabled
    try:
        yield
    finally:
        if switches:
            for (switch, _), value in zip(switches, saved, strict=True):
                switch.fp32_precision = value
        else:
            for flags, value in zip(legacy, saved, strict=True):
                flags.allow_tf32 = value


def tf32_state() -> dict:
    """Whether CUDA's matrix products and cuDNN's convolutions may use TF32 now, for
    results and reports. In torch >= 2.9 a switch at "none" inherits: from its backend's
    (cuDNN has one), then from torch.backends.fp32_precision, whose "none" is torch's
    default (TF32 off for matrix products, on for cuDNN)."""
    if not _fp32_switches():
        return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32}

    def effective(default: str, *switches) -> bool:
        values = [switch.fp32_precision for switch in (*switches, torch.backends)]
        return next((v for v in values if v != "none"), default) == "tf32"

    return {"matmul_tf32": effective("ieee", torch.backends.cuda.matmul),
            "cudnn_tf32": effective("tf32", torch.backends.cudnn.conv, torch.backends.cudnn)}


@contextmanager
def torch_precision(dtype):
    """TF32 switched on for TF32 runs and off for every other run (``tf32``), so that
    float32 means float32 on a GPU and on a CPU whose oneDNN could use bfloat16."""
    with tf32(resolve(dtype) is TF32):
        yield


def devices(dtype=None) -> list[str]:
    """The devices present, of those ``dtype`` runs on (TF32: CUDA only)."""
    present = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    dtype = None if dtype is None else resolve(dtype)
    return [d for d in present if dtype is None or precision.runs_on(dtype, d)]


class Unresolvable(Exception):
    """The example is beyond what the compared precision can represent (a float16 loss
    of 7e5) or compute (a side overflows in it): a skip, counted by ``reason`` (the
    message without its numbers), never a silent pass."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


def check_resolvable(dtype, loss, grads) -> None:
    """Raise Unresolvable when a finite float64 reference value overflows ``dtype``: no
    result in ``dtype`` can be compared with it. A non-finite one is compared (and fails
    where the other side is finite): NaN from your NumPy is a bug to report, not a skip."""
    largest = float(precision.finfo(dtype).max)
    for key, value in [("loss", loss), *((f"grad {k}", v) for k, v in sorted(grads.items()))]:
        v = np.abs(np.asarray(value, np.float64))
        v = v[np.isfinite(v)]
        if v.size and np.max(v) > largest:
            raise Unresolvable(f"{precision.name(dtype)} cannot hold the float64 reference's {key}",
                               f"|value| up to {np.max(v):.3g}, largest {precision.name(dtype)} {largest:.6g}")


def expected(case: Case, example: Example):
    """The reference in float64 on the example's values (exact upcast of the drawn dtype)."""
    ex64 = example.astype(np.float64)
    return case.reference(ex64.params, ex64.data, **ex64.hyper)


def term_scales(case: Case, example: Example) -> dict:
    return case.term_scale(example.astype(np.float64)) if case.term_scale else {}


def _torch_call(case: Case, device: str):
    """Torch's loss and gradients; the module is built once per dtype and reloaded for
    each evaluation (one example's measurement evaluates it at several nearby inputs)."""
    modules = {}

    def call(example: Example, dtype):
        tdtype = torch_dtype(dtype)
        if tdtype not in modules:
            modules[tdtype] = train.build(case.twin, example.params, example.hyper, device, tdtype)
        with torch_precision(dtype):
            loss, grads = train.loss_and_grads_of(modules[tdtype], example.params, example.data, device, tdtype)
        return loss, grads

    return call


def _numpy_call(reference):
    def call(example: Example):
        return reference(example.params, example.data, **example.hyper)

    return call


def _tolerances(case, example, dtype, measurement: Measurement):
    """``tol(key, actual, expected, cond, side)``: the analytic floor (normwise on each array)
    plus the rounding measured on this input; what it needs of the example is computed once,
    for every side judged against it."""
    n = case.reduction_length(example)
    input_scale = input_magnitude(example)
    # A case's own analytic magnitude of its loss's terms, where it declares one: the one
    # rounding no measurement sees is a fixed one on data, (1 - y) with y = 2e-10 in
    # BCE-with-logits, which float32 absorbs whole and no nearby input re-rounds.
    loss_terms = term_scales(case, example).get("loss", 0.0)

    def tol(key, actual, expected, cond=1.0, side=None):
        # normwise: relative to the array's largest element. An elementwise floor leaves
        # results that are 0 in the mathematics to the measurement alone, and float32
        # can under-measure them systematically: 1 - 2e-9 rounds to exactly 1 at every
        # nearby input (two_layer_classifier, logits [-18, 3, -18, -18]).
        terms = loss_terms if key == "loss" else 0.0
        floor = tolerance(case.tolerance, dtype, n, expected, cond, terms)
        # also where the judged result itself is exactly 0 and the reference is not: absorbed (2e-9 next
        # to 1 in float32), an error capped by the value, which no sample of the other sides scales to
        actual64 = np.asarray(actual, np.float64)
        fallback = (measurement.degenerate(key, np.shape(expected)) | ((actual64 == 0) & (expected != 0))) & (
            actual64 != expected)
        atol = floor.atol if not np.any(fallback) else np.where(
            fallback, tolerance(case.tolerance, dtype, n, expected, cond, max(terms, input_scale)).atol, floor.atol)
        measured = measurement.bound(key, np.shape(expected))
        return Tolerance(floor.rtol, atol, measured=0.0 if measured is None else measured)

    return tol


def _own_tolerances(case, example, dtype, own: OwnRounding, gap64, torch64):
    """Below float32 (agreement/rounding.py, ``own_rounding``): each side is allowed twice its
    own rounding at this input, |side in dtype - side in float64|, plus a bound on the
    difference of the two float64 functions (underflow included: the own rounding is
    measured); where its own rounding is no information (its float64 run is not finite),
    the dtype's analytic floor. The float64 bound is the larger of the float64 floor with
    the inputs' magnitude as its terms and what the float64 check allows torch's float64
    result (``gap64``, ``_tolerances`` in float64 at ``torch64``: floor plus the rounding
    measured there). The floor alone missed float64 roundings that cancel: an attention
    layer's gradient of 3e-13 that torch's float64 gives as 5e-14 (user corpus, float16).
    ``gap64()`` gives that check's tolerance function; it is measured only for an array
    the floor alone would fail (the larger bound passes whatever the smaller one does),
    which keeps a passing comparison, and its ratio, as cheap as before."""
    n, input_scale = case.reduction_length(example), input_magnitude(example)

    def tol(key, actual, expected, cond=1.0, side=None):
        floor = tolerance(case.tolerance, dtype, n, expected, cond)
        gap = tolerance(case.tolerance, np.float64, n, expected, cond, input_scale)
        rounding, informative = own.bound(side, key, np.shape(expected))
        # rtol folded into atol: Tolerance's rtol is one number per array
        atol = np.where(informative, gap.atol + gap.rtol * np.abs(expected), floor.atol + floor.rtol * np.abs(expected))
        allowed = Tolerance(0.0, atol, measured=rounding)
        with np.errstate(invalid="ignore"):
            passes = np.all(np.abs(np.asarray(actual, np.float64) - expected) <= allowed.bound(expected))
        if passes:
            return allowed
        t64 = torch64[0] if key == "loss" else torch64[1][key]
        measured64 = gap64()(key, t64, expected, cond).bound(expected)
        gap_bound = np.maximum(gap.atol + gap.rtol * np.abs(expected), measured64)
        return Tolerance(0.0, np.where(informative, gap_bound, atol), measured=rounding)

    return tol


def _compare_side(case, example, side: str, loss, grads, exp_loss, exp_grads, dtype, device, tol,
                  names: dict) -> list[Comparison]:
    """One side (``side`` "numpy" or "torch") against the float64 reference, within ``tol``
    (``_tolerances``)."""
    dtype_name = precision.name(dtype)
    context = {"shapes": {k: tuple(v) for k, v in example.shapes().items()}, "hyper": example.hyper}
    actual_name, expected_name = names[side], names["expected"]

    def cmp(actual, expected, key, what, cond=1.0):
        expected = np.asarray(expected, np.float64)
        if np.shape(actual) != expected.shape:
            raise AssertionError(f"{case.name}: {what} from {actual_name} has shape {np.shape(actual)}, but "
                                 f"{expected_name} has shape {expected.shape}")
        return compare(actual, expected, tol(key, actual, expected, cond, side), case=case.name, what=what,
                       dtype=dtype_name, device=device, context=context, actual_name=actual_name,
                       expected_name=expected_name)

    out = []
    if case.compare_loss:
        if np.ndim(loss) != 0 or np.ndim(exp_loss) != 0:
            raise AssertionError(f"{case.name}: the loss must be a scalar; {actual_name} gave shape "
                                 f"{np.shape(loss)}, {expected_name} gave shape {np.shape(exp_loss)}")
        cond = case.loss_condition(example) if case.loss_condition else 1.0
        out.append(cmp(loss, exp_loss, "loss", "loss", cond))
    extra, missing = sorted(set(grads) - set(exp_grads)), sorted(set(exp_grads) - set(grads))
    if extra or missing:
        raise AssertionError(f"{case.name}: gradients of {extra or missing} come from "
                             f"{actual_name if extra else expected_name} only")
    for name in sorted(exp_grads):
        if grads[name] is None:
            raise AssertionError(f"{case.name}: {name} received no gradient from {actual_name}")
        out.append(cmp(grads[name], exp_grads[name], name, f"grad {name}"))
    return out


DEFAULT_NAMES = {"expected": "the NumPy reference in float64"}


def evaluation_tolerances(case: Case, example: Example, dtype, device: str = "cpu", *, calls=None,
                          expected=None, torch64=None):
    """What ``evaluate`` allows an evaluation of the case at ``example`` in ``dtype`` (float32
    or float64): the floor plus the rounding measured on both functions at this input
    (``_tolerances``); and the float64 reference's (loss, grads) there. For results computed
    elsewhere: a third implementation (``compare_other``), a trajectory's loss and gradients,
    torch's float64 result below float32 (``evaluate``). ``calls``: (numpy_call, torch_call)
    where the caller has them; ``expected``, ``torch64``: the two functions' float64 results
    at the example, where already computed."""
    dtype = resolve(dtype)
    if precision.is_low(dtype):
        raise ValueError("evaluation_tolerances: float32 and float64 only")
    numpy_call, torch_call = calls or (_numpy_call(case.reference), _torch_call(case, device))
    example = example.astype(dtype)
    exp = expected if expected is not None else numpy_call(example.astype(np.float64))
    own64 = {"numpy_own": exp, **({"torch_own": torch64} if torch64 is not None else {})}
    measurement = measure(numpy_call, torch_call, example, dtype, numpy64=exp, torch64=torch64,
                          **(own64 if dtype == np.float64 else {}))
    return _tolerances(case, example, dtype, measurement), exp


def compare_other(case: Case, example: Example, dtype, loss, grads, label: str, device: str = "cpu"
                  ) -> list[Comparison]:
    """A third implementation's ``loss`` and ``grads`` (in ``dtype``, on ``example``) against
    the float64 reference, judged as torch is: the floor plus the rounding measured on
    the reference and on torch (e.g. the reference's fast path, reference/fast.py)."""
    dtype = resolve(dtype)
    if precision.is_low(dtype):
        raise ValueError("compare_other: only float32 and float64 third implementations")
    tol, (exp_loss, exp_grads) = evaluation_tolerances(case, example, dtype, device)
    names = {**DEFAULT_NAMES, label: f"{label} in {precision.name(dtype)}"}
    return _compare_side(case, example.astype(dtype), label, loss, grads, exp_loss, exp_grads, dtype, label, tol,
                         names)


def _low_numpy(numpy_call, example: Example, dtype):
    """NumPy's run in a low precision. It ran in float64 already, so a ValueError or an
    arithmetic error here is the precision's (the reference's "the loss overflows
    float16"): the example is beyond NumPy in that precision, a counted skip. Other
    exceptions (a TypeError in a float16-only branch) are reported as they are."""
    try:
        # overflow in the precision shows as a skip (``_check_finite``), not as NumPy's warnings
        with np.errstate(all="ignore"):
            return numpy_call(example)
    except Exception as error:
        # a user's function's exception arrives wrapped (check.UserCodeError), the original as its cause
        cause = error.__cause__ if isinstance(error, AssertionError) and error.__cause__ else error
        if not isinstance(cause, ValueError | ArithmeticError):
            raise
        raise Unresolvable(f"NumPy in {precision.name(dtype)} raised {type(cause).__name__}",
                           str(cause).splitlines()[0][:160]) from error


def _check_finite(side: str, loss, grads, exp_loss, exp_grads) -> None:
    """A side that overflows (inf, NaN) where the float64 reference is finite and within the
    precision's range cannot be compared there: a counted skip naming the side, never a pass."""
    for key, value, reference in [("loss", loss, exp_loss),
                                  *((f"grad {k}", grads.get(k), v) for k, v in sorted(exp_grads.items()))]:
        if value is None or np.shape(value) != np.shape(reference):
            continue
        bad = ~np.isfinite(np.asarray(value, np.float64)) & np.isfinite(np.asarray(reference, np.float64))
        if np.any(bad):
            raise Unresolvable(f"{side} is not finite at {key} where the float64 reference is",
                               f"{int(bad.sum())} of {bad.size} elements")


def evaluate(case: Case, example: Example, dtype, device: str = "cpu", reference=None,
             names: dict | None = None) -> list[Comparison]:
    """Torch (``device``) in ``dtype``, and NumPy in ``dtype`` when that is not float64
    and NumPy has it, each compared with the float64 NumPy reference, within the
    analytic floor plus the rounding measured on this example (agreement/rounding.py;
    below float32, each side's own rounding: ``own_rounding``). Raises Unresolvable
    where the precision cannot hold the reference's values or a side overflows in
    it. ``reference``
    overrides the case's NumPy function (used to show the comparison catches a
    wrong one); ``names``: what reports call "numpy", "torch" and "expected"."""
    dtype = resolve(dtype)
    if not precision.runs_on(dtype, device):
        raise precision.device_error(dtype, device)
    numpy_call, torch_call = _numpy_call(reference or case.reference), _torch_call(case, device)
    example = example.astype(dtype)
    ex64 = example.astype(np.float64)
    exp_loss, exp_grads = numpy_call(ex64)
    check_resolvable(dtype, exp_loss, exp_grads)
    t_loss, t_grads = torch_call(example, dtype)
    names = {**DEFAULT_NAMES, "numpy": f"NumPy in {dtype.name}",
             "torch": f"torch autograd ({dtype.name}, {device})", **(names or {})}
    if precision.is_low(dtype):
        n_out = _low_numpy(numpy_call, example, dtype) if precision.numpy_computes_in(dtype) else None
        _check_finite(names["torch"], t_loss, t_grads, exp_loss, exp_grads)
        if n_out is not None:
            _check_finite(names["numpy"], *n_out, exp_loss, exp_grads)
        with harness_runs():
            t64 = torch_call(example, np.float64)
        measurement = own_rounding(dtype, {"torch": ((t_loss, t_grads), t64),
                                           **({"numpy": (n_out, (exp_loss, exp_grads))} if n_out else {})})

        @functools.cache
        def gap64():  # the float64 check's tolerance at this input, for torch's float64 result
            return evaluation_tolerances(case, ex64, np.float64, calls=(numpy_call, torch_call),
                                         expected=(exp_loss, exp_grads), torch64=t64)[0]

        tol = _own_tolerances(case, example, dtype, measurement, gap64, t64)
    else:
        n_out = numpy_call(example) if dtype != np.float64 else None
        measurement = measure(numpy_call, torch_call, example, dtype, numpy_own=n_out or (exp_loss, exp_grads),
                              numpy64=(exp_loss, exp_grads),
                              torch_own=(t_loss, t_grads),
                              torch64=(t_loss, t_grads) if dtype == np.float64 else None)
        tol = _tolerances(case, example, dtype, measurement)
    out = _compare_side(case, example, "torch", t_loss, t_grads, exp_loss, exp_grads, dtype, f"torch-{device}",
                        tol, names)
    if n_out is not None:
        out += _compare_side(case, example, "numpy", *n_out, exp_loss, exp_grads, dtype, "numpy", tol, names)
    if not all(c.ok for c in out):
        values = {"numpy64": exp_grads, "torch": t_grads, **({"numpy": n_out[1]} if n_out is not None else {})}
        from agreement import verdict  # finite_differences imports this module

        verdict.explain(out, lambda params: numpy_call(ex64.with_params(params))[0], ex64, values, names)
    return out
