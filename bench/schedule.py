"""Benchmark of the `schedule` pass: peak live bytes and arena bytes, original order vs scheduled.

    python -m tensorsmith.bench.schedule [--models a,b] [--random 30,40,50,60] [--seeds 2] [--orders 1000]
                                         [--optimum-states 1000000] [--skip models,random,latency]

Three tables: every zoo model (the ONNX light models among them) as loaded, the original order vs
`schedule` (peak live bytes, arena bytes from the runtime's planner, method, time); randomly wired
graphs (SERENITY's benchmark: Watts-Strogatz and Erdos-Renyi DAGs of convolutions, adds and concats)
against the median and the best of `--orders` random topological orders, the heuristic alone, the pass
as configured by default, the exact optimum where a search of `--optimum-states` states finishes, and
`schedule{rewrite=true}` (which also rewrites the graph: convolutions of concatenations partitioned, sums
re-chained), and that with `recompute=true` too (values read far apart computed twice where the peak drops);
and the latency schedule's makespan per target for Inception v1 and the BERT-base
layer against the serial sum and the critical path (emulated by the cost model). Times are the
process's CPU time (the pass is single-threaded), which a shared machine inflates less than wall time.
"""

from __future__ import annotations

import argparse
import random
import re
import time

from ..backends.cost import estimate, list_targets, load_target
from ..ir import Graph
from ..passes import PassContext, run_pipeline
from ..passes.schedule_latency import schedule_for_latency
from ..passes.schedule_memory import MemoryModel
from ..passes.schedule_search import schedule_for_memory
from .models import list_models, load_model
from .options import check_models, positive_int, positive_ints, reject_unknown, split_csv
from .random_wired import WS_K, random_wired_graph

LATENCY_MODELS = ("onnx-inception-v1", "bert-base-layer")


def random_order(model: MemoryModel, rng: random.Random) -> list[int]:
    """A uniformly drawn ready node at every step: a random topological order."""
    waiting = [len(p) for p in model.preds]
    succs: list[list[int]] = [[] for _ in model.preds]
    for i, ps in enumerate(model.preds):
        for p in ps:
            succs[p].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order = []
    while ready:
        v = ready.pop(rng.randrange(len(ready)))
        order.append(v)
        for s in succs[v]:
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
    return order


def _kb(n: int) -> str:
    return f"{n / 1e3:,.1f}"


def bench_models(names: list[str]) -> None:
    """Peak live and arena bytes of each model, original order vs scheduled, and the pass's time."""
    print("| model | nodes | peak live KB before | after | arena KB before | after | method | schedule CPU ms | "
          "with rewrite | rewrite CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        g = load_model(name).graph
        model = MemoryModel.of(g)
        t0 = time.process_time()
        out = run_pipeline(g, "schedule", ctx=PassContext(verify_each=False))
        seconds = time.process_time() - t0
        found = schedule_for_memory(g)
        t1 = time.process_time()
        rewritten = run_pipeline(g, "schedule{rewrite=true}", ctx=PassContext(verify_each=False))
        rewrite_seconds = time.process_time() - t1
        position = {n.name: i for i, n in enumerate(g.nodes)}
        order = [position[n.name] for n in out.nodes]
        original = range(len(g.nodes))
        print(f"| {name} | {len(g.nodes)} | {_kb(model.peak(original))} | {_kb(model.peak(order))} | "
              f"{_kb(model.arena(original).size)} | {_kb(model.arena(order).size)} | "
              f"{found.method}{'' if found.optimal else ' (not proven)'} | {seconds * 1e3:.0f} | "
              f"{_kb(MemoryModel.of(rewritten).peak(range(len(rewritten.nodes))))} | {rewrite_seconds * 1e3:.0f} |")


def bench_random(sizes: list[int], seeds: int, orders: int, optimum_states: int) -> None:
    """Randomly wired graphs: original, random orders (median, best of `orders`), heuristic, schedule, and the
    exact optimum where the search finishes within `optimum_states` states."""
    print(f"| graph | nodes | original KB | median random | best of {orders} random | heuristic | schedule | "
          "optimum | original / schedule | best random / schedule | arena KB before | after | heuristic CPU ms | "
          "schedule CPU ms | with rewrite | original / rewrite | rewrite CPU ms | with rewrite and recompute | "
          "original / both | values computed twice | both CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios, beaten, gaps, rewritten, recomputed = [], 0, [], [], []
    for kind in ("ws", "er"):
        for n in sizes:
            for seed in range(seeds):
                g = random_wired_graph(n, kind, seed)
                model = MemoryModel.of(g)
                rng = random.Random(seed)
                peaks = sorted(model.peak(random_order(model, rng)) for _ in range(orders))
                t0 = time.process_time()
                heuristic = schedule_for_memory(g, exact=False)
                t1 = time.process_time()
                found = schedule_for_memory(g)
                t2 = time.process_time()
                optimum = found if found.optimal else schedule_for_memory(g, max_states=optimum_states)
                original = range(len(g.nodes))
                ratios.append(found.peak_before / found.peak_after)
                beaten += found.peak_after > peaks[0]
                if optimum.optimal:
                    gaps.append(heuristic.peak_after / optimum.peak_after)
                t3 = time.process_time()
                out = run_pipeline(g, "schedule{rewrite=true}", ctx=PassContext(verify_each=False))
                t4 = time.process_time()
                rewrite_peak = MemoryModel.of(out).peak(range(len(out.nodes)))
                rewritten.append(found.peak_before / rewrite_peak)
                both_ctx = PassContext(verify_each=False)
                both = run_pipeline(g, "schedule{rewrite=true,recompute=true}", ctx=both_ctx)
                copies = re.search(r"recompute: (\d+) value", both_ctx.records[-1].report)
                t5 = time.process_time()
                both_peak = MemoryModel.of(both).peak(range(len(both.nodes)))
                recomputed.append(found.peak_before / both_peak)
                print(f"| {kind}{n} seed {seed} | {len(g.nodes)} | {_kb(found.peak_before)} | "
                      f"{_kb(peaks[len(peaks) // 2])} | {_kb(peaks[0])} | {_kb(heuristic.peak_after)} | "
                      f"{_kb(found.peak_after)} | {_kb(optimum.peak_after) if optimum.optimal else 'not found'} | "
                      f"{ratios[-1]:.2f}x | {peaks[0] / found.peak_after:.2f}x | {_kb(model.arena(original).size)} | "
                      f"{_kb(model.arena(found.order).size)} | {(t1 - t0) * 1e3:.0f} | {(t2 - t1) * 1e3:.0f} | "
                      f"{_kb(rewrite_peak)} | {rewritten[-1]:.2f}x | {(t4 - t3) * 1e3:.0f} | {_kb(both_peak)} | "
                      f"{recomputed[-1]:.2f}x | {copies.group(1) if copies else 0} | {(t5 - t4) * 1e3:.0f} |",
                      flush=True)
    print(f"\nmean original / schedule: {sum(ratios) / len(ratios):.2f}x over {len(ratios)} graphs "
          f"({min(ratios):.2f}x-{max(ratios):.2f}x); schedule above the best random order on {beaten}; "
          f"optimum found on {len(gaps)}, where the heuristic is {max(gaps, default=1.0):.2f}x above it at most; "
          f"with rewrite=true: mean original / schedule {sum(rewritten) / len(rewritten):.2f}x "
          f"({min(rewritten):.2f}x-{max(rewritten):.2f}x); with rewrite=true,recompute=true "
          f"{sum(recomputed) / len(recomputed):.2f}x ({min(recomputed):.2f}x-{max(recomputed):.2f}x)")


def bench_latency(names: tuple[str, ...]) -> None:
    """Latency schedule per target: makespan against the serial sum and the critical path (emulated)."""
    print("| model | target | units | serial ms | makespan ms | speed-up | critical path ms | estimate ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        g: Graph = run_pipeline(load_model(name).graph, "fuse")
        for target in list_targets():
            t = load_target(target)
            found = schedule_for_latency(g, t)
            out = run_pipeline(g, "schedule{objective=latency}", target=target)
            est = estimate(out, t).total.latency_s
            print(f"| {name} | {target} | {t.parallel_units} | {found.serial * 1e3:.3f} | {found.makespan * 1e3:.3f} | "
                  f"{found.serial / found.makespan:.2f}x | {found.critical_path * 1e3:.3f} | {est * 1e3:.3f} |")


def main(argv: list[str] | None = None) -> None:
    """Run the three tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated zoo models (default: every available one)")
    ap.add_argument("--random", type=positive_ints, default="30,40,50,60",
                    help=f"operator counts of the random graphs (each above {WS_K})")
    ap.add_argument("--seeds", type=positive_int, default=2, help="random graphs per kind and size")
    ap.add_argument("--orders", type=positive_int, default=1000, help="random topological orders per random graph")
    ap.add_argument("--optimum-states", type=positive_int, default=1_000_000,
                    help="states the exact search may visit per piece for the optimum column")
    ap.add_argument("--skip", default="", help="comma-separated tables not to run: models, random, latency")
    args = ap.parse_args(argv)
    skip = set(split_csv(args.skip))
    reject_unknown(ap, "--skip", sorted(skip), ("models", "random", "latency"), "table")
    small = [n for n in args.random if n <= WS_K]
    if small and "random" not in skip:
        ap.error(f"argument --random: {small[0]} operators: a Watts-Strogatz graph needs more than {WS_K}")
    names = split_csv(args.models)
    if names and "models" not in skip:
        check_models(ap, "--models", names)
    if "models" not in skip:
        bench_models(names or [m.name for m in list_models() if m.available])
        print()
    if "random" not in skip:
        bench_random(args.random, args.seeds, args.orders, args.optimum_states)
        print()
    if "latency" not in skip:
        bench_latency(LATENCY_MODELS)


if __name__ == "__main__":
    main()
