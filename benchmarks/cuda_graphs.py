"""CUDA graph capture, following torch's whole-network capture recipe
(torch.cuda.graph; "CUDA Graphs" in torch's CUDA semantics notes).

An eager step on CUDA launches one kernel per operation from Python; at the
small and large sizes the GPU finishes each kernel before the next launch
arrives, so the eager step measures the host, not the GPU. A captured graph
replays all of the step's kernels with one launch.

The recipe, and why each part is there:

* warm-up on a side stream, a few calls: the first calls allocate (autograd's
  buffers, cuBLAS workspaces and handles, the optimizer's momentum buffers),
  which capture forbids, and the side stream keeps the warm-up's allocations
  out of the default stream's pool, as the recipe asks;
* capture with ``torch.cuda.graph``, which runs on its own side stream and
  gives the graph a private memory pool: tensors created during capture (the
  activations, the ``.grad`` tensors that ``backward()`` creates after
  ``zero_grad(set_to_none=True)``) live there at fixed addresses, and every
  replay writes the same memory;
* replay: ``graph.replay()``; inputs and parameters are the tensors used during
  capture, so new values are copied into them, never rebound.

SGD needs no ``capturable`` flag: its hyperparameters are Python floats and it
keeps no step counter on the device (Adam and the others do, and must be built
with ``capturable=True`` to be captured).

Nothing here runs without a CUDA device; the benchmarks that use it are skipped
there with the reason (benchmarks/settings.py).
"""

from __future__ import annotations

import torch

WARMUP_CALLS = 3  # the recipe's count: enough for every lazily created buffer to exist


def capture(fn, warmup: int = WARMUP_CALLS):
    """Warm ``fn`` up on a side stream, then capture one call; returns (graph, what the call returned)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    torch.cuda.synchronize()
    return graph, out


def capture_step(module, batch: dict, optimizer):
    """The whole training step (zero_grad, forward, backward, optimizer.step) as one graph.

    ``zero_grad(set_to_none=True)`` inside the captured call only drops the Python
    references; ``backward()`` then creates the gradients in the graph's pool, so
    each replay writes fresh gradients instead of accumulating into old ones.
    Returns the graph and its static loss tensor (rewritten by every replay)."""

    from benchmarks.bodies import training_step  # bodies imports this module

    return capture(training_step(module, batch, optimizer))
