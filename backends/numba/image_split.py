"""How a kernel runs on a range of the batch's images: its serial twin, each argument cut to the range.

A kernel whose images are independent (a convolution with its epilogue, a pool, a layout copy) declares, at the
step that calls it, how each of its arguments narrows to images lo..hi: `image_chains.py` then runs a run of such
steps as one parallel region in which each thread takes its own images through all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .jit import Twin


class Cut(Enum):
    """How one kernel argument narrows to a range of images."""

    SHARED = "shared"
    """The same for every range, only read (weights, tables, literals)."""
    UNUSED = "unused"
    """A placeholder this call does not touch (passed whole; may be typed writable)."""
    LEADING = "leading"
    """Images along the first axis: a[lo:hi]."""
    FLAT = "flat"
    """A 1-D buffer laid out image by image: a[lo * per_image:hi * per_image + extra] (extra: reads past the end)."""


@dataclass(frozen=True)
class ArgCut:
    """The cut of one argument; `per_image` and `extra` (elements) for Cut.FLAT."""

    cut: Cut
    per_image: int = 0
    extra: int = 0


SHARED = ArgCut(Cut.SHARED)
UNUSED = ArgCut(Cut.UNUSED)
LEADING = ArgCut(Cut.LEADING)


def flat(per_image: int, extra: int = 0) -> ArgCut:
    """The cut of a 1-D buffer holding `per_image` elements per image (and `extra` read past the last one)."""
    return ArgCut(Cut.FLAT, per_image, extra)


@dataclass(frozen=True)
class ImageSplit:
    """How a step's kernel runs on images lo..hi of `images`: the serial twin of `kernel` on the arguments cut as
    `cuts` says (one per argument of the step, literals SHARED)."""

    images: int
    kernel: Twin
    cuts: tuple[ArgCut, ...]
