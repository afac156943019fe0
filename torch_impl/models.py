"""nn.Modules whose ``forward(**data)`` returns the scalar loss.

Each class is built with ``from_shapes(shapes, **hyper)`` where ``shapes`` maps
reference parameter names to reference-layout shapes, and declares ``LAYOUT``
for ``torch_impl.layout``.
"""

from __future__ import annotations

import torch
from torch import nn


class ScalarQuadratic(nn.Module):
    """y = p * x**2, reduced against an upstream gradient: L = sum(upstream * y)."""

    LAYOUT = {"p": ("p", False), "x": ("x", False)}

    def __init__(self, n: int):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.x = nn.Parameter(torch.zeros(n))

    @classmethod
    def from_shapes(cls, shapes):
        return cls(shapes["x"][0])

    def forward(self, upstream):
        return (upstream * (self.p * self.x**2)).sum()


_ACTIVATIONS = {
    "relu": lambda **_: nn.ReLU(),
    "sigmoid": lambda **_: nn.Sigmoid(),
    "tanh": lambda **_: nn.Tanh(),
    "softplus": lambda beta=1.0, threshold=20.0: nn.Softplus(beta=beta, threshold=threshold),
}


class ActivationProbe(nn.Module):
    """Holds the activation's input as a parameter so autograd returns d/dx.

    The scalar ``sum(upstream * f(x))`` has gradient ``upstream * f'(x)``: the
    same vector-Jacobian product as ``f(x).backward(gradient=upstream)``.
    """

    LAYOUT = {"x": ("x", False)}

    def __init__(self, activation: str, shape, **hyper):
        super().__init__()
        self.x = nn.Parameter(torch.zeros(shape))
        self.activation = _ACTIVATIONS[activation](**hyper)

    @classmethod
    def for_activation(cls, activation):
        return lambda shapes, **hyper: cls(activation, shapes["x"], **hyper)

    def forward(self, upstream):
        return (upstream * self.activation(self.x)).sum()


class LossProbe(nn.Module):
    """Holds a loss's first argument (prediction, probability or logits) as a parameter."""

    LAYOUT = {"pred": ("pred", False)}

    def __init__(self, loss: nn.Module, shape, scale: float = 1.0):
        super().__init__()
        self.pred = nn.Parameter(torch.zeros(shape))
        self.loss = loss
        self.scale = scale

    def forward(self, target=None, labels=None):
        value = self.loss(self.pred, target if labels is None else labels)
        return value if self.scale == 1.0 else self.scale * value


def mse_probe(shapes, reduction="mean", scale=1.0):
    return LossProbe(nn.MSELoss(reduction=reduction), shapes["pred"], scale)


def bce_probe(shapes, reduction="mean"):
    return LossProbe(nn.BCELoss(reduction=reduction), shapes["pred"])


def bce_logits_probe(shapes, reduction="mean"):
    return LossProbe(nn.BCEWithLogitsLoss(reduction=reduction), shapes["pred"])


def cross_entropy_probe(shapes, reduction="mean"):
    return LossProbe(nn.CrossEntropyLoss(reduction=reduction), shapes["pred"])


class LinearRegression(nn.Module):
    LAYOUT = {"W": ("fc.weight", True), "b": ("fc.bias", False)}

    def __init__(self, d_in, d_out, reduction="mean"):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.loss = nn.MSELoss(reduction=reduction)

    @classmethod
    def from_shapes(cls, shapes, reduction="mean"):
        return cls(*shapes["W"], reduction=reduction)

    def forward(self, X, Y):
        return self.loss(self.fc(X), Y)


class LogisticRegression(nn.Module):
    """Binary logistic regression; ``head="sigmoid"`` is sigmoid + BCELoss,
    ``head="logits"`` feeds logits to BCEWithLogitsLoss (the stable form)."""

    LAYOUT = {"W": ("fc.weight", True), "b": ("fc.bias", False)}

    def __init__(self, d_in, head="logits", reduction="mean"):
        super().__init__()
        self.fc = nn.Linear(d_in, 1)
        self.head = head
        if head == "sigmoid":
            self.loss = nn.BCELoss(reduction=reduction)
        else:
            self.loss = nn.BCEWithLogitsLoss(reduction=reduction)

    @classmethod
    def with_head(cls, head):
        return lambda shapes, reduction="mean": cls(shapes["W"][0], head, reduction)

    def forward(self, X, Y):
        z = self.fc(X)
        return self.loss(torch.sigmoid(z) if self.head == "sigmoid" else z, Y)


class TwoLayerNet(nn.Module):
    """Linear -> ReLU -> Linear, as in the classic tutorial.

    ``loss``: "sse" (sum of squares), "mse" (mean squared error) or "ce"
    (cross-entropy on logits with integer labels, ``reduction`` mean or sum).
    """

    def __init__(self, d_in, hidden, d_out, bias=True, loss="sse", reduction="mean"):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden, bias=bias), nn.ReLU(),
                                 nn.Linear(hidden, d_out, bias=bias))
        self.LAYOUT = {"W1": ("net.0.weight", True), "W2": ("net.2.weight", True)}
        if bias:
            self.LAYOUT.update({"b1": ("net.0.bias", False), "b2": ("net.2.bias", False)})
        self.is_classifier = loss == "ce"
        if self.is_classifier:
            self.loss = nn.CrossEntropyLoss(reduction=reduction)
        else:
            self.loss = nn.MSELoss(reduction="sum" if loss == "sse" else "mean")

    @classmethod
    def regressor(cls, shapes, loss="sse", bias=True):
        return cls(*shapes["W1"], shapes["W2"][1], bias=bias, loss=loss)

    @classmethod
    def classifier(cls, shapes, reduction="mean", bias=True):
        return cls(*shapes["W1"], shapes["W2"][1], bias=bias, loss="ce", reduction=reduction)

    def forward(self, X, Y=None, labels=None):
        out = self.net(X)
        return self.loss(out, labels if self.is_classifier else Y)


class FunctionModule(nn.Module):
    """Wraps a user's ``loss_fn(params: dict[str, Tensor], data: dict[str, Tensor]) -> Tensor``
    as a module whose parameters are the named tensors, untransposed."""

    def __init__(self, loss_fn, shapes, **hyper):
        super().__init__()
        self.loss_fn, self.hyper = loss_fn, hyper
        self.params = nn.ParameterDict({name: nn.Parameter(torch.zeros(shape)) for name, shape in shapes.items()})
        self.LAYOUT = {name: (f"params.{name}", False) for name in shapes}

    def forward(self, **data):
        return self.loss_fn(dict(self.params), data, **self.hyper)
