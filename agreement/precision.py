"""Comparison precisions: float64, float32, float16, and two NumPy has no dtype for.

* ``float16`` is NumPy's own ``np.float16``: NumPy computes in it, so a NumPy
  float16 run is a second low-precision side beside torch's.
* ``BFLOAT16`` (8 significant bits, float32's exponent range) has no NumPy dtype.
  Its values live in float32 arrays, rounded to bfloat16 (``round_to``), which
  float32 holds exactly; only torch computes in it. A NumPy bfloat16 side would
  need ``ml_dtypes``, whose arrays NumPy computes on by converting each operation
  to float32 and back: that is a second emulation of what torch's CPU kernels
  already do (compute in float32, store bfloat16), not a second implementation
  worth a dependency.
* ``TF32`` is float32 storage with torch's CUDA matrix products rounding their
  inputs to 10 fraction bits (and accumulating in float32): a torch mode, CUDA
  only. NumPy's float32 run is the float32 row's.

A ``Precision`` has a ``dtype`` attribute (its storage), so NumPy and Hypothesis
accept it wherever they take a dtype and produce arrays of the storage dtype;
``finfo``, ``unit_roundoff`` and ``name`` here know the precision itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Finfo:
    """What the harness uses of np.finfo, for precisions NumPy lacks."""

    eps: float
    smallest_normal: float
    max: float

    @property
    def tiny(self) -> float:
        return self.smallest_normal


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: np.dtype  # the NumPy dtype that holds its values exactly
    fraction_bits: int
    devices: tuple = ("cpu", "cuda")

    @property
    def finfo(self) -> Finfo:
        storage = np.finfo(self.dtype)
        eps = 2.0**-self.fraction_bits
        return Finfo(eps, float(storage.smallest_normal), 2.0 ** (storage.maxexp) * (1 - eps / 2))

    def __str__(self) -> str:
        return self.name


BFLOAT16 = Precision("bfloat16", np.dtype(np.float32), 7)
TF32 = Precision("tf32", np.dtype(np.float32), 10, devices=("cuda",))
FLOAT16 = np.dtype(np.float16)
# Rows of `python -m agreement`, the gate and the report, in order.
LOW_PRECISIONS = (BFLOAT16, FLOAT16, TF32)
_BY_NAME = {"bfloat16": BFLOAT16, "tf32": TF32}


def resolve(dtype):
    """An np.dtype or a Precision, from either, a name ("bfloat16", "float16", "tf32"),
    a NumPy scalar type or a torch dtype (torch.bfloat16)."""
    if isinstance(dtype, Precision):
        return dtype
    text = str(dtype)
    text = text.removeprefix("torch.")
    if text in _BY_NAME:
        return _BY_NAME[text]
    try:
        return np.dtype(text if str(dtype).startswith("torch.") else dtype)
    except TypeError:
        raise TypeError(f"dtype: {dtype!r} is not a floating dtype the harness knows (float64, float32, "
                        "float16, bfloat16, tf32)") from None


def name(dtype) -> str:
    dtype = resolve(dtype)
    return dtype.name


def storage(dtype) -> np.dtype:
    """The NumPy dtype arrays of this precision are held in."""
    dtype = resolve(dtype)
    return dtype.dtype if isinstance(dtype, Precision) else dtype


def finfo(dtype):
    dtype = resolve(dtype)
    return dtype.finfo if isinstance(dtype, Precision) else np.finfo(dtype)


def unit_roundoff(dtype) -> float:
    """Half the machine epsilon: 2^-53 float64, 2^-24 float32, 2^-11 float16 and TF32, 2^-8 bfloat16."""
    return float(finfo(dtype).eps) / 2


def is_low(dtype) -> bool:
    """Below float32: measured in itself, judged by each side's own rounding (agreement/rounding.py)."""
    return unit_roundoff(dtype) > unit_roundoff(np.float32)


def emulated(dtype) -> bool:
    """Whether the precision's values live in another NumPy dtype (bfloat16, TF32). Test it
    this way, never with ``==``: NumPy reads a Precision's ``dtype`` attribute, so
    ``np.dtype(np.float32) == BFLOAT16`` is True."""
    return isinstance(resolve(dtype), Precision)


def numpy_computes_in(dtype) -> bool:
    """Whether a NumPy run in this precision exists (a second side beside torch)."""
    return not isinstance(resolve(dtype), Precision)


def runs_on(dtype, device: str) -> bool:
    """Whether torch computes in the precision on ``device`` (TF32: CUDA only). ``device``:
    a name as torch takes it ("cuda", "cuda:0", or a torch.device, whose str is that)."""
    dtype = resolve(dtype)
    return not isinstance(dtype, Precision) or str(device).split(":")[0] in dtype.devices


def device_error(dtype, device: str) -> ValueError:
    """The error for a precision asked for on a device it does not run on."""
    dtype = resolve(dtype)
    return ValueError(f"device: {dtype.name} runs on {' and '.join(dtype.devices)} only, not {device!r}")


def round_to(dtype, values):
    """``values`` rounded to the precision (to nearest, ties to even) in its storage dtype."""
    dtype = resolve(dtype)
    if not isinstance(dtype, Precision) or dtype is TF32:
        return np.asarray(values).astype(storage(dtype))
    values32 = np.ascontiguousarray(np.asarray(values, np.float32))
    bits = values32.view(np.uint32)
    drop = 23 - dtype.fraction_bits
    half = np.uint32((1 << (drop - 1)) - 1)
    rounded = (bits + half + ((bits >> np.uint32(drop)) & np.uint32(1))) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    finite = np.isfinite(values32)
    out = np.where(finite, rounded, bits).view(np.float32)
    return out.reshape(np.shape(values))
