"""Command line: ``python -m agreement.report --out report.html [--small] [options]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from agreement.cases.common import sizes
from agreement.report.build import selected_cases, selected_scenarios, write_report
from agreement.report.config import ReportConfig


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agreement.report", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write (default report.html)")
    p.add_argument("--small", action="store_true",
                   help="tiny examples, few steps, coarse figures: a few seconds (what the tests run)")
    p.add_argument("--size", choices=sizes(), help="builder size for trajectories and gradients (default tutorial)")
    p.add_argument("--steps", type=_positive, help="SGD steps per trajectory (default 16)")
    p.add_argument("--fit-steps", type=_positive, help="SGD steps for the fit / boundary plots (default 300)")
    p.add_argument("--seed", type=int, help="seed of the builders and the plot data (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="torch device (default cpu)")
    p.add_argument("--cases", help="comma-separated registry case names (default: all)")
    p.add_argument("--scenarios", help="comma-separated agreement.scenarios names or numbers, or 'none' "
                                        "(default: all; short lengths with --small)")
    p.add_argument("--benchmarks", type=Path,
                   help="pytest-benchmark JSON file, or folder searched for the latest saved run (default .benchmarks)")
    p.add_argument("--dpi", type=_positive, help="figure resolution")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only on a terminal)")
    p.add_argument("--screenshot", type=Path, help="also render the page with headless Chromium to this PNG")
    return p


def config_from(args, p: argparse.ArgumentParser) -> ReportConfig:
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch reports no CUDA device here")
    if args.benchmarks is not None and not args.benchmarks.exists():
        p.error(f"--benchmarks: {args.benchmarks} does not exist")
    names = None
    if args.cases:
        names = tuple(n.strip() for n in args.cases.split(",") if n.strip())
        try:
            selected_cases(names)
        except ValueError as exc:
            p.error(f"--{exc}")
    scenarios = None
    if args.scenarios:
        scenarios = tuple(n.strip() for n in args.scenarios.split(",") if n.strip() and n.strip() != "none")
        try:
            selected_scenarios(scenarios)
        except ValueError as exc:
            p.error(f"--{exc}")
    overrides = {k: v for k, v in dict(size=args.size, steps=args.steps, fit_steps=args.fit_steps, seed=args.seed,
                                       device=args.device, dpi=args.dpi).items() if v is not None}
    overrides.update(cases=names, benchmarks=args.benchmarks, progress=args.progress, scenarios=scenarios)
    return ReportConfig.small(**overrides) if args.small else ReportConfig(**overrides)


def main(argv=None) -> int:
    p = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    config = config_from(args, p)
    command = shlex.join(["python", "-m", "agreement.report", *argv])
    sections = write_report(config, args.out, command)
    failed = [s.name for s in sections if s.errors]
    scenario_count = sum(s.kind == "training scenario" for s in sections)
    print(f"wrote {args.out} ({len(sections) - scenario_count} cases, {scenario_count} scenarios)")
    if args.screenshot:
        from agreement.report.browser import render_page

        rendering = render_page(args.out, screenshot=args.screenshot)
        print(f"wrote {args.screenshot}" + (f"; browser console: {rendering.console}" if rendering.console else ""))
    if failed:
        print(f"sections that could not be built: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
