"""Load targets from TOML files: the shipped ones, user overrides, or any path."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .energy import DEFAULT_MAC_PJ, DEFAULT_OP_PJ, default_dram_pj_per_byte, default_sram_pj_per_byte
from .target import PRECISIONS, Fallback, MatrixUnit, MemoryLevel, SparsitySupport, Target, frozen_map

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class TargetError(ValueError):
    """A target file is missing, unreadable, or has a bad or missing field (the message names both)."""


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value: Any, where: str) -> int:
    """`"40 MiB"`, `"8 KB"` or a plain integer as a byte count."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)?\s*", value, re.IGNORECASE)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    raise TargetError(f"{where}: expected a size such as \"40 MiB\" or a byte count, got {value!r}")


def config_dir() -> Path:
    """Where user target files and overrides live: $TENSORSMITH_CONFIG_DIR or ~/.config/tensorsmith."""
    env = os.environ.get("TENSORSMITH_CONFIG_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tensorsmith"


def builtin_names() -> list[str]:
    """Names of the targets shipped with the package."""
    folder = resources.files(__package__) / "targets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def list_targets() -> list[str]:
    """Every target name: shipped ones plus user files in the config folder."""
    names = set(builtin_names())
    d = config_dir()
    if d.is_dir():
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def _read(path: Path | Any) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"target file {path}: not valid TOML: {e}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: tables merge key by key, everything else (arrays too) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


_CACHE: dict[tuple, Target] = {}


def load_target(spec: str | os.PathLike | Target, *, overrides: bool | str | os.PathLike = True) -> Target:
    """The target `spec`: a Target, a shipped or user name ("gpu-a100"), or a path to a .toml file.

    For a shipped name, a file of the same name in `config_dir()` (written by `bench calibrate`
    for cpu-host, or by hand) is merged over the shipped one unless `overrides` is False;
    `overrides` may also be the path of another override file to merge instead.
    """
    if isinstance(spec, Target):
        return spec
    spec_s = os.fspath(spec)
    user = config_dir() / f"{spec_s}.toml"
    if spec_s.endswith(".toml") or os.sep in spec_s:
        path = Path(spec_s)
        key: tuple = (str(path.resolve()), path.stat().st_mtime if path.exists() else None)
        if key not in _CACHE:
            _CACHE[key] = target_from_dict(_read(path), str(path))
        return _CACHE[key]
    if spec_s in builtin_names():
        shipped = resources.files(__package__) / "targets" / f"{spec_s}.toml"
        over = Path(overrides) if isinstance(overrides, (str, os.PathLike)) else user
        use = isinstance(overrides, (str, os.PathLike)) or (overrides and user.is_file())
        key = (spec_s, str(over) if use else None, over.stat().st_mtime if use and over.exists() else None)
        if key not in _CACHE:
            data = _read(shipped)
            source = f"{__package__}/targets/{spec_s}.toml"
            if use:
                data = merge(data, _read(over))
                source += f" + {over}"
            _CACHE[key] = target_from_dict(data, source)
        return _CACHE[key]
    if user.is_file():
        return load_target(str(user))
    raise TargetError(f"unknown target {spec_s!r}; known: {', '.join(list_targets())} (or give a path to a .toml)")


# ---- dict -> Target -----------------------------------------------------------------------------
def _get(d: Mapping[str, Any], key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise TargetError(f"{where}: missing required field {key!r}")
        return default
    v = d[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise TargetError(f"{where}: field {key!r} must be {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def _precision_table(d: Mapping[str, Any], key: str, scale: float, where: str) -> dict[str, float]:
    t = _get(d, key, dict, where, {})
    out = {}
    for p, v in t.items():
        if p not in PRECISIONS and p not in ("int32", "int64"):
            raise TargetError(f"{where}: [{key}] has unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise TargetError(f"{where}: [{key}].{p} must be a positive number, got {v!r}")
        out[p] = float(v) * scale
    return out


def _memory(items: list, where: str) -> tuple[MemoryLevel, ...]:
    levels = []
    for i, m in enumerate(items):
        w = f"{where}: [[memory]] #{i + 1}"
        if not isinstance(m, dict):
            raise TargetError(f"{w}: must be a table")
        cap = parse_bytes(_get(m, "capacity", (str, int), w), w)
        on_chip = _get(m, "on_chip", bool, w, i < len(items) - 1)
        default_e = default_sram_pj_per_byte(cap) if on_chip else default_dram_pj_per_byte()
        levels.append(MemoryLevel(
            name=_get(m, "name", str, w), capacity_bytes=cap,
            bandwidth=_get(m, "bandwidth_gbs", float, w) * 1e9,
            energy_pj_per_byte=_get(m, "energy_pj_per_byte", float, w, default_e),
            on_chip=on_chip, per_unit=_get(m, "per_unit", bool, w, False),
            persistent=_get(m, "persistent", bool, w, True)))
    return tuple(levels)


def _sparsity(items: list, where: str) -> tuple[SparsitySupport, ...]:
    out = []
    for i, s in enumerate(items):
        w = f"{where}: [[sparsity]] #{i + 1}"
        pattern = _get(s, "pattern", str, w)
        if pattern not in ("nm", "block", "unstructured", "channel"):
            raise TargetError(f"{w}: pattern {pattern!r} is not nm, block, unstructured or channel")
        block = _get(s, "block", list, w, None)
        if pattern == "block" and (block is None or len(block) != 2):
            raise TargetError(f"{w}: pattern 'block' needs block = [rows, cols]")
        n, m = _get(s, "n", int, w, None), _get(s, "m", int, w, None)
        if pattern == "nm" and (n is None or m is None or not 0 < n <= m):
            raise TargetError(f"{w}: pattern 'nm' needs 0 < n <= m")
        out.append(SparsitySupport(
            pattern=pattern, speedup=_get(s, "speedup", float, w), n=n, m=m,
            block=tuple(block) if block else None, precisions=tuple(_get(s, "precisions", list, w, [])),
            efficiency=_get(s, "efficiency", float, w, 1.0), metadata_bits=_get(s, "metadata_bits", float, w, 0.0),
            note=_get(s, "note", str, w, "")))
    return tuple(out)


SPARSE_KERNEL_MODES = ("", "measured")
"""How a target prices pruned weights: "" by its [[sparsity]] entries, "measured" by the kernel choice of
backends/cost/sparse_kernels.py (the stored break-evens of the CPU's BSR and N:M kernels)."""


def _sparse_kernels(mode: str, where: str) -> str:
    if mode not in SPARSE_KERNEL_MODES:
        raise TargetError(f"{where}: sparse_kernels = {mode!r} must be one of {SPARSE_KERNEL_MODES}")
    return mode


def _matrix(d: Mapping[str, Any], where: str) -> MatrixUnit:
    w = f"{where}: [matrix]"
    kind = _get(d, "kind", str, w)
    if kind == "systolic":
        return MatrixUnit("systolic", rows=_get(d, "rows", int, w), cols=_get(d, "cols", int, w),
                          dataflow=_get(d, "dataflow", str, w, "ws"), count=_get(d, "count", int, w, 1),
                          tile=(_get(d, "rows", int, w), _get(d, "cols", int, w), 1))
    if kind == "tiled":
        tile = _get(d, "tile", list, w)
        if len(tile) != 3 or not all(isinstance(t, int) and t > 0 for t in tile):
            raise TargetError(f"{w}: tile must be [m, n, k] positive integers, got {tile}")
        return MatrixUnit("tiled", tile=tuple(tile), count=_get(d, "count", int, w, 1))
    raise TargetError(f"{w}: kind must be 'tiled' or 'systolic', got {kind!r}")


def _op_weights(t: Mapping[str, Any], where: str) -> dict[str, float]:
    from ...ir.ops import OPS

    out = {}
    for op, v in t.items():
        if op not in OPS:
            raise TargetError(f"{where}: [op_weights] names unknown op {op!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise TargetError(f"{where}: [op_weights].{op} must be a positive number, got {v!r}")
        out[op] = float(v)
    return out


def target_from_dict(d: Mapping[str, Any], source: str = "<dict>") -> Target:
    """Build and check a Target from parsed TOML; errors name `source` and the field."""
    name = _get(d, "name", str, source)
    w = f"{source} ({name})"
    energy = _get(d, "energy_pj", dict, w, {})
    fb = _get(d, "fallback", dict, w, None)
    fallback = None if fb is None else Fallback(
        name=_get(fb, "name", str, f"{w}: [fallback]"), peak=_get(fb, "peak_gops", float, f"{w}: [fallback]") * 1e9,
        bandwidth=_get(fb, "bandwidth_gbs", float, f"{w}: [fallback]") * 1e9,
        link_bandwidth=_get(fb, "link_gbs", float, f"{w}: [fallback]") * 1e9,
        energy_pj_per_op=_get(fb, "energy_pj_per_op", float, f"{w}: [fallback]", 0.9))
    try:
        return Target(
            name=name, kind=_get(d, "kind", str, w), description=_get(d, "description", str, w, ""),
            clock_hz=_get(d, "clock_ghz", float, w) * 1e9, units=_get(d, "units", int, w),
            peak=frozen_map(_precision_table(d, "peak_tops", 1e12, w)),
            vector=frozen_map(_precision_table(d, "vector_tops", 1e12, w)),
            matrix=_matrix(_get(d, "matrix", dict, w), w),
            memory=_memory(_get(d, "memory", list, w), w),
            sparsity=_sparsity(_get(d, "sparsity", list, w, []), w),
            mac_pj=frozen_map({**DEFAULT_MAC_PJ, **_precision_table(energy, "mac", 1.0, w)}),
            op_pj=frozen_map({**DEFAULT_OP_PJ, **_precision_table(energy, "op", 1.0, w)}),
            efficiency=frozen_map({k: float(v) for k, v in _get(d, "efficiency", dict, w, {}).items()}),
            op_weights=frozen_map(_op_weights(_get(d, "op_weights", dict, w, {}), w)),
            launch_overhead_s=_get(d, "launch_overhead_us", float, w, 0.0) * 1e-6,
            tdp_w=_get(d, "tdp_w", float, w, 0.0), static_w=_get(d, "static_w", float, w, 0.0),
            skips_zeros=_get(d, "skips_zeros", bool, w, False),
            sparse_kernels=_sparse_kernels(_get(d, "sparse_kernels", str, w, ""), w),
            arbitrary_bits=_get(d, "arbitrary_bits", bool, w, False),
            weights_resident=_get(d, "weights_resident", bool, w, False),
            fallback=fallback, source=source, notes=tuple(_get(d, "notes", list, w, [])))
    except ValueError as e:
        if isinstance(e, TargetError):
            raise
        raise TargetError(f"{w}: {e}") from None
