"""Clocks for pytest-benchmark's ``timer`` option.

CUDA kernels run asynchronously: reading a host clock while the device still
works measures only the launch. The synchronizing clock waits for the device
before every read, so a timed round spans the device work it started.
"""

from __future__ import annotations

import time

import torch


def cuda_synchronized_clock() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def clock_for(device: str):
    return cuda_synchronized_clock if device == "cuda" else time.perf_counter
