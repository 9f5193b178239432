"""What early exits buy on the deep digits model: inputs leaving per exit, accuracy, latency per input vs no exits.

    python -m tensorsmith.bench.early_exit --repeats 7

The `early-exit` pass fits heads after blocks of resmlp-digits on the training split and chooses thresholds on
the first half of the test split (within an accuracy budget), or takes fixed max-prob thresholds (the sweep);
everything printed is measured on the second half of the test split, which neither saw. Per configuration: the
fraction of inputs leaving at each exit, the accuracy with exits and without, the Numba backend's mean latency
per input at batch 1 (the inputs one at a time) and at batch 64 (the inputs in batches of 64, the last one
padded by wrapping around): the sum over batches of each batch's median of `repeats` runs after warm-up, over
the number of inputs (compile time apart; each configuration runs in alternation with the model without exits on
each batch, so that a machine slowing down over the minutes weighs on both alike), and
`estimate(graph, "cpu-host")`'s expected speed-up next to the measured one. With --minilm, MiniLM with exits
after layers 2 and 4: inputs leaving and cosine to the full model's embedding per cosine budget.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import binding

from .. import runtime
from ..backends.cost import estimate
from ..ir import Graph
from ..passes.early_exit import EarlyExit, FittedExits, insert_exits
from ..passes.early_exit_fit import ExitPlan, evaluate_thresholds
from ..runtime.executable import Executable
from .options import check_threads, floats, nonnegative_int, positive_floats, positive_int
from .regions import host_path

DEFAULT_THRESHOLDS = (0.9, 0.99, 0.999, 0.9999)
"""max-prob thresholds of the sweep (the same at every exit)."""

DEFAULT_BUDGETS = (0.5, 1.0)
"""Accuracy budgets (points) whose thresholds the pass chooses on the calibration inputs."""

BATCHES = (1, 64)


@dataclass
class Setup:
    """The model's weights, the evaluation inputs, and the heads the pass fitted (with their held-out outputs)."""

    params: dict[str, np.ndarray]
    x_eval: np.ndarray
    y_eval: np.ndarray
    exits: EarlyExit
    fitted: FittedExits


def setup(at: str, budget: float) -> Setup:
    """Fit heads on the training split; thresholds within `budget` on the first half of the test split."""
    from .models.digits import digits_split
    from .models.digits_resmlp import graph_from_resmlp, trained_resmlp

    s = digits_split()
    params = trained_resmlp()
    half = len(s.x_test) // 2
    feeds = [{"x": s.x_train, "labels": s.y_train}, {"x": s.x_test[:half], "labels": s.y_test[:half]}]
    p = EarlyExit(at=at, budget=budget, holdout=half / (len(s.x_train) + half))  # type: ignore[call-arg]
    return Setup(params, s.x_test[half:], s.y_test[half:], p, p.fit(graph_from_resmlp(params, half), feeds))


def batches_of(x: np.ndarray, batch: int) -> list[np.ndarray]:
    """`x` cut into batches of `batch` rows, the last one filled up by wrapping around to the first rows."""
    n = -(-len(x) // batch) * batch
    xs = np.concatenate([x, x[: n - len(x)]]) if n > len(x) else x
    return [np.ascontiguousarray(xs[i : i + batch]) for i in range(0, n, batch)]


@dataclass
class Compiled:
    """One graph at one batch size on Numba: its outputs on the evaluation inputs and exit counts."""

    graph: Graph
    """The graph as given (before the backend's default pipeline), for the cost model."""
    exe: Executable
    parts: list[np.ndarray]
    probs: np.ndarray
    left: list[int]
    compile_s: float
    per_input_s: float = 0.0


def compile_graph(graph: Graph, x: np.ndarray, batch: int) -> Compiled:
    """Compile `graph` (batch `batch`) on Numba and run every evaluation batch once (outputs, exit counts)."""
    t0 = time.perf_counter()
    exe = runtime.compile(graph, backend="numba")
    parts = batches_of(x, batch)
    exe.run({"x": parts[0]})
    compile_s = time.perf_counter() - t0
    outs, left = [], None
    for part in parts:
        outs.append(exe.run({"x": part})["probs"])
        if "exits" in exe.stats:
            last = exe.stats["exits"]["last"]
            left = list(last) if left is None else [a + b for a, b in zip(left, last)]
    return Compiled(graph, exe, parts, np.concatenate(outs)[: len(x)], left or [], compile_s)


def time_interleaved(runs: list[Compiled], repeats: int) -> None:
    """Set each run's mean seconds per input: per evaluation batch, every executable in turn once per round
    (`repeats` rounds after a warm-up one), so that a machine slowing down over the minutes weighs on every
    configuration alike; each batch's median, summed over the batches, over the number of inputs."""
    n_parts = len(runs[0].parts)
    totals = [0.0] * len(runs)
    for p in range(n_parts):
        feeds = [{"x": r.parts[p]} for r in runs]
        samples: list[list[float]] = [[] for _ in runs]
        for round_ in range(repeats + 1):
            for i, (r, feed) in enumerate(zip(runs, feeds)):
                t0 = time.perf_counter()
                r.exe.run(feed)
                if round_:
                    samples[i].append(time.perf_counter() - t0)
        for i, s in enumerate(samples):
            totals[i] += float(np.median(s))
    batch = runs[0].parts[0].shape[0]
    for r, total in zip(runs, totals):
        r.per_input_s = total / (n_parts * batch)


def plans(st: Setup, thresholds: tuple[float, ...]) -> list[tuple[str, ExitPlan]]:
    """The pass's budgeted plan, then one plan per fixed max-prob threshold (measured on the held-out rows)."""
    f = st.fitted
    out = [(f"budget {st.exits.budget:g} pt", f.plan)]
    for t in thresholds:
        out.append((f"max-prob >= {t:g}", evaluate_thresholds(f.outputs, f.final, "max-prob", [t] * len(f.points),
                                                              f.quality, f.labels)))
    return out


def measure(st: Setup, configs: list[tuple[str, ExitPlan]], repeats: int) -> tuple[dict[int, Compiled],
                                                                                    list[dict[str, str]]]:
    """Per batch size, every configuration timed in alternation with the model without exits (its ratio is to the
    runs of that pairing; the line without exits gives their median); returns the runs without exits and one row
    per configuration."""
    from .models.digits_resmlp import graph_from_resmlp

    base: dict[int, Compiled] = {}
    rows = []
    specs_of = [st.exits.specs(st.fitted, plan)[0] for _, plan in configs]
    for name, specs in zip((c[0] for c in configs), specs_of):
        row = {"config": name, "exits at": " ".join(s.at.split(".")[0] for s in specs if s.probability > 0) or "-"}
        thr = {s.at: s.threshold for s in specs}
        row["thresholds"] = " ".join(f"{thr[p]:.4g}" if p in thr else "-" for p in st.fitted.points)
        rows.append(row)
    for b in BATCHES:
        base[b] = compile_graph(graph_from_resmlp(st.params, b), st.x_eval, b)
        runs = {i: compile_graph(insert_exits(graph_from_resmlp(st.params, b), specs), st.x_eval, b)
                for i, specs in enumerate(specs_of) if specs}
        plain_s = {}
        for i, tm in runs.items():  # each configuration in alternation with the model without exits
            time_interleaved([base[b], tm], repeats)
            plain_s[i] = base[b].per_input_s
        base[b].per_input_s = float(np.median(list(plain_s.values()))) if plain_s else 0.0
        for i, row in enumerate(rows):
            tm = runs.get(i)
            if tm is None:
                row[f"b{b} x"] = "1"
                continue
            if b == BATCHES[0]:
                n = sum(tm.left)
                row["left per exit %"] = " ".join(f"{100 * k / n:.1f}" for k in tm.left[:-1])
                row["acc"] = f"{np.mean(np.argmax(tm.probs, 1) == st.y_eval):.4f}"
                plain = estimate(graph_from_resmlp(st.params, b), "cpu-host").total.latency_s
                row["predicted x"] = f"{plain / estimate(tm.graph, 'cpu-host').total.expected_latency_s:.2f}"
            row[f"b{b} us/input"] = f"{tm.per_input_s * 1e6:.1f}"
            row[f"b{b} x"] = f"{plain_s[i] / tm.per_input_s:.2f}"
    return base, rows


def minilm_rows(budgets: tuple[float, ...], batch: int = 32, seq: int = 20) -> list[dict[str, str]]:
    """MiniLM with exits after layers 2 and 4 (cosine agreement), fitted on 192 template sentences: per budget,
    inputs leaving per exit and cosine to the full model's embedding on 64 other sentences (reference backend,
    which stops rows), and the cost model's expected speed-up on cpu-host."""
    from ..backends import reference
    from ..passes import PassContext, run_pipeline
    from .models import minilm

    g = minilm.minilm_graph(batch, seq)
    calib = minilm.tokenize(minilm.calibration_sentences(6 * batch), seq=seq)
    test = minilm.tokenize(minilm.calibration_sentences(2 * batch, seed=1), seq=seq)
    parts = [{k: v[i : i + batch] for k, v in test.items()} for i in range(0, 2 * batch, batch)]
    full = np.concatenate([reference.run(g, f)["embedding"] for f in parts])
    rows = []
    for budget in budgets:
        g2 = run_pipeline(g, minilm.exit_pipeline(budget), ctx=PassContext(calibration=[calib]))
        exe = runtime.compile(g2, backend="reference")
        got = np.concatenate([exe.run(f)["embedding"] for f in parts])
        left = exe.stats["exits"]["total"]
        cos = minilm.cosines(got, full)
        plain = estimate(g, "cpu-host").total.latency_s
        rows.append({"budget (cosine)": f"{budget:g}",
                     "left per exit %": " ".join(f"{100 * k / sum(left):.1f}" for k in left[:-1]),
                     "mean cosine": f"{cos.mean():.4f}", "min cosine": f"{cos.min():.4f}",
                     "predicted x": f"{plain / estimate(g2, 'cpu-host').total.expected_latency_s:.2f}"})
    return rows


def print_table(rows: list[dict[str, str]]) -> None:
    """Rows of strings as right-aligned columns."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(r.get(c, "").rjust(w) for c, w in zip(cols, widths)))


def main(argv: list[str] | None = None) -> None:
    """Print the sweep: one row per configuration, ratios > 1 mean exits are faster than the model without."""

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=7)
    ap.add_argument("--at", default="block0.out+block1.out+block3.out", help="exit points (value names or globs)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGETS[0], help="accuracy points the pass may lose")
    ap.add_argument("--thresholds", type=floats, default=",".join(str(t) for t in DEFAULT_THRESHOLDS),
                    help="fixed max-prob thresholds, comma separated ('' for the budgeted plan alone)")
    ap.add_argument("--minilm", type=positive_floats, default="",
                    help="also MiniLM with exits, at these cosine budgets (e.g. 0.01,0.02)")
    ap.add_argument("--threads", type=nonnegative_int, default=0, help="Numba threads (0: Numba's default)")
    args = ap.parse_args(argv)
    check_threads(ap, "--threads", [args.threads])
    if args.threads:
        numba.set_num_threads(args.threads)
    print(f"host {binding.get_host_cpu_name()} ({host_path()}), {numba.get_num_threads()} Numba threads; "
          f"repeats {args.repeats}, medians after warm-up, compile apart")
    st = setup(args.at, args.budget)
    print(f"resmlp-digits; exit points {', '.join(st.fitted.points)}; evaluation: {len(st.x_eval)} test images")
    thresholds = tuple(args.thresholds)
    base, rows = measure(st, plans(st, thresholds), args.repeats)
    acc0 = np.mean(np.argmax(base[1].probs, 1) == st.y_eval)
    print(f"without exits: accuracy {acc0:.4f}; " + ", ".join(f"batch {b} {base[b].per_input_s * 1e6:.1f} us/input"
                                                          for b in BATCHES))
    print_table(rows)
    if args.minilm:
        budgets = tuple(args.minilm)
        print("all-MiniLM-L6-v2, exits after layers 2 and 4 (cosine agreement), batch 32, sequence 20:")
        print_table(minilm_rows(budgets))


if __name__ == "__main__":
    main()
