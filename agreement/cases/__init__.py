"""The registered cases, one module per kind. Each entry binds a reference
function, its torch twin, input strategies, fixed-size builders and a tolerance
class (see agreement/registry.py). Importing this package fills the registry,
in this order."""

from agreement.cases import activations, losses, models  # noqa: F401
