"""The CI gradient-regression gate (docs/gate.md): one part of the project, built
on the harness (registry, run, trajectory, tolerance), which never imports it.

* ``baselines``   what a baseline records, its JSON format, atomic writes, strict loading;
* ``regression``  one case against its stored baseline: the findings;
* ``report``      the console and Markdown summaries, read back from pytest's JUnit XML;
* ``command``     ``python -m agreement.gate``: the gate run and ``--regenerate``.
"""
