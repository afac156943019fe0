"""The HTML agreement report: it builds on a small configuration, is valid,
self-contained, names what it ran on, reads the latest benchmark run, reports
what compare_trajectories decides, and renders in a headless browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from agreement import precision, registry
from agreement.optimizers import OPTIMIZERS
from agreement.registry import cases
from agreement.report import ReportConfig, bench, browser, build_report, figures, gradients, training, views
from agreement.report.__main__ import main, parser
from agreement.report.build import SKIPPED_CELL, _training_part, benchmark_summary
from agreement.report.gradients import relative_errors
from agreement.report.page import CaseSection, render
from agreement.run import Unresolvable
from agreement.scenarios.catalog import SCENARIOS, run_part
from agreement.trajectory import compare_trajectories

# One activation (function plot) and one classification model (decision boundary); the
# regression fit's figure is checked on its own below, to keep the report small.
REPORT_CASES = ("tanh", "two_layer_classifier")
BENCHMARKED_CASE = "two_layer_classifier"
# One training scenario (the quickest) on the built page; every scenario is built on its own below.
REPORT_SCENARIO = "6-fifteen-points"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CASES = {c.name: c for c in cases()}


# ---------------------------------------------------------------- synthetic pytest-benchmark runs
def _benchmark_entry(case, backend, size, dtype, phase, median, flops, peak):
    gflops = flops / median / 1e9
    stats = dict(min=median * 0.9, max=median * 1.2, mean=median, stddev=median * 0.05, rounds=5, median=median,
                 iqr=median * 0.1, q1=median * 0.95, q3=median * 1.05, iqr_outliers=0, stddev_outliers=0,
                 outliers="0;0", ld15iqr=median * 0.9, hd15iqr=median * 1.2, ops=1 / median, total=5 * median,
                 iterations=1)
    return {"group": phase, "name": f"test_{phase}[{case}-{backend}-{size}-{dtype}]",
            "fullname": f"benchmarks/test_bench.py::test_{phase}[{case}-{backend}-{size}-{dtype}]",
            "params": {"case": case, "backend": backend, "size": size, "dtype": dtype},
            "param": f"{case}-{backend}-{size}-{dtype}",
            "extra_info": {"case": case, "backend": backend, "size": size, "dtype": dtype, "phase": phase,
                           "flops": flops, "gflops": gflops, "peak_gflops": peak, "peak_fraction": gflops / peak},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                        "min_time": 5e-06, "warmup": False},
            "stats": stats}


def write_benchmark_run(folder: Path, number: int, commit: str, scale: float = 1.0) -> Path:
    """A run in pytest-benchmark's saved format (``NNNN_<name>.json`` in a machine folder)."""
    entries = []
    for backend, speed in (("numpy", 1.0), ("torch-cpu", 1.5)):
        for size, flops in (("tiny", 2e2), ("tutorial", 2e7), ("large", 6e9)):
            for dtype in ("float32", "float64"):
                median = scale * (1e-5 + flops / (speed * 5e10)) * (1 if dtype == "float32" else 2)
                for phase in ("step", "fwd_bwd"):
                    entries.append(_benchmark_entry(BENCHMARKED_CASE, backend, size, dtype, phase,
                                                    median * (1.3 if phase == "step" else 1), flops, 80.0))
    entries.append({"name": "test_unrelated", "extra_info": {}, "stats": {"median": 1.0}})
    run = {"machine_info": {"node": "synthetic-host", "machine": "x86_64", "cpu": {"brand_raw": "Synthetic CPU"}},
           "commit_info": {"id": commit, "dirty": False}, "benchmarks": entries,
           "datetime": f"2026-01-0{number}T00:00:00+00:00", "version": "5.3.1"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:04d}_{commit}_2026010{number}_000000.json"
    path.write_text(json.dumps(run, indent=4))
    return path


def _build(folder: Path) -> tuple[Path, Path]:
    """Two saved benchmark runs (the older one written long before) and a small report reading them."""
    root = folder / "benchmarks"
    older = write_benchmark_run(root / "Linux-CPython-3.11-64bit", 1, "oldcommit", scale=100.0)
    write_benchmark_run(root / "Linux-CPython-3.11-64bit", 2, "newcommit")
    os.utime(older, (1_000_000, 1_000_000))
    out = folder / "report.html"
    code = main(["--small", "--out", str(out), "--cases", ",".join(REPORT_CASES), "--benchmarks", str(root),
                 "--seed", "3", "--no-progress", "--scenarios", REPORT_SCENARIO])
    assert code == 0
    return root, out


@pytest.fixture(scope="session")
def built(request, tmp_path_factory) -> tuple[Path, Path]:
    """Built once per test session, also under pytest-xdist: workers share one copy
    (pytest-xdist's documented recipe for session fixtures, a file lock in the shared temp folder)."""
    if not hasattr(request.config, "workerinput"):  # not an xdist worker
        return _build(tmp_path_factory.mktemp("report"))
    shared = tmp_path_factory.getbasetemp().parent / "agreement-report"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "report.html").exists():
            shared.mkdir(exist_ok=True)
            _build(shared)
    return shared / "benchmarks", shared / "report.html"


@pytest.fixture
def benchmark_root(built) -> Path:
    return built[0]


@pytest.fixture
def report(built) -> tuple[Path, str]:
    return built[1], built[1].read_text(encoding="utf-8")


# ---------------------------------------------------------------- structure
class StrictParser(HTMLParser):
    """Every non-void element closed, in order; attributes collected for inspection."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.attributes, self.tags, self.doctype = [], [], [], [], None
        self.text = []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, k, v or "") for k, v in attrs]
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, k, v or "") for k, v in attrs]

    def handle_endtag(self, tag):
        if tag in VOID:
            self.problems.append(f"end tag for void element <{tag}> at {self.getpos()}")
        elif not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(html)
    parser.close()
    return parser


def test_strict_parser_catches_unbalanced_markup():
    assert parse("<!DOCTYPE html><html><body><p>ok</p></body></html>").problems == []
    assert parse("<html><body><div><p>x</div></body></html>").problems
    assert parse("<html><body><section>x</body></html>").problems


def test_report_is_well_formed_html(report):
    _, html = report
    parsed = parse(html)
    assert parsed.doctype and parsed.doctype.lower() == "doctype html"
    assert parsed.problems == []
    assert parsed.stack == [], f"unclosed elements: {parsed.stack}"
    for tag in ("html", "head", "body", "title", "main"):
        assert parsed.tags.count(tag) == 1, tag
    ids = [v for _, k, v in parsed.attributes if k == "id"]
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_report_references_nothing_outside_itself(report):
    _, html = report
    parsed = parse(html)
    ids = {v for _, k, v in parsed.attributes if k == "id"}
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    for tag, name, value in parsed.attributes:
        if name in ("src", "href", "srcset", "action", "poster", "data"):
            lowered = value.strip().lower()
            assert not lowered.startswith(("http:", "https:", "//", "file:", "ftp:")), (tag, name, value[:80])
            if name == "src":
                assert lowered.startswith("data:image/png;base64,"), (tag, value[:80])
            if name == "href":
                assert value.startswith("#") and value[1:] in ids, f"link {value!r} has no target on the page"
    style = "".join(re.findall(r"<style>(.*?)</style>", html, re.S))
    assert "url(" not in style and "@import" not in style
    assert "Content-Security-Policy" in html


def test_embedded_figures_are_png_images(report):
    _, html = report
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # per case: training, gradients, data view; one benchmark figure; one per part of the scenario
    assert len(uris) == 3 * len(REPORT_CASES) + 1 + len(SCENARIOS[REPORT_SCENARIO].build(True))
    for uri in uris:
        image = Image.open(io.BytesIO(base64.b64decode(uri, validate=True)))
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, "a blank figure"


def test_report_names_versions_device_and_seeds(report):
    _, html = report
    text = " ".join(parse(html).text)
    for version in (np.__version__, torch.__version__):
        assert version in text
    assert re.search(r"CPython \d+\.\d+\.\d+", text)
    assert "cpu:" in text and "seed=3" in text
    assert "--seed 3" in text  # the command that reproduces it


def test_report_has_a_section_per_case_without_errors(report):
    _, html = report
    assert 'class="error"' not in html
    for name in REPORT_CASES:
        section = re.search(rf'<section id="case-{name}".*?</section>', html, re.S)
        assert section, name
        body = section.group(0)
        assert "Training curves" in body and "Gradient error per parameter" in body
        expected_view = {"tanh": "function and its derivative", "two_layer_classifier": "decision boundary"}[name]
        assert expected_view in body
    assert re.search(r"<td class=\"ok\">[0-9.e+-]+ \(step \d+ ", html), "summary cells carry the verdict ratio"


# The smallest settings the report accepts.
SMALLEST = dict(steps=1, fit_steps=1, slice_points=3, dpi=8, progress=False)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_every_registered_case_builds_its_section(case, tmp_path, monkeypatch):
    """What ``python -m agreement.report --small`` builds, for each case of the
    registry (a new case is covered without editing this test): its training,
    gradient and view parts all ran, so its section has no error and all three figures.

    Rasterizing the figures is four fifths of the time (7 s of CPU for all cases);
    it is case-independent matplotlib work, drawn for real by the report built above,
    so here each figure is only checked to have plotted something."""
    drawn = []

    def unrasterized(fig, dpi):
        drawn.append(sum(len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.images) for ax in fig.axes))
        return "data:,"

    monkeypatch.setattr(figures, "data_uri", unrasterized)
    _, sections = build_report(ReportConfig.small(cases=(case.name,), scenarios=(), benchmarks=tmp_path,
                                                  **SMALLEST))
    (section,) = sections
    assert section.name == case.name
    assert not section.errors, "\n".join(section.errors)
    assert len(section.figures) == 3 == len(drawn) and all(drawn), [f.title for f in section.figures]
    assert {"trajectory float32", "trajectory float64", "trajectory bfloat16", "trajectory float16",
            "gradients float32", "gradients float64", "gradients bfloat16", "gradients float16"} <= set(
        section.summary), sorted(section.summary)


def test_every_scenario_builds_its_section(tmp_path, monkeypatch):
    """``--small`` builds a section per agreement.scenarios scenario (taken from the catalog:
    a new scenario is covered without editing this test), at the short lengths: each part's
    figure plots both loss curves and |NumPy - torch| against its tolerance, and the summary
    carries each dtype's verdict. Figures are not rasterized here (the page built above draws one)."""
    drawn = []

    def unrasterized(fig, dpi):
        lines = [line.get_label() for ax in fig.axes for line in ax.lines]
        drawn.append(lines)
        return "data:,"

    monkeypatch.setattr(figures, "data_uri", unrasterized)
    config = ReportConfig.small(cases=(), benchmarks=tmp_path, **SMALLEST)
    assert config.scenarios is None and config.short_scenarios  # all of them, short
    _, sections = build_report(config)
    assert [s.name for s in sections] == [f"scenario-{name}" for name in SCENARIOS]
    for section in sections:
        assert not section.errors, "\n".join(section.errors)
        parts = SCENARIOS[section.name.removeprefix("scenario-")].build(True)
        assert len(section.figures) == len(parts), section.name
        for (ratio, ok) in (section.summary["trajectory float32"], section.summary["trajectory float64"]):
            assert ok, (section.name, ratio)
    assert len(drawn) == sum(len(s.figures) for s in sections)
    for labels in drawn:
        for dtype in ("float32", "float64"):
            assert f"NumPy {dtype}" in labels and f"tolerance {dtype}" in labels, labels
            assert any(label.startswith(f"torch {dtype}: ") for label in labels), labels
            assert any(label.startswith(f"|NumPy - torch| {dtype}: ") for label in labels), labels


def test_scenario_figure_marks_the_comparable_horizon(monkeypatch):
    """A part whose float32 run reaches its comparable horizon gets the horizon line."""
    part = SCENARIOS["4-two-layer"].build(True)[0]
    result = run_part(part, [np.float32, np.float64], ["cpu"])
    result.judgement.horizon["float32"] = 5  # as the full-length Adam part reaches it (docs/scenarios.md)
    labels = []
    monkeypatch.setattr(figures, "data_uri", lambda fig, dpi: labels.extend(
        line.get_label() for ax in fig.axes for line in ax.lines) or "data:,")
    figures.scenario_figure(result, 8)
    assert "comparable horizon float32 (step 5)" in labels
    assert not any("horizon float64" in label for label in labels)


def test_report_reads_the_latest_benchmark_run(report, benchmark_root):
    _, html = report
    assert "newcommit" in html and "oldcommit" not in html
    assert "Synthetic CPU" in html
    assert "1 others skipped" in html
    section = re.search(rf'<section id="case-{BENCHMARKED_CASE}".*?</section>', html, re.S).group(0)
    assert "Benchmarks" in section
    tanh = re.search(r'<section id="case-tanh".*?</section>', html, re.S).group(0)
    assert "No benchmarks for this case" in tanh


def test_report_says_when_no_benchmark_run_exists(tmp_path):
    run, header, details = benchmark_summary(ReportConfig.small(benchmarks=tmp_path))
    assert run is None and details == []
    assert header.startswith(f"No saved benchmark run found in {tmp_path}")
    page = render("title", [], [], header, details)
    assert "No saved benchmark run found" in page


def test_progress_bar_when_asked(capsys):
    build_report(ReportConfig.small(cases=("relu",), scenarios=(), progress=True))
    assert re.search(r"report: 100%.*4/4", capsys.readouterr().err)


def test_benchmark_loader_picks_the_latest_run(benchmark_root):
    assert bench.latest(benchmark_root).name.startswith("0002_newcommit")
    assert bench.latest(benchmark_root / "missing") is None


def test_benchmark_loader_keeps_the_contract_rows(benchmark_root):
    run = bench.load(bench.latest(benchmark_root))
    assert run.skipped == 1 and len(run.rows) == 2 * 3 * 2 * 2
    row = next(r for r in run.rows if (r.backend, r.size, r.dtype, r.phase) == ("numpy", "large", "float32", "step"))
    assert row.median_s == pytest.approx(1.3 * (1e-5 + 6e9 / 5e10))
    assert row.peak_fraction == pytest.approx(row.gflops / 80.0)
    assert bench.size_order(run.rows) == ["tiny", "tutorial", "large"]


def test_benchmark_loader_rejects_other_json(tmp_path):
    path = tmp_path / "0001_x.json"
    path.write_text('{"not": "a benchmark run"}')
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON file"):
        bench.load(path)


# ---------------------------------------------------------------- the numbers
def test_divergence_and_verdict_are_compare_trajectories_own():
    """In every dtype, low precisions included: the per-step errors and the verdict are the judge's."""
    case = CASES["linear_regression"]
    steps = 5
    result = training.training(case, "tiny", steps, 0, "cpu")
    opt = OPTIMIZERS["sgd"]
    assert list(result.runs) == ["float32", "float64", "bfloat16", "float16"] and not result.skipped
    for name, run in result.runs.items():
        assert run.checked_steps[-1] == steps - 1
        np.testing.assert_array_equal(run.torch_divergence[run.checked_steps], run.loss_errors)
        last = compare_trajectories(case, opt, case.build("tiny", np.float64, 0), result.opt_hyper, steps,
                                    precision.resolve(name))
        assert run.worst.ratio == max(c.ratio for c in last)


def test_low_precision_trajectories_are_drawn_without_a_numpy_bfloat16(monkeypatch):
    """bfloat16 and float16 beside float32 and float64: torch's loss, its divergence and the
    judge's tolerance in each; NumPy's run in float16, none in bfloat16 (NumPy has no bfloat16)."""
    result = training.training(CASES["logistic_regression_logits"], "tiny", 3, 0, "cpu")
    assert result.runs["bfloat16"].numpy_losses is None and "NumPy has no bfloat16" in result.runs[
        "bfloat16"].numpy_note
    assert np.all(np.isfinite(result.runs["float16"].numpy_losses))
    labels = []
    monkeypatch.setattr(figures, "data_uri", lambda fig, dpi: labels.extend(
        line.get_label() for ax in fig.axes for line in ax.lines) or "data:,")
    figures.training_figure(result, 8)
    for name in ("float32", "float64", "bfloat16", "float16"):
        assert {f"torch {name}", f"|torch - reference| {name}", f"tolerance {name}"} <= set(labels), labels
    assert {"NumPy float16", "|NumPy float16 - reference|"} <= set(labels)
    assert not any("NumPy bfloat16" in label for label in labels)


def test_low_precision_gradient_histograms():
    """Per parameter: torch in bfloat16 and float16 and NumPy in float16 beside float32 and
    float64, each low precision's marker the median allowed relative error (its rtol is 0)."""
    result = gradients.gradient_errors(CASES["two_layer_classifier"], "tiny", 0, "cpu")
    assert not result.skipped
    assert {c.dtype for c in result.comparisons} == {"float32", "float64", "bfloat16", "float16"}
    for param in result.parameters:
        assert [s.label for s in param.samples] == ["torch float32", "NumPy float32", "torch float64",
                                                    "torch bfloat16", "torch float16", "NumPy float16"]
        assert set(param.rtol) == {"float32", "float64"} and set(param.median_allowed) == {"bfloat16", "float16"}
        # twice the own rounding: about a unit roundoff of the dtype, far above float32's rtol
        assert param.rtol["float32"] < param.median_allowed["float16"] < param.median_allowed["bfloat16"] < 1


def test_a_low_precision_horizon_is_marked_and_said(monkeypatch):
    """Below float32 the judge stops where torch's own rounding exceeds sqrt(u) max(1, |θ|):
    scalar_quadratic's tutorial example (a probe driven to large |x|) reaches that horizon
    after 6 steps in bfloat16. The figure marks it, the summary cell and a note say it."""
    labels = []
    monkeypatch.setattr(figures, "data_uri", lambda fig, dpi: labels.extend(
        line.get_label() for ax in fig.axes for line in ax.lines) or "data:,")
    section = CaseSection("scalar_quadratic", "model")
    _training_part(section, CASES["scalar_quadratic"], ReportConfig(**{**SMALLEST, "size": "tutorial", "steps": 8}))
    text, ok = section.summary["trajectory bfloat16"]
    assert ok and text.endswith("; comparable for 6 of 8 steps"), text
    assert "comparable horizon bfloat16 (step 6)" in labels
    assert any(n.startswith("Trajectory bfloat16: judged up to step 5; from step 6 on") for n in section.notes)


def test_an_unresolvable_dtype_becomes_a_note(tmp_path, monkeypatch):
    """A dtype the example is beyond (agreement.run.Unresolvable) is left out of the figures with
    its reason in the section's notes and a neutral summary cell; the section has no error."""
    real_evaluate, real_judge = gradients.evaluate, training.judge_steps

    def evaluate(case, example, dtype, device="cpu"):
        if precision.name(dtype) == "float16":
            raise Unresolvable("float16 cannot hold the float64 reference's loss", "|value| up to 7e5")
        return real_evaluate(case, example, dtype, device)

    def judge_steps(case, opt, example, hyper, dtype, *args, **kwargs):
        if precision.name(dtype) == "bfloat16":
            raise Unresolvable("torch-cpu in bfloat16: the first step's parameters are not finite")
        return real_judge(case, opt, example, hyper, dtype, *args, **kwargs)

    monkeypatch.setattr(gradients, "evaluate", evaluate)
    monkeypatch.setattr(training, "judge_steps", judge_steps)
    monkeypatch.setattr(figures, "data_uri", lambda fig, dpi: "data:,")
    _, (section,) = build_report(ReportConfig.small(cases=("linear_regression",), scenarios=(), benchmarks=tmp_path,
                                                    **SMALLEST))
    assert not section.errors, "\n".join(section.errors)
    assert section.summary["gradients float16"] == section.summary["trajectory bfloat16"] == SKIPPED_CELL
    assert section.summary["gradients bfloat16"][1] and section.summary["trajectory float16"][1]
    notes = " ".join(section.notes)
    assert "Gradients float16 left out: float16 cannot hold the float64 reference's loss" in notes
    assert "Trajectory bfloat16 left out" in notes and "not finite" in notes
    gradient_figure = next(f for f in section.figures if f.title == "Gradient error per parameter")
    assert "Left out: float16" in gradient_figure.caption


def test_report_flags_a_wrong_reference():
    case = CASES["linear_regression"]

    def off_by_one_percent(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, {k: 1.01 * g for k, g in grads.items()}

    result = training.training(replace(case, reference=off_by_one_percent), "tiny", 5, 0, "cpu")
    for run in result.runs.values():
        assert not run.worst.ok and run.failed_step is not None


def test_regression_fit_agrees_and_is_drawn():
    fit = views.fit(CASES["linear_regression"], 30, 0, "cpu")
    assert fit.numpy_losses[-1] < 0.5 * fit.numpy_losses[0], "SGD did not fit the line"
    grid = np.linspace(-3, 3, 7)[:, None]
    # float32 on both sides, 30 steps from the same start: the fitted lines agree to a few float32 ulps of
    # their magnitude (|y| <= 3); 1e-4 leaves a wide margin while a wrong update rule misses by far more.
    np.testing.assert_allclose(fit.predict(grid, "torch"), fit.predict(grid, "numpy"), atol=1e-4)
    image = Image.open(io.BytesIO(base64.b64decode(figures.fit_figure(fit, 40).split(",", 1)[1])))
    assert image.format == "PNG"


def test_relative_errors_count_exact_and_unbounded_elements():
    sample = relative_errors(np.array([1.0, 2.0, 1e-3, 0.0]), np.array([1.0, 2.5, 0.0, 0.0]), "torch float32",
                             "float32")
    assert sample.identical == 2 and sample.unbounded == 1
    np.testing.assert_allclose(sample.finite, [0.2])


@pytest.mark.parametrize("argv, message", [
    (["--cases", "no_such_case"], "no_such_case"),
    (["--steps", "0"], "--steps"),
    (["--benchmarks", "/no/such/folder"], "--benchmarks"),
    (["--scenarios", "9-no-such"], "--scenarios"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x.html")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_report_offers_the_sizes_the_registry_builds(monkeypatch):
    """Sizes are the registry's: a case that builds one more brings it to --size, to the
    configuration and to the order of benchmark rows, with no list of the report's own."""
    case = CASES["linear_regression"]
    monkeypatch.setitem(registry.CASES, case.name, replace(case, sizes=(*case.sizes, "huge")))
    assert ReportConfig(size="huge").size == "huge"
    assert parser().parse_args(["--size", "huge"]).size == "huge"
    rows = [SimpleNamespace(size=s) for s in ("zzz", "huge", "large", "tiny")]
    assert bench.size_order(rows) == ["tiny", "large", "huge", "zzz"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="size must be one of"):
        ReportConfig(size="huge")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ReportConfig(steps=0)


# ---------------------------------------------------------------- in a browser
needs_chromium = pytest.mark.skipif(not browser.available(), reason=f"{browser.CHROMIUM} not installed "
                                    "(Debian: apt-get install chromium)")


@pytest.mark.browser
@needs_chromium
def test_chromium_renders_the_report_without_console_errors(report, tmp_path):
    path, html = report
    rendering = browser.render_page(path, screenshot=tmp_path / "page.png", width=1000, height=1400)
    assert rendering.console == [], rendering.console
    assert rendering.dom.count("<img") == html.count("<img") and "Gradient agreement report" in rendering.dom
    image = Image.open(tmp_path / "page.png").convert("RGB")
    assert image.size == (1000, 1400)
    assert len(image.getcolors(maxcolors=1 << 20)) > 50, "the page rendered (nearly) blank"


@pytest.mark.browser
@needs_chromium
def test_chromium_check_catches_scripts_errors_and_external_loads(report, tmp_path):
    _, html = report
    broken = html.replace("<main>", '<main><img src="https://example.invalid/x.png" alt="external">'
                                    '<script>throw new Error("deliberate")</script>', 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    console = " ".join(browser.render_page(path).console)
    assert "example.invalid" in console  # refused by the page's Content-Security-Policy
    assert "script" in console.lower()  # inline script refused by the same policy
