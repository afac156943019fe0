"""The one place where the reference's parameter layout meets torch's.

The reference writes a dense layer as ``y = x W + b`` with ``W`` of shape
(in, out); ``nn.Linear`` keeps ``weight`` as (out, in) and computes
``x @ weight.T + bias``. Every module in this package declares ``LAYOUT``:
reference name -> (attribute path of the torch parameter, transposed?).
"""

from __future__ import annotations

import torch
from torch import nn


def _resolve(module: nn.Module, path: str) -> nn.Parameter:
    return module.get_parameter(path)


def load(module: nn.Module, params: dict) -> nn.Module:
    """Copy reference-layout arrays (or tensors) into the module's parameters."""
    for name, (path, transposed) in module.LAYOUT.items():
        if name not in params:
            continue
        target = _resolve(module, path)
        value = torch.as_tensor(params[name])
        value = value.T if transposed else value
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"{name}: reference shape {tuple(params[name].shape)} does not fit "
                             f"{path} of shape {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value)
    return module


def export(module: nn.Module, which: str = "grad") -> dict:
    """Parameters (``which="data"``) or their gradients (``"grad"``) in reference
    layout as NumPy arrays; a parameter without a gradient maps to None."""
    out = {}
    for name, (path, transposed) in module.LAYOUT.items():
        try:
            tensor = _resolve(module, path)
        except AttributeError:
            continue
        tensor = tensor.grad if which == "grad" else tensor.detach()
        if tensor is None:
            out[name] = None
            continue
        tensor = tensor.T if transposed else tensor
        out[name] = to_numpy(tensor).copy()
    return out


def to_numpy(tensor: torch.Tensor):
    """A tensor's values as a NumPy array; bfloat16, which NumPy lacks, as float32 (exact)."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
