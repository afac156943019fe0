"""Check a hand-written NumPy gradient against torch autograd.

Run: python examples/check_my_gradient.py
"""

import numpy as np
from hypothesis import strategies as st

from agreement import Example, check_gradients
from agreement import strategies as S


def huber_numpy(params, data, delta=1.0):
    """L = sum(huber(w x - y)); dL/dw = sum over rows of clip(r, -delta, delta) x, with r = w x - y."""
    w, x, y = params["w"], data["x"], data["y"]
    r = x @ w - y
    quadratic = np.abs(r) <= delta
    loss = np.sum(np.where(quadratic, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)))
    return loss, {"w": x.T @ np.clip(r, -delta, delta)}


def huber_torch(params, data, delta=1.0):
    import torch

    r = data["x"] @ params["w"] - data["y"]
    return torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="sum", delta=delta)


@st.composite
def huber_inputs(draw, dtype):
    n, d = draw(S.dims(1, 6)), draw(S.dims(1, 4))
    return Example({"w": draw(S.arrays(dtype, (d,), 3.0))},
                   {"x": draw(S.arrays(dtype, (n, d), 3.0)), "y": draw(S.arrays(dtype, (n,), 3.0))})


if __name__ == "__main__":
    for s in check_gradients(huber_numpy, huber_torch, huber_inputs, max_examples=100):
        print(f"{s.case}: {s.dtype} on {s.device}: {s.examples} examples agree, worst {s.worst.ratio:.3g} x tolerance")
