"""A census of what the strategies draw: each still draws what the docs promise.

The property tests are only as good as their draws. A strategy that stopped
drawing exact zeros (relu's kink, dead units), ties (max, sort, argmax), upstream
gradients other than all ones (which hide a transposed or broadcast backward),
hyperparameters away from their defaults, or the far ends of torch's accepted
ranges (weight decay past 1, learning rates that overshoot, betas next to 1)
would leave every test passing. Each census draws a fixed, derandomized sample
from one strategy (Hypothesis's generate phase only, no shrinking) and counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from drawing import draws

from agreement.optimizers import OPTIMIZERS
from agreement.registry import cases

# per strategy: a case's draw costs about 7 ms, an optimizer's hyperparameters well under 1 ms
CASE_DRAWS, OPTIMIZER_DRAWS = 30, 200


def _floats(example) -> list[np.ndarray]:
    arrays = (np.asarray(v) for v in {**example.params, **example.data}.values())
    return [a for a in arrays if a.dtype.kind == "f"]


def _has_zero(example) -> bool:
    return any(np.any(a == 0) for a in _floats(example))


def _has_tie(example) -> bool:
    return any(np.unique(a).size < a.size for a in _floats(example))


def _upstream_not_ones(example) -> bool:
    return not np.all(example.data["upstream"] == 1)


def _upstream_varies(example) -> bool:
    return np.unique(example.data["upstream"]).size > 1


def _count(drawn, what) -> int:
    return sum(1 for value in drawn if what(value))


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_case_strategy_draws_zeros_ties_and_hyperparameters_away_from_defaults(case):
    drawn = draws(case.inputs(np.float64), CASE_DRAWS)
    found = {"exact zero": _count(drawn, _has_zero), "tie": _count(drawn, _has_tie)}
    if "upstream" in case.build("tiny", np.float64, 0).data:
        found["upstream not all ones"] = _count(drawn, _upstream_not_ones)
        found["upstream not constant"] = _count(drawn, _upstream_varies)
    for key, default in case.build("tiny", np.float64, 0).hyper.items():
        found[f"{key} != {default!r}"] = _count(drawn, lambda ex, key=key, default=default: ex.hyper[key] != default)
    missing = [what for what, count in found.items() if count == 0]
    assert not missing, f"{case.name}: {len(drawn)} draws without {missing}; counts {found}"


def _beta(i, low):
    return lambda h: h["betas"][i] >= low


# the far end of each range torch accepts, which the strategy must reach
def _at_least(key, low):
    return lambda h: h[key] >= low


FAR = {
    "sgd": {"lr >= 1 (overshoots)": _at_least("lr", 1), "weight_decay >= 1": _at_least("weight_decay", 1),
            "momentum > 1": lambda h: h["momentum"] > 1,
            "dampening outside [0, 1]": lambda h: not 0 <= h["dampening"] <= 1},
    "adam": {"lr >= 1 (overshoots)": _at_least("lr", 1), "weight_decay >= 1": _at_least("weight_decay", 1),
             "beta1 >= 0.999": _beta(0, 0.999), "beta2 >= 0.9999": _beta(1, 0.9999)},
    "rmsprop": {"lr >= 0.5": _at_least("lr", 0.5), "weight_decay >= 1": _at_least("weight_decay", 1),
                "alpha >= 0.9999": _at_least("alpha", 0.9999), "alpha < 0.5": lambda h: h["alpha"] < 0.5,
                "momentum > 1": lambda h: h["momentum"] > 1},
}
FAR["adamw"] = FAR["adam"]


def test_every_optimizer_has_its_far_ranges_here():
    assert set(FAR) == set(OPTIMIZERS)


@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=lambda o: o.name)
def test_optimizer_strategy_draws_each_hyperparameter_away_from_its_default_and_to_its_far_end(opt):
    drawn = draws(opt.hyper(np.float64), OPTIMIZER_DRAWS)
    defaults = opt.torch_defaults()
    found = {f"{key} != {default!r}": _count(drawn, lambda h, key=key, default=default: h[key] != default)
             for key, default in defaults.items()}
    found.update({f"{key} == {default!r}": _count(drawn, lambda h, key=key, default=default: h[key] == default)
                  for key, default in defaults.items()})
    found.update({what: _count(drawn, reached) for what, reached in FAR[opt.name].items()})
    missing = [what for what, count in found.items() if count == 0]
    assert not missing, f"{opt.name}: {len(drawn)} draws without {missing}; counts {found}"
