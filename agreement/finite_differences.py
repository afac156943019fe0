"""A third oracle, independent of torch: central finite differences of the
reference loss, in float64.

Step h_i = u^(1/3) max(1, |x_i|) balances truncation error (h^2 |f'''| / 6) and
rounding error (~ n u |F| / h, with F the magnitude of the loss's terms and n
its reduction length); both are then of order u^(2/3) (about 4e-11 in float64)
times those magnitudes. The tolerance is that estimate with the policy's SAFETY
factor and the depth of the case's computation:

    tol = SAFETY * (depth + n) * u^(2/3) * (F + max|g| + 1)

Inputs come from the cases' ``smooth`` strategies (bounded values, away from
ReLU kinks, clamps and the softplus threshold), where f''' is bounded by the
same magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
from agreement.rounding import harness_runs
from agreement.run import term_scales
from agreement.tolerance import SAFETY, Tolerance, unit_roundoff

U23 = unit_roundoff(np.float64) ** (2 / 3)


def central_differences(loss_fn, params: dict, name: str) -> np.ndarray:
    base = params[name]
    grad = np.zeros_like(base, dtype=np.float64)
    for index in np.ndindex(base.shape):
        h = np.cbrt(unit_roundoff(np.float64)) * max(1.0, abs(float(base[index])))
        values = []
        for sign in (1, -1):
            moved = np.array(base, dtype=np.float64, copy=True)
            moved[index] += sign * h
            values.append(float(loss_fn({**params, name: moved})))
        grad[index] = (values[0] - values[1]) / (2 * h)
    return grad


def check(case: Case, example: Example, reference=None) -> tuple[list[Comparison], dict]:
    """Compare the reference gradient with finite differences; also returns the FD gradients."""
    reference = reference or case.reference
    ex = example.astype(np.float64)
    loss, grads = reference(ex.params, ex.data, **ex.hyper)
    loss_terms = max(term_scales(case, ex).get("loss", 0.0), abs(float(loss)))
    steps = case.tolerance.depth + case.reduction_length(ex)

    def loss_fn(params):
        return reference(params, ex.data, **ex.hyper)[0]

    out, fds = [], {}
    for name in sorted(ex.params):
        fds[name] = fd = central_differences(loss_fn, ex.params, name)
        g_max = float(np.max(np.abs(grads[name]))) if np.size(grads[name]) else 0.0
        atol = SAFETY * steps * U23 * (loss_terms + g_max + 1)
        out.append(compare(grads[name], fd, Tolerance(0.0, atol), case=case.name, what=f"grad {name} vs FD",
                           dtype="float64", device="numpy", context={"shapes": ex.shapes(), "hyper": ex.hyper}))
    return out, fds


@dataclass
class Derivative:
    """A finite-difference estimate of one partial derivative, or the reason it declined."""

    value: float  # NaN when declined
    error: float  # estimated |value - true derivative| (truncation + rounding), inf when declined
    declined: str = ""  # why no estimate: a kink or jump, a non-finite loss, the function raised

    @property
    def ok(self) -> bool:
        return not self.declined


LADDER = (1, 8, 64, 512)  # multiples of the base step tried; the best-resolved one is kept


def derivative(loss_fn, params: dict, name: str, index: tuple) -> Derivative:
    """d loss / d params[name][index] by central differences in float64, judged by itself.

    The base step is h0 = u^(1/3) times the input's magnitude (|x|, or the
    parameter's largest |value| where x = 0, or 1): a step relative to the value,
    never an absolute one below its ulp. For each step h of the ladder h0 x
    ``LADDER``, the loss is evaluated at x +- h and x +- h/2:

    * the two central differences C(h) and C(h/2) differ by about 3/4 of C(h)'s
      truncation error; their difference plus rounding (8 u |F| / h, F the largest
      |loss| seen) bounds C(h/2)'s error;
    * the one-sided slopes on either side differ by h |f''| where the loss is
      smooth, halving with the step, and by the jump of f' at a kink, which does
      not halve: when their gap at h/2 is still over 3/4 of the gap at h (and
      above rounding), there is a kink or jump within h of the input.

    The estimate with the smallest error bound among the steps that see no kink is
    kept (a larger step cuts rounding where the loss is large and smooth, as
    softplus at x = 21); a kink within the smallest step declines rather than guess.
    """
    base = np.asarray(params[name], dtype=np.float64)
    x = float(base[index])
    magnitude = abs(x) or float(np.max(np.abs(base), initial=0.0)) or 1.0
    h0 = np.cbrt(unit_roundoff(np.float64)) * magnitude

    def f(offset):
        moved = np.array(base, copy=True)
        moved[index] = x + offset
        with harness_runs():
            return float(loss_fn({**params, name: moved}))

    best, kink = None, ""
    try:
        f0 = f(0.0)
        for multiple in LADDER:
            h = h0 * multiple
            fp, fm, fp2, fm2 = f(h), f(-h), f(h / 2), f(-h / 2)
            values = (f0, fp, fm, fp2, fm2)
            if not all(np.isfinite(values)):
                break
            noise = 8 * unit_roundoff(np.float64) * max(abs(v) for v in values)
            c1, c2 = (fp - fm) / (2 * h), (fp2 - fm2) / h
            gap1, gap2 = abs(fp - 2 * f0 + fm) / h, abs(fp2 - 2 * f0 + fm2) / (h / 2)
            if gap2 > 0.75 * gap1 and gap2 > 4 * noise / (h / 2):
                kink = kink or (f"a kink or jump at {name}{list(index)} = {x!r}: one-sided slopes "
                                f"{(fp2 - f0) / (h / 2):.6g} and {(f0 - fm2) / (h / 2):.6g}")
                break
            estimate = Derivative(c2, abs(c1 - c2) + noise / (h / 2))
            if best is None or estimate.error < best.error:
                best = estimate
    except Exception as error:  # noqa: BLE001 - the user's function refused a moved input
        return Derivative(float("nan"), float("inf"), f"the NumPy loss raised {type(error).__name__}: {error}")
    if best is None:
        return Derivative(float("nan"), float("inf"), kink or "the loss is not finite next to this input")
    return best


def check_finite_differences(numpy_fn, params: dict, data: dict | None = None, hyper: dict | None = None, *,
                             name: str | None = None) -> dict:
    """Check a NumPy gradient against finite differences, with no torch involved.

    ``numpy_fn(params, data, **hyper) -> (loss, {name: gradient})``; the arrays are
    used in float64. Every element is estimated by ``derivative`` (its own step,
    kinks declined) and passes when ``|gradient - estimate| <= SAFETY * error +
    floor``, the floor being the analytic policy's float64 rounding of the
    gradient. Raises AssertionError naming every element that disagrees; returns
    ``{name: (estimates, declined)}`` with ``declined`` a list of (index, reason).
    """
    from agreement.tolerance import DEEP_MODEL, tolerance

    label = name or getattr(numpy_fn, "__name__", "numpy_fn")
    data, hyper = dict(data or {}), dict(hyper or {})
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    data = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
            for k, v in data.items()}
    loss, grads = numpy_fn(params, data, **hyper)
    if set(grads) != set(params):
        raise AssertionError(f"{label}: your NumPy function returned gradients for {sorted(grads)}, "
                             f"but the parameters are {sorted(params)}")

    def loss_fn(p):
        return numpy_fn(p, data, **hyper)[0]

    failures, out = [], {}
    n = max(int(np.size(v)) for v in {**params, **data}.values())
    for key in sorted(params):
        grad = np.asarray(grads[key], np.float64)
        if grad.shape != params[key].shape:
            raise AssertionError(f"{label}: your NumPy gradient of {key} has shape {grad.shape}, "
                                 f"the parameter has shape {params[key].shape}")
        floor = np.broadcast_to(tolerance(DEEP_MODEL, np.float64, n, grad).bound(grad), grad.shape)
        estimates, declined = np.full(grad.shape, np.nan), []
        for index in np.ndindex(grad.shape):
            d = derivative(loss_fn, params, key, index)
            if not d.ok:
                declined.append((index, d.declined))
                continue
            estimates[index] = d.value
            allowed = SAFETY * d.error + float(floor[index])
            if allowed > 0.1 * max(abs(grad[index]), abs(d.value)) and grad[index] != 0:
                declined.append((index, f"unresolved: finite differences are good to +- {d.error:.2e} here"))
            if not abs(grad[index] - d.value) <= allowed:
                failures.append(f"{label}: grad {key}{list(index)} is {grad[index]!r}, finite differences give "
                                f"{d.value!r} (+- {d.error:.2e}); allowed {allowed:.3e}")
        out[key] = (estimates, declined)
    if not failures and all(len(d) == np.size(params[k]) for k, (_, d) in out.items()):
        raise AssertionError(f"{label}: finite differences could judge no element: "
                             + "; ".join(reason for _, d in out.values() for _, reason in d[:3]))
    if failures:
        raise AssertionError("\n".join(failures))
    return out
