"""`bench.read_bound`: the GOP/s a product reaches when it only reads its int8 weights."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.bench.read_bound import read_bound_gops, stream_seconds, xor_words


def test_xor_words_reads_every_word_once() -> None:
    words = np.arange(1, 12, dtype=np.uint64)
    parts = xor_words(words, 3)
    assert int(np.bitwise_xor.reduce(parts)) == int(np.bitwise_xor.reduce(words))
    assert int(parts[0]) == 1 ^ 2 ^ 3
    assert int(parts[2]) == int(np.bitwise_xor.reduce(words[6:]))  # the last run takes the rest


def test_the_bound_scales_with_the_rows_of_one_weight_size() -> None:
    seconds = stream_seconds(1 << 20, 3)
    assert 0 < seconds < 1.0
    one, four = read_bound_gops(1, 1024, 1024, 3), read_bound_gops(4, 1024, 1024, 3)
    assert four == pytest.approx(4 * one)  # one measurement per weight size in a process
    assert one == pytest.approx(2 * 1024 * 1024 / stream_seconds(1024 * 1024, 3) / 1e9)
