"""Targets as data: the shipped TOML files, their citations, loading, overrides and errors."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path

import pytest
from tensorsmith.backends.cost import TargetError, builtin_names, list_targets, load_target, target_from_dict
from tensorsmith.backends.cost.energy import DEFAULT_MAC_PJ, default_dram_pj_per_byte, default_sram_pj_per_byte
from tensorsmith.backends.cost.loader import parse_bytes

SHIPPED = ("gpu-a100", "gpu-h100", "tpu-v4", "tpu-v5e", "npu-edge", "npu-mobile", "fpga-u250", "cpu-host")


@pytest.fixture(autouse=True)
def _no_user_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path / "config"))


def _toml_text(name: str) -> str:
    return (resources.files("tensorsmith.backends.cost") / "targets" / f"{name}.toml").read_text()


def test_every_required_target_ships_and_loads() -> None:
    assert set(SHIPPED) <= set(builtin_names())
    for name in SHIPPED:
        t = load_target(name)
        assert t.name == name and t.peak and t.memory and not t.dram.on_chip
        assert all(m.on_chip for m in t.memory[:-1])
        assert t.clock_hz > 0 and t.units > 0 and t.tdp_w > 0


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_in_a_target_file_cites_its_source(name: str) -> None:
    """Each numeric value has a comment on its line, or its table header carries one."""
    header_comment = False
    missing = []
    for line in _toml_text(name).splitlines():
        if line.startswith("["):
            header_comment = "#" in line
        elif re.match(r"^[a-z_0-9]+\s*=\s*[-0-9\[]", line) and "#" not in line and not header_comment:
            missing.append(line)
    assert not missing, f"{name}: values without a source comment: {missing}"
    assert "Sources" in _toml_text(name) or "source" in _toml_text(name).lower()


def test_published_peaks_are_consistent_with_the_hardware_they_describe() -> None:
    a100 = load_target("gpu-a100")
    assert a100.peak["fp16"] == pytest.approx(312e12) and a100.peak["int4"] == 2 * a100.peak["int8"]
    assert a100.sparsity[0].describe() == "2:4" and a100.sparsity[0].speedup == 2.0
    h100 = load_target("gpu-h100")
    assert "int4" not in h100.peak and h100.peak["fp8"] == pytest.approx(2 * h100.peak["fp16"], rel=1e-3)
    # H100: 132 SMs x 4096 fp16 flop/clk at the clock in the file gives the datasheet peak
    assert 132 * 4096 * h100.clock_hz == pytest.approx(h100.peak["fp16"], rel=0.01)
    for name, arrays in (("tpu-v4", 8), ("tpu-v5e", 4)):
        t = load_target(name)
        assert t.matrix.kind == "systolic" and t.matrix.count == arrays and t.matrix.rows == 128
        assert arrays * 128 * 128 * 2 * t.clock_hz == pytest.approx(t.peak["bf16"], rel=0.01)
    edge = load_target("npu-edge")
    assert list(edge.peak) == ["int8"] and edge.peak["int8"] == 4e12 and edge.tdp_w == 2.0
    assert edge.fallback is not None and edge.weights_resident
    mobile = load_target("npu-mobile")
    assert {"int8", "int4", "fp16"} <= set(mobile.peak) and mobile.dram.name == "lpddr5"
    fpga = load_target("fpga-u250")
    assert fpga.peak["int8"] == pytest.approx(12288 * 2 * 2 * fpga.clock_hz)  # two int8 MACs per DSP48E2
    assert fpga.arbitrary_bits and fpga.skips_zeros and fpga.sparsity[0].pattern == "unstructured"


def test_targets_are_frozen() -> None:
    t = load_target("gpu-a100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.clock_hz = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.peak["fp16"] = 1.0  # type: ignore[index]
    assert t.replace(clock_hz=1e9).clock_hz == 1e9 and t.clock_hz == 1.41e9


def test_user_override_is_merged_over_the_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(cfg))
    (cfg / "cpu-host.toml").write_text("launch_overhead_us = 7.5\n[peak_tops]\nfp32 = 0.5\n")
    t = load_target("cpu-host")
    assert t.peak["fp32"] == 0.5e12 and t.launch_overhead_s == pytest.approx(7.5e-6)
    assert t.peak["int8"] == load_target("cpu-host", overrides=False).peak["int8"]  # untouched keys kept
    assert "cpu-host.toml" in t.source and str(cfg) in t.source
    # a brand-new target dropped into the folder is listed and loadable by name
    (cfg / "my-part.toml").write_text(_toml_text("gpu-a100").replace('name = "gpu-a100"', 'name = "my-part"'))
    assert "my-part" in list_targets() and load_target("my-part").name == "my-part"


def test_an_explicit_override_file_replaces_the_user_one(tmp_path: Path) -> None:
    over = tmp_path / "one-thread.toml"
    over.write_text("units = 1\n[peak_tops]\nfp32 = 0.1\n")
    t = load_target("cpu-host", overrides=over)
    assert t.units == 1 and t.peak["fp32"] == 0.1e12 and str(over) in t.source
    with pytest.raises(TargetError, match="does not exist"):
        load_target("cpu-host", overrides=tmp_path / "missing.toml")


def test_a_copied_and_edited_file_loads_from_its_path(tmp_path: Path) -> None:
    p = tmp_path / "edge2.toml"
    p.write_text(_toml_text("npu-edge").replace("int8 = 4.0", "int8 = 8.0"))
    assert load_target(p).peak["int8"] == 8e12


def test_bad_target_files_name_the_file_and_the_field(tmp_path: Path) -> None:
    good = _toml_text("tpu-v4")
    cases = {
        "noclock.toml": (re.sub(r"^clock_ghz.*$", "", good, flags=re.M), "clock_ghz"),
        "badprec.toml": (good.replace("bf16 = 275.0", "bf17 = 275.0"), "bf17"),
        "badcap.toml": (good.replace('capacity = "32 GiB"', 'capacity = "lots"'), "lots"),
        "badkind.toml": (good.replace('kind = "tpu"', 'kind = "abacus"'), "abacus"),
        "broken.toml": (good + "\n[[[", "not valid TOML"),
        "badop.toml": (good + "\n[op_weights]\nfrobnicate = 2.0\n", "frobnicate"),
    }
    for fname, (text, needle) in cases.items():
        p = tmp_path / fname
        p.write_text(text)
        with pytest.raises(TargetError) as e:
            load_target(p)
        assert fname in str(e.value) and needle in str(e.value), str(e.value)
    with pytest.raises(TargetError, match="unknown target 'gpu-z9'.*gpu-a100"):
        load_target("gpu-z9")
    with pytest.raises(TargetError, match="missing required field 'name'"):
        target_from_dict({})


def test_sizes_parse_with_units() -> None:
    assert parse_bytes("40 MiB", "x") == 40 * 2**20 and parse_bytes("8 KB", "x") == 8000
    assert parse_bytes("1.5GiB", "x") == int(1.5 * 2**30) and parse_bytes(123, "x") == 123
    with pytest.raises(TargetError, match="where"):
        parse_bytes("many", "where")


def test_horowitz_defaults() -> None:
    assert DEFAULT_MAC_PJ["int8"] == pytest.approx(0.2 + 0.1)  # 8-bit mult + 32-bit add
    assert DEFAULT_MAC_PJ["fp32"] == pytest.approx(3.7 + 0.9)
    assert default_sram_pj_per_byte(8 * 1024) == pytest.approx(10 / 8)
    assert default_sram_pj_per_byte(2**20) == pytest.approx(100 / 8)
    assert default_sram_pj_per_byte(32 * 1024) == pytest.approx(20 / 8)
    assert default_sram_pj_per_byte(2**30) == pytest.approx(100 / 8)  # large memories are banked
    assert 1300 / 8 <= default_dram_pj_per_byte() <= 2600 / 8
    # a target that gives no energy figures gets the defaults
    assert load_target("npu-edge").mac_energy_pj("int8") == pytest.approx(0.3)
