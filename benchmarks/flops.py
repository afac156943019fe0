"""Work done per timed call: floating-point operations and bytes.

FLOPs count the matrix products (2 m n k each), the work that can run at the
matrix-product peak, plus the optimizer update for a step. Elementwise work of
activations and losses is not counted as FLOPs: it is bound by memory traffic,
and its physical limit is bandwidth, so those cases report bytes instead.

* Matrix products of forward + backward are counted by torch's own
  ``FlopCounterMode`` on the twin, on the meta device (shapes only, no
  arithmetic): a new case in the registry is counted without a formula here.
  benchmarks/test_flops.py checks the count against the formulas for the
  dense models.
* SGD per parameter element: p - lr g (2), + wd p (2), momentum buffer
  mu b + (1 - dampening) g (3), Nesterov g + mu b (2).
* Bytes: every parameter, data array and gradient read or written once, the
  least traffic any implementation of the call needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from torch_impl import train


def matmul_flops(case, example) -> int:
    module = train.build(case.twin, example.params, example.hyper, "meta", torch.float32)
    batch = train.to_device(example.data, "meta", torch.float32)
    with FlopCounterMode(display=False) as counter:
        module(**batch).backward()
    return int(counter.get_total_flops())


def sgd_flops_per_element(lr=0.0, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                          maximize=False) -> int:
    return 2 + 2 * (weight_decay != 0) + 3 * (momentum != 0) + 2 * bool(nesterov)


def call_flops(case, example, phase: str, optimizer_defaults: dict, matmul: int | None = None) -> int:
    """``matmul``: ``matmul_flops(case, example)`` where the caller has it already."""
    flops = matmul_flops(case, example) if matmul is None else matmul
    if phase == "step":
        n_params = sum(int(np.size(v)) for v in example.params.values())
        flops += n_params * sgd_flops_per_element(**optimizer_defaults)
    return flops


def call_bytes(example, phase: str, itemsize: int | None = None) -> int:
    """Parameters read and their gradients written, data read; a step also writes the parameters.
    ``itemsize``: bytes per floating element where the timed precision is stored in fewer
    bytes than the example's arrays (bfloat16 values are held in float32 arrays here)."""

    def nbytes(value):
        value = np.asarray(value)
        floating = itemsize is not None and np.issubdtype(value.dtype, np.floating)
        return value.size * itemsize if floating else value.nbytes

    params = sum(nbytes(v) for v in example.params.values())
    data = sum(nbytes(v) for v in example.data.values())
    if phase == "h2d":
        return data
    return data + params * (3 if phase == "step" else 2)
