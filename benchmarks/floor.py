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

Which products a step performs is observed, never written down a second time,
and replayed on the very operands the step used (the same buffers: the step
reads X twice, forward and backward, and a floor that read two copies would
miss in the cache where the step hits; on the large logistic model in float64
that alone made the "floor" twice the step's products):

* NumPy: a fast model built for the floor runs ``loss_and_grads()`` once with
  ``reference.fast``'s ``np`` replaced by a recorder, which keeps every
  ``np.matmul`` whose operands are both matrices, with its operands and output.
  A vector times a matrix would be left out (a bias gradient as ``ones @ d``:
  torch forms those as sums, and FlopCounterMode counts neither). The two-layer
  step folds each bias into its layer's product (one more row of the weights,
  a column of ones in the layer's input, reference/fast.py); each recorded
  operand is cut back to the part the math's product uses (``folds()``), views
  into the same buffers, as torch's ``addmm`` is replayed without its bias: a
  step is judged against the products its mathematics needs, never against a
  floor that grows when its products do more.
* torch: the twin runs forward and backward once on the meta device (shapes,
  strides and storages, no arithmetic, on the calling thread) under a dispatch
  mode that keeps every ``mm`` and ``addmm`` (``nn.Linear``'s forward) with its
  operands. Replay allocates one real buffer per storage the operands came
  from, on the timed device and in the timed dtype, and views it with each
  operand's shape, strides and offset: what the step read twice is read twice
  from one buffer. An ``addmm``'s bias broadcast is not a product, so the floor
  times ``mm`` on the same operands, into preallocated outputs.

The products' FLOPs equal the step's matrix-product FLOPs counted by
FlopCounterMode (benchmarks/test_training.py asserts it for every timed step,
benchmarks/test_harness.py checks both recorders against each other).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.cuda_graphs import capture
from benchmarks.settings import torch_dtype
from reference import fast
from torch_impl import train


def flops(calls) -> int:
    """2 m k n per product (a: m x k, b: k x n)."""
    return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in calls)


class _RecordingNumpy:
    """Stands in for the ``np`` module: delegates everything, keeps matrix-matrix products."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, *args, **kwargs):
        if np.ndim(a) == 2 and np.ndim(b) == 2:
            self.calls.append((a, b, kwargs.get("out")))
        return np.matmul(a, b, *args, **kwargs)


@contextlib.contextmanager
def _recording_numpy(module):
    recorder = _RecordingNumpy()
    module.np = recorder
    try:
        yield recorder
    finally:
        module.np = np


def _unfolded(array, folds):
    """The part of ``array`` the math uses: for a buffer with a folded bias, or its
    transposed view, the corresponding view of its math part; else ``array``."""
    for full, part in folds:
        for candidate, result in ((full, part), (full.T, part.T)):
            if (array.shape, array.strides) == (candidate.shape, candidate.strides) and \
                    array.__array_interface__["data"][0] == candidate.__array_interface__["data"][0]:
                return result
    return array


def numpy_products(case, example, module=fast) -> list[tuple]:
    """(a, b, out) of each product in one ``loss_and_grads()`` of a fast model of its own
    (``module``: reference.fast, or another version of it, benchmarks/ab_fast.py), cut
    back to the math's operands where the model folds a bias into a product."""
    model = module.for_reference(case.reference)(example.params, example.data, **example.hyper)
    with _recording_numpy(module) as recorder:
        model.loss_and_grads()
    folds = model.folds() if hasattr(model, "folds") else []
    calls = []
    for a, b, out in recorder.calls:
        a, b = _unfolded(a, folds), _unfolded(b, folds)
        out = np.empty((a.shape[0], b.shape[1]), a.dtype) if out is None else _unfolded(out, folds)
        if a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
            raise AssertionError(f"a recorded product cut back to {a.shape} @ {b.shape} -> {out.shape}")
        calls.append((a, b, out))
    return calls


class _RecordingProducts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []  # the meta operands stay referenced: no storage is freed and reused

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        operands = {torch.ops.aten.mm.default: args[:2], torch.ops.aten.addmm.default: args[1:3]}.get(func)
        if operands is not None:
            self.calls.append((*operands, None))
        return func(*args, **(kwargs or {}))


def torch_products(case, example) -> list[tuple]:
    """(a, b, None) of each product of the twin's forward and backward, as meta tensors."""
    module = train.build(case.twin, example.params, example.hyper, "meta", torch.float32)
    batch = train.to_device(example.data, "meta", torch.float32)
    with _RecordingProducts() as recorder:
        module(**batch).backward()
    return recorder.calls


def storage_key(tensor) -> int:
    """Identifies a tensor's storage (views of one tensor share it)."""
    return tensor.untyped_storage()._cdata


def _torch_operands(calls, dtype, device: str) -> list[tuple]:
    """Real tensors for recorded meta operands: one buffer per storage, viewed as recorded."""
    timed = torch_dtype(dtype)
    buffers = {}

    def real(meta):
        key = storage_key(meta)
        if key not in buffers:
            elements = meta.untyped_storage().nbytes() // meta.element_size()
            buffers[key] = torch.randn(elements, dtype=timed, device=device)
        return torch.as_strided(buffers[key], meta.shape, meta.stride(), meta.storage_offset())

    return [(real(a), real(b), torch.empty((a.shape[0], b.shape[1]), dtype=timed, device=device))
            for a, b, _ in calls]


def numpy_run(calls):
    """A zero-argument call performing the recorded NumPy products again."""

    def run():
        for a, b, out in calls:
            np.matmul(a, b, out=out)

    return run


def torch_run(calls, dtype, device: str, graphed: bool = False):
    """The recorded torch products on ``device`` in ``dtype``; ``graphed`` captures them
    as one CUDA graph (the floor of a graph-captured step)."""
    calls = _torch_operands(calls, dtype, device)

    def run():
        for a, b, out in calls:
            torch.mm(a, b, out=out)

    if not graphed:
        return run
    graph, _ = capture(run)

    def replay():
        graph.replay()
        return calls  # the graph reads and writes the operands' memory but holds no reference to them

    return replay
