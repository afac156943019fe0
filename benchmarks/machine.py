"""What each backend ran on: the CPU model, each library's BLAS, the GPU.

A fraction of a peak or of a floor belongs to a CPU and a BLAS: the same step
is at 39% of the matmul peak on one Xeon and 65% on an EPYC. Results and docs
name both sides: NumPy's BLAS as threadpoolctl finds it loaded in this process
(agreement/environment.py), torch's as the build reports it
(``torch.__config__.show()``: torch links its BLAS statically, so threadpoolctl
does not see it) with ATen's CPU capability, and CUDA's device.
"""

from __future__ import annotations

import platform
import re
from functools import cache

import numpy as np
import torch

from agreement.environment import blas_libraries, cpu_fields


@cache
def cpu_model() -> str:
    """Model name, family/model numbers and vector extensions of the first CPU (Linux),
    else what the platform module says. VMs often report a bare name ("AMD EPYC"):
    the family and model numbers still tell the generation."""
    fields = cpu_fields()
    if not fields:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "SSE"
    name = fields.get("model name", platform.processor() or platform.machine())
    numbers = f"family {fields['cpu family']}, model {fields['model']}" if "cpu family" in fields else ""
    return f"{name} ({', '.join(x for x in (numbers, vector) if x)})"


def numpy_blas() -> str:
    libs = blas_libraries()
    if not libs:
        return "no BLAS found by threadpoolctl"
    return "; ".join(f"{lib['internal_api']} {lib['version']} ({lib['architecture']} kernel, "
                     f"{lib['threading_layer']}, {lib['num_threads']} thread(s))" for lib in libs)


@cache
def _torch_config() -> str:
    return torch.__config__.show()


def torch_blas() -> str:
    config = _torch_config()
    info = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", config)
    name = f"MKL {mkl.group(1)}" if mkl else (info.group(1) if info else "unknown BLAS")
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name} (ATen CPU capability {capability}, {torch.get_num_threads()} thread(s))"


def cuda_device() -> str | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return (f"{props.name} (compute capability {props.major}.{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}, cuBLAS)")


def backend_blas(backend: str) -> str | None:
    """The BLAS that ran a backend's products."""
    if backend.startswith("numpy"):
        return numpy_blas()
    if backend == "torch-cpu":
        return torch_blas()
    return cuda_device()


def description() -> dict:
    """For the results' machine_info and the summary's header."""
    return {"cpu_model": cpu_model(), "numpy": np.__version__, "numpy_blas": numpy_blas(),
            "torch": torch.__version__, "torch_blas": torch_blas(), "cuda_device": cuda_device()}
