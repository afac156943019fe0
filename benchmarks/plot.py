"""Median time against size, one line per backend, one panel per case and phase.

    python -m benchmarks.plot [RESULTS.json] [-o benchmarks.png]

RESULTS.json is pytest-benchmark's output (``--benchmark-json`` or a run saved
with ``--benchmark-autosave``); without it, the newest saved run under
.benchmarks/ is plotted. float32 is drawn solid, float64 dashed, bfloat16 dotted.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from agreement.cases.common import sizes
from benchmarks.sizes import BENCH_ONLY_SIZES
from benchmarks.summary import BACKENDS

STYLE = {"float32": "-", "float64": "--", "bfloat16": ":"}


def newest_saved_run(root: Path = Path(".benchmarks")) -> Path:
    runs = sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no saved runs under {root}/: run `pytest --benchmark-only --benchmark-autosave` first")
    return runs[-1]


def series(results: dict) -> dict:
    """(case, phase) -> (backend, dtype) -> {size: median seconds}."""
    out = defaultdict(lambda: defaultdict(dict))
    for bench in results["benchmarks"]:
        info = bench.get("extra_info", {})
        if "case" in info and info.get("phase") != "h2d":
            line = out[(info["case"], info["phase"])][(info["backend"], info["dtype"])]
            line[info["size"]] = bench["stats"]["median"]
    return out


def plot(results: dict, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = series(results)
    if not panels:
        raise SystemExit("the results hold no timed benchmarks (was the run made with --benchmark-only?)")
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = dict(zip(BACKENDS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    order = (*sizes(), *BENCH_ONLY_SIZES)  # the GPU tier after the registry's sizes
    for ax, ((case, phase), lines) in zip(axes.flat, sorted(panels.items()), strict=False):
        present = [s for s in order if any(s in by_size for by_size in lines.values())]  # the panel's own sizes
        for (backend, dtype), by_size in sorted(lines.items()):
            drawn = [s for s in present if s in by_size]
            ax.plot([present.index(s) for s in drawn], [by_size[s] for s in drawn], STYLE.get(dtype, ":"),
                    marker="o", color=colors.get(backend), label=f"{backend} {dtype}")
        ax.set(title=f"{case} ({phase})", yscale="log", ylabel="median time (s)")
        ax.set_xticks(range(len(present)), present)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(output, dpi=90)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, help="pytest-benchmark JSON (default: newest saved run)")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks.png"))
    args = parser.parse_args(argv)
    path = args.results or newest_saved_run()
    print(f"{path} -> {plot(json.loads(path.read_text()), args.output)}")


if __name__ == "__main__":
    main()
