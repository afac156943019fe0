"""The last saved pytest-benchmark run.

``pytest --benchmark-autosave`` (or ``--benchmark-save=NAME``) writes
``.benchmarks/<machine id>/NNNN_<name>.json``, NNNN counting up per machine
folder. Each benchmark's ``extra_info`` carries, by this project's contract,
case, backend ("numpy", "torch-cpu", "torch-cuda"), size, dtype, phase
("step", "fwd_bwd", "h2d"), flops, gflops, peak_gflops and peak_fraction.
Entries without case and backend are not this project's and are skipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from agreement.cases.common import sizes

DEFAULT_ROOT = Path(".benchmarks")
_SAVED = re.compile(r"^\d{4}_.*\.json$")


@dataclass(frozen=True)
class BenchRow:
    name: str
    case: str
    backend: str
    size: str
    dtype: str
    phase: str
    median_s: float
    flops: float
    gflops: float
    peak_gflops: float
    peak_fraction: float


@dataclass
class BenchmarkRun:
    path: Path
    datetime: str
    machine: str
    commit: str
    rows: list  # of BenchRow
    skipped: int  # entries without the contract's keys

    def for_case(self, case: str) -> list:
        """The case's timed rows (an untimed run, ``--benchmark-disable``, has no medians)."""
        return [r for r in self.rows if r.case == case and math.isfinite(r.median_s)]


def saved_runs(root: Path) -> list[Path]:
    """Saved runs directly in ``root`` or in its machine folders."""
    root = Path(root)
    candidates = list(root.glob("*.json")) + list(root.glob("*/*.json"))
    return [p for p in candidates if _SAVED.match(p.name)]


def latest(path: Path | None) -> Path | None:
    """``path`` itself when it is a file; else the most recently written saved run
    under it (ties: the higher run number). None when there is none."""
    path = DEFAULT_ROOT if path is None else Path(path)
    if path.is_file():
        return path
    runs = saved_runs(path) if path.is_dir() else []
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name)) if runs else None


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def load(path: Path) -> BenchmarkRun:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        benchmarks = data["benchmarks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a pytest-benchmark JSON file: {exc}") from exc
    rows, skipped = [], 0
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        if not {"case", "backend"} <= info.keys():
            skipped += 1
            continue
        rows.append(BenchRow(
            name=bench.get("name", ""), case=info["case"], backend=info["backend"],
            size=str(info.get("size", "?")), dtype=str(info.get("dtype", "?")), phase=str(info.get("phase", "?")),
            median_s=_number(bench.get("stats", {}).get("median")), flops=_number(info.get("flops")),
            gflops=_number(info.get("gflops")), peak_gflops=_number(info.get("peak_gflops")),
            peak_fraction=_number(info.get("peak_fraction")),
        ))
    machine = data.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw", "")
    commit = data.get("commit_info") or {}
    return BenchmarkRun(
        path=Path(path), datetime=str(data.get("datetime", "unknown")),
        machine=" ".join(str(x) for x in (machine.get("node"), machine.get("machine"), cpu) if x) or "unknown",
        commit=f"{commit.get('id', 'unknown')}{' (dirty)' if commit.get('dirty') else ''}",
        rows=rows, skipped=skipped,
    )


def size_order(rows) -> list[str]:
    """The registry's sizes in their order, then any others alphabetically."""
    present, known = {r.size for r in rows}, sizes()
    return [s for s in known if s in present] + sorted(present - set(known))
