"""Configurations `bench` times per model: a backend, a pass pipeline and whether the backend fuses, as data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Runner(str, Enum):
    """Who runs a configuration: one of our backends, or a peer in its own process."""

    REFERENCE = "reference"
    NUMBA = "numba"
    ONNXRUNTIME = "onnxruntime"
    TORCH = "torch"


PEER_RUNNERS = (Runner.ONNXRUNTIME, Runner.TORCH)
"""Runners that are peer libraries (each timed in a child process)."""


@dataclass(frozen=True)
class Config:
    """One row of a model's table: how the graph is transformed and run, and the quality it must keep.

    `pipeline` runs before the backend compiles; `fuse` says whether the Numba backend's own `fuse`
    pass runs (`runtime.compile(..., fuse=...)`). Two bounds make a configuration a failure,
    reported with its error and without a timing: the backend's outputs must match the reference
    backend on the same transformed graph within `backend_rel_err` (max |y - ref| / max |ref|:
    reassociation, and integer rounding ties for int8), and the quality against reference fp32 on
    the original graph must stay within `min_cosine` and `max_rel_err`. `peer_variant` selects a
    peer's model (`fp32`, `int8-dynamic`).
    """

    name: str
    runner: Runner
    pipeline: str = ""
    fuse: bool = True
    min_cosine: float = 0.0
    max_rel_err: float = float("inf")
    backend_rel_err: float = 1e-3
    peer_variant: str = "fp32"
    exits: bool = False
    """Run the model's `early-exit` pass (`Model.exits`) before `pipeline`; the row exists only for models that
    have exits, and its bound is the model's metric drop (`ExitSetup.max_metric_drop`), not the cosine: a row
    that leaves early is the head's answer, not the final one."""

    @property
    def is_peer(self) -> bool:
        """Whether a peer library runs it."""
        return self.runner in PEER_RUNNERS

    @property
    def backend(self) -> str:
        """The name the `--backends` flag selects it by."""
        return self.runner.value


EXACT_REL_ERR = 1e-3
"""fp32 configurations (reassociation only): max |y - ref| / max |ref| allowed."""

INT8_MIN_COSINE = 0.98
LOSSY_MIN_COSINE = 0.8
"""Quality floors of the lossy configurations, as output cosine to reference fp32 (min over batch rows).
Random-weight models have no redundancy to prune: 50% block sparsity can fall below the floor there."""

INT8_BACKEND_REL_ERR = 5e-2
"""int8 outputs vs the reference backend on the same graph. The integer products are exact on both, but the
f32 ops between them (GEMM reassociation, the polynomial exp / erf / tanh) differ by a few ulps, and a dynamic
quantization downstream can round such a value one step the other way; through six MiniLM layers that
compounds to 0.029 of the output's largest element (identical on the amx and avx512vnni paths, so no kernel
fault), above the 0.02 this bound was. A wrong kernel shows as errors of the output's own size."""

BLOCK_PRUNE = "prune{pattern=block,sparsity=0.5}"
INT8 = "quantize{scheme=dynamic,ops=linear+conv2d+matmul+gather}"
"""int8 everywhere the pass can: matrix weights (activations quantized at run time) and embedding tables, as ONNX
Runtime's dynamic quantizer does (it quantizes Gather too)."""
INT4 = "quantize{precision=int4}"

REFERENCE = "reference fp32"
"""The golden row: the numpy reference backend on the original graph."""

BASELINE = "numba fp32"
"""The configuration every speed-up is measured against: our fp32 without fusion."""

DEFAULT_CONFIGS: tuple[Config, ...] = (
    Config(REFERENCE, Runner.REFERENCE, max_rel_err=0.0),
    Config(BASELINE, Runner.NUMBA, fuse=False, max_rel_err=EXACT_REL_ERR),
    Config("numba fused", Runner.NUMBA, max_rel_err=EXACT_REL_ERR),
    Config("block-sparse", Runner.NUMBA, BLOCK_PRUNE, fuse=False, min_cosine=LOSSY_MIN_COSINE),
    Config("int8", Runner.NUMBA, INT8, fuse=False, min_cosine=INT8_MIN_COSINE, backend_rel_err=INT8_BACKEND_REL_ERR),
    Config("int4 weight-only", Runner.NUMBA, INT4, fuse=False, min_cosine=LOSSY_MIN_COSINE),
    Config("int8+sparse+fused", Runner.NUMBA, f"{BLOCK_PRUNE},{INT8}", min_cosine=LOSSY_MIN_COSINE,
           backend_rel_err=INT8_BACKEND_REL_ERR),
    Config("ORT fp32", Runner.ONNXRUNTIME, max_rel_err=EXACT_REL_ERR),
    Config("ORT int8 dynamic", Runner.ONNXRUNTIME, peer_variant="int8-dynamic", min_cosine=INT8_MIN_COSINE),
    Config("torch eager fp32", Runner.TORCH, max_rel_err=EXACT_REL_ERR),
)
"""What `bench` runs per model, in this order."""

EXIT_CONFIGS: tuple[Config, ...] = (
    Config("early exit", Runner.NUMBA, exits=True),
    Config("int8+early exit", Runner.NUMBA, INT8, exits=True, backend_rel_err=INT8_BACKEND_REL_ERR),
)
"""Early-exit configurations, appended after DEFAULT_CONFIGS (see `suite_configs`): the model's `early-exit` pass
(heads and thresholds fitted on its calibration feeds), then `pipeline`, fused. Rows only for models with exits."""


def suite_configs() -> list[Config]:
    """The default configurations then the early-exit ones."""
    return [*DEFAULT_CONFIGS, *EXIT_CONFIGS]


def user_config(pipeline: str) -> Config:
    """A configuration from a `--pipelines` string: Numba, the pipeline as given (it says whether to fuse)."""
    return Config(pipeline, Runner.NUMBA, pipeline, fuse=False, min_cosine=LOSSY_MIN_COSINE,
                  backend_rel_err=INT8_BACKEND_REL_ERR)


def select(configs: tuple[Config, ...] | list[Config], backends: list[str]) -> list[Config]:
    """The configurations whose backend is in `backends` (all when it is empty)."""
    return [c for c in configs if not backends or c.backend in backends]
