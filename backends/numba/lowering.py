"""Lower a verified graph to a Plan of Numba kernel calls, node by node through NUMBA_LOWERINGS."""

from __future__ import annotations

from ...ir.graph import Graph
from ...ir.regions import region_body
from ...ir.text import format_node
from . import (  # noqa: F401  (register the rules)
    rules_attention,
    rules_axis,
    rules_conv,
    rules_dense,
    rules_elementwise,
    rules_exits,
    rules_generated,
    rules_integer,
    rules_nn,
    rules_region,
    rules_shape,
)
from .cpu_features import best_int8_path, check_int8_path
from .image_chains import chain_images
from .plan import LowerCtx, NumbaLoweringError, Plan
from .reference_steps import lower_node
from .registry import NUMBA_LOWERINGS

DEFAULT_PARALLEL_THRESHOLD = 1 << 14
"""Kernels doing less work than this (about one unit per element; products count flops / 32) run their
serial twin: below a few microseconds a parallel region costs more than it saves. Measured with the
OpenMP threading layer on 2 cores (median us at 1<<17 / 1<<14): mlp 54 / 42, mlp-digits 154 / 114,
zoo cnn 209 / 195; transformer-block and the BERT-base layer unchanged. Kernels that call BLAS use
8x this threshold (`plan.BLAS_WORK_FACTOR`)."""


def check_lowerable(graph: Graph) -> None:
    """Raise NumbaLoweringError naming every op without a rule. Every IR dtype lowers: the kernels compute in f32,
    f64, the integers and bool, move f16 / bf16, and the rest runs reference rules
    (`reference_steps.runs_reference_rule`)."""
    missing: dict[str, str] = {}
    for n in graph.nodes:
        if n.op not in NUMBA_LOWERINGS and n.op not in missing:
            missing[n.op] = format_node(n)
    if missing:
        lines = "\n".join(f"  {op}: e.g. {where}" for op, where in missing.items())
        raise NumbaLoweringError(f"numba backend: graph {graph.name!r} has op(s) without a Numba lowering "
                                 f"({', '.join(sorted(missing))}):\n{lines}")


def lower(graph: Graph, parallel_threshold: int = DEFAULT_PARALLEL_THRESHOLD, int8_path: str | None = None,
          outputs_in_arena: bool = False, blocked_layout: bool = True, image_chains: bool = True) -> Plan:
    """The Plan of `graph`: slots, kernel steps, and per `fused` node its body's equation names.

    Fusion is decided in the graph (`fused` regions, see ir/regions.py); every other node lowers alone.
    The graph is not modified. Integer ops run on `int8_path` (an `int8_paths()` name; Int8PathError when
    the host cannot execute it), by default the best path of this host, read now. `outputs_in_arena` places
    the graph outputs in arena buffers too (for a caller that reads them before the next run). `blocked_layout`
    False keeps every convolution's result NCHW (blocked.py; to measure what the blocked layout buys);
    `image_chains` False runs each kernel as its own parallel region (image_chains.py; to measure what chains buy).
    """
    check_lowerable(graph)
    if int8_path is not None:
        check_int8_path(int8_path)
    ctx = LowerCtx(graph, parallel_threshold, int8_path or best_int8_path(), outputs_in_arena, blocked_layout)
    fused = [tuple(eq.name for eq in region_body(n).nodes) for n in graph.nodes if n.op == "fused"]
    for node in graph.nodes:
        ctx.node = node
        try:
            lower_node(ctx, node)
        except NumbaLoweringError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised naming the node
            raise ctx.fail(f"{type(e).__name__}: {e}") from e
    ctx.node = None
    outputs = []
    for v in graph.outputs:
        outputs.append((v.name, ctx.slot(v)))
    inputs = [(v.name, ctx.value_slot[id(v)]) for v in graph.inputs]
    steps, chains = chain_images(ctx.steps, ctx.slots, ctx.threads if image_chains else 1)
    return Plan(graph, ctx.slots, steps, inputs, outputs, fused, [*ctx.twins.values(), *chains], ctx.layer_kernels,
                ctx.int8_path if ctx.int8_used else None)
