"""The HTML page: one file, inline CSS, figures as data URIs, no scripts, no external resource.

A Content-Security-Policy meta tag forbids every load except inline styles and
data: images, so a browser refuses (and logs) anything external that slipped in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1000px;
       padding: 1em 1.5em 3em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin: 1.2em 0 0.3em; font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.kind { color: #666; font-size: 0.7em; font-weight: normal; margin-left: 0.5em; }
.note { color: #555; font-size: 0.9em; } .error { background: #fff0f0; border-left: 4px solid #cf222e;
        padding: 0.5em 0.8em; white-space: pre-wrap; font-family: monospace; font-size: 0.85em; }
figure { margin: 0.6em 0 1.2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
nav a { margin-right: 0.8em; white-space: nowrap; }
"""


@dataclass
class Figure:
    title: str
    uri: str
    caption: str
    alt: str


@dataclass
class CaseSection:
    name: str
    kind: str
    summary: dict = field(default_factory=dict)  # column -> (text, ok or None)
    notes: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # of Figure
    errors: list = field(default_factory=list)  # failures while building the section

    @property
    def anchor(self) -> str:
        return f"case-{self.name}"


SUMMARY_COLUMNS = ("trajectory float32", "trajectory float64", "trajectory bfloat16",
                   "gradients float32", "gradients float64", "gradients bfloat16", "gradients float16")
# TF32 runs on CUDA only: its columns appear where a section has a verdict for them.
CUDA_COLUMNS = ("trajectory tf32", "gradients tf32")


def _status(text: str, ok) -> str:
    cls = "" if ok is None else (' class="ok"' if ok else ' class="fail"')
    return f"<td{cls}>{escape(text)}</td>"


def _environment(rows) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<section id="run"><h2>Run</h2><table>{body}</table></section>'


def _columns(sections) -> list[str]:
    """SUMMARY_COLUMNS, and each CUDA column some section fills, grouped by what was compared."""
    present = [c for c in CUDA_COLUMNS if any(c in s.summary for s in sections)]
    return sorted([*SUMMARY_COLUMNS, *present], key=lambda c: c.split()[0] != "trajectory")


def _summary(sections) -> str:
    columns = _columns(sections)
    groups = list(dict.fromkeys(c.split()[0] for c in columns))
    head = ('<tr><th rowspan="2">case</th><th rowspan="2">kind</th>'
            + "".join(f'<th colspan="{sum(c.split()[0] == g for c in columns)}">{escape(g)}</th>' for g in groups)
            + "</tr><tr>" + "".join(f"<th>{escape(c.split(maxsplit=1)[1])}</th>" for c in columns) + "</tr>")
    rows = []
    for s in sections:
        cells = [f'<td><a href="#{escape(s.anchor)}">{escape(s.name)}</a></td>', f"<td>{escape(s.kind)}</td>"]
        for column in columns:
            text, ok = s.summary.get(column, ("error" if s.errors else "n/a", False if s.errors else None))
            cells.append(_status(text, ok))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<section id="summary"><h2>Summary</h2>'
        '<p class="note">Each cell: the largest error / tolerance ratio over the compared arrays '
        "(1 is the tolerance; the trajectory column covers the loss and every parameter at the last step "
        "judged, the gradient column every gradient of torch against the float64 NumPy reference). Below "
        "float32 the tolerance is twice torch's own rounding (its float64 run's distance), and a trajectory "
        "is judged up to the measured horizon where rounding, not the math, starts deciding it "
        "(\"comparable for k of n steps\"). \"not comparable\": the example is beyond the dtype, as the "
        "section's note says; float16 trajectories are in each section.</p>"
        f"<table>{head}{''.join(rows)}</table></section>"
    )


def _figure(f: Figure) -> str:
    return (f"<figure><h3>{escape(f.title)}</h3><img src=\"{f.uri}\" alt=\"{escape(f.alt)}\">"
            f"<figcaption>{escape(f.caption)}</figcaption></figure>")


def _case(s: CaseSection) -> str:
    parts = [f'<section id="{escape(s.anchor)}" class="case"><h2>{escape(s.name)}'
             f'<span class="kind">{escape(s.kind)}</span></h2>']
    parts += [f'<p class="note">{escape(n)}</p>' for n in s.notes]
    parts += [f'<div class="error">{escape(e)}</div>' for e in s.errors]
    parts += [_figure(f) for f in s.figures]
    parts.append("</section>")
    return "".join(parts)


def _benchmarks(header: str, details: list) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in details)
    table = f"<table>{body}</table>" if body else ""
    return f'<section id="benchmarks"><h2>Benchmarks</h2><p class="note">{escape(header)}</p>{table}</section>'


def render(title: str, environment_rows, sections, bench_header: str, bench_details) -> str:
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.name)}</a>' for s in sections)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{escape(title)}</h1>"
        '<p class="note">NumPy reference (hand-derived gradients) against its PyTorch twin (autograd), '
        "case by case.</p>"
        f'<nav><a href="#run">run</a><a href="#summary">summary</a><a href="#benchmarks">benchmarks</a>{nav}</nav>'
        "</header>",
        "<main>",
        _environment(environment_rows),
        _summary(sections),
        *(_case(s) for s in sections),
        _benchmarks(bench_header, bench_details),
        "</main>",
        "</body>",
        "</html>",
        "",
    ])
