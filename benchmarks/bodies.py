"""What is timed: one training step, or one forward+backward, per backend.

Everything else happens before timing starts: building the module, moving the
data to the device, creating optimizer state (one step is taken first, so the
momentum buffers exist), first-call allocation. Each builder returns a Body:

* ``run()``   the timed call; torch bodies never call ``.item()`` or sync;
* ``reset()`` untimed, before every round: puts parameters and optimizer state
              back where the first timed round found them, so every round times
              the same step and no run drifts into overflow however long it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from agreement.optimizers import OPTIMIZERS
from benchmarks.cuda_graphs import capture_step
from benchmarks.settings import OPTIMIZER, torch_dtype
from reference import fast
from torch_impl import train


@dataclass
class Body:
    run: Callable[[], object]
    reset: Callable[[], None] | None = None
    # What a captured CUDA graph reads and writes but holds no reference to (the
    # module, the batch): kept alive as long as the body, or their memory would
    # return to the allocator while replays still use it.
    keep: tuple = ()


def training_step(module, batch, optimizer):
    """One step as a PyTorch user writes the loop; returns the loss tensor, never synced."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = module(**batch)
        loss.backward()
        optimizer.step()
        return loss

    return step


def _optimizer():
    return OPTIMIZERS[OPTIMIZER]


def has_fast_path(case) -> bool:
    return fast.for_reference(case.reference) is not None and OPTIMIZER == "sgd"


def numpy_readable(case, example, phase: str) -> Body:
    """The registry's reference function and the table's pure optimizer update."""
    params, data, hyper = example.params, example.data, example.hyper
    if phase == "fwd_bwd":
        return Body(lambda: case.reference(params, data, **hyper))
    opt = _optimizer()
    _, grads = case.reference(params, data, **hyper)
    first = opt.update(params, grads, opt.init(params), **opt.defaults)
    live = {}

    def reset():  # the pure update never mutates, so the saved dicts are reused as they are
        live["params"], live["state"] = first

    def run():
        loss, grads = case.reference(live["params"], data, **hyper)
        live["params"], live["state"] = opt.update(live["params"], grads, live["state"], **opt.defaults)
        return loss

    return Body(run, reset)


def numpy_fast(case, example, phase: str, module=fast) -> Body:
    """reference.fast (or ``module``, another version of it: benchmarks/ab_fast.py): the
    same math into buffers allocated once (see that module)."""
    model = module.for_reference(case.reference)(example.params, example.data, **example.hyper)
    if phase == "fwd_bwd":
        return Body(model.loss_and_grads)
    sgd = module.SGD(model, **_optimizer().defaults)

    def run():
        loss = model.loss_and_grads()
        sgd.update()
        return loss

    run()
    saved = sgd.state()
    return Body(run, lambda: sgd.restore(saved))


def numpy_body(case, example, phase: str, readable: bool = False) -> Body:
    if readable or not has_fast_path(case):
        return numpy_readable(case, example, phase)
    return numpy_fast(case, example, phase)


def _torch_module_batch(case, example, device: str, precision):
    dtype = torch_dtype(precision)
    return (train.build(case.twin, example.params, example.hyper, device, dtype),
            train.to_device(example.data, device, dtype))


def _torch_step_parts(case, example, device: str, precision):
    module, batch = _torch_module_batch(case, example, device, precision)
    opt = _optimizer()
    return module, batch, getattr(torch.optim, opt.torch_name)(module.parameters(), **opt.defaults)


def _torch_reset(module, optimizer):
    """Saves the parameters and optimizer state as they are now; the returned call
    copies them back into the same tensors (a captured graph keeps reading those)."""
    params = list(module.parameters())
    saved = [(p.detach().clone(), {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)})
             for p in params]

    @torch.no_grad()
    def reset():
        for p, (value, state) in zip(params, saved, strict=True):
            p.copy_(value)
            for key, tensor in state.items():
                optimizer.state[p][key].copy_(tensor)

    return reset


def torch_body(case, example, phase: str, device: str, precision) -> Body:
    """The twin as a PyTorch user writes the loop: zero_grad(set_to_none=True),
    forward, backward, optimizer.step() (its update runs under no_grad). ``precision``:
    the dtype the module and batch are built in (the example's arrays hold its values)."""
    if phase == "fwd_bwd":
        module, batch = _torch_module_batch(case, example, device, precision)

        def forward_backward():
            module.zero_grad(set_to_none=True)
            loss = module(**batch)
            loss.backward()
            return loss

        return Body(forward_backward)
    module, batch, optimizer = _torch_step_parts(case, example, device, precision)
    step = training_step(module, batch, optimizer)
    step()
    return Body(step, _torch_reset(module, optimizer))


def torch_graph_body(case, example, precision) -> Body:
    """The same step on CUDA captured as one CUDA graph (benchmarks/cuda_graphs.py);
    a timed call is one replay. TF32 is set for the session before any capture
    (benchmarks/conftest.py): the captured products keep the math mode they were
    captured with. Every round starts from the state the eager body's rounds start
    from, one step in: the capture's warm-up steps move on from there (the sum-of-squares
    regression reaches inf within them at the tutorial size), and are undone."""
    module, batch, optimizer = _torch_step_parts(case, example, "cuda", precision)
    training_step(module, batch, optimizer)()  # as torch_body: one step, which creates the momentum buffers
    reset = _torch_reset(module, optimizer)
    graph, loss = capture_step(module, batch, optimizer)  # the optimizer updates its buffers in place
    reset()

    def replay():
        graph.replay()
        return loss

    return Body(replay, reset, keep=(module, batch, optimizer))


def host_to_device_body(example, device: str, precision) -> Body:
    """One batch copied from NumPy arrays in host memory to ``device`` tensors."""
    dtype = torch_dtype(precision)
    return Body(lambda: train.to_device(example.data, device, dtype))
