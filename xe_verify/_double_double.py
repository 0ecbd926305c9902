r"""Double-double arithmetic on float64 arrays: error-free transformations and ~106-bit operations, vectorised.

A double-double ``(hi, lo)`` stands for the unevaluated sum ``hi + lo`` of two float64 numbers with
``|lo| <= ulp(hi) / 2``: about 106 significant bits. The reference needs that many bits where a float64 formula
subtracts nearly equal numbers: ``kl_div``'s ``log t - x`` when ``x`` is close to ``log t``, ``logsumexp``'s
``m + log1p(s)`` when the maximum ``m`` is negative and the result is near 0, the terms of
``information.kl_divergence`` when ``q`` is close to ``p``. Everything works elementwise on float64 arrays (numpy
broadcasting, no Python loop over elements) and is private to the package.

Error bounds are relative and use ``u = 2**-53``, float64's unit roundoff. They hold for finite arguments whose
results and intermediates stay in the normal range: beyond about ``2**1023`` something overflows, and a part below
``2**-1022`` is rounded to a multiple of ``2**-1074`` (an absolute error), so a product below about ``2**-969``
is no longer exact. NaN and infinities are the caller's business: the arithmetic propagates them, but the
transcendental functions assume their stated domain.

The error-free transformations are Knuth's TwoSum, Dekker's Fast2Sum and Dekker's product with Veltkamp's split
(numpy has no fused multiply-add). The bounds quoted for ``add``, ``add_double`` and ``mul_double`` are proved by
Joldes, Muller and Popescu, *Tight and rigorous error bounds for basic building blocks of double-word arithmetic*,
ACM TOMS 44(2), 2017 ("JMP17"); the others are derived in their docstrings.
"""

from __future__ import annotations

import decimal
import functools
import math
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from xe_verify._arrays import Float64Array

__all__ = [
    "DoubleDouble",
    "U",
    "add",
    "add_double",
    "div",
    "div_double",
    "exp",
    "fast_two_sum",
    "log",
    "log1p",
    "mul",
    "mul_double",
    "split",
    "sum_last_axis",
    "two_prod",
    "two_sum",
    "x_minus_log1p",
]

#: float64's unit roundoff: every correctly rounded operation has a relative error of at most ``U``.
U = 2.0**-53


class DoubleDouble(NamedTuple):
    """The unevaluated sum ``hi + lo`` of two float64 arrays of one shape (or broadcastable shapes)."""

    hi: Float64Array
    lo: Float64Array


# --------------------------------------------------------------------------------------------------------------------
# Error-free transformations


def two_sum(a: Any, b: Any) -> DoubleDouble:
    """``s + e = a + b`` exactly, with ``s = fl(a + b)`` (Knuth's TwoSum; any magnitudes, no overflow)."""
    s = np.add(a, b)
    b_virtual = s - a
    return DoubleDouble(s, (a - (s - b_virtual)) + (b - b_virtual))


def fast_two_sum(a: Any, b: Any) -> DoubleDouble:
    """``s + e = a + b`` exactly, with ``s = fl(a + b)``, provided ``a = 0`` or ``|a| >= |b|`` (Dekker's Fast2Sum).

    Three operations instead of TwoSum's six; the condition (more precisely: ``a``'s exponent at least ``b``'s)
    is the caller's to guarantee.
    """
    s = np.add(a, b)
    return DoubleDouble(s, b - (s - a))


#: Veltkamp's constant for float64: ``a * (2**27 + 1)`` splits 53 bits into two halves of 26 bits (and a sign).
_SPLITTER = 2.0**27 + 1.0

#: Above this magnitude ``a * _SPLITTER`` can overflow: such values are scaled down by ``2**-28`` first.
_SPLIT_LIMIT = 2.0**995


def _veltkamp(a: Any, splitter: float = _SPLITTER) -> DoubleDouble:
    """Veltkamp's split without the overflow guard: for ``|a| <= 2**995`` (with the default splitter).

    With ``splitter = 2**s + 1`` the high part keeps ``53 - s`` significant bits and the low part at most ``s - 1``
    bits (and a sign), so products of the parts with short numbers are exact.
    """
    c = np.multiply(a, splitter)
    hi = c - (c - a)
    return DoubleDouble(hi, a - hi)


def split(a: Any) -> DoubleDouble:
    """``hi + lo = a`` exactly with ``hi`` and ``lo`` of at most 26 significant bits each (Veltkamp's split).

    Values above ``2**995`` in magnitude, where ``a * (2**27 + 1)`` would overflow, are split after scaling by
    ``2**-28`` and scaled back (both exact). The largest floats, from ``2**1024 - 2**997`` on, have no such split
    (``hi`` would be ``2**1024``): they give an infinite ``hi``.
    """
    big = np.abs(a) > _SPLIT_LIMIT
    if not big.any():
        return _veltkamp(a)
    scaled = np.where(big, np.multiply(a, 2.0**-28), a)
    hi, lo = _veltkamp(scaled)
    scale = np.where(big, 2.0**28, 1.0)
    return DoubleDouble(hi * scale, lo * scale)


def _two_prod_with(a: Any, a_parts: DoubleDouble, b: Any, b_parts: DoubleDouble) -> DoubleDouble:
    """Dekker's product from already split operands."""
    p = np.multiply(a, b)
    a_hi, a_lo = a_parts
    b_hi, b_lo = b_parts
    return DoubleDouble(p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo)


def two_prod(a: Any, b: Any) -> DoubleDouble:
    """``p + e = a * b`` exactly, with ``p = fl(a * b)`` (Dekker's product).

    Exact as long as ``a * b`` neither overflows nor falls below about ``2**-969`` (where ``e`` would need bits
    below the subnormal range).
    """
    return _two_prod_with(a, split(a), b, split(b))


def _renormalise(hi: Any, lo: Any) -> DoubleDouble:
    """``fast_two_sum(hi, lo)``: a pair with ``|lo|`` up to a few ulp of ``hi`` made a proper double-double."""
    return fast_two_sum(hi, lo)


# --------------------------------------------------------------------------------------------------------------------
# Arithmetic


def add(x: DoubleDouble, y: DoubleDouble) -> DoubleDouble:
    """``x + y``, relative error at most ``3u² + 13u³`` (JMP17, Algorithm 6, "AccurateDWPlusDW").

    The bound holds whatever the signs, so cancellation between ``x`` and ``y`` costs nothing beyond it.
    """
    s = two_sum(x.hi, y.hi)
    t = two_sum(x.lo, y.lo)
    v = fast_two_sum(s.hi, s.lo + t.hi)
    return fast_two_sum(v.hi, t.lo + v.lo)


def add_double(x: DoubleDouble, b: Any) -> DoubleDouble:
    """``x + b`` for a float64 ``b``, relative error at most ``2u²`` (JMP17, Algorithm 4, "DWPlusFP")."""
    s = two_sum(x.hi, b)
    return fast_two_sum(s.hi, x.lo + s.lo)


def mul_double(x: DoubleDouble, b: Any) -> DoubleDouble:
    """``x * b`` for a float64 ``b``, relative error at most ``1.5u² + 4u³`` (JMP17, Algorithm 7, "DWTimesFP1")."""
    c = two_prod(x.hi, b)
    t = fast_two_sum(c.hi, np.multiply(x.lo, b))
    return fast_two_sum(t.hi, t.lo + c.lo)


def mul(x: DoubleDouble, y: DoubleDouble) -> DoubleDouble:
    """``x * y``, relative error at most ``8u²`` (to first order; ``8u² = 2**-103``).

    ``x.hi * y.hi`` is exact (Dekker); the cross terms ``x.hi y.lo`` and ``x.lo y.hi`` are rounded once each
    (``u²`` each, relative to the product), their sum once (``2u²``), and added to the product's low part once
    (``3u²``); ``x.lo y.lo`` (at most ``u²``) is left out. This is CRlibm's ``Mul22``.
    """
    c = two_prod(x.hi, y.hi)
    cross = np.multiply(x.hi, y.lo) + np.multiply(x.lo, y.hi)
    return fast_two_sum(c.hi, c.lo + cross)


def div_double(x: DoubleDouble, b: Any) -> DoubleDouble:
    """``x / b`` for a float64 ``b``, relative error at most ``4u²`` (to first order).

    ``q = fl(x.hi / b)``; the remainder ``x.hi - q b`` is exactly representable and computed exactly
    (``x.hi - fl(q b)`` by Sterbenz's lemma, then minus the product's error); adding ``x.lo`` rounds once
    (``2u²`` relative to the quotient) and the division of the remainder once more (another ``2u²``).
    """
    q = np.divide(x.hi, b)
    p = two_prod(q, b)
    remainder = ((x.hi - p.hi) - p.lo) + x.lo
    return fast_two_sum(q, remainder / b)


def div(x: DoubleDouble, y: DoubleDouble) -> DoubleDouble:
    """``x / y``, relative error at most ``11u²`` (to first order).

    ``q = fl(x.hi / y.hi)`` is within ``3u`` of the quotient; the remainder ``x - q y`` is computed in double-double
    (``mul_double`` adds ``1.5u²`` of ``x``) and divided by ``y.hi``, which is within ``3u`` of right for a
    remainder at most ``3u`` of the quotient: ``9u²``.
    """
    q = np.divide(x.hi, y.hi)
    qy = mul_double(y, q)
    remainder = add(x, DoubleDouble(-qy.hi, -qy.lo))
    return fast_two_sum(q, remainder.hi / y.hi)


def sum_last_axis(x: DoubleDouble) -> DoubleDouble:
    """The sum along the last axis, as a pairwise tree of ``add``.

    For terms of one sign the relative error is at most ``(3u² + 13u³) ceil(log2 n)`` for ``n`` terms (each level
    adds at most that of the partial sums). An empty axis sums to 0.
    """
    hi, lo = x.hi, x.lo
    if hi.shape[-1] == 0:
        return DoubleDouble(np.zeros(hi.shape[:-1]), np.zeros(hi.shape[:-1]))
    while hi.shape[-1] > 1:
        paired = hi.shape[-1] // 2 * 2
        total = add(
            DoubleDouble(hi[..., 0:paired:2], lo[..., 0:paired:2]),
            DoubleDouble(hi[..., 1:paired:2], lo[..., 1:paired:2]),
        )
        hi = np.concatenate([total.hi, hi[..., paired:]], axis=-1)
        lo = np.concatenate([total.lo, lo[..., paired:]], axis=-1)
    return DoubleDouble(hi[..., 0], lo[..., 0])


# --------------------------------------------------------------------------------------------------------------------
# Constants and tables


def _dd_constant(value: Fraction | decimal.Decimal) -> tuple[float, float]:
    """``value`` as a double-double: ``hi`` correctly rounded, ``lo`` the correctly rounded remainder."""
    exact = Fraction(value)
    hi = float(exact)
    return hi, float(exact - Fraction(hi))


def _short_parts(value: Fraction, bits: int, step: int) -> tuple[float, float, float]:
    """``value`` as three floats, the first a multiple of ``2**-bits``, the second of ``2**-(bits + step)``.

    Chosen so that the first two have few significant bits: their products with small integers are exact.
    """
    first = Fraction(round(value * 2**bits), 2**bits)
    second = Fraction(round((value - first) * 2 ** (bits + step)), 2 ** (bits + step))
    return float(first), float(second), float(value - first - second)


#: 50 significant digits (166 bits) for the constants and tables: far beyond double-double's 106.
_DIGITS = 50

_LN2 = Fraction(decimal.Context(prec=_DIGITS).ln(2))

#: ln 2 in three parts, the first two multiples of ``2**-43`` and ``2**-85`` with at most 42 significant bits, so
#: that ``k`` times them is exact for integers ``|k| < 2**11``; ``k`` times the last part is within ``2**-128 |k|``.
_LN2_PARTS = _short_parts(_LN2, 43, 42)

#: The logarithm's table: the mantissa ``m`` in ``[1/sqrt 2, sqrt 2)`` is reduced by ``r = j / 256``.
_LOG_GRID = 256
_LOG_FIRST = 181  # rint(256 / sqrt 2)
_LOG_LAST = 363  # rint(256 sqrt 2) is 362; one spare entry
_SQRT_HALF = 0.7071067811865476


@functools.cache
def _log_table() -> tuple[Float64Array, Float64Array]:
    """``log(j / 256)`` for ``j`` from 181 to 363, as double-doubles (decimal logarithms, computed once, ~10 ms)."""
    context = decimal.Context(prec=_DIGITS)
    values = [_dd_constant(context.ln(decimal.Decimal(j) / _LOG_GRID)) for j in range(_LOG_FIRST, _LOG_LAST + 1)]
    return _read_only_columns(values)


#: The exponential's table: ``exp(x) = 2**(n / 64) exp(r)`` with ``|r| <= ln 2 / 128``.
_EXP_GRID = 64


@functools.cache
def _exp_table() -> tuple[Float64Array, Float64Array]:
    """``2**(j / 64)`` for ``j`` from 0 to 63, as double-doubles (decimal powers, computed once)."""
    context = decimal.Context(prec=_DIGITS)
    return _read_only_columns([_dd_constant(context.power(2, decimal.Decimal(j) / _EXP_GRID)) for j in range(64)])


def _read_only_columns(pairs: list[tuple[float, float]]) -> tuple[Float64Array, Float64Array]:
    hi = np.array([pair[0] for pair in pairs])
    lo = np.array([pair[1] for pair in pairs])
    hi.flags.writeable = lo.flags.writeable = False
    return hi, lo


#: ``ln 2 / 64`` in three parts, the first two of at most 36 significant bits: ``n`` times them is exact for
#: ``|n| < 2**17``, which covers every argument ``|x| < 1100``.
_EXP_STEP = _short_parts(_LN2 / _EXP_GRID, 43, 36)
_EXP_SCALE = float(_EXP_GRID / _LN2)

#: ``log1p(g) - g = g² sum_j c_j g^j``, ``c_j = (-1)**(j + 1) / (j + 2)``: for ``|g| <= 2**-8.4`` the terms after
#: ``j = 11`` are below ``2**-101`` of the sum.
_EXCESS_COEFFICIENTS = tuple(_dd_constant(Fraction((-1) ** (j + 1), j + 2)) for j in range(12))

#: ``expm1(r) = r sum_j r^j / (j + 1)!``: for ``|r| <= 2**-7.5`` the terms after ``j = 10`` are below ``2**-107``.
_EXPM1_COEFFICIENTS = tuple(_dd_constant(Fraction(1, math.factorial(j + 1))) for j in range(11))


# --------------------------------------------------------------------------------------------------------------------
# Series


def _series(x: Float64Array, x_lo: Float64Array | None, coefficients: tuple[tuple[float, float], ...]) -> DoubleDouble:
    r"""``sum_j c_j x^j`` (Horner) in double-double where it matters, for small ``x`` (plus ``x_lo`` if given).

    The coefficients shrink with ``j`` and ``|x| <= 2**-7.5``: an error ``e`` in the partial sum of the terms from
    ``j`` on weighs ``|x|**j e`` in the result. So the terms ``j >= 6`` need only float64 (their rounding is below
    ``2**-106`` of the sum), ``j = 5`` one compensated addition (the product's rounding, about ``2**-64``, enters
    times ``2**-37``), and ``j <= 4`` a full error-free step each (Dekker's product by ``x``, Fast2Sum with the
    coefficient, the errors carried in the low part). ``|c_j| > |x c_{j+1}|``, which Fast2Sum needs, holds for both
    series used here. The relative error is a few ``u²`` (each full step adds about ``1.5u²``).
    """
    x_parts = _veltkamp(x)
    top = len(coefficients) - 1
    value = np.full_like(x, coefficients[top][0])
    for coefficient, _ in coefficients[top - 1 : 5 : -1]:
        value = value * x + coefficient
    step = fast_two_sum(coefficients[5][0], value * x)
    hi, lo = step.hi, step.lo + coefficients[5][1]
    for c_hi, c_lo in coefficients[4::-1]:
        product = _two_prod_with(x, x_parts, hi, _veltkamp(hi))
        low = product.lo + x * lo
        if x_lo is not None:
            low = low + x_lo * hi
        step = fast_two_sum(c_hi, product.hi)
        hi, lo = step.hi, step.lo + (low + c_lo)
    return _renormalise(hi, lo)


def _times_double(x: DoubleDouble, b: Float64Array, b_parts: DoubleDouble) -> DoubleDouble:
    """``mul_double(x, b)`` with ``b`` already split (``1.5u² + 4u³``)."""
    c = _two_prod_with(x.hi, _veltkamp(x.hi), b, b_parts)
    t = fast_two_sum(c.hi, x.lo * b)
    return fast_two_sum(t.hi, t.lo + c.lo)


def _log1p_excess(g: Float64Array) -> DoubleDouble:
    """``log1p(g) - g`` for float64 ``|g| <= 2**-8.4``, relative error at most about ``2**-100``.

    ``g² (c_0 + c_1 g + ...)`` with the series in double-double (a few ``u²``) and two products by ``g``
    (``1.5u²`` each). The result is about ``-g²/2``, no more than ``2**-9.4 |g|``.
    """
    g_parts = _veltkamp(g)
    series = _series(g, None, _EXCESS_COEFFICIENTS)
    return _times_double(_times_double(series, g, g_parts), g, g_parts)


def _log1p_excess_fast(g: Float64Array, work: list[Float64Array]) -> DoubleDouble:
    """``log1p(g) - g`` for ``|g| <= 2**-9 / r`` as ``hi + lo`` within ``1.9u |g|³``: cheaper than ``_log1p_excess``.

    ``-g²/2`` is exact (Dekker's square), the rest ``g³ (1/3 - g/4 + ... + g^6/9)``, at most ``2**-9`` of it, is
    float64 (``1.5u`` for the polynomial, ``3u`` for the products). ``work`` holds four scratch buffers of ``g``'s
    shape; the low part is returned in the last of them.
    """
    g_hi, g_lo, rest, error = work
    np.multiply(g, _SPLITTER, out=g_hi)
    np.subtract(g_hi, g, out=g_lo)
    np.subtract(g_hi, g_lo, out=g_hi)
    np.subtract(g, g_hi, out=g_lo)
    square = g * g
    # error = g² - fl(g²), exactly: ((g_hi² - p) + 2 g_hi g_lo) + g_lo²
    np.multiply(g_hi, g_hi, out=error)
    error -= square
    g_hi *= g_lo
    g_hi += g_hi
    error += g_hi
    g_lo *= g_lo
    error += g_lo
    rest.fill(_EXCESS_COEFFICIENTS[7][0])
    for c_hi, _ in _EXCESS_COEFFICIENTS[6:0:-1]:
        rest *= g
        rest += c_hi
    rest *= square
    rest *= g
    error *= -0.5
    error += rest
    square *= -0.5
    return DoubleDouble(square, error)


# --------------------------------------------------------------------------------------------------------------------
# Transcendental functions


def _fast_two_sum_into(
    total: Float64Array, part: Float64Array, tail: Float64Array, spare: Float64Array
) -> Float64Array:
    """``total + part`` by Fast2Sum (``|total| >= |part|``) into ``spare``, the rounding error added to ``tail``.

    ``total``'s buffer is overwritten (it is free afterwards); returns ``spare``, which holds the sum.
    """
    np.add(total, part, out=spare)
    np.subtract(spare, total, out=total)
    np.subtract(part, total, out=total)
    tail += total
    return spare


def log(x: Float64Array | DoubleDouble, *, precise: bool = True) -> DoubleDouble:
    r"""The natural logarithm of a positive float64 or double-double, relative error below ``2**-100``.

    $$ \log x = k \ln 2 + \log r_j + \operatorname{log1p}(g), \qquad x = 2^k m,\ m \in [1/\sqrt 2, \sqrt 2),\
       r_j = j / 256,\ g = (m - r_j) / r_j, $$

    with ``log r_j`` from a table of double-doubles and ``ln 2`` in three short parts (``k ln 2`` is exact to
    ``2**-128 |k|``). ``m - r_j`` is exact (Sterbenz), and so is the remainder of the division by ``r_j`` (nine
    significant bits), so ``g`` is known to ``u² |g|``; ``|g| <= 2**-8.5``. ``log1p(g) = g + (log1p(g) - g)``, the
    second part from a series to about ``2**-100`` of itself (it is at most ``2**-9.4 |g|``). The parts are added
    largest first with error-free additions and the errors summed at the end.

    Error: the table and ``ln 2`` contribute at most ``u²`` of ``|log x|``; summing the at most eight rounding errors
    and small parts (each below ``u`` of the larger parts, which are at most ``3 |log x|`` since ``k ln 2`` and
    ``log r_j`` have the same sign unless ``k = 0``) adds at most about ``24 u² |log x|``: below ``2**-100`` in all.
    Typical errors are about ``u²``. A double-double argument ``x.lo`` enters the reduction exactly (it is scaled by
    ``2**-k`` and added to ``m - r_j`` without rounding).

    With ``precise=False`` only ``-g²/2`` of the series is exact and the rest is float64 (within ``1.9u |g|³``,
    which is at most ``2**-70`` of ``|log x|`` since ``|g| <= 2**-9`` where ``|log x|`` can be as small as
    ``|g|``): relative error below ``2**-69``, for about a fifth of the work.

    Subnormal arguments are fine (``frexp`` normalises them). The argument must be positive and finite.
    """
    if isinstance(x, DoubleDouble):
        hi, lo = x.hi, x.lo
    else:
        hi, lo = np.asarray(x, dtype=np.float64), None
    table_hi, table_lo = _log_table()
    # The work happens in a few buffers of the argument's size: on the thousands of elements callers hand over, a
    # fresh temporary per operation costs more than the arithmetic (the allocator returns the memory to the system
    # and page-faults it back).
    m, exponent = np.frexp(hi)
    low = m < _SQRT_HALF
    np.multiply(m, 2.0, out=m, where=low)  # m in [1/sqrt 2, sqrt 2)
    k = np.subtract(exponent, low, dtype=np.float64)
    r = np.multiply(m, _LOG_GRID)
    np.rint(r, out=r)
    index = r.astype(np.intp)
    index -= _LOG_FIRST
    r *= 1.0 / _LOG_GRID
    numerator = np.subtract(m, r, out=m)  # exact: Sterbenz
    numerator_lo = None
    if lo is not None:
        # x.lo scaled like m joins the numerator exactly (it can be as large as u, far more than u |m - r|).
        numerator, numerator_lo = two_sum(numerator, np.ldexp(lo, -k.astype(np.int64)))
    g = numerator / r
    # The remainder numerator - g r, exactly: r has at most 9 significant bits, so with g split into 44 + 9 bits both
    # partial products are exact, and the first difference is exact by Sterbenz's lemma.
    work = [np.empty_like(g) for _ in range(4)]
    first, second, spare, _ = work
    np.multiply(g, 2.0**9 + 1.0, out=spare)
    np.subtract(spare, g, out=first)
    np.subtract(spare, first, out=first)
    np.subtract(g, first, out=second)
    first *= r
    numerator -= first
    second *= r
    numerator -= second
    if numerator_lo is not None:
        numerator += numerator_lo
    # log1p(g + g_lo) = log1p(g) + g_lo / (1 + g) + O(g_lo²), with g_lo = remainder / r. The small parts go to tail.
    g_lo = np.divide(numerator, r, out=numerator)
    tail = np.add(g, 1.0, out=r)
    np.divide(g_lo, tail, out=tail)
    tail += np.take(table_lo, index, out=spare)
    tail += np.multiply(k, _LN2_PARTS[2], out=spare)
    excess = _log1p_excess(g) if precise else _log1p_excess_fast(g, work)
    # k ln2_hi + log(r_j)_hi by TwoSum, then + g, + the excess and + k ln2_mid by Fast2Sum: each addend is smaller
    # than the running sum (|log r_j| >= 2**-8 > |g| when j != 256, |excess| < |g|, |k ln2_mid| < 2**-43 |k|).
    a = np.multiply(k, _LN2_PARTS[0], out=g_lo)
    b = np.take(table_hi, index, out=first)
    total = np.add(a, b, out=second)
    np.subtract(total, a, out=spare)  # b's share of the sum
    b -= spare
    tail += b
    np.subtract(total, spare, out=spare)  # a's share
    np.subtract(a, spare, out=spare)
    tail += spare
    total = _fast_two_sum_into(total, g, tail, spare)
    total = _fast_two_sum_into(total, excess.hi, tail, second)
    total = _fast_two_sum_into(total, np.multiply(k, _LN2_PARTS[1], out=a), tail, spare)
    # The excess's low part last: it is the largest of the small parts, and added earlier its size would enter the
    # rounding of every later addition.
    tail += excess.lo
    return fast_two_sum(total, tail)


def log1p(x: DoubleDouble) -> DoubleDouble:
    """``log(1 + x)`` for a double-double ``x > -1``, relative error below ``2**-100``.

    For ``|x| <= 2**-9``: ``x + (log1p(x.hi) - x.hi) + x.lo / (1 + x.hi)``, the middle part from the series of
    ``log``, so tiny ``x`` keep every digit. Further out, ``log`` of ``1 + x`` formed exactly: ``1 + x.hi`` by
    TwoSum, its error plus ``x.lo`` by another TwoSum, of which only the last (at most ``2u²``) is added after the
    logarithm, as ``lo / (1 + x)``; there ``|log1p(x)| >= 2**-9.1``, so absolute errors of order ``u²`` stay small.
    """
    hi_out = np.empty_like(x.hi)
    lo_out = np.empty_like(x.hi)
    near = np.abs(x.hi) <= 2.0**-9
    inner = np.flatnonzero(near)
    if inner.size:
        g, g_lo = x.hi[inner], x.lo[inner]
        excess = _log1p_excess(g)
        total = fast_two_sum(g, excess.hi)
        result = fast_two_sum(total.hi, total.lo + excess.lo + g_lo / (1.0 + g))
        hi_out[inner], lo_out[inner] = result
    outer = np.flatnonzero(~near)
    if outer.size:
        one_plus = two_sum(1.0, x.hi[outer])
        low = two_sum(one_plus.lo, x.lo[outer])
        # 1 + x.hi is 0 for x.hi = -1 (then x.lo > 0 is all there is): one more TwoSum makes the pair proper.
        argument = two_sum(one_plus.hi, low.hi)
        logarithm = log(argument)
        result = fast_two_sum(logarithm.hi, logarithm.lo + low.lo / argument.hi)
        hi_out[outer], lo_out[outer] = result
    return DoubleDouble(hi_out, lo_out)


def x_minus_log1p(x: DoubleDouble) -> DoubleDouble:
    """``x - log1p(x)`` for a double-double ``x > -1``: non-negative, about ``x²/2`` near 0.

    For ``|x| <= 2**-9`` it is ``-(log1p(x.hi) - x.hi) + x.lo x.hi / (1 + x.hi)`` (to ``u² x²``), relative error
    about ``2**-100``: no cancellation. Further out it is ``x - log1p(x)`` in double-double, where the subtraction
    loses at most ``log2(2 |x| / (x - log1p x)) <= 11`` bits: relative error below ``2**-89``.
    """
    hi_out = np.empty_like(x.hi)
    lo_out = np.empty_like(x.hi)
    near = np.abs(x.hi) <= 2.0**-9
    inner = np.flatnonzero(near)
    if inner.size:
        g, g_lo = x.hi[inner], x.lo[inner]
        excess = _log1p_excess(g)
        hi_out[inner], lo_out[inner] = fast_two_sum(-excess.hi, g_lo * g / (1.0 + g) - excess.lo)
    outer = np.flatnonzero(~near)
    if outer.size:
        value = DoubleDouble(x.hi[outer], x.lo[outer])
        logarithm = log1p(value)
        hi_out[outer], lo_out[outer] = add(value, DoubleDouble(-logarithm.hi, -logarithm.lo))
    return DoubleDouble(hi_out, lo_out)


def exp(x: DoubleDouble) -> DoubleDouble:
    r"""``e**x`` for a double-double ``x`` with ``x.hi <= 709``, relative error below ``2**-101``.

    $$ e^x = 2^{q}\, 2^{j/64}\, e^r, \qquad n = \operatorname{rint}(64 x / \ln 2) = 64 q + j,\ r = x - n \ln 2 / 64, $$

    with ``|r| <= ln 2 / 128 < 2**-7.5`` computed to ``2**-114`` (Cody and Waite's reduction with ``ln 2 / 64`` in
    three parts, the argument's low part added by TwoSum), ``2**(j/64)`` from a table of double-doubles, and
    ``e**r = 1 + r (1 + r/2 + r²/6 + ...)`` by the series in double-double (a few ``u²``). The product with the
    table entry adds ``8u²``; scaling by ``2**q`` is exact while the result is normal. Results below ``2**-1022``
    are rounded to the subnormal grid (absolute error up to ``2**-1075`` per part) and arguments below ``-1100``
    (``-inf`` included) give 0.
    """
    table_hi, table_lo = _exp_table()
    hi = np.maximum(x.hi, -1100.0)
    n = np.rint(hi * _EXP_SCALE)
    reduced = two_sum(hi - n * _EXP_STEP[0], -(n * _EXP_STEP[1]))  # the first difference is exact (Sterbenz)
    with_low = two_sum(reduced.hi, np.where(hi == x.hi, x.lo, 0.0))
    r = fast_two_sum(with_low.hi, (reduced.lo + with_low.lo) - n * _EXP_STEP[2])
    expm1 = mul(_series(r.hi, r.lo, _EXPM1_COEFFICIENTS), r)
    one_plus = fast_two_sum(1.0, expm1.hi)
    exp_r = fast_two_sum(one_plus.hi, one_plus.lo + expm1.lo)
    n_int = n.astype(np.int64)
    index = n_int & (_EXP_GRID - 1)
    scaled = mul(exp_r, DoubleDouble(table_hi[index], table_lo[index]))
    power = n_int >> 6
    return DoubleDouble(np.ldexp(scaled.hi, power), np.ldexp(scaled.lo, power))
