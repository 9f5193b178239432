"""The developer benchmarks' command lines: a bad argument ends in argparse's usage error (exit status 2) naming
it, before anything is built or timed; and the argument types of `bench.options` they share."""

from __future__ import annotations

import argparse
import importlib

import pytest
from tensorsmith.backends.numba import cpu_features
from tensorsmith.bench import fusion, models, side_by_side
from tensorsmith.bench.models import ModelInfo
from tensorsmith.bench.options import (
    floats,
    nonnegative_int,
    positive_float,
    positive_floats,
    positive_int,
    positive_ints,
)
from tensorsmith.bench.peer_process import child_arguments

MANY = "100000"
"""A thread count above any NUMBA_NUM_THREADS."""


@pytest.mark.parametrize(("parse", "text", "value"), [
    (positive_int, "1", 1), (positive_int, " 12 ", 12), (nonnegative_int, "0", 0), (nonnegative_int, "3", 3),
    (positive_float, "0.5", 0.5), (positive_float, "10", 10.0),
    (positive_ints, "128,512, 1024", [128, 512, 1024]), (positive_ints, "1,", [1]),
    (floats, "0.9,-1,1e-3", [0.9, -1.0, 0.001]), (floats, "", []),
    (positive_floats, "0.01,0.02", [0.01, 0.02]), (positive_floats, "", []),
])
def test_types_parse_good_values(parse: object, text: str, value: object) -> None:
    assert parse(text) == value  # type: ignore[operator]


@pytest.mark.parametrize(("parse", "text", "message"), [
    (positive_int, "0", "expected an integer >= 1, got '0'"),
    (positive_int, "abc", "expected an integer >= 1, got 'abc'"),
    (positive_int, "2.5", "got '2.5'"),
    (nonnegative_int, "-1", "expected an integer >= 0, got '-1'"),
    (positive_float, "0", "expected a number > 0, got '0'"),
    (positive_float, "nan", "expected a finite number, got 'nan'"),
    (positive_float, "x", "got 'x'"),
    (positive_ints, "abc", "expected integers >= 1, got 'abc' in 'abc'"),
    (positive_ints, "128,0", "got '0' in '128,0'"),
    (positive_ints, "", "expected comma-separated integers >= 1, got ''"),
    (positive_ints, " , ", "got ' , '"),
    (floats, "0.9,x", "expected a finite number, got 'x' in '0.9,x'"),
    (floats, "inf", "got 'inf'"),
    (positive_floats, "0.01,-1", "expected numbers > 0, got '-1' in '0.01,-1'"),
])
def test_types_refuse_bad_values_naming_them(parse: object, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as e:
        parse(text)  # type: ignore[operator]
    assert message in str(e.value)


BAD_ARGUMENTS = [
    ("amx_tiles", ["--rounds", "0"], "argument --rounds: expected an integer >= 1, got '0'"),
    ("amx_tiles", ["--threads", MANY], f"argument --threads: {MANY} threads is more than Numba can run here"),
    ("attention", ["--seqs", "abc"], "argument --seqs: expected integers >= 1, got 'abc'"),
    ("attention", ["--seqs", "128,0"], "argument --seqs: expected integers >= 1, got '0' in '128,0'"),
    ("attention", ["--heads", "0"], "argument --heads: expected an integer >= 1, got '0'"),
    ("attention", ["--threads", "-1"], "argument --threads: expected an integer >= 0, got '-1'"),
    ("attention", ["--threads", MANY], "argument --threads: "),
    ("calibrate", ["--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    ("calibrate", ["--backend", "tvm"], "argument --backend: unknown backend 'tvm'; known: "),
    ("conv_layout", ["--models", "cnn,no-such-model"], "argument --models: unknown model 'no-such-model'; known: mlp"),
    ("conv_mean", ["--rounds", "0"], "argument --rounds: expected an integer >= 1, got '0'"),
    ("conv_pool", ["--models", "nope"], "argument --models: unknown model 'nope'"),
    ("image_chains", ["--rounds", "x"], "argument --rounds: expected an integer >= 1, got 'x'"),
    ("early_exit", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("early_exit", ["--thresholds", "0.9,x"], "argument --thresholds: expected a finite number, got 'x' in '0.9,x'"),
    ("early_exit", ["--minilm", "0.01,-1"], "argument --minilm: expected numbers > 0, got '-1'"),
    ("early_exit", ["--threads", MANY], "argument --threads: "),
    ("exit_runtime", ["--batch", "0"], "argument --batch: expected an integer >= 1, got '0'"),
    ("exit_runtime", ["--backends", "reference,tvm"], "argument --backends: unknown backend 'tvm'; known: "),
    ("fusion", ["--models", "mlp,bogus"],
     "argument --models: unknown model 'bogus'; known: mlp, cnn, transformer-block, bert-base-layer, "
     "minilm-l6-b1s128, torch-encoder-layer, causal-layer-s512, mlp-digits"),
    ("fusion", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("fuzz_import", ["--cases", "-1"], "argument --cases: expected an integer >= 1, got '-1'"),
    ("fuzz_import", ["--limit", "0"], "argument --limit: expected a number > 0, got '0'"),
    ("fuzz_import", ["--light", "squeezenet,nope"], "argument --light: unknown light model 'nope'; known: "),
    ("int4_gemm", ["--rows", "1,x"], "argument --rows: expected integers >= 1, got 'x' in '1,x'"),
    ("int4_gemm", ["--threads", ""], "argument --threads: expected comma-separated integers >= 1, got ''"),
    ("int4_gemm", ["--threads", f"1,{MANY}"], f"argument --threads: {MANY} threads is more than Numba can run"),
    ("int4_gemm", ["--k", "0"], "argument --k: expected an integer >= 1, got '0'"),
    ("int8_gemm", ["--paths", "bogus"],
     "argument --paths: unknown int8 path 'bogus'; known: amx, avx512vnni, avxvnni, avx512bw, avx2"),
    ("int8_gemm", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("kernels", ["--sections", "gemm,foo"], "argument --sections: unknown section 'foo'; known: gemm, conv,"),
    ("kernels", ["--repeats", "-3"], "argument --repeats: expected an integer >= 1, got '-3'"),
    ("onnx_conformance", ["--kinds", "light,nope"], "argument --kinds: unknown kind 'nope'; known: light,"),
    ("prune_quality", ["--models", "mlp-digits,nope"], "argument --models: unknown model 'nope'"),
    ("qadd", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("qadd", ["--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    ("quant_quality", ["--models", "nope"], "argument --models: unknown model 'nope'"),
    ("quant_quality", ["--top", "0"], "argument --top: expected an integer >= 1, got '0'"),
    ("quantized_models", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("quantized_models", ["--seq", "abc"], "argument --seq: expected an integer >= 1, got 'abc'"),
    ("quantized_models", ["--threads", MANY], "argument --threads: "),
    ("quantized_models", ["--int8-path", "bogus"], "argument --int8-path: unknown int8 path 'bogus'; known: amx"),
    ("regions", ["--threads", "serial,many"],
     "argument --threads: unknown thread setting 'many'; known: serial, default"),
    ("regions", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("schedule", ["--random", "30,x"], "argument --random: expected integers >= 1, got 'x' in '30,x'"),
    ("schedule", ["--random", "30,3"], "argument --random: 3 operators: a Watts-Strogatz graph needs more than 4"),
    ("schedule", ["--seeds", "0"], "argument --seeds: expected an integer >= 1, got '0'"),
    ("schedule", ["--orders", "0"], "argument --orders: expected an integer >= 1, got '0'"),
    ("schedule", ["--models", "nope"], "argument --models: unknown model 'nope'"),
    ("schedule", ["--skip", "random,foo"], "argument --skip: unknown table 'foo'; known: models, random, latency"),
    ("sparse_gemm", ["--isa", "neon"], "argument --isa: unknown sparse kernel path 'neon'; known: avx2, avx512"),
    ("sparse_gemm", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("sparse_gemm", ["--threads", MANY], "argument --threads: "),
    ("sparse_int8_gemm", ["--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    ("under_load", ["--models", "mlp,nope"], "argument --models: unknown model 'nope'"),
    ("under_load", ["--rounds", "0"], "argument --rounds: expected an integer >= 1, got '0'"),
    ("validate_cost", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("validate_cost", ["cpu", "--backend", "tvm"], "argument --backend: unknown backend 'tvm'"),
    ("validate_cost", ["roofline", "--model", "nope"], "argument --model: unknown model 'nope'"),
]
"""(bench module, argv, text its usage error must hold)."""


@pytest.mark.parametrize(("module", "argv", "message"), BAD_ARGUMENTS,
                         ids=[f"{m}:{' '.join(a)}" for m, a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_a_usage_error_naming_it(module: str, argv: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"tensorsmith.bench.{module}").main
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err


def test_an_int8_path_this_host_cannot_run_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tensorsmith.bench import int8_gemm

    monkeypatch.setattr(cpu_features, "int8_paths", lambda features=None: ("avx2",))
    monkeypatch.setattr(cpu_features, "unavailable_int8_paths", lambda features=None: {"amx": "needs amx-int8"})
    with pytest.raises(SystemExit) as e:
        int8_gemm.main(["--paths", "avx2,amx"])
    assert e.value.code == 2
    assert ("argument --paths: this host cannot execute the int8 path 'amx' (needs amx-int8); paths it executes: "
            "avx2") in capsys.readouterr().err


def _cnn_unavailable() -> list[ModelInfo]:
    """The zoo as `list_models` says it, with cnn not available."""
    return [ModelInfo(m.name, m.description, m.requires, False, "pip install something") if m.name == "cnn" else m
            for m in models.registry.list_models()]


def test_a_model_that_cannot_load_here_is_refused_where_it_would_be_loaded(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tensorsmith.bench import under_load

    monkeypatch.setattr(models, "list_models", _cnn_unavailable)
    with pytest.raises(SystemExit) as e:
        under_load.main(["--models", "mlp,cnn"])
    assert e.value.code == 2
    assert "argument --models: model 'cnn' is not available here: pip install something" in capsys.readouterr().err


def test_a_known_model_that_cannot_load_here_is_still_skipped(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(models, "list_models", _cnn_unavailable)
    monkeypatch.setattr(side_by_side, "list_models", _cnn_unavailable)
    fusion.main(["--models", "cnn", "--no-peer"])
    side_by_side.compare_main(["--models", "cnn"], "doc", lambda name, rounds: "measured")
    out = capsys.readouterr().out
    assert "(cnn: not available here)" in out and "\ncnn: not available here" in out and "measured" not in out


def test_the_peer_child_refuses_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert child_arguments("x", ["m.onnx", "in.npz", "--warmup", "0"]).warmup == 0
    with pytest.raises(SystemExit) as e:
        child_arguments("x", ["m.onnx", "in.npz", "--repeats", "0"])
    assert e.value.code == 2 and "argument --repeats: expected an integer >= 1, got '0'" in capsys.readouterr().err
