"""Pipeline strings, pass registration, options and errors."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Literal

import numpy as np
import pytest
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.passes import (
    PASSES,
    Pass,
    PassContext,
    PassResult,
    PipelineError,
    make_pass,
    parse_pipeline,
    register_pass,
    run_pipeline,
)


def small_graph():  # type: ignore[no-untyped-def]
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 4])
    b.output(b.relu(b.dropout(b.mul(x, np.float32(1.0)))))
    return b.build()


@register_pass
class ScaleOutputs(Pass):
    """Test pass with typed options of several kinds."""

    name = "test-scale-outputs"
    factor: float = 2.0
    times: int = 1
    enabled: bool = True
    mode: Literal["fast", "exact"] = "exact"
    tile: tuple[int, ...] = (32, 32)

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        return PassResult(graph, False, f"factor={self.factor}")


def test_custom_pass_in_a_few_lines() -> None:
    @register_pass
    class DropDropout(Pass):
        name = "test-drop-dropout"

        def run(self, graph, ctx):  # type: ignore[no-untyped-def]
            n = graph.replace_all(op="dropout", with_input=0)
            return PassResult(graph, changed=n > 0, report=f"removed {n} dropout")

    g = small_graph()
    ctx = PassContext()
    g2 = run_pipeline(g, "test-drop-dropout,simplify", ctx=ctx)
    assert [n.op for n in g2.nodes] == ["relu"]
    assert [n.op for n in g.nodes] == ["mul", "dropout", "relu"], "the input graph is left alone"
    assert ctx.records[0].report == "removed 1 dropout" and ctx.records[0].changed
    assert "mul-by-one x1" in ctx.records[1].report


def test_options_are_parsed_by_field_type() -> None:
    (p,) = parse_pipeline("test-scale-outputs{factor=0.5, times=3,enabled=false,mode=fast,tile=16x8}")
    assert (p.factor, p.times, p.enabled, p.mode, p.tile) == (0.5, 3, False, "fast", (16, 8))
    assert str(p) == "test-scale-outputs{factor=0.5,times=3,enabled=false,mode=fast,tile=16x8}"
    with pytest.raises(FrozenInstanceError):
        p.factor = 1.0  # type: ignore[misc]


def test_pipeline_of_several_passes_with_braces() -> None:
    ps = parse_pipeline("dce, cse ,test-scale-outputs{factor=3,times=2},fold-constants,")
    assert [p.name for p in ps] == ["dce", "cse", "test-scale-outputs", "fold-constants"]


def test_unknown_pass_lists_registered_ones() -> None:
    with pytest.raises(PipelineError) as e:
        parse_pipeline("dce,no-such-pass")
    msg = str(e.value)
    assert "no-such-pass" in msg and "fold-batchnorm" in msg and "simplify" in msg


def test_unknown_option_lists_the_options() -> None:
    with pytest.raises(PipelineError) as e:
        parse_pipeline("test-scale-outputs{fator=2}")
    assert "fator" in str(e.value) and "factor" in str(e.value) and "times" in str(e.value)


@pytest.mark.parametrize("bad", ["times=two", "enabled=maybe", "mode=slow", "tile=ax2", "factor=x"])
def test_bad_option_values(bad: str) -> None:
    with pytest.raises(PipelineError) as e:
        parse_pipeline(f"test-scale-outputs{{{bad}}}")
    assert bad.split("=")[0] in str(e.value)


@pytest.mark.parametrize("bad", ["dce{", "dce}", "cse{dedupe_constants}", "dce{a=1}x"])
def test_malformed_pipelines(bad: str) -> None:
    with pytest.raises(PipelineError):
        parse_pipeline(bad)


def test_register_pass_rejects_bad_names_and_non_passes() -> None:
    with pytest.raises(ValueError):
        @register_pass
        class Bad(Pass):
            name = "Not_Kebab"

    with pytest.raises(TypeError):
        register_pass(int)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        @register_pass
        class Clash(Pass):
            name = "dce"


def test_make_pass_and_registry() -> None:
    assert {"dce", "cse", "fold-constants", "simplify", "fold-batchnorm"} <= set(PASSES)
    assert make_pass("cse", {"dedupe_constants": "false"}).dedupe_constants is False


def test_pass_instances_as_pipeline() -> None:
    g = small_graph()
    out = run_pipeline(g, [make_pass("simplify"), make_pass("dce")])
    assert [n.op for n in out.nodes] == ["relu"]


@pytest.mark.parametrize("text", ["cse,,dce", "cse,,", ",dce", "prune{sparsity=0.5,,pattern=block}"])
def test_empty_pipeline_items_are_refused(text: str) -> None:
    with pytest.raises(PipelineError, match="empty"):
        parse_pipeline(text)


def test_an_empty_pipeline_is_no_pass() -> None:
    assert parse_pipeline("") == [] and parse_pipeline("  ") == []


@pytest.mark.parametrize("text", ["test-scale-outputs{times=2,times=3}",
                                  "test-scale-outputs{factor=1, times=2 ,factor=1}"])
def test_a_duplicated_option_is_refused(text: str) -> None:
    with pytest.raises(PipelineError, match=r"option '(times|factor)' is given twice"):
        parse_pipeline(text)


@pytest.mark.parametrize("text", ["dce{x=1}", "cse,dce{}", "dce{ }"])
def test_options_for_a_pass_without_options_are_refused(text: str) -> None:
    with pytest.raises(PipelineError, match=r"pass 'dce' takes no options, but was given"):
        parse_pipeline(text)
    with pytest.raises(PipelineError, match=r"pass 'dce' takes no options, but was given x"):
        make_pass("dce", {"x": "1"})


def test_options_without_a_pass_name_are_refused() -> None:
    with pytest.raises(PipelineError, match=r"pass 2 has options \{a=1\} but no pass name"):
        parse_pipeline("dce,{a=1}")
