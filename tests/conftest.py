"""Shared test set-up: every test starts with the Numba thread count the process started with."""

from __future__ import annotations

from collections.abc import Iterator

import numba
import pytest

_START_THREADS = numba.get_num_threads()


@pytest.fixture(autouse=True)
def _numba_threads_restored() -> Iterator[None]:
    """Give each test the starting Numba thread count back (a command run in-process may set its own)."""
    numba.set_num_threads(_START_THREADS)
    yield
    numba.set_num_threads(_START_THREADS)
