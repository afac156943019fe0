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

import numpy as np

from agreement.compare import Comparison, compare
from agreement.registry import Case, Example
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
