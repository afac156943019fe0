"""NumPy reference vs torch autograd, for every registered case, dtype and device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from agreement.compare import assert_all
from agreement.registry import cases
from agreement.run import devices, evaluate, expected
from agreement.strategies import DTYPES

CASES = cases()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_gradients_agree(case, dtype, device, data):
    example = data.draw(case.inputs(dtype), label="example")
    comparisons = evaluate(case, example, dtype, device)
    # how often a draw compares only zeros (--hypothesis-show-statistics shows it)
    _, grads = expected(case, example)
    event("some expected gradient is non-zero" if any(np.any(g != 0) for g in grads.values())
          else "every expected gradient is zero")
    assert_all(comparisons)
