"""Every Python snippet of docs/check-your-own-code.md runs as written, in order, in one namespace."""

from __future__ import annotations

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "check-your-own-code.md"


def test_check_your_own_code_walkthrough_runs():
    snippets = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(snippets) >= 7, "the walkthrough lost a section"
    namespace = {"__name__": "walkthrough"}
    for i, snippet in enumerate(snippets):
        exec(compile(snippet, f"{DOC.name} snippet {i + 1}", "exec"), namespace)
    estimates, declined = namespace["found"]["w"]
    assert estimates.shape == (2,) and not declined
