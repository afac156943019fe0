"""sigmoid + BCELoss where the sigmoid saturates, against torch.

There torch's BCELoss backward divides by max(p (1 - p), 1e-12), so the model's
gradient is no longer the math's r (sigmoid(z) - y), which the logits form
(BCEWithLogitsLoss) computes: below z = -27.6 it is r (p - y) p / 1e-12, and
from z = 37.4, where p rounds to exactly 1, it is 0. The reference must follow
torch there, and the case's strategy must reach those rows (the ranges are
``agreement.cases.models.SATURATED_LOGITS``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, settings

from agreement.cases.models import SATURATED_LOGITS
from agreement.compare import assert_all
from agreement.registry import Example, cases
from agreement.run import evaluate
from agreement.strategies import DTYPES
from agreement.tolerance import unit_roundoff
from reference import models

CASE = next(c for c in cases() if c.name == "logistic_regression_sigmoid")
DTYPE_IDS = {"ids": lambda d: np.dtype(d).name}
# (logit, target): the edges of the drawn ranges, the clamp's start at -28 (not drawn:
# see SATURATED_LOGITS), the first logit where p rounds to 1 in float64, and the
# log clamp at -100 of BCELoss's loss (z = 38, y = 0: -log(1 - p) would be 38).
# Targets are the ones for which the math's gradient is not small: y = 1 below, y < 1 above.
ROWS = [(-80.0, 1.0), (-30.0, 0.5), (-28.0, 1.0), (-28.0, 0.75), (38.0, 0.0), (60.0, 0.25), (100.0, 0.0)]


def _example(rows, dtype, reduction="mean") -> Example:
    """Logits that are exact in every dtype: z = x * 1 + 0."""
    z, y = (np.array([[v] for v in column], dtype) for column in zip(*rows, strict=True))
    return Example({"W": np.ones((1, 1), dtype), "b": np.zeros(1, dtype)}, {"X": z, "Y": y},
                   {"reduction": reduction})


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_saturated_rows_agree_with_torch(dtype, reduction):
    """All the pinned rows in one batch, with an unsaturated one among them."""
    example = _example([*ROWS, (1.5, 1.0)], dtype, reduction)
    comparisons = evaluate(CASE, example, dtype)
    assert_all(comparisons)
    assert {c.what for c in comparisons} == {"loss", "grad W", "grad b"}


LOSS_ROWS = [pytest.param(row, dtype, id=f"z={row[0]:g},y={row[1]:g}-{np.dtype(dtype).name}")
             for row in ROWS for dtype in DTYPES]


@pytest.mark.parametrize("row, dtype", LOSS_ROWS)
def test_the_loss_is_judged_there(row, dtype):
    """A loss off by 1000 u is refused: the case's loss condition 1 / (1 - p) stays 1
    as p -> 0 and where p rounds to exactly 1 (the clamped log is exact there)."""

    def loss_off(params, data, **hyper):
        loss, grads = CASE.reference(params, data, **hyper)
        return loss * (1 + 1000 * unit_roundoff(dtype)), grads

    off = evaluate(CASE, _example([row], dtype), dtype, reference=loss_off)
    assert [c.what for c in off if not c.ok and c.device.startswith("torch")] == ["loss"]


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"z={r[0]:g},y={r[1]:g}")
def test_the_unclamped_gradient_disagrees_with_torch_there(row, dtype):
    """Each pinned row is where torch departs from the math: the logits form's
    gradient r (p - y) (what a reference without the clamp computes) is refused."""
    example = _example([row], dtype)
    assert_all(evaluate(CASE, example, dtype))
    unclamped = evaluate(CASE, example, dtype, reference=models.logistic_regression_logits)
    assert {c.what for c in unclamped if not c.ok and c.device.startswith("torch")} >= {"grad W", "grad b"}


def _saturated_rows(example: Example) -> int:
    z = example.data["X"].astype(np.float64) @ example.params["W"].astype(np.float64) + example.params["b"]
    return int(sum(np.sum((low <= z) & (z <= high)) for low, high in SATURATED_LOGITS))


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_the_strategy_draws_rows_where_the_clamp_acts(dtype):
    """Hypothesis finds, among the case's own draws, one on which the unclamped
    gradient fails against torch: the property test reaches the region, not only
    the pinned rows above. With logits kept within +-15 it never does."""
    def unclamped_fails(example):
        return _saturated_rows(example) > 0 and not all(
            c.ok for c in evaluate(CASE, example, dtype, reference=models.logistic_regression_logits))

    # find raises NoSuchExample when no draw in 200 reaches a saturated row the clamp acts on
    find(CASE.inputs(dtype), unclamped_fails,
         settings=settings(max_examples=200, derandomize=True, database=None, phases=[Phase.generate],
                           suppress_health_check=[HealthCheck.too_slow]))
