"""Vectorizable float32 math for the kernels: exp, erf, tanh, sigmoid, GELU.

libm's expf/erff/tanhf are scalar calls that stop LLVM from vectorizing a loop. These are
branch-free polynomial or rational approximations (Cody-Waite exp, Eigen-style erf and tanh)
that LLVM turns into AVX2 code; their error is a few float32 ulps (tests bound it against
the float64 reference).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import helper
from .llvm_intrinsics import declare


@intrinsic
def _bits_to_f32(typingctx, v):  # type: ignore[no-untyped-def]
    """Reinterpret the bits of an int32 as a float32."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_to_bits(typingctx, v):  # type: ignore[no-untyped-def]
    """Reinterpret the bits of a float32 as an int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def maximum(typingctx, a, b):  # type: ignore[no-untyped-def]
    """The larger of two numbers of one type, a NaN winning (llvm.maximum for floats, which loops vectorize)."""
    if a != b or not isinstance(a, (types.Float, types.Integer)):
        return None
    sig = a(a, a)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        x, y = args
        if isinstance(a, types.Integer):
            greater = builder.icmp_signed(">", x, y) if a.signed else builder.icmp_unsigned(">", x, y)
            return builder.select(greater, x, y)
        name = f"llvm.maximum.f{a.bitwidth}"
        return builder.call(declare(builder.module, name, x.type, [x.type, x.type]), [x, y])

    return sig, codegen


@helper(fastmath=False)
def order_key(x: np.float32) -> np.int32:
    """An int32 whose signed order is the float order of x (NaN with the sign bit clear sorts above +inf).

    Integer min / max reductions vectorize without fast-math; float ones (NaN-aware selects) do not. The key is
    an int32 (Numba's integer arithmetic would widen it to int64): reductions over it run 16 keys to a zmm
    register (a row's range 2.6x faster than over int64 keys).
    """
    b = _f32_to_bits(x)
    return np.int32(b ^ ((b >> 31) & np.int32(0x7FFFFFFF)))


@helper(fastmath=False)
def key_value(k: np.int32) -> np.float32:
    """The float32 whose `order_key` is k."""
    return _bits_to_f32(k ^ ((k >> 31) & np.int32(0x7FFFFFFF)))


@helper(fastmath=False)
def is_finite_bits(x: np.float32) -> bool:
    """Whether x is finite, read from its exponent bits (immune to fast-math's no-NaN assumptions)."""
    return (_f32_to_bits(x) & np.int32(0x7F800000)) != np.int32(0x7F800000)


F0 = np.float32(0.0)
F1 = np.float32(1.0)
HALF = np.float32(0.5)
INF = np.float32(np.inf)


@helper
def fexp(x: np.float32) -> np.float32:
    """e**x in float32: NaN stays NaN, overflow gives inf, results below 2**-126 flush to 0.

    The scaling by 2**n adds n to the exponent bits (integer arithmetic), so fast-math
    reassociation in the calling kernel cannot overflow an intermediate.
    """
    xc = np.float32(-88.0) if x < np.float32(-88.0) else x
    xc = np.float32(88.8) if xc > np.float32(88.8) else xc
    n = np.floor(xc * np.float32(1.4426950408889634) + HALF)
    r = xc - n * np.float32(0.693359375)
    r = r + n * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + F1
    y = _bits_to_f32(_f32_to_bits(p) + (np.int32(n) << np.int32(23)))
    y = F0 if x < np.float32(-87.33654) else y
    y = INF if x > np.float32(88.72283) else y
    return x if x != x else y


ERF_LIMIT = 4.0
"""erf is +-1 in float32 beyond this."""
ERF_NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
                 -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
"""erf(x) ~ x * P(x^2) / Q(x^2) on [-ERF_LIMIT, ERF_LIMIT]: P's coefficients, highest power first."""
ERF_DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
                   -1.42647390514189e-02)
"""Q's coefficients, highest power first."""
_P = tuple(np.float32(c) for c in ERF_NUMERATOR)
_Q = tuple(np.float32(c) for c in ERF_DENOMINATOR)
_LIMIT = np.float32(ERF_LIMIT)


@helper
def ferf(x: np.float32) -> np.float32:
    """erf(x) in float32 (rational approximation on [-4, 4], +-1 outside)."""
    xc = _LIMIT if x > _LIMIT else x
    xc = -_LIMIT if xc < -_LIMIT else xc
    x2 = xc * xc
    p = _P[0]
    p = p * x2 + _P[1]
    p = p * x2 + _P[2]
    p = p * x2 + _P[3]
    p = p * x2 + _P[4]
    p = p * x2 + _P[5]
    p = p * x2 + _P[6]
    p = p * xc
    q = _Q[0]
    q = q * x2 + _Q[1]
    q = q * x2 + _Q[2]
    q = q * x2 + _Q[3]
    q = q * x2 + _Q[4]
    y = p / q
    y = F1 if x >= _LIMIT else y
    return -F1 if x <= -_LIMIT else y


@helper
def ftanh(x: np.float32) -> np.float32:
    """tanh(x) in float32 (rational approximation, exact sign, +-1 for |x| > 7.9)."""
    lim = np.float32(7.90531110763549805)
    xc = lim if x > lim else x
    xc = -lim if xc < -lim else xc
    x2 = xc * xc
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    p = p * xc
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    y = p / q
    y = xc if abs(xc) < np.float32(4e-4) else y
    y = F1 if x >= lim else y
    return -F1 if x <= -lim else y


@helper
def fsigmoid(x: np.float32) -> np.float32:
    """1 / (1 + e**-x) in float32."""
    return F1 / (F1 + fexp(-x))


@helper
def fgelu(x: np.float32) -> np.float32:
    """GELU with the exact erf form: x * Phi(x)."""
    return HALF * x * (F1 + ferf(x * np.float32(0.7071067811865476)))


@helper
def fgelu_tanh(x: np.float32) -> np.float32:
    """GELU with the tanh approximation."""
    inner = np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)
    return HALF * x * (F1 + ftanh(inner))


@helper
def frelu(x: np.float32) -> np.float32:
    """max(x, 0) in float32 that keeps NaN (like numpy.maximum)."""
    return x if (x > F0 or x != x) else F0
