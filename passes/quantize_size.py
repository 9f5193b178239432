"""Which matrix products are too narrow for integer arithmetic to pay (`quantize{min_kn=...}`).

An integer product (`qlinear`, `qmatmul`, `qconv2d`) saves time in proportion to K * N per output row (K the
reduction length, N the output width) but adds work in proportion to K (quantizing the activation row) and to N
(dequantizing the output row), plus a step of its own. It pays only when both K and N are long enough, which
their harmonic mean 2KN / (K + N) measures: the saving per row over the added work grows with it. Products
reading one activation share its quantization: their widths add up into one N.

Measured by `python -m tensorsmith.bench.int8_breakeven` (2-core Xeon with AMX, int8 path amx, 2 threads,
2026-12-05, two runs; f32 time / int8 time of one-layer graphs, above 1 int8 pays): harmonic mean 12-52 (3x3
convolutions with K = 9-144 and N = 16-64, a linear with K = 27): 0.30-0.84; 64 (linear, K = N = 64): 0.67; 68 (K = 72,
N = 64): 1.00-1.03; 85-89: 0.97-1.26; 105-115: 1.7-3.2; 171-341 (linears): 1.2-2.3. So the default leaves a product
in f32 below a harmonic mean of 80. On a host without AMX or VNNI the integer product gains less and the
break-even lies higher; the benchmark measures a host's.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..ir.graph import Node

DEFAULT_MIN_KN = 80
"""Harmonic mean of K and N below which `quantize` leaves a product in f32 when it quantizes activations."""


def reduction_and_width(n: Node) -> tuple[int, int]:
    """(K, N) of a linear [N, K] weight, a matmul's constant B [..., K, N] or a conv2d's [O, C, kh, kw] weight
    (K = C * kh * kw, N = O)."""
    shape = n.inputs[1].type.shape
    if n.op == "linear":
        return int(shape[1]), int(shape[0])
    if n.op == "matmul":
        return (int(shape[-2]), int(shape[-1])) if len(shape) >= 2 else (int(shape[0]), 1)
    k = 1
    for d in shape[1:]:
        k *= int(d)
    return k, int(shape[0])


def shared_widths(nodes: Iterable[Node]) -> dict[int, int]:
    """id(activation) -> the summed N of the products among `nodes` that read it: they share its quantization (the
    q, k and v projections of one attention read one activation), so their widths add up against its K."""
    widths: dict[int, int] = {}
    for n in nodes:
        x = n.inputs[0]
        widths[id(x)] = widths.get(id(x), 0) + reduction_and_width(n)[1]
    return widths


def too_narrow(n: Node, min_kn: int, shared_width: int = 0) -> str | None:
    """Why `n`'s integer product would not pay (the harmonic mean of its K and N, or of K and `shared_width`, the
    N of every product reading the same activation, below `min_kn`), else None. Grouped convolutions (depthwise
    among them) are not judged: their cost is not one product's."""
    if min_kn <= 0 or (n.op == "conv2d" and int(n.attrs.get("groups", 1) or 1) != 1):
        return None
    k, w = reduction_and_width(n)
    total = max(w, shared_width)
    if k <= 0 or total <= 0:
        return None
    mean = 2 * k * total / (k + total)
    if mean >= min_kn:
        return None
    shared = f" ({total} with the products sharing its input)" if total > w else ""
    return f"{n.name} (K = {k}, N = {w}{shared}: harmonic mean {mean:.0f} < min_kn={min_kn})"
