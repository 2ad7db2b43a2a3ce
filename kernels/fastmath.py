"""Branch-free float32 exp, log and expm1 for Numba CPU kernels, so that LLVM vectorises loops.

Numba compiles math.exp / math.log to scalar libm calls unless Intel's SVML is installed, which
keeps a loop of them scalar. These are the classic Cephes single-precision polynomials (as in
sse_mathfun) written with selects instead of branches; exponent and mantissa are moved with a
bit cast (an LLVM intrinsic below). Accuracy: a few ulp over the normal float32 range, checked in
tests/test_kernels.py against numpy in float64.
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

F = np.float32
I = np.int32


@intrinsic
def _i32_as_f32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@intrinsic
def _f32_as_i32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))

    return types.int32(types.float32), codegen


_ONE, _HALF = F(1.0), F(0.5)
_EXP_HI, _EXP_LO = F(88.0), F(-87.0)  # exp(88) < FLT_MAX; exp(-87) > FLT_MIN (no denormals)
_LOG2E, _LN2_HI, _LN2_LO = F(1.44269504088896341), F(0.693359375), F(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (F(1.9875691500e-4), F(1.3981999507e-3), F(8.3334519073e-3),
                                F(4.1665795894e-2), F(1.6666665459e-1), F(5.0000001201e-1))
_SQRTHF = F(0.707106781186547524)
_L = tuple(F(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                          1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                          3.3333331174e-1))
_FLT_MIN = F(1.17549435e-38)
_EXPM1_SWITCH = F(-0.5)  # expm1 by its Taylor series above this (only x <= 0 is needed here)
_T = tuple(F(1.0 / f) for f in (2, 6, 24, 120, 720, 5040, 40320))


@njit(fastmath=True, inline="always", error_model="numpy")
def exp_f32(x):
    """e**x, x clamped to [-87, 88] (so e**x is a normal float, never inf or a denormal)."""
    x = min(max(x, _EXP_LO), _EXP_HI)
    fx = np.floor(x * _LOG2E + _HALF)
    r = x - fx * _LN2_HI - fx * _LN2_LO
    y = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
    y = y * r * r + r + _ONE
    return y * _i32_as_f32((I(fx) + I(127)) << I(23))


@njit(fastmath=True, inline="always", error_model="numpy")
def log_f32(x):
    """log(x) for x > 0; x below FLT_MIN is taken as FLT_MIN (log = -87.3)."""
    x = max(x, _FLT_MIN)
    bits = _f32_as_i32(x)
    e = F((bits >> I(23)) - I(126))
    m = _i32_as_f32((bits & I(0x007FFFFF)) | I(0x3F000000))  # mantissa in [0.5, 1)
    small = m < _SQRTHF
    e = e - F(1.0) if small else e
    m = (m + m - _ONE) if small else (m - _ONE)
    z = m * m
    y = ((((((((_L[0] * m + _L[1]) * m + _L[2]) * m + _L[3]) * m + _L[4]) * m + _L[5]) * m + _L[6]) * m
          + _L[7]) * m + _L[8]) * m * z
    y = y + e * _LN2_LO - _HALF * z
    return m + y + e * _LN2_HI


@njit(fastmath=True, inline="always", error_model="numpy")
def one_minus_exp_f32(x, exp_x):
    """1 - e**x for x <= 0, given exp_x = e**x; exact to float32 precision even as x -> 0-."""
    series = -x * (_ONE + x * (_T[0] + x * (_T[1] + x * (_T[2] + x * (_T[3] + x * (_T[4] + x * (_T[5]
                                                                                          + x * _T[6])))))))
    return series if x > _EXPM1_SWITCH else _ONE - exp_x
