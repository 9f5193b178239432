"""Quality after quantization on the model zoo (reference backend): markdown tables for docs/passes.md.

`python -m tensorsmith.bench.quant_quality [--models mlp-digits,cnn-digits,minilm-l6] [--top 10] [--gptq]`

Digits models: test accuracy for fp32, int8 static with each calibration method (calibrated on
training images), int8 and int4 weight-only. MiniLM: min cosine to sentence-transformers for int8
static with and without SmoothQuant and with mixed precision, int8 / int4 weight-only, and the most
sensitive layers. Each model shares one PassContext, so activations are observed once per graph.
`--gptq`: int4 / int8 weight-only with round to nearest against `rounding=gptq`, calibrated on data the
metric does not see (MiniLM: other running text, `calibration_text`; digits: training images).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..backends import reference
from ..passes import PassContext, run_pipeline
from ..passes.pipeline import make_pass
from ..passes.sensitivity import format_sensitivity
from .models import load_model
from .options import check_models, positive_int, split_csv

DIGITS_ROWS = [("fp32", ""), ("int8 static, minmax", "quantize{scheme=static,min_kn=0}"),
               ("int8 static, percentile 99.99", "quantize{scheme=static,min_kn=0,calibration=percentile}"),
               ("int8 static, entropy", "quantize{scheme=static,min_kn=0,calibration=entropy}"),
               ("int8 static, mse", "quantize{scheme=static,min_kn=0,calibration=mse}"),
               ("int8 dynamic, per row", "quantize{scheme=dynamic,min_kn=0}"),
               ("int8 weight-only", "quantize"), ("int4 weight-only", "quantize{precision=int4}"),
               ("int4 weight-only, group 32", "quantize{precision=int4,group_size=32}")]
"""(row label, pipeline) for the digits models."""

MINILM_ROWS = [("fp32", ""), ("int8 static, minmax", "quantize{scheme=static}"),
               ("int8 static, percentile 99.99", "quantize{scheme=static,calibration=percentile}"),
               ("int8 static, entropy", "quantize{scheme=static,calibration=entropy}"),
               ("int8 static, mse", "quantize{scheme=static,calibration=mse}"),
               ("int8 static, minmax, smooth=0.5", "quantize{scheme=static,smooth=0.5}"),
               ("int8 static, minmax, smooth=0.8", "quantize{scheme=static,smooth=0.8}"),
               ("int8 static, mse, smooth=0.5", "quantize{scheme=static,calibration=mse,smooth=0.5}"),
               ("int8 static, minmax, keep_fp32=3", "quantize{scheme=static,keep_fp32=3}"),
               ("int8 static, minmax, min_cosine=0.99", "quantize{scheme=static,min_cosine=0.99}"),
               ("int8 dynamic, per row", "quantize{scheme=dynamic}"),
               ("int8 dynamic, per tensor", "quantize,quantize-fold{dynamic=true,granularity=tensor}"),
               ("int8 weight-only", "quantize"), ("int4 weight-only", "quantize{precision=int4}"),
               ("int4 weight-only, group 32", "quantize{precision=int4,group_size=32}"),
               ("int4 weight-only, group 64", "quantize{precision=int4,group_size=64}"),
               ("int4 weight-only, group 128", "quantize{precision=int4,group_size=128}")]
"""(row label, pipeline) for MiniLM."""

GPTQ_ROWS = [("int4 weight-only", "quantize{precision=int4}"),
             ("int4 weight-only, GPTQ", "quantize{precision=int4,rounding=gptq}"),
             ("int4 weight-only, group 32", "quantize{precision=int4,group_size=32}"),
             ("int4 weight-only, group 32, GPTQ", "quantize{precision=int4,group_size=32,rounding=gptq}"),
             ("int4 weight-only, group 128", "quantize{precision=int4,group_size=128}"),
             ("int4 weight-only, group 128, GPTQ", "quantize{precision=int4,group_size=128,rounding=gptq}"),
             ("int8 weight-only, GPTQ", "quantize{rounding=gptq}")]
"""(row label, pipeline) for GPTQ against round to nearest, calibrated on data the metric does not use."""


def _calibration(name: str, inputs: dict[str, np.ndarray], held_out: bool = False) -> list[dict[str, np.ndarray]]:
    """Training images for the digits models (never the test split); the model's own sentences for MiniLM, or
    with `held_out` four batches of other running text (`calibration_text`)."""
    if name == "minilm-l6" and held_out:
        from .models.minilm import calibration_text

        return [calibration_text(*inputs["input_ids"].shape, seed=seed) for seed in range(4)]
    if name.endswith("digits"):
        from .models.digits import digits_split

        train = digits_split().x_train[: len(inputs["x"])]
        return [{"x": train if name == "mlp-digits" else train.reshape(-1, 1, 8, 8)}]
    return [inputs]


def quality_table(name: str, rows: list[tuple[str, str]],
                  held_out: bool = False) -> list[tuple[str, float, float, str]]:
    """(label, quality, seconds, the pass's report) per row."""
    m = load_model(name)
    ctx = PassContext(calibration=_calibration(name, m.inputs, held_out))
    out = []
    for label, pipeline in rows:
        t0 = time.perf_counter()
        g = run_pipeline(m.graph, pipeline, ctx=ctx) if pipeline else m.graph
        q = m.quality(lambda i, g=g: reference.run(g, i))
        report = ctx.records[-1].report if pipeline else ""
        out.append((label, q, time.perf_counter() - t0, report))
        print(f"  {name} {label}: {q:.4f} ({out[-1][2]:.1f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the quality tables and MiniLM's sensitivity ranking."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp-digits,cnn-digits,minilm-l6", help="zoo models, comma separated")
    ap.add_argument("--top", type=positive_int, default=10, help="sensitive layers listed for MiniLM")
    ap.add_argument("--gptq", action="store_true", help="only the GPTQ rows, calibrated on held-out data")
    args = ap.parse_args(argv)
    names = split_csv(args.models)
    check_models(ap, "--models", names)
    for name in names:
        rows = GPTQ_ROWS if args.gptq else MINILM_ROWS if name == "minilm-l6" else DIGITS_ROWS
        table = quality_table(name, rows, held_out=args.gptq)
        metric = "min cosine to sentence-transformers" if name == "minilm-l6" else "test accuracy"
        print(f"\n| {name} | {metric} | seconds (pass + eval) |\n|---|---|---|")
        for label, q, secs, _ in table:
            print(f"| {label} | {q:.4f} | {secs:.1f} |")
        for label, _, _, report in table:
            if "smooth=" in label or "keep_fp32" in label or "min_cosine" in label:
                print(f"\n{label}: ...{report[-600:]}")
        if name == "minilm-l6" and not args.gptq:
            m = load_model(name)
            ctx = PassContext(calibration=_calibration(name, m.inputs))
            t0 = time.perf_counter()
            ranking = make_pass("quantize", {"scheme": "static"}).sensitivity(m.graph, ctx)  # type: ignore[attr-defined]
            print(f"\nsensitivity, int8 static minmax, each layer alone ({time.perf_counter() - t0:.0f} s):")
            print(format_sensitivity(ranking, args.top))
        print()


if __name__ == "__main__":
    main()
