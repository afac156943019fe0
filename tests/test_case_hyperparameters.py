"""Every case hyperparameter, pinned away from its default and compared with torch.

The drawn examples reach a hyperparameter's other values only when a strategy
happens to draw them (tests/test_strategy_census.py checks that they still do);
these fixed examples do not depend on it. Each is also one where the
hyperparameter acts: a reference that ignored it (kept the builder's value) is
caught. The table is keyed by hyperparameter name and every case's
hyperparameters must be in it, so a new case or hyperparameter needs an entry.
"""

from __future__ import annotations

import numpy as np
import pytest

from agreement.compare import assert_all
from agreement.registry import Example, cases
from agreement.run import evaluate
from agreement.strategies import DTYPES

# away from the builders' values ("mean", 1.0, "sse", True, softplus's 1.0 and 20.0)
NON_DEFAULT = {"reduction": "sum", "scale": 0.5, "loss": "mse", "bias": False, "beta": -2.0, "threshold": 1.0}
PINNED = [(case, key) for case in cases() for key in case.build("tiny", np.float64, 0).hyper]


def _example(case, key, dtype) -> Example:
    example = case.build("tiny", dtype, 0)
    hyper = {**example.hyper, key: NON_DEFAULT[key]}
    params = example.params
    if key == "bias" and not NON_DEFAULT[key]:  # without bias the layers have no b1, b2
        params = {k: v for k, v in params.items() if not k.startswith("b")}
    return Example(params, example.data, hyper)


def test_every_case_hyperparameter_has_a_non_default_value():
    for case, key in PINNED:
        assert key in NON_DEFAULT, f"{case.name}: give hyperparameter {key!r} a non-default value here"
        assert NON_DEFAULT[key] != case.build("tiny", np.float64, 0).hyper[key], (case.name, key)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case, key", PINNED, ids=[f"{c.name}-{k}" for c, k in PINNED])
def test_each_case_hyperparameter_away_from_its_default_agrees_with_torch(case, key, dtype):
    example = _example(case, key, dtype)
    assert_all(evaluate(case, example, dtype))
    if key == "bias":  # the same math with zero biases: what it changes is which parameters exist
        assert not {"b1", "b2"} & set(case.reference(example.params, example.data, **example.hyper)[1])
        return
    default = case.build("tiny", dtype, 0).hyper[key]

    def ignoring(params, data, **hyper):
        return case.reference(params, data, **{**hyper, key: default})

    ignored = evaluate(case, example, dtype, reference=ignoring)
    assert not all(c.ok for c in ignored), f"{case.name}: {key}={NON_DEFAULT[key]} made no difference"
