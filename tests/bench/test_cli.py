"""The `bench` command end to end on a tiny suite: arguments, the JSON schema, figures, the HTML page, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from tensorsmith.bench.cli import main
from tensorsmith.bench.peers import PEERS
from tensorsmith.bench.report import MEASURED_COLUMNS, SCHEMA_VERSION

FAST = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--compile-workers", "1"]
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None

ROW_KEYS = {"model", "config", "backend", "pipeline", "fused", "median_ms", "spread_ms", "repeats", "speedup",
            "predicted_speedup", "cosine", "max_rel_err", "max_abs_err", "metric", "metric_value", "model_bytes",
            "peak_memory_bytes", "compile_ms", "jit_ms", "int8_path", "kernels", "error", "estimate_ms",
            "estimate_mj", "estimate_bound", "estimate_errors"}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of the default configurations on mlp, with every output written."""
    d = tmp_path_factory.mktemp("bench")
    argv = ["--models", "mlp", "--targets", "cpu-host,gpu-a100", *FAST, "--compile-workers", "2",
            "--json", str(d / "out.json"), "--html", str(d / "report.html")]
    if HAS_MPL:
        argv += ["--plot", str(d / "plots")]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return d, buf.getvalue()


def test_json_has_every_configuration_with_the_environment(full_run: tuple[Path, str]) -> None:
    d, _ = full_run
    data = json.loads((d / "out.json").read_text())
    assert data["schema"] == SCHEMA_VERSION
    env = data["environment"]
    assert env["cpu"] and env["threads"] == 1 and "numba" in env["versions"] and env["cpu_flags"]
    assert set(env["int8_paths_used"]) <= set(env["int8_paths_available"])
    rows = {r["config"]: r for r in data["rows"]}
    assert all(set(r) == ROW_KEYS for r in data["rows"])
    expected = {"reference fp32", "numba fp32", "numba fused", "block-sparse", "int8", "int4 weight-only",
                "int8+sparse+fused"} | ({"ORT fp32", "ORT int8 dynamic"} if HAS_ORT else set()) | \
        ({"torch eager fp32"} if HAS_TORCH else set())
    assert set(rows) == expected
    assert rows["numba fp32"]["speedup"] == pytest.approx(1.0) and rows["numba fp32"]["cosine"] > 0.9999
    assert rows["int8"]["int8_path"] in env["int8_paths_available"]
    assert rows["int8"]["model_bytes"] < rows["numba fp32"]["model_bytes"] / 3  # int8 weights: a quarter
    for r in data["rows"]:
        assert (r["median_ms"] is None) == (r["error"] is not None)  # a failure carries no timing
        assert set(r["estimate_ms"]) | set(r["estimate_errors"]) == ({"cpu-host", "gpu-a100"}
                                                                    if r["backend"] not in PEERS else set())
    assert data["failures"] == [f"mlp / {r['config']}: {r['error']}" for r in data["rows"] if r["error"]]
    settings = data["settings"]
    assert settings["compile_workers"] == 2 and 0 < settings["prebuild_wall_s"] < settings["wall_s"]
    assert settings["jit_s"] == pytest.approx(sum(r["jit_ms"] or 0.0 for r in data["rows"]) / 1e3)


def test_tables_are_printed(full_run: tuple[Path, str]) -> None:
    _, printed = full_run
    for col in MEASURED_COLUMNS:
        assert col in printed
    assert "emulated" in printed and "int8 path:" in printed and "kernel compilation" in printed
    assert "in 2 processes at once" in printed


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed")
def test_plots_are_written_and_not_empty(full_run: tuple[Path, str]) -> None:
    d, _ = full_run
    names = {p.name for p in (d / "plots").glob("*.png")}
    for want in ("latency.png", "speedup-vs-quality.png", "roofline-mlp-cpu-host.png", "roofline-mlp-gpu-a100.png",
                 "sparsity-mlp.png", "quant-error-mlp.png"):
        assert want in names
    assert all((d / "plots" / n).stat().st_size > 2000 for n in names)


def test_html_embeds_the_tables_and_figures(full_run: tuple[Path, str]) -> None:
    d, _ = full_run
    page = (d / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    assert "measured on this CPU" in page and "cost model per target (emulated" in page
    for col in MEASURED_COLUMNS:
        assert f">{col}</th>" in page
    assert ("data:image/png;base64," in page) == HAS_MPL and "src=\"http" not in page  # self-contained


def test_a_configuration_outside_its_bound_is_a_failure_without_timing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    assert main(["--models", "mlp", "--backends", "numba", "--targets", "", *FAST, "--json", str(out),
                 "--pipelines", "fuse", "prune{sparsity=0.9}"]) == 0
    rows = {r["config"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"numba fp32", "fuse", "prune{sparsity=0.9}"}
    assert rows["fuse"]["error"] is None and rows["fuse"]["fused"] and rows["fuse"]["median_ms"] > 0
    bad = rows["prune{sparsity=0.9}"]
    assert bad["median_ms"] is None and "below the bound" in bad["error"] and bad["cosine"] < 0.8
    assert "failed: mlp / prune{sparsity=0.9}: cosine" in capsys.readouterr().out.replace("\n", "")


def test_list_shows_the_zoo_and_the_configurations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    printed = capsys.readouterr().out
    for name in ("mlp-digits", "minilm-l6", "bert-base-layer", "int8+sparse+fused", "int4 weight-only"):
        assert name in printed


def test_cost_subcommand_prints_per_node_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4,npu-edge"]) == 0
    printed = capsys.readouterr().out
    assert "mlp on tpu-v4" in printed and "mlp on npu-edge" in printed and "fc0" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "no-such-model", "--backends", "reference"], "unknown model 'no-such-model'"),
    (["--models", "mlp", "--targets", "no-such-target"], "unknown target 'no-such-target'"),
    (["cost", "--models", "mlp", "--targets", "no-such-target"], "unknown target 'no-such-target'"),
    (["--models", "mlp", "--repeats", "0"], "--repeats must be >= 1"),
    (["--models", "mlp", "--compile-workers", "0"], "--compile-workers >= 1"),
    (["--models", "mlp", "--backends", "tvm"], "unknown backend(s) tvm"),
    (["sweep", "--models", "mlp", "--pipelines", "prune{sparsity=@sparsity}", "--sparsities", ""],
     "but --sparsities is empty"),
])
def test_bad_arguments_name_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().out.replace("\n", "")


def test_command_line_errors_name_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4", "--pipelines", "prune{pattern=auto}"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "prune{pattern=auto} in --pipelines needs a target: add --pass-target NAME (one of cpu-host," in out
    assert "run_pipeline" not in out
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4", "--pipelines", "prune{patern=auto}"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "--pipelines: pass 'prune' has no option 'patern'" in out
    assert "pattern: one of unstructured|block|nm|channel|auto" in out and "Literal" not in out
