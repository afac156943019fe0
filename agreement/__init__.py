"""The harness's public API: check hand-written NumPy gradients against torch autograd.

* ``assert_gradients_close``: one example, inside your own tests (like ``torch.testing.assert_close``);
* ``check_gradients``: a Hypothesis search over your inputs, every dtype and device;
* ``check_finite_differences``: a NumPy gradient against finite differences, no torch needed;
* ``Example``: one input (params, data, hyper); ``strategies``: Hypothesis strategies for them;
* ``Case`` and ``cases``: the project's own registry of models, losses and activations.

Everything else in the package is internal.
"""

from agreement import strategies
from agreement.check import Summary, assert_gradients_close, check_gradients
from agreement.finite_differences import check_finite_differences
from agreement.registry import Case, Example, cases

__all__ = ["Case", "Example", "Summary", "assert_gradients_close", "cases", "check_finite_differences",
           "check_gradients", "strategies"]
