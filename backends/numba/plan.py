"""The lowered form of a graph: slots (arrays) and steps (kernel calls), built through a LowerCtx.

A slot is an input, a constant, an intermediate buffer (placed in the arena by the runtime), a
fresh output, or a view of another slot (reshape/transpose/slice: no copy). A step calls a
kernel on slot arrays and literal arguments. Views that a kernel cannot read in place are
materialized on demand by a strided-copy step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node, Value
from ...ir.text import format_node
from ..aligned import aligned_copy
from . import blas
from .image_split import ArgCut, ImageSplit
from .jit import Twin, num_threads
from .tiling import graph_weight_bytes

BLAS_WORK_FACTOR = 8
"""Kernels that call BLAS go parallel only above this many times the parallel threshold: each tile is
its own sgemm call, so a small product split over threads pays several BLAS setups for little, and
column blocks of different widths round differently (measured: no gain on the zoo's small models,
and ill-conditioned outputs, such as the ONNX test models' identical 1e19 logits, change)."""

class NumbaLoweringError(ValueError):
    """A graph cannot be lowered to Numba kernels; the message names the node and op."""


@dataclass
class Slot:
    """One array of the plan."""

    index: int
    kind: str  # input | const | buffer | output | view
    shape: tuple[int, ...]
    dtype: np.dtype
    name: str
    array: np.ndarray | None = None
    base: int | None = None
    view: Callable[[np.ndarray], np.ndarray] | None = None
    contiguous: bool = True

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Lit:
    """A literal (non-array) kernel argument."""

    value: Any


@dataclass
class Step:
    """One kernel call (or, for views, `out = fn(src)`)."""

    name: str
    op: str
    kernel: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]  # slot indices (int) and Lit
    writes: tuple[int, ...]
    nbytes: int = 0
    is_view: bool = False
    blas: bool = False
    note: str = ""  # why this kernel was chosen (a sparse or dense product of a pruned layer)
    images: ImageSplit | None = None
    """How the kernel runs on a range of the batch's images (image_chains.py), when it can."""
    arg_written: tuple[bool, ...] | None = None
    """Per argument, whether the kernel writes it; None: an argument is written when its root is among `writes`
    (a chain of kernels passes a slot writable to the kernel that writes it, read-only to those that read it)."""
    parts: tuple[Step, ...] = ()
    """The steps a chain step runs in turn (image_chains.py); empty for any other step."""

    @property
    def slots(self) -> list[int]:
        """Slot indices among the arguments."""
        return [a for a in self.args if isinstance(a, int)]

    def written_args(self, root: Callable[[int], int]) -> tuple[bool, ...]:
        """Per argument, whether the kernel writes it (`root` maps a slot to the slot whose memory it views)."""
        if self.arg_written is not None:
            return self.arg_written
        roots = {root(w) for w in self.writes}
        return tuple(isinstance(a, int) and root(a) in roots for a in self.args)


@dataclass
class Plan:
    """A graph lowered to slots and steps."""

    graph: Graph
    slots: list[Slot]
    steps: list[Step]
    inputs: list[tuple[str, int]]
    outputs: list[tuple[str, int]]
    fused: list[tuple[str, ...]] = field(default_factory=list)
    twins: list[Twin] = field(default_factory=list)
    layer_kernels: dict[str, dict[str, str]] = field(default_factory=dict)
    int8_path: str | None = None
    """The int8 GEMM path the plan's integer ops run on (None when it has none)."""

    def kernels(self) -> list[Step]:
        """The kernel steps in order, each chain's own steps in its place (what each layer runs)."""
        return [p for s in self.steps if not s.is_view for p in (s.parts or (s,))]

    def root(self, slot: int) -> int:
        """The non-view slot whose memory `slot` views."""
        return root_slot(self.slots, slot)


def root_slot(slots: Sequence[Slot], slot: int) -> int:
    """The non-view slot of `slots` whose memory `slot` views."""
    while slots[slot].kind == "view":
        slot = slots[slot].base  # type: ignore[assignment]
    return slot


def _dummy(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-ordered array of `shape` over one element of memory (metadata only, never read)."""
    base = np.zeros(1, dtype)
    strides, acc = [], dtype.itemsize
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return np.lib.stride_tricks.as_strided(base, shape, tuple(reversed(strides)), writeable=False)


class LowerCtx:
    """What lowering rules use to create slots and emit steps."""

    def __init__(self, graph: Graph, parallel_threshold: int, int8_path: str | None = None,
                 outputs_in_arena: bool = False, blocked_layout: bool = True) -> None:
        self.graph = graph
        self.blocked_layout = blocked_layout
        """Whether f32 convolutions may hand their results on in the blocked-channel layout (blocked.py)."""
        self.outputs_in_arena = outputs_in_arena
        """Graph outputs are arena buffers too (the caller reads them before the next run) instead of fresh arrays."""
        self.parallel_threshold = parallel_threshold
        self.int8_path = int8_path
        """The int8 GEMM path integer ops run on (chosen from the host when the plan is built, or forced)."""
        self.int8_used = False
        self.threads = num_threads()
        self.slots: list[Slot] = []
        self.steps: list[Step] = []
        self.value_slot: dict[int, int] = {}
        self.deferred: dict[int, Callable[[], int]] = {}
        """Values whose slot is made on first use (`defer`)."""
        self.materialized: dict[int, int] = {}
        self.flat: dict[int, int] = {}
        self.twins: dict[str, Twin] = {}
        self.out_ids = {id(v) for v in graph.outputs}
        self.taken_outputs: set[int] = set()
        self.node: Node | None = None
        self.layer_kernels: dict[str, dict[str, str]] = {}
        self.channels_last: dict[int, int] = {}
        """Values (NCHW in the IR) whose slot is a transposed view of a contiguous NHWC slot, by value id: that
        slot. A kernel that reads channels last takes it as is; any other reader materializes NCHW (`arg`)."""
        self.blocked: dict[int, Any] = {}
        """Values (NCHW in the IR) held in the blocked-channel layout instead, by value id: their
        `blocked.BlockedValue`. Only blocked-aware kernels read them; any other reader gets an NCHW copy."""
        self.blocked_plans: dict[int, int | None] = {}
        """Per value id, the halo it carries blocked or None (`blocked.result_halo`, memoized)."""
        self._readers: dict[int, list[Node]] | None = None
        self._weight_bytes: int | None = None
        for v in graph.inputs:
            self.value_slot[id(v)] = self._new("input", v.type.shape, v.type.dtype.np_dtype, v.name)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the graph's constants (`tiling.graph_weight_bytes`), computed once."""
        if self._weight_bytes is None:
            self._weight_bytes = graph_weight_bytes(self.graph)
        return self._weight_bytes

    # ---- slots ---------------------------------------------------------------------------
    def _new(self, kind: str, shape: tuple[int, ...], dtype: np.dtype, name: str, **kw: Any) -> int:
        s = Slot(len(self.slots), kind, tuple(int(d) for d in shape), np.dtype(dtype), name, **kw)
        self.slots.append(s)
        return s.index

    def const(self, array: np.ndarray, name: str) -> int:
        """A constant slot holding `array` (or a C-contiguous, cache-line aligned copy of it), of the same shape
        (0-d stays 0-d). Packers that share one packed array between plans return it aligned, so that it is
        kept as it is, not copied per plan."""
        a = aligned_copy(np.asarray(array))
        if a.shape != np.shape(array):
            a = a.reshape(np.shape(array))
        return self._new("const", a.shape, a.dtype, name, array=a)

    def defer(self, v: Value, make: Callable[[], int]) -> None:
        """Bind `v` to the slot `make()` returns, made when `v` is first used (never if no kernel reads it)."""
        self.deferred[id(v)] = make

    def is_deferred(self, v: Value) -> bool:
        """Whether `v`'s slot is still to be made on first use."""
        return id(v) in self.deferred

    def slot(self, v: Value) -> int:
        """The slot holding value `v` (constants and deferred values get one on first use)."""
        if id(v) not in self.value_slot and id(v) in self.deferred:
            self.value_slot[id(v)] = self.deferred.pop(id(v))()
        if id(v) not in self.value_slot:
            if v.data is None:
                raise NumbaLoweringError(f"value %{v.name} is used before it is defined")
            self.value_slot[id(v)] = self.const(v.data, v.name)
        return self.value_slot[id(v)]

    def arg(self, v: Value | int) -> int:
        """A slot with the contents of `v` as a C-contiguous array (materializing a strided view)."""
        s = v if isinstance(v, int) else self.slot(v)
        if self.slots[s].contiguous:
            return s
        if s not in self.materialized:
            src = self.slots[s]
            out = self.buffer(src.shape, src.dtype, f"{src.name}.contig")
            self.copy_view(s, out)
            self.materialized[s] = out
        return self.materialized[s]

    def readers(self, v: Value) -> list[Node]:
        """The graph's nodes that read `v` (not the equations inside regions)."""
        if self._readers is None:
            self._readers = {}
            for n in self.graph.nodes:
                for i in {id(x): x for x in n.inputs}.values():
                    self._readers.setdefault(id(i), []).append(n)
        return self._readers.get(id(v), [])

    def writable_const(self, v: Value) -> int:
        """A slot for constant `v` as a writable contiguous copy (kernels type read-only arrays apart)."""
        s = self.slot(v)
        arr = self.slots[s].array
        if arr is not None and not arr.flags.writeable:
            key = -1 - s
            if key not in self.materialized:
                self.materialized[key] = self.const(np.array(arr, copy=True), self.slots[s].name)
            return self.materialized[key]
        return self.arg(s)

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype, name: str) -> int:
        """A fresh intermediate buffer (placed in the arena)."""
        return self._new("buffer", shape, dtype, name)

    def out(self, v: Value) -> int:
        """The slot a node writes value `v` into: a fresh per-run array for graph outputs (unless outputs_in_arena)."""
        kind = "buffer"
        if id(v) in self.out_ids and id(v) not in self.taken_outputs and not self.outputs_in_arena:
            kind = "output"
            self.taken_outputs.add(id(v))
        s = self._new(kind, v.type.shape, v.type.dtype.np_dtype, v.name)
        self.value_slot[id(v)] = s
        return s

    def view(self, src: int, fn: Callable[[np.ndarray], np.ndarray], name: str, v: Value | None = None) -> int:
        """A slot viewing `src` through `fn` (no copy); bound to value `v` when given."""
        probe = fn(self.probe(src))
        s = self._new("view", probe.shape, probe.dtype, name, base=src, view=fn,
                      contiguous=bool(probe.flags.c_contiguous))
        self.steps.append(Step(name, self.node.op if self.node else "view", "view", fn, (src,), (s,), 0, True))
        if v is not None:
            self.value_slot[id(v)] = s
        return s

    def probe(self, slot: int, root: np.ndarray | None = None) -> np.ndarray:
        """A metadata-only array with the shape and strides `slot` has relative to its root.

        `root` is the stand-in of the root slot to derive from (a fresh one when None).
        """
        s = self.slots[slot]
        if s.kind != "view":
            return root if root is not None else _dummy(s.shape, s.dtype)
        return s.view(self.probe(s.base, root))  # type: ignore[arg-type,misc]

    def layout(self, slot: int) -> tuple[int, int, tuple[int, ...]]:
        """(root slot, element offset, element strides) of `slot` within its root's memory."""
        root = root_slot(self.slots, slot)
        base = _dummy(self.slots[root].shape, self.slots[root].dtype)
        p = self.probe(slot, base)
        item = p.dtype.itemsize
        off = (p.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // item
        return root, int(off), tuple(int(st) // item for st in p.strides)

    def bits(self, slot: int) -> int:
        """`slot` itself, or for f16/bf16 a uint16 view of it (kernels move 16-bit patterns)."""
        if self.slots[slot].dtype.name in ("float16", "bfloat16"):
            return self.view(slot, _as_u16, f"{self.slots[slot].name}.bits")
        return slot

    def flat_of(self, slot: int) -> int:
        """A 1-D view of a contiguous slot."""
        if slot not in self.flat:
            self.flat[slot] = self.view(slot, _flatten, f"{self.slots[slot].name}.flat")
        return self.flat[slot]

    def reshaped(self, slot: int, shape: Sequence[int]) -> int:
        """A view of contiguous `slot` with another shape."""
        shape = tuple(int(d) for d in shape)
        if self.slots[slot].shape == shape:
            return slot
        return self.view(self.arg(slot), _Reshape(shape), f"{self.slots[slot].name}.r")

    def copy_view(self, src: int, dst: int) -> None:
        """Emit a strided copy of view slot `src` into contiguous slot `dst`."""
        from .k_data import copy_strided

        root, off, strides = self.layout(src)
        shape = self.slots[src].shape
        pad = 6 - len(shape)
        if pad < 0:
            raise NumbaLoweringError(f"cannot copy a strided view of rank {len(shape)} > 6")
        shape6 = np.array((1,) * pad + shape, np.int64)
        strides6 = np.array((0,) * pad + strides, np.int64)
        work = self.slots[dst].nbytes
        self.emit("copy_strided", copy_strided, self.bits(self.flat_of(root)), Lit(off), Lit(shape6),
                  Lit(strides6), self.bits(self.flat_of(dst)), writes=(dst,), work=work // 4)

    # ---- steps ---------------------------------------------------------------------------
    def parallel(self, work: int, needs_blas: bool = False) -> bool:
        """Whether a kernel doing `work` (about one unit per element touched) should use its parallel twin."""
        if self.threads <= 1 or work < self.parallel_threshold * (BLAS_WORK_FACTOR if needs_blas else 1):
            return False
        return blas.controlled() if needs_blas else True

    def emit(self, kernel: str, fn: Twin | Callable[..., Any], *args: Any, writes: Sequence[int],
             work: int = 0, needs_blas: bool = False, name: str | None = None, op: str | None = None,
             images: int = 0, cuts: Sequence[ArgCut] = ()) -> Step:
        """Append a call of `fn` (a Twin picks serial/parallel by `work`) on slot/literal `args`.

        `needs_blas`: the kernel calls BLAS (its parallel twin only runs where BLAS can be held at one
        thread, and the Executable holds it so while the plan runs). `cuts` (one per argument) say how the Twin's
        serial kernel runs on a range of the `images` (image_split.py).
        """
        if isinstance(fn, Twin):
            self.twins[fn.name] = fn
            par = self.parallel(work, needs_blas)
            callee = fn.pick(par)
            label = f"{kernel}{'[par]' if par else ''}"
        else:
            callee, label = fn, kernel
        slots = {a for a in args if isinstance(a, int)}
        nbytes = sum(self.slots[s].nbytes for s in slots)
        node = self.node
        split = None
        if cuts and isinstance(fn, Twin):
            if len(cuts) != len(args):
                raise NumbaLoweringError(f"{kernel}: {len(cuts)} image cuts for {len(args)} arguments")
            split = ImageSplit(images, fn, tuple(cuts))
        step = Step(name or (node.name if node else kernel), op or (node.op if node else kernel), label, callee,
                    tuple(args), tuple(writes), nbytes, blas=needs_blas, images=split)
        self.steps.append(step)
        return step

    def fail(self, message: str) -> NumbaLoweringError:
        """An error naming the node being lowered."""
        where = format_node(self.node) if self.node is not None else self.graph.name
        return NumbaLoweringError(f"numba backend: {where}\n  {message}")


def _flatten(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def _as_u16(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16)


@dataclass(frozen=True)
class _Reshape:
    shape: tuple[int, ...]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.shape)
