"""xe_verify._double_double against mpmath: the error-free transformations are exact, and every operation stays within
the relative error bound its docstring states (u = 2**-53).

The oracle works with 300 bits; hi + lo is summed exactly there. Double-double arguments are drawn as a float64
``hi`` and a proper low part (``|lo| <= ulp(hi) / 2``). The bounds need results and intermediates in the normal
range, which the strategies respect (the functions' docstrings say what happens outside).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xe_verify import _double_double as dd
from xe_verify._double_double import DoubleDouble

U = 2.0**-53
PRECISION = 300  # bits for the oracle
#: Bits for transcendental functions of an exact double-double argument (hi + 2**-1074 spans about 2100 bits): with
#: less, mpmath rounds tiny low parts away (log(1 + 5e-222) comes out 0), and its log of 0.25 + 1.33e-322 held
#: exactly at 300 bits returns log(1 + 4 * 1.33e-322).
ARGUMENT_PRECISION = 2400


def _dd_values(x: DoubleDouble) -> list[Any]:
    """hi + lo exactly (a proper low part can be far below hi's last bit: the sum can need 2000 bits)."""
    return [mpmath.fadd(float(h), float(lo), exact=True) for h, lo in zip(np.ravel(x.hi), np.ravel(x.lo), strict=True)]


#: Below this a double-double's low part is subnormal, so its relative precision is lost: there the bounds are
#: absolute, a few multiples of the subnormal spacing 2**-1074.
TINY = 2.0**-969


def max_relative_error(computed: DoubleDouble, exact: Iterable[Any]) -> float:
    """Largest |hi + lo - exact| / |exact| over the results above ``TINY`` (evaluated with 300 bits).

    Results below ``TINY`` must be within ``2**-1070`` absolutely.
    """
    worst = 0.0
    with mpmath.workprec(PRECISION):
        for value, truth in zip(_dd_values(computed), exact, strict=True):
            error = abs(value - truth)
            if abs(truth) < TINY:
                assert error <= 2.0**-1070, f"{value} for {truth}"
                continue
            worst = max(worst, float(error / abs(truth)))
    return worst


def assert_within(computed: DoubleDouble, exact: Iterable[Any], bound: float, **inputs: Any) -> None:
    __tracebackhide__ = True
    error = max_relative_error(computed, list(exact))
    assert error <= bound, f"relative error 2**{math.log2(error):.2f} > 2**{math.log2(bound):.2f}; inputs {inputs}"


def assert_proper(x: DoubleDouble) -> None:
    """|lo| <= ulp(hi) / 2: the pair is normalised (hi is hi + lo rounded to float64)."""
    __tracebackhide__ = True
    assert np.all(np.asarray(x.hi + x.lo) == x.hi)


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _vectors(elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, st.integers(1, 8), elements=elements)


def _magnitudes(low_exponent: float, high_exponent: float) -> st.SearchStrategy[float]:
    """Signed numbers whose magnitudes are spread over the binades 2**low .. 2**high."""
    spread = st.builds(
        lambda m, e, s: s * math.ldexp(m, e),
        _floats(0.5, 1.0),
        st.integers(int(low_exponent), int(high_exponent)),
        st.sampled_from([-1.0, 1.0]),
    )
    return st.one_of(spread, st.sampled_from([1.0, -1.0, 0.5, 2.0, 1.0 + 2.0**-52, 1.0 - 2.0**-53]))


@st.composite
def double_doubles(draw: st.DrawFn, hi: st.SearchStrategy[np.ndarray]) -> DoubleDouble:
    """A proper double-double for each ``hi``: ``lo`` anywhere within half an ulp of ``hi`` (sometimes 0)."""
    high = draw(hi)
    fraction = draw(hnp.arrays(np.float64, high.shape, elements=st.one_of(st.just(0.0), _floats(-1.0, 1.0))))
    # The spacing just below |hi|: that of hi's own binade (or half of it at a power of two), finite at the top.
    low = np.spacing(np.nextafter(np.abs(high), 0.0)) * 0.5 * fraction
    return dd.fast_two_sum(high, low)


def _as_dd(hi: list[float], lo: list[float]) -> DoubleDouble:
    return DoubleDouble(np.array(hi), np.array(lo))


# --------------------------------------------------------------------------------------------------------------------
# Error-free transformations

_ANY = _magnitudes(-1000, 1000)


@given(a=_vectors(_ANY), b=_vectors(_ANY))
@example(a=np.array([1.0, 2.0**1000, 5e-324]), b=np.array([2.0**-53, -(2.0**1000), 5e-324]))
def test_two_sum_is_exact(a: np.ndarray, b: np.ndarray) -> None:
    b = np.resize(b, a.shape)
    s, e = dd.two_sum(a, b)
    assert np.array_equal(s, a + b)
    with mpmath.workprec(PRECISION):
        for x, y, hi, lo in zip(a, b, s, e, strict=True):
            assert mpmath.mpf(hi) + mpmath.mpf(lo) == mpmath.mpf(x) + mpmath.mpf(y)


@given(a=_vectors(_ANY), b=_vectors(_ANY))
@example(a=np.array([0.0, 1.0]), b=np.array([3.0, -1.0]))
def test_fast_two_sum_is_exact_when_the_first_is_larger(a: np.ndarray, b: np.ndarray) -> None:
    b = np.resize(b, a.shape)
    big = np.where(np.abs(a) >= np.abs(b), a, b)
    small = np.where(np.abs(a) >= np.abs(b), b, a)
    s, e = dd.fast_two_sum(big, small)
    assert np.array_equal(s, big + small)
    with mpmath.workprec(PRECISION):
        for x, y, hi, lo in zip(big, small, s, e, strict=True):
            assert mpmath.mpf(hi) + mpmath.mpf(lo) == mpmath.mpf(x) + mpmath.mpf(y)


def _significant_bits(value: float) -> int:
    if value == 0:
        return 0
    mantissa, _ = math.frexp(abs(value))
    scaled = int(mantissa * 2**53)
    return 53 - ((scaled & -scaled).bit_length() - 1)


# Above 2**1024 - 2**997 the high half would round to 2**1024: that is outside split's domain.
_SPLIT_MAX = 2.0**1023 * (2.0 - 2.0**-25)


@given(a=_vectors(st.one_of(_ANY, _floats(-_SPLIT_MAX, _SPLIT_MAX))))
@example(a=np.array([_SPLIT_MAX, -(2.0**996), 2.0**995, 5e-324, 2.2250738585072014e-308, 0.0]))
def test_split_halves_are_short_and_exact(a: np.ndarray) -> None:
    hi, lo = dd.split(a)
    assert np.array_equal(hi + lo, a)
    assert all(_significant_bits(v) <= 26 for v in hi)
    assert all(_significant_bits(v) <= 26 for v in lo)


# Products are exact while the error term stays above the subnormal range and the product below overflow.
_FACTORS = _magnitudes(-480, 480)


@given(a=_vectors(_FACTORS), b=_vectors(_FACTORS))
@example(a=np.array([1.0 + 2.0**-52, 2.0**480, 3.0]), b=np.array([1.0 - 2.0**-52, 2.0**-480, 1.0 / 3.0]))
def test_two_prod_is_exact(a: np.ndarray, b: np.ndarray) -> None:
    b = np.resize(b, a.shape)
    p, e = dd.two_prod(a, b)
    assert np.array_equal(p, a * b)
    with mpmath.workprec(PRECISION):
        for x, y, hi, lo in zip(a, b, p, e, strict=True):
            assert mpmath.mpf(hi) + mpmath.mpf(lo) == mpmath.mpf(x) * mpmath.mpf(y)


def test_two_prod_splits_huge_factors_without_overflow() -> None:
    a, b = np.array([2.0**1000 * 1.3]), np.array([2.0**-100 * 1.7])
    p, e = dd.two_prod(a, b)
    with mpmath.workprec(PRECISION):
        assert mpmath.mpf(p[0]) + mpmath.mpf(e[0]) == mpmath.mpf(a[0]) * mpmath.mpf(b[0])


# --------------------------------------------------------------------------------------------------------------------
# Arithmetic: the stated bounds

_OPERANDS = double_doubles(_vectors(_magnitudes(-400, 400)))


def _binary(
    operation: Callable[[DoubleDouble, DoubleDouble], DoubleDouble],
    exact: Callable[[Any, Any], Any],
    bound: float,
    x: DoubleDouble,
    y: DoubleDouble,
) -> None:
    __tracebackhide__ = True
    y = DoubleDouble(np.resize(y.hi, x.hi.shape), np.resize(y.lo, x.hi.shape))
    result = operation(x, y)
    assert_proper(result)
    with mpmath.workprec(PRECISION):
        truths = [exact(a, b) for a, b in zip(_dd_values(x), _dd_values(y), strict=True)]
    assert_within(result, truths, bound, x=x, y=y)


@given(x=_OPERANDS, y=_OPERANDS)
@example(x=_as_dd([1.0, 1.0], [2.0**-60, 0.0]), y=_as_dd([-1.0, -1.0 + 2.0**-53], [2.0**-70, 2.0**-107]))  # cancels
def test_add_is_within_3u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(dd.add, lambda a, b: a + b, 3 * U**2 + 13 * U**3, x, y)


@given(x=_OPERANDS, y=_OPERANDS)
def test_add_double_is_within_2u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(lambda a, b: dd.add_double(a, b.hi), lambda a, b: a + b, 2 * U**2, x, DoubleDouble(y.hi, 0 * y.lo))


@given(x=_OPERANDS, y=_OPERANDS)
@example(x=_as_dd([1.0 + 2.0**-52], [-(2.0**-106)]), y=_as_dd([1.0 - 2.0**-53], [2.0**-107]))
def test_mul_is_within_8u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(dd.mul, lambda a, b: a * b, 8 * U**2 * (1 + 16 * U), x, y)


@given(x=_OPERANDS, y=_OPERANDS)
def test_mul_double_is_within_1_5u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(
        lambda a, b: dd.mul_double(a, b.hi), lambda a, b: a * b, 1.5 * U**2 + 4 * U**3, x, DoubleDouble(y.hi, 0 * y.lo)
    )


@given(x=_OPERANDS, y=_OPERANDS)
@example(x=_as_dd([1.0], [0.0]), y=_as_dd([3.0], [0.0]))
def test_div_is_within_11u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(dd.div, lambda a, b: a / b, 11 * U**2 * (1 + 16 * U), x, y)


@given(x=_OPERANDS, y=_OPERANDS)
@example(x=_as_dd([1.0], [2.0**-60]), y=_as_dd([3.0], [0.0]))
def test_div_double_is_within_4u2(x: DoubleDouble, y: DoubleDouble) -> None:
    _binary(
        lambda a, b: dd.div_double(a, b.hi),
        lambda a, b: a / b,
        4 * U**2 * (1 + 16 * U),
        x,
        DoubleDouble(y.hi, 0 * y.lo),
    )


@given(terms=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(0, 40)), elements=_floats(0.0, 1e6)))
def test_sum_of_non_negative_terms_is_within_3u2_per_level(terms: np.ndarray) -> None:
    low = terms * U * 0.25
    total = dd.sum_last_axis(DoubleDouble(terms, low))
    levels = max(1, math.ceil(math.log2(max(terms.shape[-1], 1))))
    with mpmath.workprec(PRECISION):
        truths = [
            mpmath.fsum(mpmath.mpf(h) + mpmath.mpf(lo) for h, lo in zip(row, row_low, strict=True))
            for row, row_low in zip(terms, low, strict=True)
        ]
    assert_within(total, truths, (3 * U**2 + 13 * U**3) * levels, terms=terms)


# --------------------------------------------------------------------------------------------------------------------
# Transcendental functions

LOG_BOUND = 2.0**-100
EXP_BOUND = 2.0**-101

_POSITIVE = st.one_of(
    _floats(5e-324, 1.7976931348623157e308),
    _floats(0.5, 2.0),
    _floats(-30.0, 30.0).map(lambda e: 1.0 + math.copysign(2.0 ** -abs(e) if abs(e) > 1 else 0.25, e)),
)

# Boundaries of the reduction: 1/sqrt 2 and sqrt 2 (the mantissa's range), the table's first and last entries and
# the centre interval's edges (1 +- 2**-9), powers of two, 1 itself and its neighbours, subnormals, the largest float.
_LOG_EXAMPLES = np.array(
    [
        0.7071067811865476,
        0.7071067811865475,
        1.414213562373095,
        1.4142135623730951,
        181 / 256,
        362.5 / 256,
        1.0 + 2.0**-9,
        1.0 - 2.0**-9,
        1.0 + 1.5 * 2.0**-9,
        0.5,
        2.0,
        2.0**-1022,
        1.0,
        1.0 + 2.0**-52,
        1.0 - 2.0**-53,
        5e-324,
        3e-320,
        1.7976931348623157e308,
        0.3,
    ]
)


def _exact_logs(values: np.ndarray) -> list[Any]:
    with mpmath.workprec(PRECISION):
        return [mpmath.log(mpmath.mpf(float(v))) for v in values]


@given(t=_vectors(_POSITIVE))
@example(t=_LOG_EXAMPLES)
def test_log_is_within_2_to_the_minus_100(t: np.ndarray) -> None:
    result = dd.log(t)
    assert_proper(result)
    assert_within(result, _exact_logs(t), LOG_BOUND, t=t)


@given(t=_vectors(_POSITIVE))
@example(t=_LOG_EXAMPLES)
def test_the_cheaper_log_is_within_2_to_the_minus_69(t: np.ndarray) -> None:
    assert_within(dd.log(t, precise=False), _exact_logs(t), 2.0**-69, t=t)


@given(x=double_doubles(_vectors(_POSITIVE)))
@example(x=_as_dd([1.0, 1.0, 0.5, 2.0], [2.0**-60, -(2.0**-54), 2.0**-56, -(2.0**-52)]))
def test_log_of_a_double_double_is_within_2_to_the_minus_100(x: DoubleDouble) -> None:
    with mpmath.workprec(ARGUMENT_PRECISION):
        truths = [mpmath.log(v) for v in _dd_values(x)]
    assert_within(dd.log(x), truths, LOG_BOUND, x=x)


_LOG1P_ARGUMENTS = st.one_of(
    _floats(-1.0 + 2.0**-50, 1e6),
    _floats(-(2.0**-8), 2.0**-8),
    _magnitudes(-1000, -9),
).filter(lambda v: v > -1.0)


@given(x=double_doubles(_vectors(_LOG1P_ARGUMENTS)))
@example(x=_as_dd([2.0**-9, -(2.0**-9), 2.0**-9 * 1.0001, 1e-300, -0.5, 0.0], [0.0, 2.0**-70, 0.0, 0.0, 0.0, 0.0]))
@example(x=_as_dd([-1.0, -1.0], [2.0**-60, 2.0**-1000]))  # 1 + x below 1e-18: only x.lo is left
def test_log1p_is_within_2_to_the_minus_100(x: DoubleDouble) -> None:
    with mpmath.workprec(ARGUMENT_PRECISION):
        truths = [mpmath.log1p(v) for v in _dd_values(x)]
    result = dd.log1p(x)
    assert_proper(result)
    assert_within(result, truths, LOG_BOUND, x=x)


@given(x=double_doubles(_vectors(_LOG1P_ARGUMENTS)))
@example(
    x=_as_dd([2.0**-9, -(2.0**-9), 2.0**-9 * 1.0001, 2.43e-9, -1.0, 1e-140], [0.0, 2.0**-70, 0.0, 1e-26, 1e-200, 0.0])
)
def test_x_minus_log1p_is_within_2_to_the_minus_89(x: DoubleDouble) -> None:
    # x - log1p(x) is about x²/2: for x = 1e-140 the subtraction needs 470 more bits than the result.
    with mpmath.workprec(ARGUMENT_PRECISION):
        truths = [v - mpmath.log1p(v) for v in _dd_values(x)]
    near = np.abs(x.hi) <= 2.0**-9
    result = dd.x_minus_log1p(x)
    assert_proper(result)
    near_truths = [v for v, n in zip(truths, near, strict=True) if n]
    assert_within(DoubleDouble(result.hi[near], result.lo[near]), near_truths, LOG_BOUND, x=x)
    assert_within(result, truths, 2.0**-89, x=x)


# Above about -669 the result's low part is a normal number, which the bound needs.
_EXPONENTS = st.one_of(_floats(-669.0, 709.0), _floats(-1.0, 1.0), _magnitudes(-1000, -1))


@given(x=double_doubles(_vectors(_EXPONENTS)))
@example(x=_as_dd([0.0, -669.0, 709.0, math.log(2.0) / 128, -math.log(2.0) / 128, 1e-300, 1.0], [0.0] * 7))
def test_exp_is_within_2_to_the_minus_101(x: DoubleDouble) -> None:
    with mpmath.workprec(ARGUMENT_PRECISION):
        truths = [mpmath.exp(v) for v in _dd_values(x)]
    result = dd.exp(x)
    assert_proper(result)
    assert_within(result, truths, EXP_BOUND, x=x)


def test_exp_underflows_to_zero_below_the_range() -> None:
    result = dd.exp(_as_dd([-math.inf, -2000.0, -1100.0], [0.0, 0.0, 0.0]))
    assert result.hi.tolist() == [0.0, 0.0, 0.0]
    assert result.lo.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("table", ["log", "exp"])
def test_the_tables_are_correctly_rounded_double_doubles(table: str) -> None:
    with mpmath.workprec(PRECISION):
        if table == "log":
            hi, lo = dd._log_table()
            truths = [mpmath.log(mpmath.mpf(j) / 256) for j in range(dd._LOG_FIRST, dd._LOG_LAST + 1)]
        else:
            hi, lo = dd._exp_table()
            truths = [mpmath.mpf(2) ** (mpmath.mpf(j) / 64) for j in range(64)]
    assert_within(DoubleDouble(hi, lo), truths, 2 * U**2, table=table)
