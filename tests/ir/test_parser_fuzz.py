"""The text-form parser under malformed input: seeded mutations of printed graphs either parse or raise
ParseError with a line and column, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tensorsmith.bench.fuzz_import import POSITION, TEXT_MUTATIONS, base_models, base_texts, counts, report, text_cases
from tensorsmith.ir.parser import ParseError, parse

CASES = 5 * 200


@pytest.fixture(scope="module")
def texts() -> list[tuple[str, str]]:
    return base_texts(base_models(("squeezenet",), pytorch_every=3))


def test_mutated_texts_fail_only_with_parse_errors(texts: list[tuple[str, str]],
                                                   record_property: Callable[[str, object], None]) -> None:
    assert len(texts) >= 20
    for _, text in texts:
        parse(text)  # the unmutated texts parse
    outcomes = text_cases(texts, CASES, seed=20261201)
    print(report("text parse", outcomes))
    table = counts(outcomes)
    record_property("text_fuzz_counts", {k: dict(v) for k, v in table.items()})
    bad = [o for o in outcomes if not o.allowed]
    assert not bad, report("text parse", bad)
    for mutation in TEXT_MUTATIONS:
        assert table[mutation]["ParseError"] > 0, mutation


@pytest.mark.parametrize("text", ['graph g(%x: f32[1]) -> f32[1] {\n  %y = neg(%x) {a="\\x"} : f32[1]\n}',
                                  'graph g(%"x\\q": f32[1]) -> f32[1] {\n}'])
def test_bad_escapes_are_parse_errors_with_position(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert POSITION.match(str(info.value)), str(info.value)
