"""0-d outputs keep their shape () on every backend: constant outputs, full reductions, scalar arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir.parser import parse
from tensorsmith.runtime import compile

SCALARS = parse('''graph scalars(%x: f32[2,3], %i: i32[4]) -> (f32[], f32[], i32[], f32[], f32[], i32[]) {
  %s = reduce-sum(%x) {axes=[0, 1], keepdims=false} : f32[]
  %m = reduce-max(%x) {axes=[], keepdims=false} : f32[]
  %si = reduce-sum(%i) {axes=[0], keepdims=false} : i32[]
  %a = add(%s, @k) : f32[]
  return %s, %m, %si, @k, %a, @n
}
const @k: f32[] = [3.0]
const @n: i32[] = [-7]
''')


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_zero_d_outputs_keep_their_shape(backend: str) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    i = np.arange(4, dtype=np.int32)
    want = reference.run(SCALARS, {"x": x, "i": i})
    got = compile(SCALARS, backend).run({"x": x, "i": i})
    assert set(got) == {v.name for v in SCALARS.outputs}
    for v in SCALARS.outputs:
        assert got[v.name].shape == () and got[v.name].dtype == want[v.name].dtype, v.name
        np.testing.assert_array_equal(got[v.name], want[v.name])
    assert float(got["s"]) == 15.0 and float(got["k"]) == 3.0 and int(got["n"]) == -7 and float(got["a"]) == 18.0
