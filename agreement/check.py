"""Public entry point: check your own NumPy gradient against a torch function,
with the project's strategies, tolerance policy and report.

    from agreement import check_gradients
    check_gradients(my_numpy_loss_and_grads, my_torch_loss, inputs=my_strategy)

``numpy_fn(params, data, **hyper) -> (loss, {name: gradient})`` and
``torch_fn(params, data, **hyper) -> loss tensor`` take dicts of arrays/tensors
with the same keys; ``inputs(dtype)`` returns a Hypothesis strategy of
``agreement.Example``. Raises AssertionError with Hypothesis's minimal failing
example and the worst element's report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agreement.compare import Comparison, assert_all
from agreement.registry import Case, Example
from agreement.run import devices as available_devices
from agreement.run import evaluate
from agreement.strategies import DTYPES
from agreement.tolerance import DEEP_MODEL, ToleranceClass
from torch_impl.models import FunctionModule


def _largest_size(example) -> int:
    return max(int(np.size(v)) for v in {**example.params, **example.data}.values())


def user_case(numpy_fn, torch_fn, inputs, tolerance: ToleranceClass = DEEP_MODEL, reduction_length=None,
              term_scale=None, compare_loss: bool = False, name: str | None = None) -> Case:
    """A Case for a user's pair of functions (not registered)."""
    return Case(
        name=name or getattr(numpy_fn, "__name__", "user function"), kind="user", reference=numpy_fn,
        twin=lambda shapes, **hyper: FunctionModule(torch_fn, shapes, **hyper), inputs=inputs, build=None,
        tolerance=tolerance, reduction_length=reduction_length or _largest_size, term_scale=term_scale,
        compare_loss=compare_loss,
    )


@dataclass
class Summary:
    """The worst comparison seen per (case, dtype, device), and the failure if any."""

    case: str
    dtype: str
    device: str
    examples: int = 0
    worst: Comparison | None = None
    failure: str | None = None
    history: list = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.failure is None


def run_case(case: Case, dtype, device: str, max_examples: int, derandomize: bool = True) -> Summary:
    """Hypothesis over ``case.inputs(dtype)``; records the worst ratio and any minimal failure."""
    summary = Summary(case.name, np.dtype(dtype).name, device)

    @settings(max_examples=max_examples, derandomize=derandomize, database=None, deadline=None,
              print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data):
        example = data.draw(case.inputs(dtype), label="example")
        if not isinstance(example, Example):
            raise TypeError(f"{case.name}: inputs(dtype) must draw agreement.Example(params, data, hyper), "
                            f"got {type(example).__name__}")
        comparisons = evaluate(case, example, dtype, device)
        summary.examples += 1
        worst = max(comparisons, key=lambda c: c.ratio)
        if summary.worst is None or worst.ratio > summary.worst.ratio:
            summary.worst = worst
        assert_all(comparisons)

    try:
        check()
    except AssertionError as error:  # Hypothesis re-raises the shrunk failure, with notes
        summary.failure = "\n".join([str(error), *getattr(error, "__notes__", [])])
    return summary


def check_gradients(numpy_fn, torch_fn, inputs, *, tolerance: ToleranceClass = DEEP_MODEL, reduction_length=None,
                    term_scale=None, compare_loss: bool = False, dtypes=DTYPES, devices=None,
                    max_examples: int = 50, derandomize: bool = True) -> list[Summary]:
    """Check ``numpy_fn``'s gradients against autograd on ``torch_fn`` (module docstring).

    ``reduction_length(example)`` (default: the largest array's size) and
    ``term_scale(example) -> {"loss" or name: magnitude of its terms}`` feed the
    tolerance policy (agreement/tolerance.py). Loss values are compared only with
    ``compare_loss=True``: a loss that sums terms of both signs cancels, and its
    rounding is then judged fairly only with a ``term_scale`` for "loss".
    ``derandomize=False`` draws fresh examples on every call instead of the same set.

    Returns one Summary per dtype and device when all agree; raises AssertionError otherwise.
    """
    case = user_case(numpy_fn, torch_fn, inputs, tolerance, reduction_length, term_scale, compare_loss)
    summaries = [run_case(case, dtype, device, max_examples, derandomize)
                 for dtype in dtypes for device in (devices or available_devices())]
    failed = [s for s in summaries if not s.ok]
    if failed:
        raise AssertionError("\n\n".join(s.failure for s in failed))
    return summaries
