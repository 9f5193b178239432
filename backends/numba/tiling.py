"""Whether a parallel product of a few hundred rows splits its rows or its columns between the threads.

The packed GEMMs (fp32 `rules_dense.packed_tiles`, int8 `int8_gemm.int8_tiles`) give each thread a tile of
rows by panels. Splitting the rows lets a thread read the rows of A that it wrote itself where the ops before it
split by rows too (a chain of products, layernorm, the row-wise elementwise kernels, the per-row activation
quantization); splitting the panels has each thread read rows half written by the other core, but keeps half of
the weights per core, so that weights too large for one core's L2 but not for all of them stay there across calls.
Measured on the 2-core AMX host, 2026-12-05 (2 threads): a chain of fp32 128 x 384 x 384 products 141 us each split
by panels, 126 by rows; the fp32 BERT-base layer 7% faster by rows, MiniLM 1-4%; int8 (dynamic, amx) MiniLM 18%
faster, the BERT-base layer 16%; one int8 128 x 768 x 3072 product called again and again (its 2.4 MB of weights
hot in the two L2s) 35% slower by rows. An fp32 product read only by `attention` splits its panels, as attention
splits its heads (`matrix_lowering.read_by_heads`: 1-4% on MiniLM and the BERT-base layer); an int8 one keeps the
rows it quantized (panels there were 2-7% slower).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ...ir.graph import Graph

ROW_SPLIT_MIN_ROWS = 64
"""Rows per thread from which a product of at most 256 rows (more always split by rows) may split by rows."""
DEFAULT_L2_BYTES = 1 << 20
"""A core's L2 where the host does not say (Linux's sysfs is read)."""


@functools.cache
def l2_bytes() -> int:
    """The size of one core's L2 cache in bytes (Linux sysfs), or DEFAULT_L2_BYTES."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2" and (index / "type").read_text().strip() != "Instruction":
                return cache_size_bytes((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
    return DEFAULT_L2_BYTES


def cache_size_bytes(text: str) -> int:
    """Bytes of a cache size as sysfs writes it ("2048K", "1M", or plain bytes)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def graph_weight_bytes(graph: Graph) -> int:
    """Bytes of the graph's constants (its weights)."""
    return sum(v.data.nbytes for v in graph.constants if v.data is not None)


def split_rows(m: int, weight_bytes: int, all_weight_bytes: int, threads: int) -> bool:
    """Whether a product of m <= 256 rows with `weight_bytes` of weights, in a graph with `all_weight_bytes`, splits
    its rows between the threads: from ROW_SPLIT_MIN_ROWS rows a thread, when its weights fit half a core's L2 (each
    core keeps them whole) or the graph's weights overflow the threads' L2s together (they come from memory every
    run anyway)."""
    if threads <= 1 or m < ROW_SPLIT_MIN_ROWS * threads:
        return False
    l2 = l2_bytes()
    return weight_bytes <= l2 // 2 or all_weight_bytes > threads * l2
