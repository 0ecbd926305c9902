r"""Entropy, cross-entropy and KL divergence of probability vectors, in any log base.

The information-theory view of the losses in [`xe_verify.functional`][xe_verify.functional]: the arguments are
probabilities (not logits), the result is in nats by default and in bits with ``base=2``. Each function reduces
along ``axis`` and returns an ``np.float64`` for a vector and an array for a batch of vectors.

Conventions, the usual ones in information theory:

* $0 \log 0 = 0$ and $0 \log(0/q) = 0$, exactly, even where ``q = 0``;
* $p \log(p / 0) = \infty$ for ``p > 0``: a cross-entropy or KL divergence is infinite when ``q`` misses an
  outcome that ``p`` gives mass to;
* negative, NaN or infinite probabilities are a ``ValueError`` that names the first one.

The vectors are **not** normalised (``scipy.stats.entropy`` normalises, torch's ``Categorical`` too): the
formulas are evaluated on the numbers given, so a vector that does not sum to 1 gives the formula's value for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xe_verify._arrays import Float64Array, as_float64, first_offender
from xe_verify._summation import compensated_sum

__all__ = ["cross_entropy", "entropy", "kl_divergence"]

Result = Float64Array | np.float64


def _probabilities(value: Any, name: str) -> Float64Array:
    p = as_float64(value, name)
    bad = ~(np.isfinite(p) & (p >= 0))
    if bad.any():
        raise ValueError(f"{name}: probabilities must be finite and non-negative; found {first_offender(bad, p, name)}")
    return p


def _pair(p: Any, q: Any) -> tuple[Float64Array, Float64Array]:
    p_array, q_array = _probabilities(p, "p"), _probabilities(q, "q")
    try:
        np.broadcast_shapes(p_array.shape, q_array.shape)
    except ValueError:
        raise ValueError(
            f"q: shape {q_array.shape} does not broadcast with p's shape {p_array.shape}; expected shapes that "
            "broadcast against each other"
        ) from None
    return p_array, q_array


def _log_of_base(base: Any) -> float:
    if base is None:
        return 1.0
    value = float(base)
    if not (np.isfinite(value) and value > 0 and value != 1):
        raise ValueError(f"base: expected a finite positive number other than 1 (2 for bits), got {base!r}")
    return float(np.log(value))


def _check_axis(terms: Float64Array, axis: int) -> None:
    if terms.ndim == 0:
        raise ValueError("p: expected at least one dimension (a probability vector), got a 0-d array")
    ndim = terms.ndim
    if isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"axis: {axis!r} is out of range for shape {terms.shape}; expected {-ndim} <= axis < {ndim}")


def _sum_along(terms: Float64Array, axis: int, base: Any) -> Result:
    """Sum the terms along ``axis`` (compensated: a few ULP whatever the cancellation) and change the base."""
    _check_axis(terms, axis)
    total = compensated_sum(terms, axis=axis) / _log_of_base(base)
    return np.float64(total) if np.ndim(total) == 0 else np.asarray(total, dtype=np.float64)


def entropy(p: Any, *, base: float | None = None, axis: int = -1) -> Result:
    r"""Shannon entropy $H(p) = -\sum_i p_i \log p_i$, with $0 \log 0 = 0$.

    Parameters
    ----------
    p : array_like
        Probabilities, finite and non-negative (not normalised for you).
    base : float, optional
        The logarithm's base: ``None`` for nats (natural log), ``2`` for bits.
    axis : int, default -1
        The axis of outcomes.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        A scalar for a vector; for a batch, one entropy per vector.

    Examples
    --------
    >>> from xe_verify.information import entropy
    >>> float(entropy([0.5, 0.5], base=2))  # a fair coin: one bit
    1.0
    >>> float(entropy([1.0, 0.0]))  # certainty: exactly 0 (torch's Categorical gives 2.2e-16)
    0.0
    """
    probabilities = _probabilities(p, "p")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities > 0, probabilities * -np.log(probabilities), 0.0)
    return _sum_along(terms, axis, base)


def cross_entropy(p: Any, q: Any, *, base: float | None = None, axis: int = -1) -> Result:
    r"""Cross-entropy $H(p, q) = -\sum_i p_i \log q_i$, with $0 \log q = 0$ for any ``q``.

    It is infinite when some ``q_i = 0`` while ``p_i > 0``. $H(p, q) = H(p) + D_{KL}(p \,\|\, q) \ge H(p)$
    for normalised ``p`` and ``q``.

    Parameters
    ----------
    p, q : array_like
        Probabilities, finite and non-negative; their shapes broadcast.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    axis : int, default -1

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Examples
    --------
    >>> from xe_verify.information import cross_entropy
    >>> float(cross_entropy([1.0, 0.0], [0.25, 0.75], base=2))  # -log2(1/4)
    2.0
    >>> float(cross_entropy([0.5, 0.5], [1.0, 0.0]))
    inf
    """
    p_array, q_array = _pair(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p_array > 0, p_array * -np.log(q_array), 0.0)
    return _sum_along(terms, axis, base)


#: Coefficients 1 / (2k + 3) of the series for ``x - log1p(x)``; 18 terms reach 1e-18 for ``|z| <= 1/3``.
_SERIES = 1.0 / (2.0 * np.arange(18) + 3.0)


def _x_minus_log1p(x: Float64Array, p: Float64Array, q: Float64Array) -> Float64Array:
    """``x - log1p(x)`` for ``x = (q - p) / p >= -1``, accurate near 0 where the difference cancels.

    With ``z = x / (2 + x)``, ``log1p(x) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...)`` and ``x = 2z / (1 - z)``, so
    ``x - log1p(x) = 2z^2 / (1 - z) - 2z^3 (1/3 + z^2/5 + ...)``: no cancellation for ``|x| <= 1/2`` (``|z| <= 1/3``).
    Further out ``log1p(x)`` is ``log(q / p)`` (or ``log q - log p`` where the ratio leaves the normal range): the
    rounded ``x`` would lose ``log1p``'s digits as ``q / p`` approaches 0.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        z = x / (2.0 + x)
        w = z * z
        series = np.zeros_like(z)
        for coefficient in _SERIES[::-1]:
            series = series * w + coefficient
        near_zero = 2.0 * w / (1.0 - z) - 2.0 * w * z * series
        ratio = q / p
        log_ratio = np.where(ratio >= np.finfo(np.float64).tiny, np.log(ratio), np.log(q) - np.log(p))
        return np.where(np.abs(x) <= 0.5, near_zero, x - log_ratio)


def _kl_parts(p: Float64Array, q: Float64Array) -> Float64Array:
    """Parts whose sum over the last axis is ``sum_i p_i log(p_i / q_i)``, none of them cancelling much.

    Where ``q <= 2p`` a term is split as ``[p log(p/q) - p + q] + [p - q]``: the first part is ``p phi(u) >= 0`` with
    ``u = (q - p) / p`` and ``phi(u) = u - log1p(u)`` evaluated without cancellation, the second is exact (Sterbenz)
    for ``q >= p/2``. For nearly equal distributions the ``p - q`` add up to almost nothing and the result is the sum
    of the small non-negative first parts, so it keeps its digits where ``sum p log(p/q)`` would cancel. Where
    ``q > 2p`` the plain ``p log(p/q)`` is used (the split would round ``q``-sized parts). ``p = 0`` contributes 0.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        positive = p > 0
        near = positive & (q <= 2.0 * p)
        safe_p = np.where(positive, p, 1.0)
        generalised = np.where(near, p * _x_minus_log1p((q - p) / safe_p, safe_p, q), 0.0)
        difference = np.where(near, p - q, 0.0)
        direct = np.where(positive & ~near, p * (np.log(safe_p) - np.log(q)), 0.0)
    return np.concatenate(np.broadcast_arrays(generalised, difference, direct), axis=-1)


def kl_divergence(p: Any, q: Any, *, base: float | None = None, axis: int = -1) -> Result:
    r"""Kullback-Leibler divergence $D_{KL}(p \,\|\, q) = \sum_i p_i \log(p_i / q_i)$.

    Terms with $p_i = 0$ are 0; a term with $p_i > 0 = q_i$ is infinite. For normalised ``p`` and ``q``
    it is non-negative (Gibbs' inequality) and 0 exactly when ``p = q``. Nearly equal distributions keep their digits:
    where ``q <= 2p`` each term is split into ``p log(p/q) - p + q >= 0`` (evaluated without cancellation) and the
    exact ``p - q``, and everything is summed with compensation, so the result is accurate to a few ULP even when
    ``sum p log(p/q)`` would cancel to noise.

    This is the divergence of distributions, not ``torch.nn.functional.kl_div`` (which takes ``log q`` first and
    averages elementwise by default): ``kl_div(log(q), p, reduction="sum")`` equals ``kl_divergence(p, q)``.

    Parameters
    ----------
    p, q : array_like
        Probabilities, finite and non-negative; their shapes broadcast.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    axis : int, default -1

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Examples
    --------
    >>> from xe_verify.information import kl_divergence
    >>> float(kl_divergence([0.5, 0.5], [0.5, 0.5]))
    0.0
    >>> float(kl_divergence([1.0, 0.0], [0.5, 0.5], base=2))  # log2(1 / 0.5)
    1.0
    """
    p_array, q_array = _pair(p, q)
    p_moved, q_moved = np.broadcast_arrays(p_array, q_array)
    _check_axis(p_moved, axis)
    parts = _kl_parts(np.moveaxis(p_moved, axis, -1), np.moveaxis(q_moved, axis, -1))
    return _sum_along(parts, -1, base)
