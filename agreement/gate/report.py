"""The gate's reports, read back from pytest's JUnit XML: a console summary and Markdown for CI.

The baseline tests attach their structured result (regression.CaseResult) to
the JUnit XML as a testcase property, so one file carries everything and the
reports come out the same with or without pytest-xdist.
"""

from __future__ import annotations

import platform
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import torch

from agreement.gate.regression import CaseResult

PROPERTY = "gate_result"
COLUMNS = ("kind", "case", "array", "dtype", "device", "baseline", "current", "error", "tolerance")


@dataclass
class Outcome:
    test: str
    status: str  # passed | failed | error | skipped
    message: str = ""
    result: CaseResult | None = None


def read_junit(path) -> list[Outcome]:
    """Parse pytest's JUnit XML (a file this run wrote, not untrusted input)."""
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = _exception_lines(node.text or "") or (node.get("message") or node.text or "").strip()
                break
        result = None
        for prop in case.iter("property"):
            if prop.get("name") == PROPERTY:
                result = CaseResult.from_json(prop.get("value"))
        outcomes.append(Outcome(f"{case.get('classname')}::{case.get('name')}", status, message, result))
    return sorted(outcomes, key=lambda o: o.test)  # xdist records in completion order; reports must not vary


def _exception_lines(longrepr: str) -> str:
    """The ``E`` lines of a pytest traceback: the exception, then Hypothesis's falsifying
    example and its @reproduce_failure line, without the source listing around them."""
    lines = [line[1:] for line in longrepr.splitlines() if line.startswith("E ") or line.rstrip() == "E"]
    return textwrap.dedent("\n".join(lines)).strip()


def counts(outcomes) -> dict:
    out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for o in outcomes:
        out[o.status] += 1
    return out


def _findings(outcomes):
    return [f for o in outcomes if o.result for f in o.result.findings]


def _other_failures(outcomes):
    """Failed tests whose failure is not already itemized as baseline findings."""
    return [o for o in outcomes if o.status in ("failed", "error") and not (o.result and o.result.findings)]


def _notes(outcomes):
    return sorted({n for o in outcomes if o.result for n in o.result.notes})


def _value(v) -> str:
    return "-" if v is None else repr(v)  # shortest round-trip form: a 1.001 change stays visible


def _small(v) -> str:
    return "-" if v is None else f"{v:.3e}"


def _row(f) -> list:
    return [f.kind, f.case, f.what, f.dtype, f.device, _value(f.baseline), _value(f.current), _small(f.error),
            _small(f.tolerance)]


def passed(outcomes, exit_code: int) -> bool:
    return exit_code == 0 and bool(outcomes) and not any(o.status in ("failed", "error") for o in outcomes)


def console(outcomes, exit_code: int, reports) -> str:
    c = counts(outcomes)
    lines = [f"== gradient regression gate: {'PASSED' if passed(outcomes, exit_code) else 'FAILED'} "
             f"(pytest exit {exit_code}) ==",
             f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped"]
    findings = _findings(outcomes)
    if findings:
        lines.append(f"Baseline findings ({len(findings)}):")
        lines += [f"  {f.report()}" for f in findings]
    others = _other_failures(outcomes)
    if others:
        lines.append(f"Other failing tests ({len(others)}):")
        lines += [f"  {o.test}: {(o.message.splitlines() or [''])[0][:200]}" for o in others]
    lines += [f"note: {n}" for n in _notes(outcomes)]
    lines.append("Reports: " + ", ".join(str(r) for r in reports))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows) -> list:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows])


def _budget_table(outcomes) -> list:
    results = [o.result for o in outcomes if o.result and o.result.headroom]
    keys = sorted({k for r in results for k in r.headroom})
    if not keys:
        return []
    rows = [[r.case] + [("{:.3g} → {:.3g}".format(*r.headroom[k]) if k in r.headroom else "-") for k in keys]
            for r in results]
    return (["", "<details><summary>Error budget: worst err/tol per case (recorded → now)</summary>", ""]
            + _table(["case", *keys], rows) + ["", "</details>"])


def markdown(outcomes, exit_code: int, profile: str, max_message_lines: int = 40, max_rows: int = 100) -> str:
    """GitHub's job summary takes up to 1 MiB per step: long lists are cut at ``max_rows``."""
    ok = passed(outcomes, exit_code)
    c = counts(outcomes)
    lines = [f"## Gradient regression gate: {'✅ passed' if ok else '❌ failed'}", "",
             f"torch {torch.__version__} · numpy {np.__version__} · Python {platform.python_version()} · "
             f"{platform.system()} {platform.machine()} · Hypothesis profile `{profile}` · pytest exit {exit_code}",
             ""] + _table(["passed", "failed", "errors", "skipped"],
                          [[c["passed"], c["failed"], c["error"], c["skipped"]]])
    if not outcomes:
        lines += ["", "No test results were recorded: the test run itself failed (see the job log)."]
    findings = _findings(outcomes)
    if findings:
        lines += ["", f"### Baseline findings ({len(findings)})", ""]
        lines += _table(COLUMNS, [_row(f) for f in findings[:max_rows]])
        if len(findings) > max_rows:
            lines += ["", f"... and {len(findings) - max_rows} more (console output and junit.xml have all)."]
        lines += ["", "<details><summary>Details</summary>", "", "```text"]
        lines += [f.report() for f in findings[:max_rows]] + ["```", "", "</details>"]
    others = _other_failures(outcomes)
    if others:
        lines += ["", f"### Other failing tests ({len(others)})"]
        for o in others:
            text = o.message.splitlines()
            shown = text[:max_message_lines] + ([f"... ({len(text) - max_message_lines} more lines)"]
                                                if len(text) > max_message_lines else [])
            lines += ["", f"<details><summary><code>{o.test}</code></summary>", "", "```text", *shown, "```",
                      "", "</details>"]
    lines += _budget_table(outcomes)
    notes = _notes(outcomes)
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"
