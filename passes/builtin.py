"""Imports every built-in pass so that it registers itself."""

from . import cse, dce, fold_batchnorm, fold_constants, simplify  # noqa: F401
