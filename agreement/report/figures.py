"""Matplotlib figures, returned as base64 PNG data URIs for embedding.

Figures are made with ``matplotlib.figure.Figure`` on the Agg canvas, never
pyplot: no global state, no GUI backend, no window.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

NUMPY_COLOR, TORCH_COLOR = "#1f77b4", "#d62728"
# Line style per dtype, the same in every figure; the low precisions' are the ones left after
# float32 solid and float64 dashed (TF32, CUDA only, a dash-dot-dot of its own).
DTYPE_STYLE = {"float32": "-", "float64": "--", "bfloat16": "-.", "float16": ":", "tf32": (0, (5, 1, 1, 1, 1, 1))}
# A colour per dtype where one panel overlays several dtypes' curves (the training divergence).
DTYPE_COLORS = {"float32": "#9467bd", "float64": "#8c564b", "bfloat16": "#e377c2", "float16": "#bcbd22",
                "tf32": "#17becf"}
TORCH_MARKERS = {"float32": "o", "float64": "x", "bfloat16": "^", "float16": "s", "tf32": "d"}
BACKEND_COLORS = {"numpy": NUMPY_COLOR, "numpy-readable": "#17becf", "torch-cpu": "#ff7f0e", "torch-cuda": "#2ca02c"}
CLASS_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]


def data_uri(fig: Figure, dpi: int) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width, height, *, left=0.7, right=0.15, bottom=0.5, top=0.35, wspace=0.3, hspace=0.3) -> Figure:
    """A figure with fixed margins in inches. Automatic layout (constrained or
    tight) measures every label first and costs a third of the drawing time."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace, hspace=hspace)
    return fig


def _plain_log(ax):
    """Log-axis labels as plain text (1e-05): matplotlib's default typesets each as
    mathtext, which takes most of a small figure's drawing time."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks cost drawing time and say little here


def _positive(values):
    """Log axes cannot show 0 (exact agreement) or an overflow: both are left as gaps."""
    values = np.asarray(values, np.float64)
    return np.where((values > 0) & np.isfinite(values), values, np.nan)


# ---------------------------------------------------------------- training
def training_figure(result, dpi: int) -> str:
    """Loss per step of NumPy and torch in every dtype run (top), and each dtype's
    |torch - float64 reference| against the judge's tolerance (bottom, log scale);
    below float32, a dotted vertical line where the judge reached the measured horizon."""
    fig = _figure(9, 6.2, left=1.0, right=2.4, hspace=0.25)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    for name, run in result.runs.items():
        steps = np.arange(run.steps)
        style, color = DTYPE_STYLE.get(name, ":"), DTYPE_COLORS.get(name, "0.3")
        if run.numpy_losses is not None:
            top.plot(steps, run.numpy_losses, ls=style, color=NUMPY_COLOR, lw=2.5, alpha=0.5, label=f"NumPy {name}")
        top.plot(steps, run.torch_losses, TORCH_MARKERS.get(name, "o"), color=TORCH_COLOR, ms=4, mfc="none",
                 label=f"torch {name}")
        bottom.plot(steps, _positive(run.torch_divergence), "-o", color=color, ms=3,
                    label=f"|torch - reference| {name}")
        if not np.all(np.isnan(run.loss_allowed)):  # a probe loss (Case.compare_loss False) has none
            bottom.plot(run.checked_steps, run.loss_allowed, "--s", color=color, ms=4, mfc="none",
                        label=f"tolerance {name}")
        if name != "float64" and run.numpy_divergence is not None:
            bottom.plot(steps, _positive(run.numpy_divergence), ":", color=color, label=f"|NumPy {name} - reference|")
        if run.horizon is not None:
            for ax in (top, bottom):
                ax.axvline(run.horizon, color=color, ls=":", lw=1.2,
                           label=f"comparable horizon {name} (step {run.horizon})" if ax is bottom else None)
    for name in result.skipped:  # the legend names what is missing (the title is full with SGD's settings)
        top.plot([], [], " ", label=f"{name}: not comparable\n(see the notes)")
    _plain_log(bottom)
    top.set_ylabel("loss (before each step)")
    top.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    top.set_title(f"SGD {', '.join(f'{k}={v}' for k, v in result.opt_hyper.items())}", fontsize=9)
    bottom.set_ylabel("|loss difference|")
    bottom.set_xlabel("step")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole; a short run got 0.5 ticks
    bottom.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    bottom.set_title("divergence from the float64 NumPy reference (log scale); "
                     "tolerance from agreement.trajectory at every judged step", fontsize=8)
    return data_uri(fig, dpi)


# ---------------------------------------------------------------- training scenarios
FORM_COLORS = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


def scenario_figure(result, dpi: int) -> str:
    """One scenario part (agreement.scenarios.catalog.PartResult): the loss per step of
    NumPy and of every torch form in each dtype (top), and |NumPy - torch| per step
    against the judge's tolerance for it (bottom, log scale), with the comparable horizon."""
    j = result.judgement
    fig = _figure(9.5, 5.6, left=0.85, right=3.1, hspace=0.25)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    numpy_sides = {s.dtype: s for s in j.sides if s.label == "numpy"}
    forms = list(dict.fromkeys(s.label for s in j.sides if s.label != "numpy"))
    steps = np.arange(j.steps)
    for dtype, numpy in numpy_sides.items():
        style = DTYPE_STYLE[dtype]
        top.plot(steps, numpy.losses, style, color=NUMPY_COLOR, lw=2.5, alpha=0.5, label=f"NumPy {dtype}")
        for name, points in numpy.evaluations.items():  # scenario 2's validation loss after each epoch
            top.plot(*zip(*points, strict=True), "D" if dtype == "float32" else "d", color=NUMPY_COLOR, ms=6,
                     alpha=0.5, label=f"NumPy {name} {dtype}")
        # the judge allows each side its bound from the float64 reference, so |NumPy - torch| up to both
        allowed = 2 * np.asarray(j.loss_bounds[dtype], np.float64)
        bottom.plot(steps, allowed, style, color="0.3", lw=1.2, label=f"tolerance {dtype}")
        for side in j.sides:
            if side.label == "numpy" or side.dtype != dtype:
                continue
            color = FORM_COLORS[forms.index(side.label) % len(FORM_COLORS)]
            marker = "o" if dtype == "float32" else "x"
            where = f"{side.label}, {side.device}" if side.device != "cpu" else side.label
            top.plot(steps, side.losses, marker, color=color, ms=3, mfc="none", label=f"torch {dtype}: {where}")
            for name, points in side.evaluations.items():
                top.plot(*zip(*points, strict=True), "s", color=color, ms=4, mfc="none",
                         label=f"torch {name} {dtype}")
            divergence = np.abs(np.asarray(side.losses, np.float64) - np.asarray(numpy.losses, np.float64))
            bottom.plot(steps, _positive(divergence), style, color=color, lw=1,
                        label=f"|NumPy - torch| {dtype}: {where}")
        if j.horizon[dtype] < j.steps:
            for ax in (top, bottom):
                ax.axvline(j.horizon[dtype], color="0.2", ls=":", lw=1.2,
                           label=f"comparable horizon {dtype} (step {j.horizon[dtype]})" if ax is bottom else None)
    if np.all(j.reference_losses > 0):  # training losses fall by orders of magnitude: log scale where it can
        _plain_log(top)
    _plain_log(bottom)
    top.set_ylabel("loss")
    top.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    comparable = ", ".join(f"{d} {'to the end' if h == j.steps else 'up to step ' + str(h)}"
                           for d, h in j.horizon.items())
    top.set_title(f"scenario {result.part.name}: {j.steps} steps; comparable: {comparable}", fontsize=9)
    bottom.set_ylabel("|loss difference|")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    bottom.set_title("|NumPy - torch| per step (log scale) against the long-run judge's tolerance", fontsize=8)
    return data_uri(fig, dpi)


# ---------------------------------------------------------------- data space
def slice_figure(s, dpi: int) -> str:
    fig = _figure(8, 3.2, left=0.6, wspace=0.25)
    left, right = fig.subplots(1, 2)
    for ax, numpy_y, torch_y, label in [(left, s.numpy_value, s.torch_value, s.value_label),
                                        (right, s.numpy_grad, s.torch_grad, f"d {s.value_label} / d {s.coordinate}")]:
        ax.plot(s.grid, numpy_y, color=NUMPY_COLOR, lw=3, alpha=0.5, label="NumPy reference")
        ax.plot(s.grid, torch_y, "--", color=TORCH_COLOR, lw=1.2, label="torch autograd")
        ax.set_xlabel(s.coordinate)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    return data_uri(fig, dpi)


def fit_figure(fit, dpi: int) -> str:
    fig = _figure(8, 3.6, left=0.5, wspace=0.3)
    ax, curve = fig.subplots(1, 2, width_ratios=[3, 2])
    if fit.spec.kind == "regression":
        _regression_panel(ax, fit)
    else:
        _classification_panel(ax, fit)
    steps = np.arange(len(fit.numpy_losses))
    curve.plot(steps, fit.numpy_losses, color=NUMPY_COLOR, lw=3, alpha=0.5, label="NumPy")
    curve.plot(steps, fit.torch_losses, "--", color=TORCH_COLOR, lw=1.2, label="torch")
    if np.nanmax(fit.numpy_losses) > 20 * np.nanmin(fit.numpy_losses):  # a log axis needs a decade or more
        _plain_log(curve)
    curve.set_xlabel("step")
    curve.set_title(f"training loss, float32, lr={fit.hyper['lr']:g}", fontsize=9)
    curve.legend(fontsize=8)
    return data_uri(fig, dpi)


def _regression_panel(ax, fit):
    X, Y = fit.data["X"][:, 0], fit.data["Y"][:, 0]
    grid = np.linspace(X.min() - 0.3, X.max() + 0.3, 200)[:, None]
    ax.scatter(X, Y, s=12, color="0.35", label="data")
    ax.plot(grid[:, 0], fit.spec.forward(grid, {k: np.asarray(v, np.float64) for k, v in fit.initial.items()})[:, 0],
            ":", color="0.5", label="initial")
    ax.plot(grid[:, 0], fit.predict(grid, "numpy")[:, 0], color=NUMPY_COLOR, lw=3, alpha=0.5, label="NumPy fit")
    ax.plot(grid[:, 0], fit.predict(grid, "torch")[:, 0], "--", color=TORCH_COLOR, lw=1.2, label="torch fit")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    ax.set_title("fit on 1-D data", fontsize=9)


def _classes(outputs):
    outputs = np.asarray(outputs)
    return (outputs[:, 0] > 0).astype(int) if outputs.shape[1] == 1 else np.argmax(outputs, axis=1)


def _classification_panel(ax, fit):
    X = fit.data["X"]
    labels = fit.data["Y"][:, 0].astype(int) if "Y" in fit.data else fit.data["labels"]
    lo, hi = X.min(axis=0) - 0.8, X.max(axis=0) + 0.8
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 160), np.linspace(lo[1], hi[1], 160))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    n_classes = int(labels.max()) + 1
    colors = ListedColormap(CLASS_COLORS[:n_classes])
    numpy_classes = _classes(fit.predict(grid, "numpy")).reshape(gx.shape)
    torch_classes = _classes(fit.predict(grid, "torch")).reshape(gx.shape)
    levels = np.arange(n_classes + 1) - 0.5
    ax.contourf(gx, gy, numpy_classes, levels=levels, cmap=colors, alpha=0.18)
    ax.contour(gx, gy, numpy_classes, levels=levels[1:-1], colors=NUMPY_COLOR, linewidths=3, alpha=0.6)
    ax.contour(gx, gy, torch_classes, levels=levels[1:-1], colors=TORCH_COLOR, linewidths=1.2, linestyles="--")
    ax.scatter(X[:, 0], X[:, 1], c=labels, cmap=colors, s=12, edgecolors="k", linewidths=0.3)
    ax.plot([], [], color=NUMPY_COLOR, lw=3, alpha=0.6, label="NumPy boundary")
    ax.plot([], [], "--", color=TORCH_COLOR, lw=1.2, label="torch boundary")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("decision boundary on 2-D data", fontsize=9)


# ---------------------------------------------------------------- gradients
# Room for one column of the shared legend, in inches at fontsize 7: a column is as wide as
# its longest entry, and "median allowed bfloat16" with its handle measured about 1.5 (the
# average entry 1.2); rows measured 0.155 high, and 0.17 leaves a gap above the x labels.
LEGEND_ENTRY_WIDTH = 1.5
LEGEND_ROW_HEIGHT = 0.17
X_LABEL_ROOM = 0.55  # inches under the panels for their tick labels and x label, above the legend
# The suptitle's height: a line of fontsize 8 and the gap above the panel titles (the
# earlier 2-line title had 0.7 inches).
TITLE_LINE_HEIGHT, TITLE_ROOM = 0.14, 0.42


def gradient_figure(result, dpi: int) -> str:
    params = result.parameters
    cols = min(len(params), 4)
    rows = -(-len(params) // cols)
    width = max(2.3 * cols, 5.5)
    labels = _gradient_legend_labels(params)
    legend_cols = max(1, min(len(labels), int(width // LEGEND_ENTRY_WIDTH)))
    legend_rows = -(-len(labels) // legend_cols)
    bottom = X_LABEL_ROOM + LEGEND_ROW_HEIGHT * legend_rows
    skipped = f"\nleft out (the example is beyond it): {', '.join(result.skipped)}" if result.skipped else ""
    title = ("relative error against the float64 NumPy reference\n"
             "vertical lines: the policy's rtol (float32, float64); below float32 the median\n"
             "allowed relative error of torch's elements (twice its own rounding)" + skipped)
    top = TITLE_ROOM + TITLE_LINE_HEIGHT * (title.count("\n") + 1)
    fig = _figure(width, 2.3 * rows + top + bottom, left=0.55, top=top, bottom=bottom, wspace=0.4, hspace=0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, param in zip(axes, params, strict=False):
        _histogram_panel(ax, param)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    labelled = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    if labelled:
        ordered = [label for label in labels if label in labelled]
        fig.legend([labelled[k] for k in ordered], ordered, fontsize=7, loc="lower center", ncol=legend_cols)
    fig.suptitle(title, fontsize=8)
    return data_uri(fig, dpi)


GRADIENT_COLORS = {"torch float32": TORCH_COLOR, "NumPy float32": NUMPY_COLOR, "torch float64": "#2ca02c",
                   "torch bfloat16": "#9467bd", "torch float16": "#ff7f0e", "NumPy float16": "#17becf",
                   "torch tf32": "#8c564b"}


def _marker_label(dtype: str, median: bool) -> str:
    return f"median allowed {dtype}" if median else f"rtol {dtype}"


def _gradient_legend_labels(params) -> list:
    """The histograms' labels, then the vertical lines', in the order the samples were made."""
    samples = list(dict.fromkeys(s.label for p in params for s in p.samples))
    lines = list(dict.fromkeys([*(_marker_label(d, False) for p in params for d in p.rtol),
                                *(_marker_label(d, True) for p in params for d in p.median_allowed)]))
    return samples + lines


def _histogram_panel(ax, param):
    finite = [s.finite for s in param.samples if s.finite.size]
    ax.set_title(f"{param.name} ({param.size} elements)", fontsize=9)
    ax.set_xlabel("log10 relative error", fontsize=8)
    ax.tick_params(labelsize=7)
    markers = [(d, v, False) for d, v in param.rtol.items()] + [(d, v, True) for d, v in param.median_allowed.items()]
    for dtype, value, median in markers:
        ax.axvline(np.log10(value), color=GRADIENT_COLORS.get(f"torch {dtype}", "0.3"),
                   ls=DTYPE_STYLE.get(dtype, ":"), lw=1, label=_marker_label(dtype, median))
    if finite:
        low = max(np.log10(min(f.min() for f in finite)), -18)
        bins = np.linspace(low - 0.1, np.log10(max(f.max() for f in finite)) + 0.1, 30)
        for s in param.samples:
            if s.finite.size:
                ax.hist(np.log10(s.finite), bins=bins, histtype="step", lw=1.5, color=GRADIENT_COLORS.get(s.label),
                        label=s.label)
    exact = [f"{s.label}: {s.identical}" for s in param.samples if s.identical]
    if not finite:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "every element exactly equal\nto the reference", transform=ax.transAxes, ha="center",
                va="center", fontsize=9)
    elif exact:
        ax.text(0.02, 0.98, "exactly equal\n" + "\n".join(exact), transform=ax.transAxes, fontsize=6, va="top")
    unbounded = [f"{s.label}: {s.unbounded}" for s in param.samples if s.unbounded]
    if unbounded:
        ax.text(0.98, 0.98, "nonzero where the reference is 0\n" + "\n".join(unbounded), transform=ax.transAxes,
                fontsize=6, va="top", ha="right")


# ---------------------------------------------------------------- benchmarks
def benchmark_figure(rows, dpi: int) -> str:
    """Median time and fraction of the matrix-product peak against size, per backend and dtype."""
    from agreement.report.bench import size_order

    phases = sorted({r.phase for r in rows})
    fig = _figure(3.2 * len(phases) + 1, 5, left=0.85, bottom=0.4, wspace=0.35, hspace=0.12)
    axes = fig.subplots(2, len(phases), squeeze=False, sharex=True)
    sizes = size_order(rows)
    for col, phase in enumerate(phases):
        time_ax, peak_ax = axes[0, col], axes[1, col]
        lines = sorted({(r.backend, r.dtype) for r in rows if r.phase == phase})
        for backend, dtype in lines:
            picked = sorted((sizes.index(r.size), r) for r in rows
                            if (r.phase, r.backend, r.dtype) == (phase, backend, dtype))
            x = [i for i, _ in picked]
            style = dict(color=BACKEND_COLORS.get(backend, "0.3"), ls=DTYPE_STYLE.get(dtype, ":"), marker="o", ms=4)
            time_ax.plot(x, [r.median_s for _, r in picked], label=f"{backend} {dtype}", **style)
            peak_ax.plot(x, [r.peak_fraction for _, r in picked], **style)
        _plain_log(time_ax)
        if not any(np.isfinite(r.peak_fraction) for r in rows if r.phase == phase):
            peak_ax.text(0.5, 0.5, "no FLOP count\n(a copy, not arithmetic)", transform=peak_ax.transAxes,
                         ha="center", va="center", fontsize=8)
        time_ax.set_title(f"phase: {phase}", fontsize=9)
        peak_ax.set_xticks(range(len(sizes)), sizes, fontsize=8)
        peak_ax.axhline(1.0, color="0.6", lw=0.8, ls=":")  # the measured matmul peak itself
        peak_ax.set_ylim(bottom=0)
        time_ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("median time (s)")
    axes[1, 0].set_ylabel("fraction of matmul peak")
    return data_uri(fig, dpi)
