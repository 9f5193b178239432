"""Importing tensorsmith loads neither onnx nor ml_dtypes: each takes over a second to import, in every process."""

from __future__ import annotations

import json
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from tensorsmith import ir
from tensorsmith.ir.dtypes import bf16, dtype_from_numpy, i4, storage_dtype

PROBE = """
import json, sys
import tensorsmith.ir, tensorsmith.passes, tensorsmith.runtime, tensorsmith.bench.peer_process
before = {m: m in sys.modules for m in ("onnx", "ml_dtypes")}
from tensorsmith.ir import to_onnx, bf16
after = {"onnx": "onnx" in sys.modules, "bf16": str(bf16.np_dtype), "ml_dtypes": "ml_dtypes" in sys.modules}
print(json.dumps({"before": before, "after": after}))
"""


def test_the_ir_runtime_and_peers_import_without_onnx_or_ml_dtypes() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["before"] == {"onnx": False, "ml_dtypes": False}
    assert seen["after"] == {"onnx": True, "bf16": "bfloat16", "ml_dtypes": True}


def test_storage_dtypes_resolve_and_map_back() -> None:
    assert bf16.np_dtype == np.dtype(ml_dtypes.bfloat16) and i4.np_dtype == np.dtype(ml_dtypes.int4)
    assert dtype_from_numpy(ml_dtypes.bfloat16) is bf16 and dtype_from_numpy(np.dtype(ml_dtypes.int4)) is i4
    assert storage_dtype("float32") == np.float32
    with pytest.raises(ValueError, match="numpy dtype uint16 has no IR dtype"):
        dtype_from_numpy(np.uint16)


def test_lazy_names_are_the_functions_and_unknown_names_fail() -> None:
    from tensorsmith.ir.onnx_export import to_onnx
    from tensorsmith.ir.onnx_import import from_onnx

    assert ir.to_onnx is to_onnx and ir.from_onnx is from_onnx
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = ir.no_such_name  # type: ignore[attr-defined]
