"""The scenarios' training runs as the tutorials write them in torch.

Each form is a generator: it trains step by step and yields, after every
optimizer step, the loss computed on that step's batch (before the update) and
the parameters after the update, as NumPy arrays in the reference's layout
(W of shape (in, out): nn.Linear's weight transposed). It takes the starting
parameters in that layout and copies them into its module, so both sides start
equal; the data arrays are handed over as they are.

Mini-batches come from ``DataLoader(TensorDataset(...), batch_size, shuffle=True,
generator=torch.Generator().manual_seed(seed))``, as the tutorials make them, with
the seed fixed. ``batch_order`` records the index order that loader yields (the
same configuration over ``range(n)``), which the NumPy side receives as plain
index arrays. This module never imports ``reference``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_impl.custom_relu import ManualReLU


def loader(tensors, batch_size: int, seed: int, drop_last: bool = False) -> DataLoader:
    """The tutorials' shuffled loader, its shuffling drawn from a generator seeded with ``seed``.
    DataLoader draws from that generator each time an epoch's iterator is made (a base
    seed, then RandomSampler's permutation), so two loaders of the same length, batch
    size and seed yield the same indices epoch after epoch."""
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed), drop_last=drop_last)


def batch_order(n: int, batch_size: int, steps: int, seed: int, drop_last: bool = False) -> list[np.ndarray]:
    """The row indices of the first ``steps`` batches ``loader`` yields over ``n`` rows,
    epoch after epoch, as int64 arrays (the last batch of an epoch partial unless
    ``drop_last``)."""
    for name, value in (("n", n), ("batch_size", batch_size), ("steps", steps)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} (torch side) must be a positive integer, got {value!r}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size (torch side) {batch_size} > n {n} with drop_last: no batch at all")
    order = []
    batches = loader([torch.arange(n)], batch_size, seed, drop_last)
    while len(order) < steps:
        order += [idx.numpy().copy() for (idx,) in batches]
    return order[:steps]


def _tensors(arrays: dict, dtype, device) -> dict:
    """Float arrays as ``dtype`` tensors on ``device``, integer arrays (labels) as int64."""
    return {k: torch.as_tensor(np.asarray(v), device=device,
                               dtype=torch.long if np.issubdtype(np.asarray(v).dtype, np.integer) else dtype)
            for k, v in arrays.items()}


def _numpy(tensors: dict) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in tensors.items()}


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _load(module: nn.Module, params: dict) -> nn.Module:
    """Copy W1, b1, W2, ... (or W, b for one layer) into the module's nn.Linear layers in order."""
    layers = _linears(module)
    suffixes = [""] if len(layers) == 1 else [str(i + 1) for i in range(len(layers))]
    with torch.no_grad():
        for layer, suffix in zip(layers, suffixes, strict=True):
            layer.weight.copy_(torch.as_tensor(params["W" + suffix]).T)
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(params["b" + suffix]))
    return module


def _export(module: nn.Module) -> dict:
    layers = _linears(module)
    suffixes = [""] if len(layers) == 1 else [str(i + 1) for i in range(len(layers))]
    out = {}
    for layer, suffix in zip(layers, suffixes, strict=True):
        out["W" + suffix] = layer.weight.detach().T.cpu().numpy().copy()
        if layer.bias is not None:
            out["b" + suffix] = layer.bias.detach().cpu().numpy().copy()
    return out


def _module(module: nn.Module, params: dict, dtype, device) -> nn.Module:
    return _load(module.to(device=device, dtype=dtype), params)


def _epochs(loader_: DataLoader, steps: int):
    """Batches epoch after epoch, ``steps`` of them (the tutorials' ``for epoch ... for xb, yb in loader``)."""
    done = 0
    while done < steps:
        for batch in loader_:
            yield batch
            done += 1
            if done == steps:
                return


def quadratic(params, data, *, dtype, device, steps: int, lr: float = 0.1) -> Iterator:
    """Scenario 1: y = p * x_i ** 2, one SGD step per element of x (check_optim)."""
    p = torch.tensor(params["p"], dtype=dtype, device=device, requires_grad=True)
    x = _tensors(data, dtype, device)["x"]
    opt = torch.optim.SGD([p], lr=lr)
    for i in range(steps):
        opt.zero_grad()
        y = p * x[i % len(x)] ** 2
        y.backward()
        opt.step()
        yield y.item(), {"p": p.detach().cpu().numpy().copy()}


def line(params, data, *, dtype, device, steps: int, batch_size: int, seed: int, drop_last: bool = False,
         lr: float = 0.03, momentum: float = 0.6, validation=None, epoch_steps: int = 0) -> Iterator:
    """Scenario 2: nn.Linear(1, 1), 0.5 * MSELoss, SGD with momentum, shuffled DataLoader.
    With ``validation``: the loss on that split under no_grad after every ``epoch_steps``
    steps and after the last, yielded as a third item {"validation": loss} (empty otherwise)."""
    model = _module(nn.Linear(1, 1), params, dtype, device)
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    t = _tensors(data, dtype, "cpu")
    held_out = None if validation is None else _tensors(validation, dtype, device)
    for step, (xb, yb) in enumerate(_epochs(loader([t["X"], t["Y"]], batch_size, seed, drop_last), steps)):
        xb, yb = xb.to(device), yb.to(device)
        loss = 0.5 * loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        evaluations = {}
        if held_out is not None and ((step + 1) % epoch_steps == 0 or step == steps - 1):
            with torch.no_grad():
                evaluations["validation"] = (0.5 * loss_fn(model(held_out["X"]), held_out["Y"])).item()
        yield loss.item(), _export(model), evaluations


def _full_batch(model, loss_fn, opt, inputs, target, steps: int) -> Iterator:
    """The tutorials' loop over the whole data: loss, zero_grad, backward, step."""
    for _ in range(steps):
        loss = loss_fn(model(inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield loss.item(), _export(model)


def _sgd_full_batch(net, loss_fn, target: str, params, data, dtype, device, steps: int, lr: float) -> Iterator:
    """A tutorial's full-batch SGD of ``net`` on data["X"] against data[target]."""
    model = _module(net, params, dtype, device)
    t = _tensors(data, dtype, device)
    yield from _full_batch(model, loss_fn, torch.optim.SGD(model.parameters(), lr=lr), t["X"], t[target], steps)


def _classifier_net(d_in, hidden, d_out):
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def blobs(params, data, *, dtype, device, steps: int, lr: float = 0.02) -> Iterator:
    """Scenario 3: the 2-10-2 ReLU net, CrossEntropyLoss, SGD, full batch."""
    yield from _sgd_full_batch(_classifier_net(2, 10, 2), nn.CrossEntropyLoss(), "labels", params, data, dtype,
                               device, steps, lr)


def tensors_by_hand(params, data, *, dtype, device, steps: int, lr: float = 1e-6) -> Iterator:
    """Scenario 4, torch tensors with the backward written by hand (the tutorial's code,
    ``grad_h[h < 0] = 0`` included: on this data no pre-activation is exactly 0)."""
    t = _tensors(data, dtype, device)
    x, y = t["X"], t["Y"]
    w1, w2 = (torch.tensor(params[k], dtype=dtype, device=device) for k in ("W1", "W2"))
    for _ in range(steps):
        h = x.mm(w1)
        h_relu = h.clamp(min=0)
        y_pred = h_relu.mm(w2)
        loss = (y_pred - y).pow(2).sum().item()
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.t().mm(grad_y_pred)
        grad_h = grad_y_pred.mm(w2.t())
        grad_h[h < 0] = 0
        grad_w1 = x.t().mm(grad_h)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
        yield loss, _numpy({"W1": w1, "W2": w2})


def _autograd_by_hand(relu, params, data, dtype, device, steps, lr):
    t = _tensors(data, dtype, device)
    x, y = t["X"], t["Y"]
    w1, w2 = (torch.tensor(params[k], dtype=dtype, device=device, requires_grad=True) for k in ("W1", "W2"))
    for _ in range(steps):
        y_pred = relu(x.mm(w1)).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        sgd_update((w1, w2), lr)
        yield loss.item(), _numpy({"W1": w1, "W2": w2})


def autograd_by_hand(params, data, *, dtype, device, steps: int, lr: float = 1e-6) -> Iterator:
    """Scenario 4, autograd for the backward, the update written by hand under no_grad."""
    return _autograd_by_hand(lambda h: h.clamp(min=0), params, data, dtype, device, steps, lr)


def custom_function(params, data, *, dtype, device, steps: int, lr: float = 1e-6) -> Iterator:
    """Scenario 4, the ReLU as a custom torch.autograd.Function (torch_impl.custom_relu)."""
    return _autograd_by_hand(ManualReLU.apply, params, data, dtype, device, steps, lr)


def _tutorial_sequential(params):
    d_in, hidden = params["W1"].shape
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, params["W2"].shape[1]))


def nn_by_hand(params, data, *, dtype, device, steps: int, lr: float = 1e-4) -> Iterator:
    """Scenario 4, nn.Sequential + MSELoss(reduction='sum'), the update by hand."""
    model = _module(_tutorial_sequential(params), params, dtype, device)
    t = _tensors(data, dtype, device)
    loss_fn = nn.MSELoss(reduction="sum")
    for _ in range(steps):
        loss = loss_fn(model(t["X"]), t["Y"])
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= lr * param.grad
        yield loss.item(), _export(model)


def nn_adam(params, data, *, dtype, device, steps: int, lr: float = 1e-4) -> Iterator:
    """Scenario 4, nn.Sequential + MSELoss(reduction='sum') + optim.Adam."""
    model = _module(_tutorial_sequential(params), params, dtype, device)
    t = _tensors(data, dtype, device)
    loss_fn = nn.MSELoss(reduction="sum")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    yield from _full_batch(model, loss_fn, opt, t["X"], t["Y"], steps)


class _Net(nn.Module):
    """Scenario 5's net as the tutorial writes it: a hidden layer and a prediction layer."""

    def __init__(self, n_feature, n_hidden, n_output):
        super().__init__()
        self.hidden = nn.Linear(n_feature, n_hidden)
        self.predict = nn.Linear(n_hidden, n_output)

    def forward(self, x):
        return self.predict(torch.relu(self.hidden(x)))


def parabola(params, data, *, dtype, device, steps: int, lr: float = 0.2) -> Iterator:
    """Scenario 5: the 1-10-1 net, MSELoss, SGD, full batch."""
    yield from _sgd_full_batch(_Net(1, 10, 1), nn.MSELoss(), "Y", params, data, dtype, device, steps, lr)


def fifteen(params, data, *, dtype, device, steps: int, lr: float = 1e-2) -> Iterator:
    """Scenario 6: w, b as tensors, the mean squared error by autograd, the update by hand."""
    t = _tensors(data, dtype, device)
    w, b = (torch.tensor(params[k], dtype=dtype, device=device, requires_grad=True) for k in ("w", "b"))
    for _ in range(steps):
        loss = ((w * t["x"] + b - t["y"]) ** 2).mean()
        loss.backward()
        sgd_update((w, b), lr)
        yield loss.item(), _numpy({"w": w, "b": b})


def sgd_update(parameters, lr: float) -> None:
    """The tutorial's manual update: p <- p - lr * grad, then the gradient cleared."""
    with torch.no_grad():
        for p in parameters:
            p -= lr * p.grad
            p.grad = None


def mnist(params, data, *, dtype, device, steps: int, batch_size: int, seed: int, drop_last: bool = False,
          lr: float = 1e-2) -> Iterator:
    """Scenario 7: the 784-200-10 classifier, CrossEntropyLoss, the manual sgd_update,
    one pass over a shuffled DataLoader."""
    model = _module(_classifier_net(784, 200, 10), params, dtype, device)
    loss_fn = nn.CrossEntropyLoss()
    t = _tensors(data, dtype, "cpu")
    for xb, yb in _epochs(loader([t["X"], t["labels"]], batch_size, seed, drop_last), steps):
        loss = loss_fn(model(xb.to(device)), yb.to(device))
        loss.backward()
        sgd_update(model.parameters(), lr)
        yield loss.item(), _export(model)


def logistic(params, data, *, dtype, device, steps: int, lr: float = 0.01, momentum: float = 0.9) -> Iterator:
    """Scenario 8: nn.Linear(2, 1) + Sigmoid + BCELoss, SGD with momentum, full batch."""
    model = _module(nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()), params, dtype, device)
    t = _tensors(data, dtype, device)
    loss_fn = nn.BCELoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    yield from _full_batch(model, loss_fn, opt, t["X"], t["Y"], steps)
