"""Shared Numba settings: cached compilation, numpy error model, fast-math flags, serial/parallel twins.

Every kernel is compiled twice from one source: a serial twin for small tensors (no thread launch)
and a parallel twin whose outermost `prange` spreads work over Numba's threads. The twins get
distinct qualified names so that Numba's on-disk cache (`cache=True`) keeps them apart.
Note: the cache is invalidated when a kernel's own file changes, not when a helper it inlines
(mathfn.py) changes; delete backends/numba/__pycache__ after editing helpers.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numba.np.ufunc.parallel as _numba_parallel
import numpy as np

FASTMATH = frozenset({"contract", "reassoc", "nsz", "arcp"})
"""Fast-math flags that allow vectorized reductions but keep NaN and infinity semantics."""

JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}

STORAGE_DTYPES = frozenset({"f16", "bf16"})
"""IR dtypes the kernels only store and move (as 16-bit patterns) and convert by cast; other nodes on them run
their reference rule (reference_steps)."""

STORAGE_OPS = frozenset({"cast", "reshape", "flatten", "transpose", "slice", "concat", "gather", "identity",
                         "dropout"})
"""Ops that accept STORAGE_DTYPES values."""


@dataclass(frozen=True)
class Twin:
    """A kernel compiled serially (`serial`) and with an outer parallel loop (`parallel`)."""

    name: str
    serial: Any
    parallel: Any

    def pick(self, parallel: bool) -> Any:
        """The parallel twin when `parallel`, else the serial one."""
        return self.parallel if parallel else self.serial

    def call(self, parallel: bool, *args: Any, writes: tuple[np.ndarray, ...]) -> Any:
        """Run the twin `pick(parallel)` on `args`, every array among them but those in `writes` passed read-only,
        as the runtime passes them (so that a direct call and a compiled graph share the compiled code)."""
        return self.pick(parallel)(*kernel_args(args, writes))


def kernel_args(args: tuple[Any, ...], writes: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
    """`args` with every array but those in `writes` made read-only (`read_only`), as the runtime passes them."""
    return tuple(read_only(a) if isinstance(a, np.ndarray) and not any(a is w for w in writes) else a for a in args)


def specialized(fn: Callable[..., Any], suffix: str, **names: Any) -> Callable[..., Any]:
    """A copy of `fn` named `<name>__<suffix>` whose globals also bind `names` (a template's free names).

    Numba compiles and caches each copy apart (its own name), so one template serves several kernels:
    per int8 path, per weight format, serial and parallel.
    """
    glb = {**fn.__globals__, **names} if names else fn.__globals__
    f = types.FunctionType(fn.__code__, glb, f"{fn.__name__}__{suffix}", fn.__defaults__, fn.__closure__)
    f.__qualname__ = f"{fn.__qualname__}__{suffix}"
    f.__module__ = fn.__module__
    f.__doc__ = fn.__doc__
    return f


def twin(fn: Callable[..., Any] | None = None, *, fastmath: frozenset[str] | bool = FASTMATH) -> Any:
    """Decorator: compile `fn` as a serial and a parallel cached Numba kernel (a `Twin`)."""

    def make(f: Callable[..., Any]) -> Twin:
        ser = numba.njit(parallel=False, fastmath=set(fastmath) if fastmath else False, **JIT_OPTIONS)(
            specialized(f, "serial"))
        par = numba.njit(parallel=True, fastmath=set(fastmath) if fastmath else False, **JIT_OPTIONS)(
            specialized(f, "parallel"))
        return Twin(f.__name__, ser, par)

    return make(fn) if fn is not None else make


def helper(fn: Callable[..., Any] | None = None, *, fastmath: frozenset[str] | bool = FASTMATH) -> Any:
    """Decorator for small scalar helpers: inlined into every kernel that calls them."""

    def make(f: Callable[..., Any]) -> Any:
        return numba.njit(inline="always", fastmath=set(fastmath) if fastmath else False, error_model="numpy")(f)

    return make(fn) if fn is not None else make


def subkernel(fn: Callable[..., Any] | None = None, *, fastmath: frozenset[str] | bool = FASTMATH) -> Any:
    """Decorator for row/tile routines that kernels call (not inline): compiled once per signature.

    Big routines (the epilogue with all its stages, the op switch of elementwise maps, im2col)
    would otherwise be compiled again inside every kernel and every serial/parallel twin; called
    once per row or tile, the call costs nothing measurable.
    """

    def make(f: Callable[..., Any]) -> Any:
        return numba.njit(fastmath=set(fastmath) if fastmath else False, **JIT_OPTIONS)(f)

    return make(fn) if fn is not None else make


def read_only(a: np.ndarray) -> np.ndarray:
    """`a` itself when it is read-only, else a read-only view of it.

    Numba types a read-only array apart from a writable one and compiles a kernel once per combination;
    every array a kernel only reads is passed read-only (constants, whose arrays are, and activations alike),
    so a kernel compiles once per layout and a write to an input fails when the kernel is typed.
    """
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative integers."""
    return -(-a // b)


@helper
def work_item_tile(t, blocks_n, tm, tn, m_all, n_all):  # type: ignore[no-untyped-def]
    """(m0, m1, n0, n1): the tile of work item t in a grid of row blocks of tm by column blocks of tn (blocks_n
    of them per row block), clipped to m_all rows and n_all columns (or panels)."""
    i = t // blocks_n
    m0 = i * tm
    n0 = (t - i * blocks_n) * tn
    return m0, min(m_all, m0 + tm), n0, min(n_all, n0 + tn)


def dispatchers(t: Twin) -> list[Any]:
    """Both compiled dispatchers of a twin (for cache statistics)."""
    return [t.serial, t.parallel]


def cache_stats(twins: list[Twin]) -> tuple[int, int]:
    """Total (cache hits, cache misses) of the given twins in this process."""
    hits = misses = 0
    for t in twins:
        for d in dispatchers(t):
            hits += sum(d.stats.cache_hits.values())
            misses += sum(d.stats.cache_misses.values())
    return hits, misses


def num_threads() -> int:
    """Threads Numba's parallel kernels use now (`numba.set_num_threads` changes it, per thread).

    `numba.get_num_threads()` takes the threading layer's launch locks (one of them a process-wide semaphore) on
    every call, which slowed the kernel right after it by 7-12 us (a 1 x 4096 x 4096 int8 GEMM, 264 -> 276 us);
    once the layer is up, the count is read from the layer itself (0.08 us), as `get_num_threads` does after
    its locks. Numba versions without that reader take the public call.
    """
    if getattr(_numba_parallel, "_is_initialized", False):
        reader = getattr(_numba_parallel, "_get_num_threads", None)
        if reader is not None:
            return int(reader())
    return int(numba.get_num_threads())


EMPTY_F32 = np.zeros((1, 1), np.float32)
"""A stand-in 2-D array for optional array arguments a kernel is told not to read."""
