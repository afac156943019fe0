"""The harness: case registry, tolerance policy, comparison reports, and the
public ``check_gradients`` entry point."""

from agreement.check import check_gradients
from agreement.registry import Case, Example, cases

__all__ = ["Case", "Example", "cases", "check_gradients"]
