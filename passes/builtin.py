"""Imports every built-in pass so that it registers itself."""

from . import cse, dce, fold_batchnorm, fold_constants, simplify  # noqa: F401

BUILTIN_PASSES = ("dce", "cse", "fold-constants", "simplify", "fold-batchnorm")
"""Names of the passes that ship with tensorsmith."""
