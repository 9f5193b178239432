"""Runs of per-image kernels as one parallel region: each thread takes its share of the batch through all of them.

Split into work items kernel by kernel, each convolution of a small CNN is a parallel region of its own: the threads
meet at its end and the next region opens (about 1.6 us each on the OpenMP layer), and a thread's images of one
layer are not the images it computes in the next. A run of consecutive steps whose kernels say how they run on a
range of images (`image_split.ImageSplit`, declared where they are emitted) becomes one step: a generated kernel
whose parallel loop gives each thread an equal share of the batch and calls each kernel's serial twin on its
arguments cut to those images. The arithmetic per image is the kernels' own, so the results are equal bit for bit.

A run is chained when it has at least MIN_STEPS kernels, at least one of them chosen parallel, the batch is a
multiple of the threads, no kernel calls BLAS, every argument a kernel writes is cut to the images, and no
argument one kernel reads whole (SHARED) is written by another. Views of arena buffers and constants between the
kernels are bound once per plan and do not break a run; any other step does. The batch is cut into as many shares
as the plan has threads; when fewer run (other tasks hold the CPUs), a thread takes several shares in turn.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .image_split import Cut, ImageSplit
from .jit import Twin
from .plan import Lit, Slot, Step, root_slot
from .region_cache import load_kernel
from .region_codegen import KERNEL_NAME

MIN_STEPS = 2
"""Fewest kernels a chain runs: one alone is a parallel region of its own already."""

Root = Callable[[int], int]


def chain_images(steps: Sequence[Step], slots: Sequence[Slot], threads: int) -> tuple[list[Step], list[Twin]]:
    """`steps` with each run of per-image kernels replaced by one chain step, and the chains' kernels."""
    if threads < 2:
        return list(steps), []
    root = functools.partial(root_slot, slots)
    order = {id(s): i for i, s in enumerate(steps)}
    out: list[Step] = []
    kernels: list[Twin] = []
    run: list[Step] = []
    views: list[Step] = []

    def flush() -> None:
        if len(run) >= MIN_STEPS and any(s.kernel.endswith("[par]") for s in run):
            chain, twin = chain_step(run, root, threads)
            kernels.append(twin)
            out.extend(views)
            out.append(chain)
        else:
            out.extend(sorted(run + views, key=lambda s: order[id(s)]))
        run.clear()
        views.clear()

    for step in steps:
        if step.is_view and run and slots[root(step.writes[0])].kind in ("buffer", "const"):
            views.append(step)  # bound once per plan: it has no place in the order of the run
            continue
        fits = _fits(step, threads, root)
        if fits and (not run or _joins(run, step, root)):
            run.append(step)
            continue
        flush()
        (run if fits else out).append(step)
    flush()
    return out, kernels


def _split(step: Step) -> ImageSplit:
    assert step.images is not None
    return step.images


def _fits(step: Step, threads: int, root: Root) -> bool:
    """Whether `step` can run on a share of the batch: it says how, calls no BLAS, has an equal number of images
    (at least one) per thread, and cuts every argument it writes."""
    split = step.images
    if step.is_view or split is None or step.blas or split.images < threads or split.images % threads:
        return False
    return not any(w and cut.cut is Cut.SHARED for w, cut in zip(step.written_args(root), split.cuts))


def _joins(run: list[Step], step: Step, root: Root) -> bool:
    """Whether `step` can join `run`: the same batch, and no argument one kernel reads whole (SHARED) is written by
    another."""
    if _split(step).images != _split(run[0]).images:
        return False
    members = [*run, step]
    written = {root(w) for s in members for w in s.writes}
    return not any(isinstance(a, int) and cut.cut is Cut.SHARED and root(a) in written
                   for s in members for a, cut in zip(s.args, _split(s).cuts))


def chain_step(run: Sequence[Step], root: Root, threads: int) -> tuple[Step, Twin]:
    """One step calling the kernels of `run` on `threads` equal shares of the batch, and its kernel."""
    args: list[object] = []
    written: list[bool] = []
    for s in run:
        args.extend(s.args)
        written.extend(s.written_args(root))
    sizes = [n for s in run for c in _split(s).cuts if c.cut is Cut.FLAT for n in (c.per_image, c.extra)]
    args += [Lit(np.array(sizes or [0], np.int64)), Lit(_split(run[0]).images), Lit(threads)]
    written += [False, False, False]
    kernel = load_kernel(chain_source(run))
    labels = ", ".join(s.kernel.removesuffix("[par]") for s in run)
    step = Step("+".join(s.name for s in run), "+".join(s.op for s in run), f"image-chain({labels})[par]",
                kernel.parallel, tuple(args), tuple(w for s in run for w in s.writes), sum(s.nbytes for s in run),
                arg_written=tuple(written), parts=tuple(run))
    return step, kernel


def chain_source(run: Sequence[Step]) -> str:
    """Python source of the chain kernel of `run` (named KERNEL_NAME): parameters a0.. (every kernel's arguments in
    turn), then `sizes` (per_image, extra of each FLAT cut in turn), `images` and `parts` (shares)."""
    imports: list[str] = []
    calls: list[str] = []
    params: list[str] = []
    fingerprints: list[str] = []
    flats = 0
    for k, s in enumerate(run):
        split = _split(s)
        name = split.kernel.name
        module = split.kernel.serial.py_func.__module__
        if getattr(sys.modules.get(module), name, None) is not split.kernel:
            raise ValueError(f"image chain: kernel {name} is not importable as {module}.{name}")
        imports += [f"from {module} import {name} as _kernel{k}", f"k{k} = _kernel{k}.serial"]
        fingerprints.append(f"# {module}: {_file_hash(module)}")
        cut_args = []
        for cut in split.cuts:
            a = f"a{len(params)}"
            params.append(a)
            if cut.cut is Cut.LEADING:
                cut_args.append(f"{a}[lo:hi]")
            elif cut.cut is Cut.FLAT:
                per, extra = f"sizes[{2 * flats}]", f"sizes[{2 * flats + 1}]"
                cut_args.append(f"{a}[lo * {per}:min(hi * {per} + {extra}, {a}.shape[0])]")
                flats += 1
            else:
                cut_args.append(a)
        calls.append(f"        k{k}({', '.join(cut_args)})")
    names = ", ".join(_split(s).kernel.name for s in run)
    return "\n".join([
        f'"""Image chain generated by tensorsmith: {names} (do not edit)."""',
        *fingerprints,
        "from numba import prange",
        "",
        "from tensorsmith.backends.numba.jit import twin",
        *imports,
        "",
        "",
        "@twin",
        f"def {KERNEL_NAME}({', '.join(params)}, sizes, images, parts):",
        '    """Each share of the images through every kernel in turn."""',
        "    for part in prange(parts):",
        "        lo = part * images // parts",
        "        hi = (part + 1) * images // parts",
        *calls,
        "",
    ])


_HASHES: dict[str, str] = {}


def _file_hash(module: str) -> str:
    """A hash of a kernel module's file: editing it gives every chain that calls it a new cache key."""
    if module not in _HASHES:
        path = getattr(sys.modules[module], "__file__", None)
        _HASHES[module] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else "-"
    return _HASHES[module]
