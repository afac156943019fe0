"""NumPy reference vs torch autograd, for every registered case, dtype and device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement.compare import assert_all
from agreement.registry import cases
from agreement.run import devices, evaluate
from agreement.strategies import DTYPES

CASES = cases()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_gradients_agree(case, dtype, device, data):
    example = data.draw(case.inputs(dtype), label="example")
    assert_all(evaluate(case, example, dtype, device))
