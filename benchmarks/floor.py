"""A training step's real floor: the matrix products it performs, timed alone.

The square-matmul peak (benchmarks/peak.py) says what the machine's BLAS does on
the shape it likes best; a step's products have other shapes (64 x 1000 x 100 at
the tutorial size), on which the same BLAS runs slower, and by different amounts
on different CPUs. The floor is the products of the step itself, with their
shapes and operand layouts (transposed views included), by the library that runs
the step (NumPy's BLAS, torch on the CPU, torch on CUDA), timed in the same run
with the same threads: the time the step would take if everything outside its
products (elementwise passes, loss, update, dispatch) cost nothing. A step's
``floor_fraction`` is floor time / step time.

Which products a step performs is observed, never written down a second time:

* NumPy: the fast model's ``loss_and_grads()`` is run once with
  ``reference.fast``'s ``np`` replaced by a recorder, which keeps every
  ``np.matmul`` whose operands are both matrices. The bias gradients'
  ``ones @ d`` (a vector times a matrix) are left out: torch forms them as a sum,
  and FlopCounterMode counts neither.
* torch: forward and backward of the twin run once on the meta device (shapes
  and strides only) under a dispatch mode that keeps every ``mm`` and ``addmm``
  (``nn.Linear``'s forward); an ``addmm``'s bias broadcast is not a product, so
  the floor times ``mm`` on the same operands.

Replay uses operands of the same shapes, strides and dtype, and preallocated
outputs; the products' FLOPs equal the step's matrix-product FLOPs counted by
FlopCounterMode (benchmarks/test_harness.py checks both recorders).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.cuda_graphs import capture
from benchmarks.settings import TORCH_DTYPES
from reference import fast
from torch_impl import train


@dataclass(frozen=True)
class Product:
    """One product a @ b: each operand's shape and strides in elements."""

    a_shape: tuple
    a_strides: tuple
    b_shape: tuple
    b_strides: tuple

    @property
    def flops(self) -> int:
        (m, k), n = self.a_shape, self.b_shape[1]
        return 2 * m * k * n


def total_flops(products) -> int:
    return sum(p.flops for p in products)


class _RecordingNumpy:
    """Stands in for the ``np`` module: delegates everything, notes matrix-matrix products."""

    def __init__(self):
        self.products: list[Product] = []

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, *args, **kwargs):
        if np.ndim(a) == 2 and np.ndim(b) == 2:
            size = a.itemsize
            self.products.append(Product(a.shape, tuple(s // size for s in a.strides),
                                         b.shape, tuple(s // size for s in b.strides)))
        return np.matmul(a, b, *args, **kwargs)


@contextlib.contextmanager
def _recording_numpy():
    recorder = _RecordingNumpy()
    fast.np = recorder
    try:
        yield recorder
    finally:
        fast.np = np


def numpy_products(case, example) -> list[Product]:
    """The products of one ``loss_and_grads()`` of the case's fast model."""
    model = fast.for_reference(case.reference)(example.params, example.data, **example.hyper)
    with _recording_numpy() as recorder:
        model.loss_and_grads()
    return recorder.products


class _RecordingProducts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        operands = {torch.ops.aten.mm.default: args[:2], torch.ops.aten.addmm.default: args[1:3]}.get(func)
        if operands is not None:
            a, b = operands
            self.products.append(Product(tuple(a.shape), tuple(a.stride()), tuple(b.shape), tuple(b.stride())))
        return func(*args, **(kwargs or {}))


def torch_products(case, example) -> list[Product]:
    """The products of the twin's forward and backward (recorded on the meta device)."""
    module = train.build(case.twin, example.params, example.hyper, "meta", torch.float32)
    batch = train.to_device(example.data, "meta", torch.float32)
    with _RecordingProducts() as recorder:
        module(**batch).backward()
    return recorder.products


def products(library: str, case, example) -> list[Product]:
    return numpy_products(case, example) if library == "numpy" else torch_products(case, example)


def _numpy_operand(rng, shape, strides, dtype):
    """A standard-normal array with this shape and these element strides (a view of a fresh buffer)."""
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    buffer = rng.standard_normal(extent).astype(dtype)
    item = buffer.itemsize
    return np.lib.stride_tricks.as_strided(buffer, shape, tuple(s * item for s in strides))


def numpy_body(products_, dtype):
    """A zero-argument call performing the products with NumPy into preallocated outputs."""
    rng = np.random.default_rng(0)
    calls = []
    for p in products_:
        a = _numpy_operand(rng, p.a_shape, p.a_strides, dtype)
        b = _numpy_operand(rng, p.b_shape, p.b_strides, dtype)
        calls.append((a, b, np.empty((p.a_shape[0], p.b_shape[1]), dtype)))

    def run():
        for a, b, out in calls:
            np.matmul(a, b, out=out)

    return run


def torch_body(products_, dtype, device: str, graphed: bool = False):
    """The same with torch on ``device``; ``graphed`` captures them as one CUDA graph
    (the floor of a graph-captured step)."""
    torch_dtype = TORCH_DTYPES[np.dtype(dtype)]
    generator = torch.Generator(device="cpu").manual_seed(0)
    calls = []
    for p in products_:
        a, b = (torch.empty_strided(shape, strides, dtype=torch_dtype, device=device)
                for shape, strides in ((p.a_shape, p.a_strides), (p.b_shape, p.b_strides)))
        for t in (a, b):
            t.copy_(torch.randn(t.shape, generator=generator, dtype=torch_dtype))
        calls.append((a, b, torch.empty((p.a_shape[0], p.b_shape[1]), dtype=torch_dtype, device=device)))

    def run():
        for a, b, out in calls:
            torch.mm(a, b, out=out)

    if not graphed:
        return run
    graph, _ = capture(run)
    return graph.replay
