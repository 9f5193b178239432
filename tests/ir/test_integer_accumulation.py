"""8-bit integer linear, matmul and conv2d accumulate in (and return) i32: no silent wrap."""

from __future__ import annotations

import numpy as np
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, i8, i32, u8


def test_int8_linear_matmul_conv_accumulate_in_int32() -> None:
    b = GraphBuilder("g")
    x = b.input("x", i8[1, 2])
    img = b.input("img", u8[1, 1, 2, 2])
    lin = b.linear(x, np.array([[2, 2]], np.int8), name="lin")
    mm = b.matmul(x, np.array([[127], [127]], np.int8), name="mm")
    conv = b.conv2d(img, np.full((1, 1, 2, 2), 255, np.uint8), name="conv")
    b.output(lin, mm, conv)
    g = b.build()
    assert [v.type.dtype for v in g.outputs] == [i32, i32, i32]
    out = reference.run(g, {"x": np.array([[100, 100]], np.int8), "img": np.full((1, 1, 2, 2), 255, np.uint8)})
    assert out["lin"].tolist() == [[400]]
    assert out["mm"].tolist() == [[25400]]
    assert out["conv"].tolist() == [[[[4 * 255 * 255]]]]
