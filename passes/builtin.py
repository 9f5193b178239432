"""Imports every built-in pass so that it registers itself."""

from . import (  # noqa: F401  (registers the built-in passes)
    cse,
    dce,
    early_exit,
    fold_batchnorm,
    fold_constants,
    fuse,
    prune,
    prune_channels,
    prune_heads,
    quantize,
    quantize_fold,
    schedule,
    simplify,
    sparsity_report,
)

BUILTIN_PASSES = ("dce", "cse", "fold-constants", "simplify", "fold-batchnorm", "fuse", "schedule")
"""Names of the passes that ship with tensorsmith."""

LOSSY_PASSES = ("quantize", "prune", "prune-channels", "prune-heads", "early-exit")
"""Built-in passes that change outputs within a bound they state (not preserved exactly)."""
