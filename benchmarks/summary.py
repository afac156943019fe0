"""The closing table: per case, phase, size and dtype, every backend's median,
the speed ratios against NumPy, and each result's distance from its limit."""

from __future__ import annotations

from collections import defaultdict

from agreement.cases.common import sizes

BACKENDS = ("numpy", "numpy-readable", "torch-cpu", "torch-cuda")
RESULTS: list[dict] = []

# Targets the issue sets for the NumPy step of the dense two-layer nets (fraction of the
# CPU's matmul peak) and for torch on CUDA at the large size (of the float32 peak).
NUMPY_PEAK_TARGETS = {"tutorial": 0.60, "large": 0.85}
TARGET_CASES = ("two_layer_regression", "two_layer_classifier")
CUDA_LARGE_TARGET = 0.50


def record(info: dict) -> None:
    RESULTS.append(info)


def _time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _limit(info):
    """Fraction of the matmul peak where the call does matrix products, else of the copy bandwidth."""
    if info is None:
        return "-"
    if info["flops"]:
        return f"{info['peak_fraction']:.0%} mm"
    if info.get("bandwidth_fraction") is not None:
        return f"{info['bandwidth_fraction']:.0%} bw"
    return f"{info['gbytes_per_s']:.3g} GB/s"


def grouped(results) -> dict:
    groups = defaultdict(dict)
    for r in results:
        groups[(r["case"], r["phase"], r["size"], r["dtype"])][r["backend"]] = r
    order = {s: i for i, s in enumerate(sizes())}
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 9), kv[0][3])))


def table(results) -> list[str]:
    groups = grouped(results)
    present = [b for b in BACKENDS if any(b in row for row in groups.values())]
    head = ["case", "phase", "size", "dtype", *present, *(f"{b}/numpy" for b in present if b != "numpy"),
            *(f"{b} limit" for b in present)]
    rows = []
    for (case, phase, size, dtype), row in groups.items():
        base = row.get("numpy", {}).get("median_s")
        times = [_time(row[b]["median_s"]) if b in row else "-" for b in present]
        ratios = [f"{row[b]['median_s'] / base:.2f}x" if b in row and base else "-" for b in present if b != "numpy"]
        rows.append([case, phase, size, dtype, *times, *ratios, *(_limit(row.get(b)) for b in present)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def targets(results) -> list[str]:
    """One line per target: met or missed (judged on the median), with the measured numbers."""
    lines = []
    for (case, phase, size, dtype), row in grouped(results).items():
        numpy, cpu, cuda = row.get("numpy"), row.get("torch-cpu"), row.get("torch-cuda")
        if phase != "step":
            continue
        if numpy and cpu:
            ok = numpy["median_s"] < cpu["median_s"]
            lines.append(f"{'met ' if ok else 'MISS'} numpy step faster than torch-cpu: {case} {size} {dtype} "
                         f"({_time(numpy['median_s'])} vs {_time(cpu['median_s'])})")
        if numpy and case in TARGET_CASES and size in NUMPY_PEAK_TARGETS:
            goal = NUMPY_PEAK_TARGETS[size]
            ok = numpy["peak_fraction"] >= goal
            lines.append(f"{'met ' if ok else 'MISS'} numpy step >= {goal:.0%} of matmul peak: {case} {size} {dtype} "
                         f"({numpy['peak_fraction']:.0%} of {numpy['peak_gflops']:.4g} GFLOP/s; "
                         f"fastest round {numpy.get('peak_fraction_best_round') or 0:.0%})")
        if cuda and size == "large" and dtype == "float32":
            ok = cuda["peak_fraction"] >= CUDA_LARGE_TARGET
            lines.append(f"{'met ' if ok else 'MISS'} torch-cuda step >= {CUDA_LARGE_TARGET:.0%} of float32 peak: "
                         f"{case} ({cuda['peak_fraction']:.0%} of {cuda['peak_gflops']:.4g} GFLOP/s; "
                         f"fastest round {cuda.get('peak_fraction_best_round') or 0:.0%})")
    return lines
