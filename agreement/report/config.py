"""What a report is computed from: sizes, steps, seed, device, cases, benchmark file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agreement.cases.common import sizes


@dataclass(frozen=True)
class ReportConfig:
    """One report's settings. ``small()`` is the configuration the test suite runs.

    size          builder size for trajectories and gradient histograms (one of the registry's sizes)
    steps         optimizer steps per trajectory
    fit_steps     optimizer steps when fitting the plot-friendly data sets
    slice_points  grid points of the function / loss slices
    seed          seed of the case builders and of the plot-friendly data
    device        torch device ("cpu" or "cuda")
    cases         registry names to include (None: all)
    benchmarks    a pytest-benchmark JSON file, or a folder searched for the latest
                  saved run (None: ./.benchmarks)
    dpi           resolution of the embedded figures
    progress      progress bar on stderr: None shows it on a terminal only
    scenarios     agreement.scenarios names whose training runs get a section (None: all; (): none)
    short_scenarios  the scenarios' short versions (the default test suite's lengths) instead of full length
    """

    size: str = "tutorial"
    steps: int = 16
    fit_steps: int = 300
    slice_points: int = 121
    seed: int = 0
    device: str = "cpu"
    cases: tuple[str, ...] | None = None
    benchmarks: Path | None = None
    dpi: int = 90
    progress: bool | None = None
    scenarios: tuple[str, ...] | None = None
    short_scenarios: bool = False

    def __post_init__(self):
        if self.size not in sizes():
            raise ValueError(f"size must be one of {sizes()}, got {self.size!r}")
        for name in ("steps", "fit_steps", "dpi"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.slice_points, int) or self.slice_points < 3:
            raise ValueError(f"slice_points must be an integer >= 3, got {self.slice_points!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    @classmethod
    def small(cls, **overrides) -> ReportConfig:
        """A few seconds: tiny builders, few steps, coarse grids, low resolution."""
        settings = dict(size="tiny", steps=4, fit_steps=40, slice_points=25, dpi=48, short_scenarios=True)
        return cls(**{**settings, **overrides})
