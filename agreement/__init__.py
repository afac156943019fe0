"""The harness's public API: check hand-written NumPy gradients against torch autograd.

* ``assert_gradients_close``: one example, inside your own tests (like ``torch.testing.assert_close``);
* ``check_gradients``: a Hypothesis search over your inputs, every dtype and device;
* ``check_finite_differences``: a NumPy gradient against finite differences, no torch needed;
* ``check_optimizer``, ``assert_optimizer_close``: your NumPy optimizer against ``torch.optim``, step by step;
* ``Example``: one input (params, data, hyper); ``strategies``: Hypothesis strategies for them;
* ``Case`` and ``cases``: the project's own registry of models, losses and activations;
* ``Unresolvable``: raised (and counted as a skip by the checks) where a low precision
  cannot hold an example's reference values or a side overflows in it.

Everything else in the package is internal. Names are imported on first use, so
that the pytest plugin (agreement/pytest_plugin.py), which every pytest run in an
environment with this package loads, does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "Case": "agreement.registry", "Example": "agreement.registry", "cases": "agreement.registry",
    "Summary": "agreement.check", "assert_gradients_close": "agreement.check", "check_gradients": "agreement.check",
    "check_finite_differences": "agreement.finite_differences", "Unresolvable": "agreement.run",
    **{name: "agreement.training_check" for name in ("check_optimizer", "assert_optimizer_close", "NotComparable",
                                                       "TrajectoryHorizonWarning", "TrajectorySummary")},
}

__all__ = sorted([*_EXPORTS, "strategies"])


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name == "strategies":
        return import_module("agreement.strategies")
    raise AttributeError(f"module 'agreement' has no attribute {name!r}")


def __dir__():
    return __all__
