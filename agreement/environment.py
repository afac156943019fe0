"""What the code runs on, asked in one place: the report's header, the gate's
baseline provenance and the benchmarks' machine info all read it from here.
NumPy, torch and threadpoolctl only, so the gate needs nothing the report does."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from threadpoolctl import threadpool_info

BLAS_KEYS = ("internal_api", "version", "architecture", "threading_layer", "num_threads")


def blas_libraries() -> list[dict]:
    """The BLAS libraries loaded in this process (threadpoolctl), each as its
    implementation, version, CPU architecture, threading layer and thread count."""
    return [{k: lib.get(k) for k in BLAS_KEYS} for lib in threadpool_info() if lib.get("user_api") == "blas"]


@cache
def cpu_fields() -> dict:
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family",
    "flags", ...); empty where there is no such file (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # first processor only
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields
