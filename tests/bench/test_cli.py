"""The `bench` command: measured rows, peers, cost-model estimates, subcommands and errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from tensorsmith.bench.cli import main

FAST = ["--repeats", "1", "--warmup", "0"]


def test_run_writes_measurements_and_estimates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = main(["--models", "mlp", "--backends", "reference", "--peers", "", "--targets", "cpu-host,gpu-a100",
               *FAST, "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    (run,) = data["runs"]
    assert run["model"] == "mlp" and run["backend"] == "reference"
    assert run["median_ms"] > 0 and run["ratio_vs_reference"] == pytest.approx(1.0)
    assert run["quality"] == 0.0  # the reference backend is its own golden output
    (est,) = data["estimates"]
    assert set(est["latency_ms"]) == {"cpu-host", "gpu-a100"} and all(v > 0 for v in est["latency_ms"].values())
    assert est["measured_backend"] == "reference" and est["measured_ms"] == run["median_ms"]
    printed = capsys.readouterr().out
    assert "emulated" in printed and "gpu-a100" in printed and "err vs measured" in printed


def test_numba_row_reports_its_speed_up_over_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--models", "mlp", "--backends", "reference,numba", "--peers", "", "--targets", "", *FAST,
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["runs"]}
    assert rows["numba"]["ratio_vs_reference"] == pytest.approx(rows["reference"]["median_ms"]
                                                                / rows["numba"]["median_ms"])
    assert rows["numba"]["quality"] < 1e-4 and data["estimates"] == []


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_onnxruntime_is_timed_as_a_peer(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--models", "mlp", "--backends", "reference", "--peers", "onnxruntime", "--targets", "", *FAST,
                 "--json", str(out)]) == 0
    rows = {r["backend"]: r for r in json.loads(out.read_text())["runs"]}
    peer, ref = rows["onnxruntime (peer)"], rows["reference"]
    assert peer["quality"] < 1e-4  # the peer computes the same outputs
    assert ref["ratio_vs_peer"] == pytest.approx(peer["median_ms"] / ref["median_ms"])


def test_cost_subcommand_prints_per_node_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4,npu-edge"]) == 0
    printed = capsys.readouterr().out
    assert "mlp on tpu-v4" in printed and "mlp on npu-edge" in printed and "fc0" in printed


def test_list_shows_the_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    printed = capsys.readouterr().out
    for name in ("mlp-digits", "minilm-l6", "bert-base-layer", "onnx-resnet50"):
        assert name in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "no-such-model"], "unknown model 'no-such-model'"),
    (["--models", "mlp", "--targets", "no-such-target"], "unknown target 'no-such-target'"),
    (["cost", "--models", "mlp", "--targets", "no-such-target"], "unknown target 'no-such-target'"),
    (["--models", "mlp", "--repeats", "0"], "--repeats must be >= 1"),
    (["--models", "mlp", "--peers", "tvm"], "unknown peer(s) tvm"),
])
def test_bad_arguments_name_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().out.replace("\n", "")


def test_command_line_errors_name_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4", "--pipeline", "prune{pattern=auto}"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "prune{pattern=auto} in --pipeline needs a target: add --pass-target NAME (one of cpu-host," in out
    assert "run_pipeline" not in out
    assert main(["cost", "--models", "mlp", "--targets", "tpu-v4", "--pipeline", "prune{patern=auto}"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "--pipeline: pass 'prune' has no option 'patern'" in out
    assert "pattern: one of unstructured|block|nm|channel|auto" in out and "Literal" not in out
