"""Oracles independent of the NumPy-vs-torch comparison: finite differences on
the reference, torch.autograd.gradcheck on the twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, note
from hypothesis import strategies as st

from agreement import finite_differences
from agreement.compare import assert_all
from agreement.registry import cases
from torch_impl import train

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_reference_matches_finite_differences(case, data):
    example = data.draw(case.inputs(np.float64, smooth=True), label="example")
    comparisons, fds = finite_differences.check(case, example)
    # A draw on which every derivative vanishes (say upstream = 0) checks nothing.
    assume(any(np.any(fd != 0) for fd in fds.values()))
    assert_all(comparisons)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_reference_gradient_is_nontrivial(case, seed):
    """On the fixed tiny example every parameter's gradient is non-zero and
    matches finite differences, so no parameter is compared only as 0 == 0."""
    example = case.build("tiny", np.float64, seed)
    comparisons, fds = finite_differences.check(case, example)
    assert_all(comparisons)
    _, grads = case.reference(example.params, example.data, **example.hyper)
    for name, grad in grads.items():
        assert np.any(np.abs(fds[name]) > 1e-6), f"{case.name}: FD gradient of {name} vanishes on the tiny example"
        assert np.any(grad != 0), f"{case.name}: reference gradient of {name} is identically zero"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_torch_twin_passes_gradcheck(case, data):
    example = data.draw(case.inputs(np.float64, smooth=True), label="example")
    module = train.build(case.twin, example.params, example.hyper, "cpu", torch.float64)
    batch = train.to_device(example.data, "cpu", torch.float64)
    names = [n for n, _ in module.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_(True) for _, p in module.named_parameters())
    note(f"parameters: {names}")

    def loss(*tensors):
        return torch.func.functional_call(module, dict(zip(names, tensors, strict=True)), kwargs=batch)

    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
