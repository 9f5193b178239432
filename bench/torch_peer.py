"""PyTorch eager as a peer: a graph run op by op through torch functions, as a PyTorch module's forward runs.

The zoo's graphs have no PyTorch twin, so `TorchGraph` executes the IR graph itself with one torch
call per node, from `TORCH_RULES` (one entry per op, as data). Constants become torch tensors once,
when the graph is loaded; `torch.inference_mode()` is on. `bench` runs it in a process of its own
(`peer_process.time_graph_in_subprocess`): `python -m tensorsmith.bench.torch_peer GRAPH INPUTS`
reads a pickled graph and an .npz of inputs and prints the timing as JSON. An op without a rule, or
a form its rule does not take (asymmetric average-pool padding, say), is a `TorchPeerError` naming
the node: that row of `bench` then carries the error instead of a timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.graph import Graph, Node

Rule = Callable[[Node, list[torch.Tensor]], torch.Tensor]


class TorchPeerError(ValueError):
    """A node the PyTorch peer cannot run: its op has no rule, or its form is outside the rule."""


def _out_shape(node: Node) -> tuple[int, ...]:
    return tuple(node.outputs[0].type.shape)


def _pad(x: torch.Tensor, pads: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """x padded by pads = (top, left, bottom, right) on its last two axes."""
    pt, pl, pb, pr = pads
    return F.pad(x, (pl, pr, pt, pb), value=value) if any(pads) else x


def _conv2d(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    bias = xs[2] if len(xs) > 2 else None
    return F.conv2d(_pad(xs[0], a["pads"]), xs[1], bias, tuple(a["strides"]), 0, tuple(a["dilations"]), a["groups"])


def _maxpool2d(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    x = _pad(xs[0], a["pads"], float("-inf"))
    return F.max_pool2d(x, tuple(a["kernel"]), tuple(a["strides"]), 0, tuple(a["dilations"]), a["ceil_mode"])


def _avgpool2d(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    pt, pl, pb, pr = a["pads"]
    if (pt, pl) != (pb, pr) or tuple(a["dilations"]) != (1, 1):
        raise TorchPeerError(f"node %{node.name} (avgpool2d): pads {tuple(a['pads'])} / dilations "
                             f"{tuple(a['dilations'])} have no torch avg_pool2d form (symmetric pads, no dilation)")
    return F.avg_pool2d(xs[0], tuple(a["kernel"]), tuple(a["strides"]), (pt, pl), a["ceil_mode"],
                        a["count_include_pad"])


def _layernorm(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    x, axis = xs[0], node.attrs["axis"] % xs[0].dim()
    shape = tuple(x.shape[axis:])
    w = xs[1].reshape(shape) if len(xs) > 1 else None
    b = xs[2].reshape(shape) if len(xs) > 2 else None
    return F.layer_norm(x, shape, w, b, node.attrs["epsilon"])


def _batchnorm(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    x, scale, bias, mean, var = xs
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, node.attrs["epsilon"])


def _reduce(fn: Callable[..., torch.Tensor]) -> Rule:
    def rule(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        axes = tuple(node.attrs["axes"]) or tuple(range(xs[0].dim()))
        return fn(xs[0], dim=axes, keepdim=node.attrs["keepdims"])

    return rule


def _clip(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    lo, hi = node.attrs["min"], node.attrs["max"]
    return torch.clamp(xs[0], None if lo == float("-inf") else lo, None if hi == float("inf") else hi)


def _slice(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a, x = node.attrs, xs[0]
    index: list[Any] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        if step <= 0:
            raise TorchPeerError(f"node %{node.name} (slice): step {step} (torch slices step forward only)")
        index[axis % x.dim()] = slice(start, end, step)
    return x[tuple(index)]


def _gather(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    data, idx = xs
    axis = node.attrs["axis"] % data.dim()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    flat = torch.index_select(data, axis, idx.reshape(-1).long())
    return flat.reshape(_out_shape(node))


TORCH_RULES: dict[str, Rule] = {
    "add": lambda n, xs: xs[0] + xs[1],
    "sub": lambda n, xs: xs[0] - xs[1],
    "mul": lambda n, xs: xs[0] * xs[1],
    "div": lambda n, xs: xs[0] / xs[1],
    "maximum": lambda n, xs: torch.maximum(xs[0], xs[1]),
    "minimum": lambda n, xs: torch.minimum(xs[0], xs[1]),
    "pow": lambda n, xs: torch.pow(xs[0], xs[1]),
    "neg": lambda n, xs: -xs[0],
    "abs": lambda n, xs: torch.abs(xs[0]),
    "sqrt": lambda n, xs: torch.sqrt(xs[0]),
    "exp": lambda n, xs: torch.exp(xs[0]),
    "log": lambda n, xs: torch.log(xs[0]),
    "erf": lambda n, xs: torch.erf(xs[0]),
    "tanh": lambda n, xs: torch.tanh(xs[0]),
    "sigmoid": lambda n, xs: torch.sigmoid(xs[0]),
    "relu": lambda n, xs: F.relu(xs[0]),
    "gelu": lambda n, xs: F.gelu(xs[0], approximate=n.attrs["approximate"]),
    "clip": _clip,
    "identity": lambda n, xs: xs[0],
    "dropout": lambda n, xs: xs[0],
    "softmax": lambda n, xs: F.softmax(xs[0], dim=n.attrs["axis"]),
    "layernorm": _layernorm,
    "batchnorm": _batchnorm,
    "linear": lambda n, xs: F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None),
    "matmul": lambda n, xs: torch.matmul(xs[0], xs[1]),
    "conv2d": _conv2d,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "global-avgpool": lambda n, xs: torch.mean(xs[0], dim=(2, 3), keepdim=True),
    "lrn": lambda n, xs: F.local_response_norm(xs[0], n.attrs["size"], n.attrs["alpha"], n.attrs["beta"],
                                               n.attrs["bias"]),
    "reshape": lambda n, xs: xs[0].reshape(_out_shape(n)),
    "flatten": lambda n, xs: xs[0].reshape(_out_shape(n)),
    "transpose": lambda n, xs: xs[0].permute(*n.attrs["perm"]),
    "concat": lambda n, xs: torch.cat(xs, dim=n.attrs["axis"]),
    "slice": _slice,
    "gather": _gather,
    "reduce-sum": _reduce(torch.sum),
    "reduce-mean": _reduce(torch.mean),
    "reduce-max": _reduce(torch.amax),
}
"""One torch call per IR op (the node, its input tensors) -> the output tensor; ops absent here are refused."""


def unsupported_nodes(graph: Graph) -> list[str]:
    """`%name (op)` of every node whose op has no torch rule."""
    return [f"%{n.name} ({n.op})" for n in graph.nodes if n.op not in TORCH_RULES]


class TorchGraph:
    """An IR graph executed in PyTorch eager mode, one torch call per node (constants converted once)."""

    def __init__(self, graph: Graph) -> None:
        missing = unsupported_nodes(graph)
        if missing:
            raise TorchPeerError(f"graph {graph.name}: no torch rule for {', '.join(missing[:8])}"
                                 f"{' ...' if len(missing) > 8 else ''}")
        self.graph = graph
        self.consts = {id(v): torch.from_numpy(np.array(v.data, order="C")) for n in graph.nodes for v in n.inputs
                       if v.data is not None}  # copies: torch tensors want writable memory

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on numpy inputs (by graph input name); outputs as numpy arrays by graph output name."""
        env: dict[int, torch.Tensor] = dict(self.consts)
        for v in self.graph.inputs:
            env[id(v)] = torch.from_numpy(np.ascontiguousarray(feeds[v.name]))
        with torch.inference_mode():
            for n in self.graph.nodes:
                y = TORCH_RULES[n.op](n, [env[id(v)] for v in n.inputs])
                if tuple(y.shape) != _out_shape(n):
                    raise TorchPeerError(f"node %{n.name} ({n.op}): torch gave shape {tuple(y.shape)}, the IR "
                                         f"says {_out_shape(n)}")
                env[id(n.outputs[0])] = y
        return {v.name: env[id(v)].numpy() for v in self.graph.outputs}


def _main(argv: list[str] | None = None) -> None:
    from .peer_process import child_arguments, report_timing, rss_bytes, unpickle_graph

    args = child_arguments("PyTorch eager on a pickled graph", argv)
    torch.set_num_threads(args.threads)
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    with open(args.model, "rb") as f:
        run = TorchGraph(unpickle_graph(f.read()))
    session_s = time.perf_counter() - t0
    feeds = dict(np.load(args.inputs))
    first = run(feeds)
    if args.outputs:
        np.savez(args.outputs, **first)
    report_timing(lambda: run(feeds), torch.__version__, session_s, rss0, args.repeats, args.warmup)


if __name__ == "__main__":
    _main()
