"""A corpus of correct, hand-written layers as a user of ``check_gradients`` writes them, each with a buggy twin.

Every layer is the kind of thing an ML engineer writes in NumPy with the gradient derived on paper, next to the
torch code they would write for the same layer (plain torch ops and ``torch.nn.functional``). The derivations are
in the comments; none of this uses the project's ``reference/`` code, on purpose: the point is to see how the
harness treats code it did not write (issue 10).

Each ``Layer`` carries:

* ``numpy_fn(params, data, **hyper) -> (loss, {name: grad})``: correct, and returning the correct loss value;
* ``torch_fn(params, data, **hyper) -> scalar tensor``;
* ``inputs(dtype)``: a Hypothesis strategy of ``agreement.Example`` with realistic and nasty values (exact zeros,
  ties, batch 1, width 1, logits up to +-40, inputs up to 100);
* ``buggy``: the same NumPy function with one realistic bug (``bug`` says which);
* ``fixed(rng)``: a float64 example away from kinks, clamps and ties, for finite differences.

Layers with no natural scalar output are probed with ``loss = sum(upstream * f(x))``, upstream drawn (never all
ones), so dL/dx is the vector-Jacobian product a network would feed back. Where torch's convention at a kink or
clamp differs from the textbook, the NumPy side implements torch's (comments say where): the corpus must be
*correct* code, so any disagreement left is the harness's to explain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agreement import Example
from agreement import strategies as S


@dataclass(frozen=True)
class Layer:
    name: str
    numpy_fn: Callable
    torch_fn: Callable
    inputs: Callable
    buggy: Callable
    bug: str
    fixed: Callable


# ---------------------------------------------------------------------------------------------------------------
# Shared NumPy pieces (each written once, the way a user keeps a small utils module)
# ---------------------------------------------------------------------------------------------------------------

def sigmoid(x):
    # exp of a non-positive argument only, so no overflow warning for x = -100 (float32 overflows at exp(89))
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softmax(x, axis=-1):
    # shift by the max so exp never overflows; the shift cancels in the ratio
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def one_hot(labels, classes, dtype):
    return np.eye(classes, dtype=dtype)[labels]


_erf = np.vectorize(math.erf, otypes=[np.float64])  # no scipy here; math.erf is accurate to an ulp


def erf(x):
    return _erf(x).astype(x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------------------

def _dtype_values(dtype, values):
    """Exact values Hypothesis should try often (kinks, ties, clamps), in ``dtype``."""
    return st.sampled_from([float(np.asarray(v, dtype=dtype)) for v in values])


def _mixed(dtype, bound, specials, low=None):
    """Elements that are either one of ``specials`` (ties, kinks) or any float in [low, bound]."""
    return st.one_of(_dtype_values(dtype, specials), S.reals(dtype, bound, low))


@st.composite
def _elementwise_inputs(draw, dtype, bound=40.0, hyper=None):
    """x of shape (n, m) up to +-bound (saturating sigmoid/tanh/exp), upstream u up to 10."""
    shape = (draw(S.dims(1, 4)), draw(S.dims(1, 5)))
    x = draw(S.arrays(dtype, shape, bound))
    u = draw(_upstream(dtype, shape))
    return Example({"x": x}, {"u": u}, draw(hyper(dtype)) if hyper else {})


def _upstream(dtype, shape):
    """The probe's upstream gradient, every element drawn on its own (zeros and edges included). hnp.arrays'
    default fills most of an array with one repeated value, and a constant upstream is "all ones" up to scale:
    it makes sum(u * softmax(x)) constant and hides bugs that a varied upstream shows."""
    return hnp.arrays(dtype, shape, elements=S.reals(dtype, 10.0), fill=st.nothing())


def _labels(n, classes):
    return hnp.arrays(np.int64, (n,), elements=st.integers(0, classes - 1))


def _fixed_x_u(rng, shape=(3, 4), scale=1.5, hyper=None):
    return Example({"x": rng.normal(0, scale, shape)}, {"u": rng.normal(0, 1, shape)}, dict(hyper or {}))


# ---------------------------------------------------------------------------------------------------------------
# Elementwise activations, probed with loss = sum(u * f(x)), dL/dx = u * f'(x)
# ---------------------------------------------------------------------------------------------------------------

def _elementwise(name, forward, derivative):
    def numpy_fn(params, data, **hyper):
        x, u = params["x"], data["u"]
        return np.sum(u * forward(x, **hyper)), {"x": u * derivative(x, **hyper)}

    numpy_fn.__name__ = name
    return numpy_fn


def _elementwise_torch(f):
    def torch_fn(params, data, **hyper):
        return (data["u"] * f(params["x"], **hyper)).sum()

    return torch_fn


def tanh_grad(x):
    return 1 - np.tanh(x) ** 2


def sigmoid_grad(x):
    s = sigmoid(x)
    return s * (1 - s)


def softplus(x):
    # torch's F.softplus returns x itself where x > threshold (20), and its derivative is then exactly 1 (the true
    # derivative at 21 is 0.99999999924): mirror that convention, the textbook log1p(exp(x)) would differ there
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def softplus_grad(x):
    return np.where(x > 20, 1.0, sigmoid(x))


_GELU_C = math.sqrt(2 / math.pi)


def gelu_tanh(x):
    # 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
    return 0.5 * x * (1 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))


def gelu_tanh_grad(x):
    # product rule: 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)
    t = np.tanh(_GELU_C * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x)


def gelu_tanh_grad_buggy(x):
    # BUG: d/dx of x^3 written as x^2 (the chain-rule factor 3 dropped)
    t = np.tanh(_GELU_C * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 0.044715 * x * x)


def gelu_erf(x):
    # x Phi(x), Phi the standard normal CDF
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_erf_grad(x):
    # Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    return 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def silu(x):
    return x * sigmoid(x)


def silu_grad(x):
    # d/dx x s(x) = s + x s (1 - s)
    s = sigmoid(x)
    return s + x * s * (1 - s)


def elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_grad(x, alpha):
    # torch takes the negative branch at x = 0 (x <= 0: alpha exp(x)), so elu'(0) = alpha, not 1
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def leaky_relu(x, slope):
    return np.where(x > 0, x, slope * x)


def leaky_relu_grad(x, slope):
    # torch: slope at x = 0 (the negative branch), as relu'(0) = 0; ones_like keeps float32 in float32
    return np.where(x > 0, np.ones_like(x), slope)


def _alpha(dtype):
    # 1 is the default; the others make a forgotten alpha visible
    return S.hyper_value(dtype, 0.1, 3.0).map(lambda a: {"alpha": a}) | _dtype_values(dtype, [0.5, 1.0, 2.0]).map(
        lambda a: {"alpha": a})


def _slope(dtype):
    return (S.hyper_value(dtype, 0.0, 0.5) | _dtype_values(dtype, [0.01, 0.2])).map(lambda a: {"slope": a})


ELEMENTWISE = [
    Layer("tanh", _elementwise("tanh", np.tanh, tanh_grad), _elementwise_torch(torch.tanh), _elementwise_inputs,
          # BUG: the derivative evaluated at the activation's output y = tanh(x) instead of at x
          # (1 - tanh(y)^2): a derivative helper that expects the pre-activation, fed the cached output
          _elementwise("tanh_buggy", np.tanh, lambda x: tanh_grad(np.tanh(x))),
          "derivative at the output, 1 - tanh(tanh(x))^2", _fixed_x_u),
    Layer("sigmoid", _elementwise("sigmoid", sigmoid, sigmoid_grad), _elementwise_torch(torch.sigmoid),
          _elementwise_inputs,
          # BUG: the upstream gradient dropped (the local derivative returned as the gradient)
          lambda params, data: (np.sum(data["u"] * sigmoid(params["x"])), {"x": sigmoid_grad(params["x"])}),
          "upstream factor u dropped from the chain rule", _fixed_x_u),
    Layer("softplus", _elementwise("softplus", softplus, softplus_grad), _elementwise_torch(F.softplus),
          _elementwise_inputs,
          _elementwise("softplus_buggy", softplus, lambda x: np.where(x > 20, 1.0, sigmoid(-x))),  # BUG: sign
          "sigmoid(-x) for sigmoid(x) (sign slip)", lambda rng: _fixed_x_u(rng, scale=3.0)),
    Layer("gelu_tanh", _elementwise("gelu_tanh", gelu_tanh, gelu_tanh_grad),
          _elementwise_torch(lambda x: F.gelu(x, approximate="tanh")), _elementwise_inputs,
          _elementwise("gelu_tanh_buggy", gelu_tanh, gelu_tanh_grad_buggy),
          "derivative of 0.044715 x^3 without its factor 3", _fixed_x_u),
    Layer("gelu_erf", _elementwise("gelu_erf", gelu_erf, gelu_erf_grad), _elementwise_torch(F.gelu),
          _elementwise_inputs,
          # BUG: product rule half done: d/dx x Phi(x) taken as Phi(x)
          _elementwise("gelu_erf_buggy", gelu_erf, lambda x: 0.5 * (1 + erf(x / math.sqrt(2)))),
          "x phi(x) term of the product rule dropped", _fixed_x_u),
    Layer("silu", _elementwise("silu", silu, silu_grad), _elementwise_torch(F.silu), _elementwise_inputs,
          _elementwise("silu_buggy", silu, lambda x: x * sigmoid_grad(x)),  # BUG: the s(x) term dropped
          "product rule: s(x) term dropped, x s (1 - s) only", _fixed_x_u),
    Layer("elu", _elementwise("elu", elu, elu_grad), _elementwise_torch(lambda x, alpha: F.elu(x, alpha)),
          lambda dtype: _elementwise_inputs(dtype, hyper=_alpha),
          # BUG: negative branch's derivative written as exp(x), alpha forgotten
          _elementwise("elu_buggy", elu, lambda x, alpha: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))),
          "alpha forgotten in the negative branch's derivative",
          lambda rng: _fixed_x_u(rng, hyper={"alpha": 1.7})),
    Layer("leaky_relu", _elementwise("leaky_relu", leaky_relu, leaky_relu_grad),
          _elementwise_torch(lambda x, slope: F.leaky_relu(x, slope)),
          lambda dtype: _elementwise_inputs(dtype, hyper=_slope),
          # BUG: ReLU's derivative reused: zero, not the slope, on the negative side
          _elementwise("leaky_relu_buggy", leaky_relu, lambda x, slope: (x > 0).astype(x.dtype)),
          "relu's derivative reused (negative slope forgotten)",
          lambda rng: _fixed_x_u(rng, hyper={"slope": 0.1})),
]


# ---------------------------------------------------------------------------------------------------------------
# Softmax family
# ---------------------------------------------------------------------------------------------------------------

def softmax_numpy(params, data):
    # L = sum(u * y), y = softmax(x) per row; dL/dx_j = sum_i u_i y_i (delta_ij - y_j) = y_j (u_j - sum_i u_i y_i)
    x, u = params["x"], data["u"]
    y = softmax(x)
    return np.sum(u * y), {"x": y * (u - np.sum(u * y, axis=-1, keepdims=True))}


def softmax_buggy(params, data):
    # BUG: only the diagonal of the Jacobian, y (1 - y), as for an elementwise sigmoid
    x, u = params["x"], data["u"]
    y = softmax(x)
    return np.sum(u * y), {"x": u * y * (1 - y)}


def softmax_torch(params, data):
    return (data["u"] * torch.softmax(params["x"], dim=-1)).sum()


def log_softmax_numpy(params, data):
    # z = x - lse(x); L = sum(u * z); dL/dx_j = u_j - softmax(x)_j * sum_i u_i
    x, u = params["x"], data["u"]
    z = x - logsumexp(x)[..., None]
    return np.sum(u * z), {"x": u - softmax(x) * np.sum(u, axis=-1, keepdims=True)}


def log_softmax_buggy(params, data):
    # BUG: the cross-entropy shortcut u - p reused, which holds only when each row of u sums to 1
    x, u = params["x"], data["u"]
    z = x - logsumexp(x)[..., None]
    return np.sum(u * z), {"x": u - softmax(x)}


def log_softmax_torch(params, data):
    return (data["u"] * F.log_softmax(params["x"], dim=-1)).sum()


def logsumexp_numpy(params, data):
    # L = sum_r u_r lse(x_r); dL/dx_rj = u_r softmax(x_r)_j
    x, u = params["x"], data["u"]
    return np.sum(u * logsumexp(x)), {"x": u[:, None] * softmax(x)}


def logsumexp_buggy(params, data):
    # BUG: softmax normalised over the batch axis instead of the reduced one
    x, u = params["x"], data["u"]
    return np.sum(u * logsumexp(x)), {"x": u[:, None] * softmax(x, axis=0)}


def logsumexp_torch(params, data):
    return (data["u"] * torch.logsumexp(params["x"], dim=-1)).sum()


@st.composite
def _logits_upstream(draw, dtype, row_upstream=False):
    n, c = draw(S.dims(1, 4)), draw(S.dims(1, 6))
    x = draw(hnp.arrays(dtype, (n, c), elements=_mixed(dtype, 40.0, [0.0, 1.0, 30.0])))  # ties and saturation
    u = draw(_upstream(dtype, (n,) if row_upstream else (n, c)))
    return Example({"x": x}, {"u": u})


def cross_entropy_numpy(params, data):
    # L = mean_r (lse(z_r) - z_r[y_r]); dL/dz = (softmax(z) - onehot(y)) / n
    z, y = params["logits"], data["labels"]
    n, c = z.shape
    loss = np.mean(logsumexp(z) - z[np.arange(n), y])
    return loss, {"logits": (softmax(z) - one_hot(y, c, z.dtype)) / n}


def cross_entropy_buggy(params, data):
    z, y = params["logits"], data["labels"]
    n, c = z.shape
    loss = np.mean(logsumexp(z) - z[np.arange(n), y])
    return loss, {"logits": softmax(z) - one_hot(y, c, z.dtype)}  # BUG: the mean's 1/n forgotten


def cross_entropy_torch(params, data):
    return F.cross_entropy(params["logits"], data["labels"])


@st.composite
def _ce_inputs(draw, dtype):
    n, c = draw(S.dims(1, 5)), draw(S.dims(1, 6))
    z = draw(hnp.arrays(dtype, (n, c), elements=_mixed(dtype, 40.0, [0.0, -30.0, 30.0])))
    return Example({"logits": z}, {"labels": draw(_labels(n, c))})


def dense_ce_numpy(params, data):
    # z = X W + b; L = mean CE(z, y); G = (softmax(z) - Y) / n; dW = X^T G, db = sum_rows G
    W, b, X, y = params["W"], params["b"], data["X"], data["labels"]
    n = X.shape[0]
    z = X @ W + b
    loss = np.mean(logsumexp(z) - z[np.arange(n), y])
    G = (softmax(z) - one_hot(y, W.shape[1], z.dtype)) / n
    return loss, {"W": X.T @ G, "b": G.sum(axis=0)}


def dense_ce_buggy(params, data):
    W, b, X, y = params["W"], params["b"], data["X"], data["labels"]
    n = X.shape[0]
    z = X @ W + b
    loss = np.mean(logsumexp(z) - z[np.arange(n), y])
    R = softmax(z) - one_hot(y, W.shape[1], z.dtype)
    return loss, {"W": X.T @ R / n, "b": R.sum(axis=0)}  # BUG: the bias's gradient not averaged over the batch


def dense_ce_torch(params, data):
    return F.cross_entropy(data["X"] @ params["W"] + params["b"], data["labels"])


def _dense_params(draw, dtype, d_in, d_out):
    return {"W": draw(S.arrays(dtype, (d_in, d_out), 3.0)), "b": draw(S.arrays(dtype, (d_out,), 3.0))}


@st.composite
def _dense_ce_inputs(draw, dtype):
    n, d, c = draw(S.dims(1, 5)), draw(S.dims(1, 4)), draw(S.dims(1, 5))
    return Example(_dense_params(draw, dtype, d, c), {"X": draw(S.arrays(dtype, (n, d), 20.0)),
                                                      "labels": draw(_labels(n, c))})


SOFTMAX = [
    Layer("softmax", softmax_numpy, softmax_torch, _logits_upstream, softmax_buggy,
          "Jacobian's off-diagonal dropped: u y (1 - y)", _fixed_x_u),
    Layer("log_softmax", log_softmax_numpy, log_softmax_torch, _logits_upstream, log_softmax_buggy,
          "u - softmax(x): assumes each upstream row sums to 1", _fixed_x_u),
    Layer("logsumexp", logsumexp_numpy, logsumexp_torch, lambda dtype: _logits_upstream(dtype, row_upstream=True),
          logsumexp_buggy, "softmax over the batch axis (axis=0)",
          lambda rng: Example({"x": rng.normal(0, 2, (3, 4))}, {"u": rng.normal(0, 1, 3)})),
    Layer("cross_entropy", cross_entropy_numpy, cross_entropy_torch, _ce_inputs, cross_entropy_buggy,
          "1/n of the mean missing from the gradient",
          lambda rng: Example({"logits": rng.normal(0, 2, (4, 3))}, {"labels": rng.integers(0, 3, 4)})),
    Layer("dense_softmax_ce", dense_ce_numpy, dense_ce_torch, _dense_ce_inputs, dense_ce_buggy,
          "bias gradient summed, not averaged, over the batch",
          lambda rng: Example({"W": rng.normal(0, 1, (3, 4)), "b": rng.normal(0, 1, 4)},
                              {"X": rng.normal(0, 1, (5, 3)), "labels": rng.integers(0, 4, 5)})),
]


# ---------------------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------------------

def mse_dense_numpy(params, data):
    # r = X W + b - Y; L = mean(r^2) over all n*o elements (F.mse_loss); dL/dr = 2 r / (n o)
    W, b, X, Y = params["W"], params["b"], data["X"], data["Y"]
    r = X @ W + b - Y
    G = 2 * r / r.size
    return np.mean(r * r), {"W": X.T @ G, "b": G.sum(axis=0)}


def mse_dense_buggy(params, data):
    W, b, X, Y = params["W"], params["b"], data["X"], data["Y"]
    r = X @ W + b - Y
    G = r / r.size  # BUG: the 2 from d(r^2)/dr forgotten
    return np.mean(r * r), {"W": X.T @ G, "b": G.sum(axis=0)}


def mse_dense_torch(params, data):
    return F.mse_loss(data["X"] @ params["W"] + params["b"], data["Y"])


@st.composite
def _mse_inputs(draw, dtype):
    n, d, o = draw(S.dims(1, 6)), draw(S.dims(1, 4)), draw(S.dims(1, 3))
    return Example(_dense_params(draw, dtype, d, o), {"X": draw(S.arrays(dtype, (n, d), 100.0)),
                                                      "Y": draw(S.arrays(dtype, (n, o), 100.0))})


REGRESSION = [
    Layer("mse_dense", mse_dense_numpy, mse_dense_torch, _mse_inputs, mse_dense_buggy,
          "factor 2 of the square's derivative forgotten",
          lambda rng: Example({"W": rng.normal(0, 1, (3, 2)), "b": rng.normal(0, 1, 2)},
                              {"X": rng.normal(0, 1, (5, 3)), "Y": rng.normal(0, 1, (5, 2))})),
]


# ---------------------------------------------------------------------------------------------------------------
# Normalisation (width 1, constant rows and batch 2 give exactly-zero gradient elements)
# ---------------------------------------------------------------------------------------------------------------

def _normalise_backward(dxhat, xhat, rstd, axis, drop_variance_term=False):
    # xhat = (x - mean) * rstd with the biased variance; for L with dL/dxhat = g:
    # dL/dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), means over the normalised axis
    out = dxhat - dxhat.mean(axis=axis, keepdims=True)
    if not drop_variance_term:
        out = out - xhat * (dxhat * xhat).mean(axis=axis, keepdims=True)
    return rstd * out


def _normalise(x, axis, eps, ddof=0):
    xc = x - x.mean(axis=axis, keepdims=True)
    rstd = 1 / np.sqrt((xc * xc).sum(axis=axis, keepdims=True) / (x.shape[axis] - ddof) + eps)
    return xc * rstd, rstd


def layer_norm_numpy(params, data, eps=1e-5):
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["u"]
    xhat, rstd = _normalise(x, -1, eps)
    loss = np.sum(u * (gamma * xhat + beta))
    return loss, {"x": _normalise_backward(u * gamma, xhat, rstd, -1), "gamma": np.sum(u * xhat, axis=0),
                  "beta": u.sum(axis=0)}


def layer_norm_buggy(params, data, eps=1e-5):
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["u"]
    xhat, rstd = _normalise(x, -1, eps)
    loss = np.sum(u * (gamma * xhat + beta))
    # BUG: the variance treated as a constant (its dependence on x not differentiated)
    return loss, {"x": _normalise_backward(u * gamma, xhat, rstd, -1, drop_variance_term=True),
                  "gamma": np.sum(u * xhat, axis=0), "beta": u.sum(axis=0)}


def layer_norm_torch(params, data, eps=1e-5):
    x = params["x"]
    return (data["u"] * F.layer_norm(x, x.shape[-1:], params["gamma"], params["beta"], eps)).sum()


def batch_norm_numpy(params, data, eps=1e-5):
    # training mode: statistics over the batch axis, biased variance in the normalisation (as torch)
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["u"]
    xhat, rstd = _normalise(x, 0, eps)
    loss = np.sum(u * (gamma * xhat + beta))
    return loss, {"x": _normalise_backward(u * gamma, xhat, rstd, 0), "gamma": np.sum(u * xhat, axis=0),
                  "beta": u.sum(axis=0)}


def batch_norm_buggy(params, data, eps=1e-5):
    x, gamma, beta, u = params["x"], params["gamma"], params["beta"], data["u"]
    xhat, rstd = _normalise(x, 0, eps, ddof=1)  # BUG: the unbiased variance (torch uses it only for running_var)
    loss = np.sum(u * (gamma * xhat + beta))
    return loss, {"x": _normalise_backward(u * gamma, xhat, rstd, 0), "gamma": np.sum(u * xhat, axis=0),
                  "beta": u.sum(axis=0)}


def batch_norm_torch(params, data, eps=1e-5):
    y = F.batch_norm(params["x"], None, None, params["gamma"], params["beta"], training=True, eps=eps)
    return (data["u"] * y).sum()


@st.composite
def _norm_inputs(draw, dtype, min_batch=1):
    n, d = draw(S.dims(min_batch, 4)), draw(S.dims(1, 6))
    # values up to 100, with repeated values so that rows (or columns) can be constant
    x = draw(hnp.arrays(dtype, (n, d), elements=_mixed(dtype, 100.0, [0.0, 1.0, -2.0])))
    return Example({"x": x, "gamma": draw(S.arrays(dtype, (d,), 3.0)), "beta": draw(S.arrays(dtype, (d,), 3.0))},
                   {"u": draw(_upstream(dtype, (n, d)))})


def rms_norm_numpy(params, data, eps=1e-6):
    # y = g x r, r = (mean(x^2) + eps)^(-1/2); with dy = u g: dL/dx = r dy - x r^3 mean(dy x); dL/dg = sum u x r
    x, g, u = params["x"], params["g"], data["u"]
    r = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    dy = u * g
    dx = r * dy - x * r**3 * np.mean(dy * x, axis=-1, keepdims=True)
    return np.sum(u * g * x * r), {"x": dx, "g": np.sum(u * x * r, axis=0)}


def rms_norm_buggy(params, data, eps=1e-6):
    x, g, u = params["x"], params["g"], data["u"]
    r = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    dy = u * g
    dx = r * dy - x * r**3 * np.sum(dy * x, axis=-1, keepdims=True)  # BUG: sum where the mean's 1/d belongs
    return np.sum(u * g * x * r), {"x": dx, "g": np.sum(u * x * r, axis=0)}


def rms_norm_torch(params, data, eps=1e-6):
    x = params["x"]
    return (data["u"] * params["g"] * x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)).sum()


@st.composite
def _rms_inputs(draw, dtype):
    n, d = draw(S.dims(1, 4)), draw(S.dims(1, 6))
    x = draw(hnp.arrays(dtype, (n, d), elements=_mixed(dtype, 100.0, [0.0, 1.0])))
    return Example({"x": x, "g": draw(S.arrays(dtype, (d,), 3.0))}, {"u": draw(_upstream(dtype, (n, d)))})


def row_normalize_numpy(params, data, eps=1e-12):
    # y = x / ||x||; dL/dx = (u - y (u . y)) / ||x||. F.normalize divides by max(||x||, eps): below eps the
    # divisor is the constant eps, so y = x / eps and dL/dx = u / eps (all-zero rows get u * 1e12): torch's convention
    x, u = params["x"], data["u"]
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    denom = np.maximum(norm, eps)
    y = x / denom
    dx = np.where(norm >= eps, u - y * np.sum(u * y, axis=-1, keepdims=True), u) / denom
    return np.sum(u * y), {"x": dx}


def row_normalize_buggy(params, data, eps=1e-12):
    x, u = params["x"], data["u"]
    denom = np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), eps)
    return np.sum(u * x / denom), {"x": u / denom}  # BUG: the norm treated as a constant (projection dropped)


def row_normalize_torch(params, data):
    return (data["u"] * F.normalize(params["x"], dim=-1)).sum()


@st.composite
def _row_inputs(draw, dtype):
    n, d = draw(S.dims(1, 4)), draw(S.dims(1, 6))
    x = draw(hnp.arrays(dtype, (n, d), elements=_mixed(dtype, 100.0, [0.0, 1.0, -1.0])))
    return Example({"x": x}, {"u": draw(_upstream(dtype, (n, d)))})


def _fixed_norm(rng, n=4, d=5):
    return Example({"x": rng.normal(0, 2, (n, d)), "gamma": rng.normal(1, 0.5, d), "beta": rng.normal(0, 1, d)},
                   {"u": rng.normal(0, 1, (n, d))})


NORMALISATION = [
    Layer("layer_norm", layer_norm_numpy, layer_norm_torch, _norm_inputs, layer_norm_buggy,
          "variance treated as constant: xhat * mean(g xhat) term dropped", _fixed_norm),
    Layer("batch_norm", batch_norm_numpy, batch_norm_torch, lambda dtype: _norm_inputs(dtype, min_batch=2),
          batch_norm_buggy, "unbiased variance (n - 1) in the normalisation", _fixed_norm),
    Layer("rms_norm", rms_norm_numpy, rms_norm_torch, _rms_inputs, rms_norm_buggy,
          "sum(dy x) where mean(dy x) belongs",
          lambda rng: Example({"x": rng.normal(0, 2, (3, 5)), "g": rng.normal(1, 0.5, 5)},
                              {"u": rng.normal(0, 1, (3, 5))})),
    Layer("row_normalize", row_normalize_numpy, row_normalize_torch, _row_inputs, row_normalize_buggy,
          "norm treated as a constant: u / ||x||", lambda rng: _fixed_x_u(rng, (3, 5))),
]


# ---------------------------------------------------------------------------------------------------------------
# Attention: one head, O = softmax(Q K^T / sqrt(k)) V with Q = X Wq, K = X Wk, V = X Wv; L = sum(u * O)
# ---------------------------------------------------------------------------------------------------------------

def _attention(params, data, transpose_bug=False):
    X, Wq, Wk, Wv, u = params["X"], params["Wq"], params["Wk"], params["Wv"], data["u"]
    scale = 1 / math.sqrt(Wq.shape[1])  # a Python float keeps float32 arithmetic in float32
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    A = softmax(Q @ K.T * scale)
    loss = np.sum(u * (A @ V))
    dV = A.T @ u
    dA = u @ V.T
    dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True)) * scale  # softmax backward per row, then the scale
    dQ = dS @ K
    dK = dS @ Q if transpose_bug else dS.T @ Q  # S = Q K^T: dK = dS^T Q (the bug forgets the transpose)
    return loss, {"X": dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T, "Wq": X.T @ dQ, "Wk": X.T @ dK, "Wv": X.T @ dV}


def attention_numpy(params, data):
    return _attention(params, data)


def attention_buggy(params, data):
    return _attention(params, data, transpose_bug=True)


def attention_torch(params, data):
    X = params["X"]
    out = F.scaled_dot_product_attention(X @ params["Wq"], X @ params["Wk"], X @ params["Wv"])
    return (data["u"] * out).sum()


@st.composite
def _attention_inputs(draw, dtype):
    t, d, k, dv = draw(S.dims(1, 5)), draw(S.dims(1, 4)), draw(S.dims(1, 4)), draw(S.dims(1, 3))
    return Example({"X": draw(S.arrays(dtype, (t, d), 3.0)), "Wq": draw(S.arrays(dtype, (d, k), 2.0)),
                    "Wk": draw(S.arrays(dtype, (d, k), 2.0)), "Wv": draw(S.arrays(dtype, (d, dv), 2.0))},
                   {"u": draw(_upstream(dtype, (t, dv)))})


ATTENTION = [
    Layer("attention", attention_numpy, attention_torch, _attention_inputs, attention_buggy,
          "dK = dS Q instead of dS^T Q (transpose forgotten)",
          lambda rng: Example({"X": rng.normal(0, 1, (4, 3)), "Wq": rng.normal(0, 0.7, (3, 2)),
                               "Wk": rng.normal(0, 0.7, (3, 2)), "Wv": rng.normal(0, 0.7, (3, 2))},
                              {"u": rng.normal(0, 1, (4, 2))})),
]


# ---------------------------------------------------------------------------------------------------------------
# Pooling over the last axis of (N, C, L), kernel k, stride s, no padding; L = sum(u * pooled)
# ---------------------------------------------------------------------------------------------------------------

def _windows(x, kernel, stride):
    starts = np.arange((x.shape[-1] - kernel) // stride + 1) * stride
    return starts, starts[:, None] + np.arange(kernel)  # (W,), (W, k) positions


def max_pool_numpy(params, data, kernel, stride):
    # each window's gradient goes to its first maximal element: np.argmax and torch's CPU kernel both keep the
    # first max on ties (a strict > scan), and a position that wins several overlapping windows accumulates
    x, u = params["x"], data["u"]
    n, c, _ = x.shape
    starts, pos = _windows(x, kernel, stride)
    win = x[..., pos]  # (N, C, W, k)
    arg = win.argmax(axis=-1)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    grad = np.zeros_like(x)
    np.add.at(grad, (np.arange(n)[:, None, None], np.arange(c)[None, :, None], starts + arg), u)
    return np.sum(u * out), {"x": grad}


def max_pool_buggy(params, data, kernel, stride):
    x, u = params["x"], data["u"]
    n, c, _ = x.shape
    starts, pos = _windows(x, kernel, stride)
    win = x[..., pos]
    out = win.max(axis=-1)
    grad = np.zeros_like(x)
    for j in range(kernel):  # BUG: a mask win == max routes the gradient to every tied maximum
        np.add.at(grad, (np.arange(n)[:, None, None], np.arange(c)[None, :, None], starts + j),
                  u * (win[..., j] == out))
    return np.sum(u * out), {"x": grad}


def max_pool_torch(params, data, kernel, stride):
    return (data["u"] * F.max_pool1d(params["x"], kernel, stride)).sum()


def avg_pool_numpy(params, data, kernel, stride):
    # each output is the mean of its window: every element of the window receives u / k, summed over the windows
    # that overlap it (np.add.at accumulates repeated positions)
    x, u = params["x"], data["u"]
    n, c, _ = x.shape
    _, pos = _windows(x, kernel, stride)
    grad = np.zeros_like(x)
    np.add.at(grad, (np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], pos),
              np.broadcast_to((u / kernel)[..., None], (n, c) + pos.shape))
    return np.sum(u * x[..., pos].mean(axis=-1)), {"x": grad}


def avg_pool_buggy(params, data, kernel, stride):
    x, u = params["x"], data["u"]
    _, pos = _windows(x, kernel, stride)
    grad = np.zeros_like(x)
    # BUG: fancy-index += is buffered: where windows overlap a position appears twice and only one write lands
    grad[..., pos.ravel()] += np.repeat(u / kernel, kernel, axis=-1)
    return np.sum(u * x[..., pos].mean(axis=-1)), {"x": grad}


def avg_pool_torch(params, data, kernel, stride):
    return (data["u"] * F.avg_pool1d(params["x"], kernel, stride)).sum()


@st.composite
def _pool_inputs(draw, dtype):
    # kernel 1 is the identity, left out. Windows overlap (stride < kernel) in about 3 draws of 4, the case where
    # one position collects gradient from several windows; otherwise they tile (stride = kernel) or skip an element
    kernel = draw(st.integers(2, 4))
    overlap = draw(st.integers(0, 3)) > 0
    stride = draw(st.integers(1, kernel - 1)) if overlap else draw(st.integers(kernel, kernel + 1))
    length = kernel + stride + draw(st.integers(-1, 7))  # one window (at -1) up to several
    n, c = draw(S.dims(1, 2)), draw(S.dims(1, 3))
    # few distinct values: ties inside windows are common
    x = draw(hnp.arrays(dtype, (n, c, length), elements=_mixed(dtype, 100.0, [0.0, -0.0, 1.0, 2.5, -3.0])))
    windows = (length - kernel) // stride + 1
    return Example({"x": x}, {"u": draw(_upstream(dtype, (n, c, windows)))}, {"kernel": kernel, "stride": stride})


def _fixed_pool(rng):
    x = rng.normal(0, 1, (2, 2, 9))
    return Example({"x": x}, {"u": rng.normal(0, 1, (2, 2, 4))}, {"kernel": 3, "stride": 2})


POOLING = [
    Layer("max_pool1d", max_pool_numpy, max_pool_torch, _pool_inputs, max_pool_buggy,
          "gradient routed to every tied maximum (mask win == max)", _fixed_pool),
    Layer("avg_pool1d", avg_pool_numpy, avg_pool_torch, _pool_inputs, avg_pool_buggy,
          "buffered fancy-index += loses overlapping windows' contributions", _fixed_pool),
]


# ---------------------------------------------------------------------------------------------------------------
# Losses with clamps and kinks (mean reduction, as torch's default)
# ---------------------------------------------------------------------------------------------------------------

_BCE_EPS = float(np.float32(1e-12))  # torch's BCE backward: the float literal 1e-12 in float32, even for float64


def bce_numpy(params, data):
    # L = -mean(y log p + (1 - y) log(1 - p)); torch clamps each log at -100 (so p = 0 or 1 give a finite loss) and
    # its backward is (p - y) / max(p (1 - p), eps) / n, the formula, not the derivative of the clamped logs
    p, y = params["p"], data["y"]
    with np.errstate(divide="ignore"):
        log_p, log_1mp = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
    loss = -np.mean(y * log_p + (1 - y) * log_1mp)
    return loss, {"p": (p - y) / np.maximum(p * (1 - p), _BCE_EPS) / p.size}


def bce_buggy(params, data):
    p, y = params["p"], data["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p, log_1mp = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        loss = -np.mean(y * log_p + (1 - y) * log_1mp)
        return loss, {"p": (p - y) / (p * (1 - p)) / p.size}  # BUG: the denominator's clamp forgotten


def bce_torch(params, data):
    return F.binary_cross_entropy(params["p"], data["y"])


@st.composite
def _bce_inputs(draw, dtype):
    n = draw(S.dims(1, 6))
    p = draw(hnp.arrays(dtype, (n,), elements=_mixed(dtype, 1.0, [0.0, 1.0, 0.5], low=0.0)))  # the clamps
    y = draw(hnp.arrays(dtype, (n,), elements=_mixed(dtype, 1.0, [0.0, 1.0], low=0.0)))  # hard and soft targets
    return Example({"p": p}, {"y": y})


def smooth_l1_numpy(params, data, beta):
    # d = pred - target; 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2; derivative d / beta or sign(d),
    # continuous at |d| = beta. beta = 0 is L1 (torch: sign(0) = 0 at d = 0)
    d = params["pred"] - data["target"]
    quadratic = np.abs(d) < beta
    b = beta if beta > 0 else 1.0  # only used where quadratic, which beta = 0 never is
    loss = np.mean(np.where(quadratic, 0.5 * d * d / b, np.abs(d) - 0.5 * beta))
    return loss, {"pred": np.where(quadratic, d / b, np.sign(d)) / d.size}


def smooth_l1_buggy(params, data, beta):
    d = params["pred"] - data["target"]
    quadratic = np.abs(d) < beta
    b = beta if beta > 0 else 1.0
    loss = np.mean(np.where(quadratic, 0.5 * d * d / b, np.abs(d) - 0.5 * beta))
    return loss, {"pred": np.clip(d, -beta, beta) / d.size}  # BUG: Huber's derivative (delta convention, no 1/beta)


def smooth_l1_torch(params, data, beta):
    return F.smooth_l1_loss(params["pred"], data["target"], beta=beta)


@st.composite
def _smooth_l1_inputs(draw, dtype):
    n = draw(S.dims(1, 6))
    beta = draw(_dtype_values(dtype, [0.0, 0.5, 1.0, 2.0]) | S.hyper_value(dtype, 0.05, 5.0))
    values = _mixed(dtype, 10.0, [0.0, 1.0, -1.0, beta, -beta])  # d = 0 and |d| = beta (the kink) are common
    return Example({"pred": draw(hnp.arrays(dtype, (n,), elements=values))},
                   {"target": draw(hnp.arrays(dtype, (n,), elements=values))}, {"beta": beta})


def hinge_numpy(params, data):
    # L = mean(max(0, 1 - y s)), y in {-1, +1}; dL/ds = -y / n where 1 - y s >= 0. At the hinge (y s = 1) torch's
    # clamp passes the gradient (its mask is x >= min), unlike relu'(0) = 0: mirror clamp's convention
    s, y = params["scores"], data["y"]
    margin = 1 - y * s
    return np.mean(np.maximum(margin, 0)), {"scores": np.where(margin >= 0, -y, 0.0) / s.size}


def hinge_buggy(params, data):
    s, y = params["scores"], data["y"]
    margin = 1 - y * s
    return np.mean(np.maximum(margin, 0)), {"scores": -(margin >= 0).astype(s.dtype) / s.size}  # BUG: y dropped


def hinge_torch(params, data):
    return torch.clamp(1 - data["y"] * params["scores"], min=0).mean()


@st.composite
def _hinge_inputs(draw, dtype):
    n = draw(S.dims(1, 6))
    s = draw(hnp.arrays(dtype, (n,), elements=_mixed(dtype, 10.0, [-1.0, 0.0, 1.0])))  # y s = 1: on the hinge
    y = draw(hnp.arrays(dtype, (n,), elements=_dtype_values(dtype, [-1.0, 1.0])))
    return Example({"scores": s}, {"y": y})


LOSSES = [
    Layer("bce", bce_numpy, bce_torch, _bce_inputs, bce_buggy, "clamp of p (1 - p) forgotten: inf/nan at p = 0, 1",
          lambda rng: Example({"p": rng.uniform(0.05, 0.95, 6)}, {"y": rng.uniform(0, 1, 6)})),
    Layer("smooth_l1", smooth_l1_numpy, smooth_l1_torch, _smooth_l1_inputs, smooth_l1_buggy,
          "Huber's clip(d, -beta, beta) for smooth-L1's clip(d / beta, -1, 1)",
          lambda rng: Example({"pred": rng.normal(0, 2, 6)}, {"target": rng.normal(0, 2, 6)}, {"beta": 1.5})),
    Layer("hinge", hinge_numpy, hinge_torch, _hinge_inputs, hinge_buggy, "label factor y dropped: -1 for -y",
          lambda rng: Example({"scores": rng.normal(0, 2, 6)}, {"y": np.tile([1.0, -1.0], 3)})),
]


LAYERS: list[Layer] = ELEMENTWISE + SOFTMAX + REGRESSION + NORMALISATION + ATTENTION + POOLING + LOSSES
BY_NAME = {layer.name: layer for layer in LAYERS}
assert len(BY_NAME) == len(LAYERS), "layer names must be unique"
