"""The Numba CPU backend: lowering of graphs to plans of JIT kernel calls (fp32 and integer ops).

`lower(graph)` gives a Plan; `tensorsmith.runtime.compile(graph, backend="numba")` plans its
memory arena and runs it. `NUMBA_LOWERINGS[op]` holds the per-op lowering rules.
"""

from .lowering import DEFAULT_PARALLEL_THRESHOLD, check_lowerable, lower
from .plan import Lit, LowerCtx, NumbaLoweringError, Plan, Slot, Step
from .registry import NUMBA_LOWERINGS, lowers

__all__ = [
    "DEFAULT_PARALLEL_THRESHOLD", "NUMBA_LOWERINGS", "Lit", "LowerCtx", "NumbaLoweringError", "Plan", "Slot", "Step",
    "check_lowerable", "lower", "lowers",
]
