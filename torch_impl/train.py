"""Moving data to a device, one gradient evaluation, and a torch.optim training loop."""

from __future__ import annotations

import numpy as np
import torch

from torch_impl import layout


def to_device(data: dict, device, dtype) -> dict:
    """Float arrays become ``dtype`` tensors, integer arrays int64 (class labels)."""
    out = {}
    for name, value in data.items():
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.integer):
            out[name] = torch.as_tensor(arr, dtype=torch.long, device=device)
        else:
            out[name] = torch.as_tensor(arr, dtype=dtype, device=device)
    return out


def build(make_module, params: dict, hyper: dict, device, dtype):
    shapes = {name: np.shape(value) for name, value in params.items()}
    module = make_module(shapes, **hyper).to(device=device, dtype=dtype)
    return layout.load(module, params)


def loss_and_grads(make_module, params, data, hyper, device="cpu", dtype=torch.float64):
    """Loss and reference-layout gradients by autograd."""
    return loss_and_grads_of(build(make_module, params, hyper, device, dtype), params, data, device, dtype)


def loss_and_grads_of(module, params, data, device="cpu", dtype=torch.float64):
    """The same with an already built ``module``, loaded with ``params`` first."""
    layout.load(module, params)
    module.zero_grad(set_to_none=True)
    loss = module(**to_device(data, device, dtype))
    loss.backward()
    return layout.to_numpy(loss), layout.export(module, "grad")


def train(make_module, params, data, hyper, optimizer: str, optimizer_hyper: dict, steps: int,
          device="cpu", dtype=torch.float64):
    """``steps`` steps of ``torch.optim.<optimizer>``; returns per-step losses
    (before each update) and per-step parameters (after it), reference layout."""
    module = build(make_module, params, hyper, device, dtype)
    batch = to_device(data, device, dtype)
    opt = getattr(torch.optim, optimizer)(module.parameters(), **optimizer_hyper)
    losses, trajectory = [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = module(**batch)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        trajectory.append(layout.export(module, "data"))
    return layout.to_numpy(torch.stack(losses)), trajectory
