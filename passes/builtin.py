"""Imports every built-in pass so that it registers itself."""

from . import (  # noqa: F401
    cse,
    dce,
    fold_batchnorm,
    fold_constants,
    fuse,
    prune,
    prune_channels,
    prune_heads,
    quantize,
    simplify,
    sparsity_report,
)

BUILTIN_PASSES = ("dce", "cse", "fold-constants", "simplify", "fold-batchnorm", "fuse")
"""Names of the passes that ship with tensorsmith."""

LOSSY_PASSES = ("quantize", "prune", "prune-channels", "prune-heads")
"""Built-in passes that change outputs within a bound they state (not preserved exactly)."""
