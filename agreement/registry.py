"""The case registry: one entry per model, loss or activation drives every test,
benchmark, baseline and report.

Adding a model: write a NumPy function ``f(params, data, **hyper) -> (loss, grads)``
in ``reference/``, an nn.Module factory ``make(shapes, **hyper)`` in
``torch_impl/``, and one ``register(Case(...))`` in ``agreement/cases/`` (activations.py, losses.py or models.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agreement.precision import round_to
from agreement.tolerance import ToleranceClass


@dataclass
class Example:
    """One input: parameters (what gradients are taken of), data, hyperparameters."""

    params: dict
    data: dict
    hyper: dict = field(default_factory=dict)

    def astype(self, dtype) -> Example:
        """Floating arrays cast to ``dtype`` (rounded to it: bfloat16 values in float32
        arrays, agreement/precision.py); integer arrays (labels) kept."""

        def cast(d):
            return {k: round_to(dtype, v) if np.issubdtype(np.asarray(v).dtype, np.floating)
                    else np.asarray(v) for k, v in d.items()}

        return Example(cast(self.params), cast(self.data), dict(self.hyper))

    @property
    def dtype(self):
        return np.asarray(next(iter(self.params.values()))).dtype

    def with_params(self, params: dict) -> Example:
        return Example(params, self.data, self.hyper)

    def shapes(self) -> dict:
        return {k: np.shape(v) for k, v in {**self.params, **self.data}.items()}


@dataclass(frozen=True)
class Case:
    """A model, loss or activation, bound to both implementations.

    reference         (params, data, **hyper) -> (loss, grads): NumPy, hand-derived
    twin              (shapes, **hyper) -> nn.Module whose forward(**data) is the loss
    inputs            (dtype, smooth) -> Hypothesis strategy of Example; ``smooth=True``
                      keeps away from kinks, clamps and saturation (finite differences)
    build             (size, dtype, seed) -> Example at a fixed size ("tiny", "tutorial", "large")
    tolerance         its ToleranceClass
    reduction_length  Example -> n for the tolerance policy
    term_scale        Example -> {"loss" or parameter: magnitude of the terms it is formed from}
                      (agreement/scales.py); None means the result's own magnitude
    loss_condition    Example -> amplification of input rounding in the loss value (default 1)
    valid             (Example, dtype) -> bool: whether the dtype can still resolve the case
                      here (None: everywhere finite); trajectories must stay where it holds
    compare_loss      False where the scalar is only a probe sum(upstream * f(x))
    trainable         True for models trained in trajectory tests and benchmarks
    """

    name: str
    kind: str
    reference: Callable
    twin: Callable
    inputs: Callable
    build: Callable
    tolerance: ToleranceClass
    reduction_length: Callable
    term_scale: Callable | None = None
    loss_condition: Callable | None = None
    valid: Callable | None = None
    compare_loss: bool = True
    trainable: bool = False
    sizes: tuple = ("tiny", "tutorial", "large")


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.name in CASES:
        raise ValueError(f"case {case.name!r} is already registered")
    CASES[case.name] = case
    return case


def cases(kind: str | None = None, trainable: bool | None = None) -> list[Case]:
    import agreement.cases  # noqa: F401  (fills the registry)

    return [c for c in CASES.values()
            if (kind is None or c.kind == kind) and (trainable is None or c.trainable == trainable)]
