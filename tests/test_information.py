"""``xe_verify.information``: entropy, cross-entropy and KL divergence of probability vectors.

Conventions (0 log 0 = 0, p > 0 = q gives inf, bad probabilities are a ValueError), bases, axes, and agreement with
scipy (``scipy.special.entr``, ``scipy.stats.entropy``) and torch (``Categorical(probs).entropy()``), each tolerance
derived where it is used from ``xe_verify.tolerances``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from differential import assert_within
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.distributions import Categorical

from xe_verify import information
from xe_verify import strategies as xst
from xe_verify.tolerances import MACHINE_EPSILON, allowed_error, operation_count

EPSILON = MACHINE_EPSILON["float64"]
LN2 = math.log(2)

FUNCTIONS = {
    "entropy": lambda p, q, **options: information.entropy(p, **options),
    "cross_entropy": information.cross_entropy,
    "kl_divergence": information.kl_divergence,
}

VECTOR_SHAPE = st.shared(hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), key="vectors")
#: Normalised probability vectors along the last axis (soft_targets normalises axis 1 of a 2-D shape: the last).
NORMALISED = xst.soft_targets(VECTOR_SHAPE)


def scale(p: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """``sum p (|log p| + |log q| + 1)`` per vector: bounds every term (and its derivative in p) where p > 0."""
    q = p if q is None else q
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.abs(np.log(p)) + np.abs(np.log(q)) + 1.0), 0.0)
    return np.sum(terms, axis=-1)


def float64_bound(value: Any, p: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """The tolerances module's bound for a float64 sum over the vector's n terms."""
    return allowed_error(value, scale(p, q), "float64", operation_count(classes=p.shape[-1]))


# --------------------------------------------------------------------------------------------------------------------
# Bits and nats


def test_bits_are_one_keyword_away() -> None:
    # Values exact in binary: fl(ln 2) / fl(ln 2) = 1, and the log of a power of two is that power times ln 2.
    assert information.entropy([0.5, 0.5], base=2) == 1.0
    assert information.cross_entropy([1.0, 0.0], [0.25, 0.75], base=2) == 2.0
    assert information.kl_divergence([1.0, 0.0], [0.5, 0.5], base=2) == 1.0
    # 8 equally likely outcomes: 3 bits, ln 8 nats (8 terms of 1/8 ln 8: within the float64 bound).
    uniform = np.full(8, 1 / 8)
    assert_within(
        "entropy",
        np.asarray(3.0),
        np.asarray(information.entropy(uniform, base=2)),
        float64_bound(3.0, uniform),
        label="bits",
        arguments={"p": uniform},
    )
    assert_within(
        "entropy",
        np.asarray(math.log(8)),
        np.asarray(information.entropy(uniform)),
        float64_bound(math.log(8), uniform),
        label="nats",
        arguments={"p": uniform},
    )


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_base_e_is_nats_and_other_bases_divide_by_their_log(function: str) -> None:
    p, q = np.array([0.1, 0.6, 0.3]), np.array([0.3, 0.3, 0.4])
    nats = FUNCTIONS[function](p, q)
    assert FUNCTIONS[function](p, q, base=math.e) == nats  # fl(ln(fl(e))) = 1 exactly
    # One division by fl(ln b) (half an ULP) and fl(ln b) within an ULP of ours: 2 EPSILON relative.
    for base, log in ((2, LN2), (10, math.log(10)), (0.5, -LN2)):
        assert FUNCTIONS[function](p, q, base=base) == pytest.approx(nats / log, rel=2 * EPSILON, abs=0)


@pytest.mark.parametrize("base", [1, 1.0, 0, -2, math.nan, math.inf])
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_a_base_that_is_no_logarithm_base_raises(function: str, base: float) -> None:
    with pytest.raises(ValueError, match=rf"base: .*{base!r}"):
        FUNCTIONS[function]([0.5, 0.5], [0.5, 0.5], base=base)


# --------------------------------------------------------------------------------------------------------------------
# Conventions


def test_zero_log_zero_is_zero_exactly() -> None:
    assert information.entropy([1.0, 0.0, 0.0]) == 0.0
    assert information.entropy([0.0, 0.0]) == 0.0
    # p = 0 contributes 0 whatever q is, q = 0 included (xlogy(0, 0) = 0).
    assert information.cross_entropy([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert information.kl_divergence([0.0, 0.5, 0.5], [0.0, 0.5, 0.5]) == 0.0
    assert information.cross_entropy([0.0, 1.0], [0.0, 0.5]) == pytest.approx(LN2, rel=EPSILON, abs=0)
    # and nothing is NaN: the whole row reduces to a number.
    batch = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert np.array_equal(information.entropy(batch), [0.0, 0.0, LN2])


def test_mass_where_q_is_zero_gives_infinity() -> None:
    assert information.cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert information.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert information.kl_divergence([0.5, 0.5], [1.0, 0.0], base=2) == math.inf
    # Only the affected vector of a batch.
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert information.kl_divergence(p, q).tolist() == [math.inf, 0.0]
    assert information.cross_entropy(p, q).tolist() == [math.inf, 0.0]


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(-0.1, r"-0\.1"), (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
)
@pytest.mark.parametrize(
    ("function", "argument"),
    [("entropy", "p"), ("cross_entropy", "p"), ("cross_entropy", "q"), ("kl_divergence", "p"), ("kl_divergence", "q")],
)
def test_negative_or_non_finite_probabilities_raise_naming_the_value(
    function: str, argument: str, bad: float, shown: str
) -> None:
    values = {"p": np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]), "q": np.full((2, 3), 1 / 3)}
    values[argument][1, 2] = bad
    with pytest.raises(ValueError, match=rf"{argument}\[1, 2\] = .*{shown}"):
        FUNCTIONS[function](values["p"], values["q"])


# --------------------------------------------------------------------------------------------------------------------
# Axes and shapes


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_axis_picks_the_outcomes(function: str) -> None:
    rng = np.random.default_rng(20240601)
    p = rng.dirichlet(np.ones(4), size=(2, 3))  # (2, 3, 4), outcomes last
    q = rng.dirichlet(np.ones(4), size=(2, 3))
    last = np.asarray(FUNCTIONS[function](p, q))
    assert last.shape == (2, 3)
    assert np.array_equal(np.asarray(FUNCTIONS[function](p, q, axis=2)), last)
    # The same vectors with the outcomes moved to axis 0 or 1: the same numbers (the same terms, summed in order).
    for axis in (0, 1):
        moved = np.asarray(FUNCTIONS[function](np.moveaxis(p, -1, axis), np.moveaxis(q, -1, axis), axis=axis))
        assert np.array_equal(moved, last)
    # A single vector gives a scalar.
    assert np.ndim(FUNCTIONS[function](p[0, 0], q[0, 0])) == 0
    with pytest.raises(ValueError, match="axis"):
        FUNCTIONS[function](p, q, axis=3)
    with pytest.raises(ValueError, match="0-d"):
        FUNCTIONS[function](np.float64(1.0), np.float64(1.0))


@pytest.mark.parametrize("function", ["cross_entropy", "kl_divergence"])
def test_p_and_q_broadcast(function: str) -> None:
    p = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    q = np.array([0.4, 0.6])
    assert np.array_equal(FUNCTIONS[function](p, q), FUNCTIONS[function](p, np.tile(q, (3, 1))))
    with pytest.raises(ValueError, match=r"q: shape \(3,\)"):
        FUNCTIONS[function](p, [0.2, 0.3, 0.5])


def test_arguments_are_not_modified() -> None:
    p = np.array([0.25, 0.75, 0.0])
    q = np.array([0.5, 0.25, 0.25])
    p.flags.writeable = False
    q.flags.writeable = False
    for function in FUNCTIONS.values():
        function(p, q, base=2)
    assert p.tolist() == [0.25, 0.75, 0.0]
    assert q.tolist() == [0.5, 0.25, 0.25]


# --------------------------------------------------------------------------------------------------------------------
# Against scipy and torch


@given(p=xst.probabilities(VECTOR_SHAPE))
def test_entropy_is_the_sum_of_scipy_entr(p: np.ndarray) -> None:
    # Neither normalises: the same terms -p ln p, each within an ULP or two, summed in possibly different orders.
    expected = np.sum(scipy.special.entr(p), axis=-1)
    assert_within(
        "entropy",
        expected,
        np.asarray(information.entropy(p)),
        2 * float64_bound(expected, p),
        label="entr",
        arguments={"p": p},
    )


@given(p=NORMALISED, q=NORMALISED, base=st.sampled_from([None, 2.0, 10.0]))
def test_normalised_inputs_agree_with_scipy_stats_entropy(p: np.ndarray, q: np.ndarray, base: float | None) -> None:
    # scipy renormalises: on vectors summing to 1 within n u that moves each p by (n + 1) u relatively, and H or KL by
    # (n + 1) u sum p (|log p| + |log q| + 1) at most (first order), i.e. (n + 1) EPSILON / 2 times `scale`. Both then
    # round within the float64 bound; a base divides both by the same log.
    n = p.shape[-1]
    divisor = 1.0 if base is None else math.log(base)
    arguments = {"p": p, "q": q, "base": base}
    entropy = np.asarray(scipy.stats.entropy(p, base=base, axis=-1))
    renormalising = (n + 1) * EPSILON / 2 * scale(p) / divisor
    assert_within(
        "entropy",
        entropy,
        np.asarray(information.entropy(p, base=base)),
        2 * float64_bound(entropy, p) + renormalising,
        label="scipy.stats.entropy(p)",
        arguments=arguments,
    )
    divergence = np.asarray(scipy.stats.entropy(p, q, base=base, axis=-1))
    renormalising = 2 * (n + 1) * EPSILON / 2 * scale(p, q) / divisor
    assert_within(
        "kl_divergence",
        divergence,
        np.asarray(information.kl_divergence(p, q, base=base)),
        2 * float64_bound(divergence, p, q) + renormalising,
        label="scipy.stats.entropy(p, q)",
        arguments=arguments,
    )


def test_unnormalised_inputs_differ_from_scipy_on_purpose() -> None:
    # Documented in xe_verify.information: the formulas are evaluated on the numbers given; scipy (and torch's
    # Categorical) normalise first. So scipy's value is ours on p / sum(p).
    p, q = np.array([2.0, 2.0, 0.0]), np.array([1.0, 3.0, 4.0])
    assert scipy.stats.entropy(p) == pytest.approx(LN2, rel=2 * EPSILON)
    assert information.entropy(p) == pytest.approx(-4 * LN2, rel=2 * EPSILON)
    assert information.entropy(p / p.sum()) == pytest.approx(scipy.stats.entropy(p), rel=4 * EPSILON)
    normalised = information.kl_divergence(p / p.sum(), q / q.sum())
    assert normalised == pytest.approx(scipy.stats.entropy(p, q), rel=8 * EPSILON)
    assert information.kl_divergence(p, q) != pytest.approx(normalised, rel=0.1)
    assert "not** normalised" in (information.__doc__ or "")


def categorical_clamp_bound(p: np.ndarray) -> np.ndarray:
    """Categorical clamps probs to [eps, 1 - eps] before its log: per clamped element the term moves by at most
    eps (1 + eps) (p log(eps / p) <= eps / e below eps, p log(p / (1 - eps)) <= -log1p(-eps) above 1 - eps)."""
    eps = float(np.finfo(np.float64).eps)
    return np.sum((p < eps) | (p > 1 - eps), axis=-1) * eps * (1 + eps)


@given(p=NORMALISED)
def test_normalised_entropy_agrees_with_torch_categorical(p: np.ndarray) -> None:
    # Trap 18: for a deterministic distribution Categorical gives eps (2.2e-16), not 0; the clamp bound covers it.
    # Categorical also renormalises (as scipy: (n + 1) EPSILON / 2 * scale) and rounds (the float64 bound).
    categorical = Categorical(probs=torch.from_numpy(p)).entropy().numpy()
    reference = np.asarray(information.entropy(p))
    allowed = categorical_clamp_bound(p) + (p.shape[-1] + 1) * EPSILON / 2 * scale(p) + 2 * float64_bound(reference, p)
    assert_within("entropy", reference, categorical, allowed, label="Categorical(probs).entropy()", arguments={"p": p})


def test_deterministic_distribution_is_zero_here_and_eps_in_categorical() -> None:
    certain = np.array([1.0, 0.0, 0.0])
    categorical = Categorical(probs=torch.from_numpy(certain)).entropy().item()
    assert information.entropy(certain) == 0.0
    assert 0 < categorical <= categorical_clamp_bound(certain)
