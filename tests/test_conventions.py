"""Forward values and conventions that the gradient probes do not see, and the
independence of the two implementations."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from agreement import strategies as S
from agreement.tolerance import ELEMENTWISE, tolerance
from reference import activations as act

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORWARD = {
    "relu": (act.relu, torch.relu),
    "sigmoid": (act.sigmoid, torch.sigmoid),
    "tanh": (act.tanh, torch.tanh),
    "softplus": (act.softplus, lambda x, **h: torch.nn.functional.softplus(x, **h)),
}


@pytest.mark.parametrize("dtype", S.DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FORWARD)
@given(data=st.data())
def test_activation_values_agree(name, dtype, data):
    ref, twin = FORWARD[name]
    x = data.draw(S.arrays(dtype, data.draw(S.hnp.array_shapes(max_dims=2, max_side=6)), 1e4))
    hyper = {"beta": 2.0, "threshold": 15.0} if name == "softplus" else {}
    expected = ref(x.astype(np.float64), **hyper)
    actual = twin(torch.from_numpy(x), **hyper).numpy()
    tol = tolerance(ELEMENTWISE, dtype, 1, expected)
    np.testing.assert_array_less(np.abs(actual - expected), tol.bound(expected))


def test_relu_keeps_negative_zero_like_torch():
    x = np.array([-0.0, 0.0, -2.0])
    ours, theirs = act.relu(x), torch.relu(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
    assert np.signbit(ours[0]) and not np.signbit(ours[2])


def _imports(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_reference_never_imports_torch():
    assert not _imports("reference") & {"torch", "torch_impl", "agreement"}


def test_torch_twin_never_imports_reference():
    assert not _imports("torch_impl") & {"reference", "agreement"}


def test_softplus_stays_finite_where_torch_overflows():
    """The documented deviation: with a threshold above exp's overflow, torch
    returns inf (and a NaN gradient); the reference returns the finite limit."""
    x = np.array([100.0], dtype=np.float32)
    t = torch.from_numpy(x).requires_grad_(True)
    y = torch.nn.functional.softplus(t, beta=1.0, threshold=1000.0)
    y.backward()
    assert torch.isinf(y).all() and torch.isnan(t.grad).all()
    assert act.softplus(x, 1.0, 1000.0)[0] == np.float32(100.0)
    assert act.softplus_grad(x, np.ones_like(x), 1.0, 1000.0)[0] == 1.0
