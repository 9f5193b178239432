"""GraphBuilder as a library API: generated op methods, type errors and duplicate names."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import OPS, BuildError, GraphBuilder, f32, i64
from tensorsmith.ir.builder_methods import method_name
from tensorsmith.ir.ops import register_op


def test_every_registered_op_is_a_real_method() -> None:
    names = set(dir(GraphBuilder("g")))
    for op in OPS:
        m = method_name(op)
        assert m in names, op
        assert m in GraphBuilder.__dict__, f"{m} is not a method of the class"
        assert GraphBuilder.op_methods()[m] == op


def test_generated_method_carries_the_ops_signature_and_doc() -> None:
    sig = inspect.signature(GraphBuilder.gelu)
    assert list(sig.parameters) == ["self", "x", "approximate", "name"]
    assert sig.parameters["approximate"].default == "none"
    assert sig.parameters["approximate"].kind is inspect.Parameter.KEYWORD_ONLY
    doc = GraphBuilder.gelu.__doc__
    assert OPS["gelu"].doc.strip() in doc and "one of 'none', 'tanh'" in doc
    red = inspect.signature(GraphBuilder.reduce_mean)
    assert red.parameters["axes"].default == () and red.parameters["keepdims"].default is True
    assert inspect.signature(GraphBuilder.clip).parameters["min"].default == -np.inf


def test_generated_methods_build_what_op_builds() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    y = b.reduce_mean(b.gelu(b.add(x, 1.0), approximate="tanh"), axes=[1], keepdims=False, name="y")
    b.output(y)
    g = b.build()
    assert [n.op for n in g.nodes] == ["add", "gelu", "reduce-mean"]
    assert g.nodes[1].attrs["approximate"] == "tanh" and y.name == "y"
    xs = np.arange(6, dtype=np.float32).reshape(2, 3)
    b2 = GraphBuilder("g")
    x2 = b2.input("x", f32[2, 3])
    b2.output(b2.op("reduce-mean", b2.op("gelu", b2.op("add", x2, 1.0), approximate="tanh"), axes=[1],
                    keepdims=False, name="y"))
    np.testing.assert_array_equal(reference.run(g, {"x": xs})["y"], reference.run(b2.build(), {"x": xs})["y"])


def test_generated_method_rejects_bad_arguments_by_name() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    with pytest.raises(BuildError, match=r"GraphBuilder.gelu.*unexpected keyword argument 'approx'"):
        b.gelu(x, approx="tanh")
    with pytest.raises(BuildError, match=r"GraphBuilder.cast.*missing a required argument: 'dtype'"):
        b.cast(x)
    with pytest.raises(BuildError, match=r"GraphBuilder.relu: relu takes 1 inputs \(x\), got 2; signature relu\(x"):
        b.relu(x, x)


def test_variadic_and_optional_inputs() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    assert b.identity(x).type.shape == (2, 3)
    assert b.dropout(x, ratio=0.1).type.shape == (2, 3)
    q = b.quantize_dynamic(x)
    assert q.type.shape == (2, 3)


def test_an_op_registered_later_gets_a_method() -> None:
    @register_op("test-twice", ("x",), doc="x + x, registered by a test.", elementwise=True)
    def infer(ts, attrs):  # type: ignore[no-untyped-def]
        return [ts[0]]

    try:
        b = GraphBuilder("g")
        assert "test_twice" in dir(b)
        x = b.input("x", f32[2])
        assert b.test_twice(x).producer.op == "test-twice"
        assert "x + x, registered by a test." in GraphBuilder.test_twice.__doc__
    finally:
        del OPS["test-twice"]
        if "test_twice" in GraphBuilder.__dict__:
            delattr(GraphBuilder, "test_twice")
        from tensorsmith.ir.builder import OPS_BY_METHOD

        OPS_BY_METHOD.pop("test_twice", None)


def test_unknown_method_lists_the_ops() -> None:
    with pytest.raises(AttributeError, match=r"no method 'relu7'.*ops: .*relu"):
        GraphBuilder("g").relu7  # noqa: B018


@pytest.mark.parametrize("given, said", [((1, 64), r"got the shape \(1, 64\).*f32\[1, 64\]"),
                                         ("f32[1,64]", r"got the string 'f32\[1,64\]'"),
                                         (np.float32, r"got the numpy element type float32 without a shape"),
                                         (np.dtype("int64"), r"got the numpy element type int64 without.*i64\[1, 6"),
                                         (f32, r"got the element type f32 without a shape")])
def test_input_type_errors_say_what_to_write(given: object, said: str) -> None:
    with pytest.raises(BuildError, match=r"graph g, input 'x': " + said):
        GraphBuilder("g").input("x", given)  # type: ignore[arg-type]


def test_a_name_given_twice_is_an_error_naming_both_uses() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[1, 4])
    h = b.relu(x, name="h")
    with pytest.raises(BuildError, match=r"name 'h' is already taken by the output of a relu node; cannot use it "
                                         r"again for the output of a tanh node"):
        b.tanh(h, name="h")
    with pytest.raises(BuildError, match=r"name 'x' is already taken by input 'x'"):
        b.const(np.ones(4, np.float32), name="x")
    with pytest.raises(BuildError, match=r"input name 'h' is already taken by the output of a relu node"):
        b.input("h", i64[1])


def test_renaming_duplicates_only_when_asked() -> None:
    b = GraphBuilder("g", rename_duplicates=True)
    x = b.input("x", f32[1, 4])
    h1 = b.relu(x, name="h")
    h2 = b.tanh(h1, name="h")
    assert (h1.name, h2.name) == ("h", "h_1")


def test_generated_names_never_clash() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[1, 4])
    c = b.concat([x, np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32)], axis=0)
    consts = [v.name for v in c.producer.inputs if v.is_constant]
    assert len(set(consts)) == 2 and b.const(np.ones(2)).name != b.const(np.ones(2)).name
