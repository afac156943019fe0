"""ReLU as a hand-written ``torch.autograd.Function``, and the two-layer net using it.

forward keeps -0.0 and NaN as the built-in relu does (``where(x < 0, 0, x)``;
``x * (x > 0)`` would give -0.0 for every negative x and NaN * False = NaN);
backward passes the upstream gradient where x > 0 and 0 elsewhere, so
relu'(0) = 0 as in torch. The backward is itself built from differentiable
ops, so double backward works: d(backward)/d(upstream) is the same mask and
d(backward)/dx is 0, as for the built-in relu.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_impl.models import TwoLayerNet


class ManualReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x < 0, torch.zeros_like(x), x)

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, upstream, torch.zeros_like(upstream))


def manual_relu(x: torch.Tensor) -> torch.Tensor:
    return ManualReLU.apply(x)


class CustomReLU(nn.Module):
    def forward(self, x):
        return manual_relu(x)


def with_custom_relu(make_module):
    """A two-layer net factory whose nn.ReLU is replaced by ``CustomReLU``."""

    def make(shapes, **hyper):
        module = make_module(shapes, **hyper)
        if not isinstance(module, TwoLayerNet):
            raise TypeError(f"with_custom_relu expects a TwoLayerNet factory, got {type(module).__name__}")
        module.net[1] = CustomReLU()
        return module

    return make
