"""Which int8 GEMM paths this host can execute, read from LLVM's view of the host CPU.

A path names the instructions the int8 micro-kernel is built from (see `int8_ukernel.py`):

| path | instructions | vectors |
|---|---|---|
| amx | tdpbusd on 16 x 64-byte tiles (u8 x s8, 64 products per i32), VNNI for tails | tiles + zmm |
| avx512vnni | vpdpbusd (u8 x s8, four products summed into i32, no saturation) | zmm |
| avxvnni | vpdpbusd, VEX encoding (AVX-VNNI: AVX2-only CPUs with VNNI) | ymm |
| avx512bw | vpmaddubsw + vpmaddwd (pairs summed in saturating i16, then i32) | zmm |
| avx2 | vpmaddubsw + vpmaddwd | ymm |

AMX also needs the operating system: Linux grants a process the tile state only on request
(`int8_amx.request_tile_state`), so the host's amx path is offered only once that request succeeds;
`unavailable_int8_paths()` says why a known path cannot run here.

The host's features are read once per process, on first use (LLVM's query costs about 0.25 ms, too much
for every GEMM call), never at import: a plan picks its path when it is built.
Passing `features` explicitly asks about a CPU with those features (no operating-system check).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

import llvmlite.binding as llvm

from .int8_amx import request_tile_state

INT8_PATH_FEATURES: dict[str, tuple[str, ...]] = {
    "amx": ("amx-int8", "amx-tile", "avx512f", "avx512bw", "avx512vnni"),
    "avx512vnni": ("avx512f", "avx512bw", "avx512vnni"),
    "avxvnni": ("avx2", "avxvnni"),
    "avx512bw": ("avx512f", "avx512bw"),
    "avx2": ("avx2",),
}
"""LLVM feature names each int8 path needs, best path first."""

AMX_INT8_FEATURES = ("amx-int8", "amx-tile")
"""The CPU features that report AMX int8."""


class Int8PathError(ValueError):
    """An int8 GEMM path that is unknown or that this host cannot execute."""


@functools.cache
def host_features() -> Mapping[str, bool]:
    """LLVM's feature flags of the host CPU (read on the first call; a read-only mapping)."""
    return MappingProxyType(dict(llvm.get_host_cpu_features()))


def _os_refusal(path: str, features: Mapping[str, bool] | None) -> str | None:
    """Why this host's operating system cannot run `path` (None when it can, or when asked about `features`)."""
    if path != "amx" or features is not None:
        return None
    return request_tile_state()  # asked only of a host that reports AMX


def unavailable_int8_paths(features: Mapping[str, bool] | None = None) -> dict[str, str]:
    """Every known int8 path that `features` (default: this host) cannot execute, with the reason."""
    feats = host_features() if features is None else features
    out: dict[str, str] = {}
    for path, need in INT8_PATH_FEATURES.items():
        missing = [f for f in need if not feats.get(f)]
        why = f"needs CPU features {', '.join(missing)}" if missing else _os_refusal(path, features)
        if why:
            out[path] = why
    return out


def int8_paths(features: Mapping[str, bool] | None = None) -> tuple[str, ...]:
    """The int8 paths `features` (default: this host) can execute, best first."""
    feats = host_features() if features is None else features
    return tuple(p for p, need in INT8_PATH_FEATURES.items()
                 if all(feats.get(f) for f in need) and _os_refusal(p, features) is None)


def best_int8_path(features: Mapping[str, bool] | None = None) -> str | None:
    """The fastest int8 path `features` (default: this host) can execute, or None when there is none."""
    paths = int8_paths(features)
    return paths[0] if paths else None


def amx_reported(features: Mapping[str, bool] | None = None) -> bool:
    """Whether `features` (default: this host) report AMX int8."""
    feats = host_features() if features is None else features
    return all(feats.get(f) for f in AMX_INT8_FEATURES)


def check_int8_path(path: str, features: Mapping[str, bool] | None = None) -> None:
    """Raise Int8PathError unless `path` is a known int8 path that `features` (default: host) can execute."""
    if path not in INT8_PATH_FEATURES:
        raise Int8PathError(f"unknown int8 GEMM path {path!r}; known: {', '.join(INT8_PATH_FEATURES)}")
    feats = host_features() if features is None else features
    missing = [f for f in INT8_PATH_FEATURES[path] if not feats.get(f)]
    if missing:
        raise Int8PathError(f"int8 GEMM path {path!r} needs CPU features {', '.join(missing)}, which this host "
                            f"lacks; paths it can execute: {', '.join(int8_paths(features)) or 'none'}")
    refusal = _os_refusal(path, features)
    if refusal:
        raise Int8PathError(f"int8 GEMM path {path!r} cannot run here: {refusal}; paths it can execute: "
                            f"{', '.join(int8_paths(features)) or 'none'}")
