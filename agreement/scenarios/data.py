"""The scenarios' data and starting parameters, generated with seeded NumPy RNGs.

The tutorials draw their data with torch (``torch.randn``, ``torch.rand``) or
download it (MNIST). Here every array is drawn once by NumPy and handed to both
sides, so that a difference between the sides is a difference of training, never
of data. Every float array is rounded through float32 and returned as float64:
its values are exact in both dtypes, so one float64 reference run serves the
float32 and the float64 comparisons alike (``judge``).

Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np


def exact32(values) -> np.ndarray:
    """``values`` rounded to float32 and held as float64 (exact in both dtypes)."""
    return np.asarray(values, np.float64).astype(np.float32).astype(np.float64)


def linear_init(rng, d_in: int, d_out: int, bias: bool = True) -> dict:
    """nn.Linear's default initialisation, U(-1/sqrt(in), 1/sqrt(in)) for weight and
    bias, drawn by NumPy, in the reference's layout (W of shape (in, out))."""
    bound = 1 / np.sqrt(d_in)
    params = {"W": exact32(rng.uniform(-bound, bound, (d_in, d_out)))}
    if bias:
        params["b"] = exact32(rng.uniform(-bound, bound, d_out))
    return params


def dense_pair(rng, d_in: int, hidden: int, d_out: int, bias: bool = True) -> dict:
    """Two nn.Linear layers' default initialisation as W1, b1, W2, b2."""
    first, second = linear_init(rng, d_in, hidden, bias), linear_init(rng, hidden, d_out, bias)
    return {**{k + "1": v for k, v in first.items()}, **{k + "2": v for k, v in second.items()}}


def quadratic(n: int = 100, seed: int = 1) -> tuple[dict, dict]:
    """Scenario 1: p = 1.5 and x of ``n`` standard normal values."""
    rng = np.random.default_rng(seed)
    return {"p": exact32(1.5)}, {"x": exact32(rng.standard_normal(n))}


def line(n: int = 1100, train: int = 1000, seed: int = 2) -> tuple[dict, dict, dict]:
    """Scenario 2: x = linspace(0, 10, n), y = 10 x + 5 + 5 U(0, 1), split ``train`` /
    the rest by a seeded permutation; nn.Linear(1, 1)'s initialisation."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 10, n)
    y = 10 * x + 5 + 5 * rng.uniform(0, 1, n)
    order = rng.permutation(n)
    X, Y = exact32(x[:, None]), exact32(y[:, None])
    params = linear_init(rng, 1, 1)
    return params, {"X": X[order[:train]], "Y": Y[order[:train]]}, {"X": X[order[train:]], "Y": Y[order[train:]]}


def blobs(n: int = 200, seed: int = 3) -> tuple[dict, dict]:
    """Scenario 3: two Gaussian blobs of n/2 points each, centred at (-2, -2) and (2, 2)
    with unit variance, labels 0 and 1; a 2-10-2 net's initialisation."""
    rng = np.random.default_rng(seed)
    half = n // 2
    X = np.concatenate([rng.normal(-2, 1, (half, 2)), rng.normal(2, 1, (n - half, 2))])
    labels = np.concatenate([np.zeros(half, np.int64), np.ones(n - half, np.int64)])
    return dense_pair(rng, 2, 10, 2), {"X": exact32(X), "labels": labels}


def tutorial_net(seed: int = 4, n: int = 64, d_in: int = 1000, hidden: int = 100, d_out: int = 10
                 ) -> tuple[dict, dict, dict]:
    """Scenario 4: the classic two-layer tutorial. x, y standard normal (N = 64,
    D_in = 1000, D_out = 10); the NumPy / tensor forms' weights standard normal and
    without biases (w1, w2); the nn forms' layers with nn.Linear's initialisation."""
    rng = np.random.default_rng(seed)
    data = {"X": exact32(rng.standard_normal((n, d_in))), "Y": exact32(rng.standard_normal((n, d_out)))}
    by_hand = {"W1": exact32(rng.standard_normal((d_in, hidden))), "W2": exact32(rng.standard_normal((hidden, d_out)))}
    return by_hand, dense_pair(rng, d_in, hidden, d_out), data


def parabola(n: int = 100, seed: int = 5) -> tuple[dict, dict]:
    """Scenario 5: x = linspace(-1, 1, n), y = x^2 + 0.2 U(0, 1); a 1-10-1 net."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, n)[:, None]
    return dense_pair(rng, 1, 10, 1), {"X": exact32(x), "Y": exact32(x**2 + 0.2 * rng.uniform(0, 1, x.shape))}


# The 15 points of the classic PyTorch linear-regression tutorial (x_train, y_train).
FIFTEEN_X = [3.3, 4.4, 5.5, 6.71, 6.93, 4.168, 9.779, 6.182, 7.59, 2.167, 7.042, 10.791, 5.313, 7.997, 3.1]
FIFTEEN_Y = [1.7, 2.76, 2.09, 3.19, 1.694, 1.573, 3.366, 2.596, 2.53, 1.221, 2.827, 3.465, 1.65, 2.904, 1.3]


def fifteen_points(seed: int = 6) -> tuple[dict, dict]:
    """Scenario 6: the 15 fixed points; w, b standard normal scalars."""
    rng = np.random.default_rng(seed)
    return ({"w": exact32(rng.standard_normal()), "b": exact32(rng.standard_normal())},
            {"x": exact32(FIFTEEN_X), "y": exact32(FIFTEEN_Y)})


def mnist_shaped(n: int = 60000, seed: int = 7) -> tuple[dict, dict]:
    """Scenario 7: generated data of MNIST's shape, NOT MNIST (it cannot be downloaded
    here): ``n`` images of 28 x 28 = 784 pixels in [0, 1] that are multiples of 1/255
    (as ToTensor makes them from bytes), 10 classes. Each class has a random
    template; an image is its class's template plus Gaussian noise, clipped and
    quantised to bytes, so the classes are learnable but overlap. A 784-200-10
    net with nn.Linear's initialisation."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    templates = rng.uniform(0, 1, (10, 784)) ** 3  # mostly dark, a few bright strokes
    pixels = np.empty((n, 784), np.float32)
    for start in range(0, n, 5000):  # in chunks: 60000 x 784 float64 at once would be 376 MB
        stop = min(start + 5000, n)
        noisy = templates[labels[start:stop]] + rng.normal(0, 0.3, (stop - start, 784))
        # bytes / 255 in float32, as torchvision's ToTensor divides
        pixels[start:stop] = np.round(np.clip(noisy, 0, 1) * 255).astype(np.float32) / np.float32(255)
    return dense_pair(rng, 784, 200, 10), {"X": pixels, "labels": labels}


def clusters(n: int = 200, seed: int = 8) -> tuple[dict, dict]:
    """Scenario 8: two Gaussian clusters of n/2 points, centred at (-1, -1) (label 0)
    and (1, 1) (label 1), unit variance: overlapping, so the logits stay moderate
    and the sigmoid far from saturation over the run; nn.Linear(2, 1)'s initialisation."""
    rng = np.random.default_rng(seed)
    half = n // 2
    X = np.concatenate([rng.normal(-1, 1, (half, 2)), rng.normal(1, 1, (n - half, 2))])
    Y = np.concatenate([np.zeros(half), np.ones(n - half)])[:, None]
    return linear_init(rng, 2, 1), {"X": exact32(X), "Y": exact32(Y)}
