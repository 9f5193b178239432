"""Generated kernels on disk: each source is written once to a module named by its hash, imported, cached by Numba.

The folder is `$TENSORSMITH_REGION_CACHE` when set, else `$NUMBA_CACHE_DIR/tensorsmith-regions` when
Numba's cache folder is set, else `~/.cache/tensorsmith/regions`. A module file is never rewritten
(Numba keys its cache on the file's time stamp), so a second process imports the same file and loads
the compiled kernel from Numba's cache instead of compiling it. Files are written atomically; the
folder can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from .jit import Twin
from .region_codegen import KERNEL_NAME

CACHE_ENV = "TENSORSMITH_REGION_CACHE"
"""Environment variable naming the folder of generated kernel modules."""

_LOADED: dict[tuple[str, str], Twin] = {}


def cache_dir() -> Path:
    """The folder generated kernel modules are written to (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]).expanduser() / "tensorsmith-regions"
    return Path.home() / ".cache" / "tensorsmith" / "regions"


def load_kernel(source: str) -> Twin:
    """The Twin defined by `source` (its kernel named KERNEL_NAME), from a module file named by its hash."""
    name = "region_" + hashlib.sha256(source.encode()).hexdigest()[:24]
    folder = cache_dir()
    key = (str(folder), name)
    if key in _LOADED:
        return _LOADED[key]
    text = source.replace(f"def {KERNEL_NAME}(", f"def {name}(", 1)
    path = folder / f"{name}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = folder / f"{name}.{os.getpid()}.tmp"
            tmp.write_text(text)
            os.replace(tmp, path)
    except OSError as e:
        raise OSError(f"cannot write the generated kernel {path} (set {CACHE_ENV} to a writable folder): {e}") from e
    module_name = f"tensorsmith_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the generated kernel {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    kernel = getattr(module, name)
    _LOADED[key] = kernel
    return kernel
