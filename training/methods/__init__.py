"""Training methods behind one registry, one file per paper's loss (``training.methods.registry``).

A recipe names its method; a new paper's method is one new file here with a ``@register_method`` step function.
"""

from training.methods.registry import Method, get_method, list_methods, register_method

# Imported for their @register_method side effects.
from training.methods import batch, frozen, lu_kd, multi_branch  # noqa: E402,F401

__all__ = ["Method", "get_method", "list_methods", "register_method"]
