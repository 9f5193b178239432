"""Passes: the pass manager, instruments, the rewrite engine and the built-in passes."""

from . import builtin  # noqa: F401  (registers the built-in passes)
from .base import PASSES, Pass, PassContext, PassRecord, PassResult, TargetRequiredError, register_pass
from .bisect import BisectResult, PassStep, bisect
from .fuse_epilogue import EPILOGUE_RULES, EpilogueRule
from .fuse_patterns import FUSION_PATTERNS, fusion_pattern
from .instruments import DumpIR, Instrument, NumericCheck, PassCheckError, PrintIRAfter, Timing, VerifyEach
from .pipeline import PipelineError, make_pass, parse_pipeline, run_pipeline
from .rewrite import Const, Op, RewriteError, Rewriter, Rule, RuleSet, Var, apply_rules, commutations, op, rules

DEFAULT_CLEANUP = "simplify,fold-constants,cse,fold-batchnorm,dce"
"""The default cleanup pipeline that `bench` and `runtime` use."""

__all__ = [
    "DEFAULT_CLEANUP", "EPILOGUE_RULES", "FUSION_PATTERNS", "PASSES", "BisectResult", "Const", "DumpIR", "EpilogueRule",
    "Instrument", "NumericCheck", "Op", "Pass", "PassCheckError", "PassContext", "PassRecord", "PassResult",
    "PassStep", "PipelineError", "PrintIRAfter", "RewriteError", "Rewriter", "Rule", "RuleSet", "TargetRequiredError",
    "Timing", "Var", "VerifyEach", "apply_rules", "bisect", "commutations", "fusion_pattern", "make_pass", "op",
    "parse_pipeline", "register_pass", "rules", "run_pipeline",
]
