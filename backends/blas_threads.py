"""Hold a BLAS library at one thread around a backend's own calls and restore it after (threadpoolctl).

Nothing happens at import: the libraries are looked up on first use, so importing a backend never
changes how the rest of the process runs numpy. A BLAS thread count is global in the library, and
OpenBLAS (0.3.30, 0.3.31) ignores a raise from another thread after the main thread lowered it, so
the count is set and restored by one thread only: the thread that takes the first hold owns it
(its nested holds count up), restores the saved count when its outermost hold ends, and holds taken
by other threads meanwhile run at the owner's count without touching it. Where threadpoolctl or the
library is missing, holds do nothing and `controlled()` is False.
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
        self._owner: int | None = None
        self._depth = 0
        self._saved: list[int] = []

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
        """Run the body with the library at one thread, restored by the owning thread (see the module docstring)."""
        libs = self.controllers()
        me = threading.get_ident()
        with self._lock:
            owns = bool(libs) and self._owner in (None, me)
            if owns:
                if self._owner is None:
                    self._owner, self._saved = me, [lib.num_threads for lib in libs]
                    for lib in libs:
                        lib.set_num_threads(1)
                self._depth += 1
        try:
            yield
        finally:
            if owns:
                with self._lock:
                    self._depth -= 1
                    if self._depth == 0:
                        for lib, n in zip(libs, self._saved):
                            lib.set_num_threads(n)
                        self._owner = None


def blas_libraries(numpy_own: bool) -> list[Any]:
    """threadpoolctl controllers of the loaded BLAS libraries: numpy's own (`numpy_own`) or all others."""
    import numpy as np
    from threadpoolctl import ThreadpoolController

    site = str(Path(np.__file__).resolve().parent.parent)
    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return [lib for lib in libs if ("numpy" in str(Path(lib.filepath).resolve()).replace(site, "")) == numpy_own]


NUMPY_BLAS = BlasThreads("numpy", lambda: blas_libraries(numpy_own=True))
"""The BLAS numpy's own matmul and dot call (the reference backend's products run on it)."""
