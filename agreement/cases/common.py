"""What the case modules share: sizes, random builders, common strategies."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from agreement import strategies as S
from agreement.registry import cases

# Batch N, then layer widths. "tutorial" is the classic two-layer example
# (N=64, D_in=1000, H=100, D_out=10); "large" is where matrix products dominate.
MODEL_SIZES = {
    "tiny": dict(N=4, D_in=3, H=5, D_out=2),
    "tutorial": dict(N=64, D_in=1000, H=100, D_out=10),
    "large": dict(N=1024, D_in=2048, H=1024, D_out=256),
}
VECTOR_SIZES = {"tiny": (4, 3), "tutorial": (64, 1000), "large": (1024, 2048)}


def sizes() -> tuple[str, ...]:
    """Every size a registered case builds (``Case.sizes``), in the order the cases list
    them: the sizes the report offers and the order of the benchmarks' results, so that
    a case that builds another size brings it to both."""
    return tuple(dict.fromkeys(size for case in cases() for size in case.sizes))


def seeded(seed):
    return np.random.default_rng(seed)


def linear_init(rng, d_in, d_out, dtype):
    """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), in reference layout."""
    bound = 1 / np.sqrt(d_in)
    return (rng.uniform(-bound, bound, (d_in, d_out)).astype(dtype),
            rng.uniform(-bound, bound, (d_out,)).astype(dtype))


def soft_labels(dtype):
    """Targets in [0, 1]: hard labels 0 and 1 often, soft ones otherwise."""
    return st.sampled_from([0.0, 1.0]) | S.reals(dtype, 1.0, 0.0)


reduction = st.fixed_dictionaries({"reduction": st.sampled_from(["mean", "sum"])})
