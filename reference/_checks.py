"""Input validation shared by every public reference function.

Each check raises ``ValueError`` or ``TypeError`` naming the argument and what
was expected, so a caller never gets a silently broadcast or NaN-poisoned answer.
"""

from __future__ import annotations

import numbers

import numpy as np


def floating(name: str, value, *, ndim: int | None = None, shape: tuple | None = None,
             finite: bool = True, nonempty: bool = True) -> np.ndarray:
    """Return ``value`` as a floating ndarray after checking it.

    ``shape`` may contain ``None`` for a free dimension.
    """
    if value is None:
        raise ValueError(f"{name} is missing")
    arr = np.asarray(value)
    # long double too: the harness measures float64's rounding against it (agreement/rounding.py)
    if arr.dtype not in (np.float16, np.float32, np.float64, np.longdouble):
        raise TypeError(f"{name} must have a floating dtype (float16, float32, float64 or long double), "
                        f"got {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None:
        expected = tuple("*" if s is None else s for s in shape)
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
            raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")
    if nonempty and arr.ndim > 0 and arr.shape[0] == 0:
        raise ValueError(f"{name} must not be an empty batch, got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or Inf)")
    return arr


def same_dtype(**arrays: np.ndarray) -> np.dtype:
    """All floating arrays must share one dtype: mixing would upcast silently."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(f"arguments must share one floating dtype, got {listing}")
    return next(iter(dtypes.values()))


def labels(name: str, value, *, n: int, num_classes: int) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the batch, got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def scalar(name: str, value, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def flag(name: str, value) -> bool:
    """A boolean option; truthy strings such as "no" are refused, not coerced."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, options: tuple) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def in_unit_interval(name: str, arr: np.ndarray) -> None:
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{arr.min()}, {arr.max()}]")


def reduce(values: np.ndarray, reduction: str):
    """Apply a loss reduction; returns (loss, d loss / d values scale).

    Finite inputs whose loss overflows the dtype raise instead of returning inf."""
    # float16 accumulates in float32 and rounds the result once, as torch's reductions and
    # mixed-precision training do: a float16 running sum overflows at 65504 long before a mean does
    accumulate = np.float32 if values.dtype == np.float16 else values.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        if reduction == "mean":
            loss = values.mean(dtype=accumulate).astype(values.dtype)
        else:
            loss = values.sum(dtype=accumulate).astype(values.dtype)
        scale = values.dtype.type(1.0 / values.size) if reduction == "mean" else values.dtype.type(1.0)
    if not np.isfinite(loss):
        raise ValueError(f"the loss overflows {values.dtype} (inputs too large for this dtype; "
                         "use float64 or rescale them)")
    return loss, scale
