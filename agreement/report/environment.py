"""What the report ran on: versions, device, threads, seeds, settings."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import torch

from agreement.environment import blas_libraries, cpu_fields
from agreement.run import tf32_state


def _cpu_model() -> str:
    return cpu_fields().get("model name") or platform.processor() or platform.machine()


def _blas() -> str:
    pools = [f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)" for p in blas_libraries()]
    return ", ".join(pools) or "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: str) -> str:
    if device == "cuda":
        flags = tf32_state()
        return (f"cuda: {torch.cuda.get_device_name()} (TF32 matmul "
                f"{flags['matmul_tf32']}, cuDNN TF32 {flags['cudnn_tf32']})")
    return f"cpu: {_cpu_model()}"


def describe(config, optimizer_defaults: dict, command: str | None = None) -> list[tuple[str, str]]:
    """(label, value) rows for the report's header. Call inside the report's thread limits."""
    return [
        ("generated", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("commit", _commit()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
        ("numpy", f"{np.__version__}; BLAS {_blas()}"),
        ("torch", f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)"),
        ("matplotlib", matplotlib.__version__),
        ("device", device_description(config.device)),
        ("seeds", f"case builders and plot data: seed={config.seed}; trajectory rounding signs: "
                  f"agreement.trajectory's own fixed seed"),
        ("settings", f"size={config.size}, steps={config.steps}, fit_steps={config.fit_steps}, "
                     f"slice_points={config.slice_points}, scenarios: "
                     + ("short (the test suite's lengths)" if config.short_scenarios else "full length")),
        ("optimizer", "torch.optim.SGD / reference.optim.sgd_update, defaults "
                      + ", ".join(f"{k}={v}" for k, v in optimizer_defaults.items())),
        ("command", command or "(built in-process)"),
    ]
