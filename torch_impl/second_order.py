"""Second derivatives by double backward (``create_graph=True``), in reference layout.

The module is called through ``torch.func.functional_call`` with its parameters
replaced by leaf tensors in the reference's layout (transposed views where
``LAYOUT`` says so), so derivatives come out in the reference's layout and
Hessian order without any reshuffling afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from torch_impl import train


def _leaves(params: dict, order, device, dtype) -> dict:
    return {name: torch.tensor(np.asarray(params[name]), dtype=dtype, device=device, requires_grad=True)
            for name in order}


def loss_of_leaves(make_module, params: dict, data: dict, hyper: dict, order, device="cpu",
                   dtype=torch.float64):
    """(loss, leaves): the module's loss as a function of reference-layout leaf tensors."""
    module = train.build(make_module, params, hyper, device, dtype)
    leaves = _leaves(params, order, device, dtype)
    replaced = {}
    for name, leaf in leaves.items():
        path, transposed = module.LAYOUT[name]
        replaced[path] = leaf.T if transposed else leaf
    loss = functional_call(module, replaced, kwargs=train.to_device(data, device, dtype))
    return loss, leaves


def hessian(loss: torch.Tensor, leaves: list) -> torch.Tensor:
    """d^2 loss / d theta_i d theta_j over the leaves flattened in order: the
    gradient with create_graph=True, then one backward per gradient entry."""
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(flat.numel()):
        row = torch.autograd.grad(flat[i], leaves, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(x).reshape(-1) if r is None else r.reshape(-1)
                               for r, x in zip(row, leaves, strict=True)]))
    return torch.stack(rows)


def hvp(loss: torch.Tensor, leaves: list, direction: list) -> list:
    """H v by double backward: grad(grad(loss) . v), without forming H."""
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    return list(torch.autograd.grad(grads, leaves, grad_outputs=direction, allow_unused=True))


def model_hessian(make_module, params, data, hyper, order, device="cpu", dtype=torch.float64) -> np.ndarray:
    loss, leaves = loss_of_leaves(make_module, params, data, hyper, order, device, dtype)
    return hessian(loss, [leaves[name] for name in order]).detach().cpu().numpy()


def model_hvp(make_module, params, data, hyper, direction: dict, device="cpu", dtype=torch.float64) -> dict:
    order = list(params)
    loss, leaves = loss_of_leaves(make_module, params, data, hyper, order, device, dtype)
    vectors = [torch.as_tensor(np.asarray(direction[name]), dtype=dtype, device=device) for name in order]
    out = hvp(loss, [leaves[name] for name in order], vectors)
    return {name: (torch.zeros_like(leaves[name]) if h is None else h).detach().cpu().numpy()
            for name, h in zip(order, out, strict=True)}
