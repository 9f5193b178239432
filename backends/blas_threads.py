"""Hold a BLAS library at one thread around a backend's own calls and restore it after (threadpoolctl).

Nothing happens at import: the libraries are looked up on first use, so importing a backend never
changes how the rest of the process runs numpy. How a count set in one thread shows in others differs
between OpenBLAS builds (0.3.30 and 0.3.31 here: a count the main thread lowered cannot be raised from
another thread, and one set by another thread afterwards stays that thread's own), so every thread
sets its own: its outermost hold sets one thread and, when it ends, sets back the count the process
had when the first of the current holds began. Nesting is counted per thread. Where threadpoolctl or
the library is missing, holds do nothing and `controlled()` is False.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class BlasThreads:
    """Thread-count control of the BLAS libraries that `find()` returns (threadpoolctl controllers)."""

    def __init__(self, label: str, find: Callable[[], list[Any]]) -> None:
        self.label = label
        self._find = find
        self._libs: list[Any] | None = None
        self._lock = threading.Lock()
        self._holders = 0
        self._baseline: list[int] = []
        self._local = threading.local()

    def controllers(self) -> list[Any]:
        """The controllers, found on the first call (empty when threadpoolctl or the library is missing)."""
        if self._libs is None:
            try:
                libs = list(self._find())
            except Exception:  # noqa: BLE001 - any failure means: no control
                libs = []
            self._libs = libs
        return self._libs

    def controlled(self) -> bool:
        """True when the library's thread count can be set."""
        return bool(self.controllers())

    @contextlib.contextmanager
    def single_threaded(self) -> Iterator[None]:
        """Run the body with the library at one thread in this thread; the count is set back when it ends."""
        libs = self.controllers()
        depth = getattr(self._local, "depth", 0)
        outermost = bool(libs) and depth == 0
        if outermost:
            with self._lock:
                if self._holders == 0:
                    self._baseline = [lib.num_threads for lib in libs]
                self._holders += 1
                for lib in libs:
                    lib.set_num_threads(1)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if outermost:
                with self._lock:
                    self._holders -= 1
                    if self._holders == 0:  # the last holder gives the count back; others still run at one
                        for lib, n in zip(libs, self._baseline):
                            lib.set_num_threads(n)


def blas_libraries(numpy_own: bool) -> list[Any]:
    """threadpoolctl controllers of the loaded BLAS libraries: numpy's own (`numpy_own`) or all others."""
    import numpy as np
    from threadpoolctl import ThreadpoolController

    site = str(Path(np.__file__).resolve().parent.parent)
    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return [lib for lib in libs if ("numpy" in str(Path(lib.filepath).resolve()).replace(site, "")) == numpy_own]


NUMPY_BLAS = BlasThreads("numpy", lambda: blas_libraries(numpy_own=True))
"""The BLAS numpy's own matmul and dot call (the reference backend's products run on it)."""
