"""Keep the BLAS that Numba's np.dot calls (scipy's) at one thread while a plan runs.

The GEMM and convolution kernels call np.dot from inside an outer `prange`, so the parallelism
must be Numba's alone: `single_threaded_blas()` sets scipy's BLAS to one thread and restores
the previous count afterwards (two cheap calls through threadpoolctl). numpy's own BLAS is a
separate library and is not touched. Where threadpoolctl is missing, `controlled()` is False
and the GEMM kernels run serially, leaving the parallelism to BLAS.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _controllers() -> list[Any]:
    """threadpoolctl controllers of the BLAS libraries scipy.linalg.cython_blas loaded."""
    if "libs" in _STATE:
        return _STATE["libs"]
    libs: list[Any] = []
    try:
        import numpy as np
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that numba's np.dot uses)
        from threadpoolctl import ThreadpoolController

        numpy_dir = np.__file__.rsplit("/", 2)[0]
        for lib in ThreadpoolController().lib_controllers:
            if lib.user_api == "blas" and "numpy" not in lib.filepath.replace(numpy_dir, ""):
                libs.append(lib)
    except Exception:  # noqa: BLE001 - any failure means: no control, fall back to serial GEMM
        libs = []
    _STATE["libs"] = libs
    return libs


def controlled() -> bool:
    """True when scipy's BLAS thread count can be set (so tiles may run in parallel)."""
    return bool(_controllers())


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with scipy's BLAS at one thread (nesting-safe, restores on exit)."""
    libs = _controllers()
    if not libs:
        yield
        return
    with _LOCK:
        depth = _STATE.get("depth", 0)
        if depth == 0:
            _STATE["saved"] = [lib.num_threads for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _STATE["depth"] = depth + 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                for lib, n in zip(libs, _STATE["saved"]):
                    lib.set_num_threads(n)


# ---- a BLAS sgemm callable from kernels, with explicit leading dimensions ---------------------
from llvmlite import ir as _ir  # noqa: E402
from numba import types as _types  # noqa: E402
from numba.core import cgutils as _cgutils  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402
from numba.np.linalg import ensure_blas as _ensure_blas  # noqa: E402

_ensure_blas()


@_intrinsic
def sgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,  # type: ignore[no-untyped-def]
          beta, c, c_off, ldc):
    """Row-major C = alpha * op(A) @ op(B) + beta * C on float32 arrays through numba_xxgemm.

    op(A) is [m, k]: A itself (stored [m, k], row stride lda) or, with trans_a, the transpose of
    A stored [k, m]; likewise op(B) is [k, n]. Operands start at element offsets a_off, b_off,
    c_off of the (flat or n-d, contiguous) arrays; C's row stride is ldc. Returns BLAS status.
    """
    for arr in (a, b, c):
        if not isinstance(arr, _types.Array) or arr.dtype != _types.float32:
            return None
    sig = _types.int32(trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        (ta, tb, mm, nn, kk, al, av, ao, lda_, bv, bo, ldb_, be, cv, co, ldc_) = args
        st = signature.args
        ll_char = _ir.IntType(8)
        void_p = _ir.IntType(8).as_pointer()
        intp = context.get_value_type(_types.intp)
        fnty = _ir.FunctionType(_ir.IntType(32), [ll_char, ll_char, ll_char, intp, intp, intp, void_p, void_p,
                                                 intp, void_p, intp, void_p, void_p, intp])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def ptr(idx: int, off):  # type: ignore[no-untyped-def]
            arr = context.make_array(st[idx])(context, builder, args[idx])
            off = context.cast(builder, off, st[idx + 1], _types.intp)
            return builder.bitcast(builder.gep(arr.data, [off]), void_p)

        def as_intp(idx: int):  # type: ignore[no-untyped-def]
            return context.cast(builder, args[idx], st[idx], _types.intp)

        def scalar_slot(idx: int):  # type: ignore[no-untyped-def]
            val = context.cast(builder, args[idx], st[idx], _types.float32)
            return builder.bitcast(_cgutils.alloca_once_value(builder, val), void_p)

        t_char, n_char = _ir.Constant(ll_char, ord("t")), _ir.Constant(ll_char, ord("n"))
        ta_c = builder.select(context.cast(builder, ta, st[0], _types.boolean), t_char, n_char)
        tb_c = builder.select(context.cast(builder, tb, st[1], _types.boolean), t_char, n_char)
        # column-major view: C^T = op(B)^T @ op(A)^T
        return builder.call(fn, (_ir.Constant(ll_char, ord("s")), tb_c, ta_c, as_intp(3), as_intp(2), as_intp(4),
                                 scalar_slot(5), ptr(9, bo), as_intp(11), ptr(6, ao), as_intp(8),
                                 scalar_slot(12), ptr(13, co), as_intp(15)))

    return sig, codegen
