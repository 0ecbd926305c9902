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

from collections.abc import Callable
from typing import Any

import numpy as np

from xe_verify import _blocks
from xe_verify import _double_double as dd
from xe_verify._arrays import Float64Array, as_real, first_offender
from xe_verify._summation import compensated_sum

__all__ = ["cross_entropy", "entropy", "kl_divergence"]

Result = Float64Array | np.float64


def _probabilities(value: Any, name: str) -> np.ndarray[Any, Any]:
    """``value`` as an array of its own real dtype, checked: finite and non-negative (no temporary of its size)."""
    p = as_real(value, name)
    # min and max propagate NaN; the mask is built for the error message only.
    if p.size == 0 or (np.min(p) >= 0 and np.isfinite(np.max(p))):
        return p
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(p) & (p >= 0))
    raise ValueError(f"{name}: probabilities must be finite and non-negative; found {first_offender(bad, p, name)}")


#: Elements per block of rows: each block is converted to float64 and reduced on its own, so the memory does not
#: grow with the number of rows (the KL divergence's double-double terms keep a few dozen temporaries of a block).
BLOCK_ELEMENTS = _blocks.BLOCK_ELEMENTS // 4


def _by_rows(row_sums: Callable[..., Float64Array], arrays: list[np.ndarray[Any, Any]], axis: int, base: Any) -> Result:
    """``row_sums`` (float64 blocks of rows, shape ``(k, C)``, to their ``(k,)`` sums in nats) along ``axis``.

    The arrays are broadcast against each other and read a block of rows at a time, so no temporary grows with the
    number of rows; the result is divided by ``log(base)``.
    """
    views = np.broadcast_arrays(*arrays)
    _check_axis(views[0], axis)
    log_base = _log_of_base(base)
    moved = [np.moveaxis(view, axis, -1) for view in views]
    leading, classes = moved[0].shape[:-1], moved[0].shape[-1]
    rows = [view.reshape(1, classes) if not leading else view for view in moved]
    shape = leading or (1,)
    count = int(np.prod(shape, dtype=np.int64))
    totals = np.empty(count)
    per_block = max(1, BLOCK_ELEMENTS // max(classes, 1))
    for start in range(0, count, per_block):
        positions = np.unravel_index(np.arange(start, min(start + per_block, count)), shape)
        totals[start : start + per_block] = row_sums(*(np.asarray(row[positions], dtype=np.float64) for row in rows))
    result = totals.reshape(leading) / log_base
    return np.float64(result) if result.ndim == 0 else np.asarray(result, dtype=np.float64)


def _pair(p: Any, q: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
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


def _entropy_rows(p: Float64Array) -> Float64Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * -np.log(p), 0.0)
    return compensated_sum(terms)


def _cross_entropy_rows(p: Float64Array, q: Float64Array) -> Float64Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * -np.log(q), 0.0)
    return compensated_sum(terms)


def _kl_divergence_rows(p: Float64Array, q: Float64Array) -> Float64Array:
    return compensated_sum(_kl_parts(p, q))


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
    return _by_rows(_entropy_rows, [_probabilities(p, "p")], axis, base)


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
    return _by_rows(_cross_entropy_rows, list(_pair(p, q)), axis, base)


def _kl_parts(p: Float64Array, q: Float64Array) -> Float64Array:
    """Parts whose sum over the last axis is ``sum_i p_i log(p_i / q_i)``, each exact or within ``2**-88`` of itself.

    Where ``p/2 <= q <= 2p`` a term is split as ``p phi(u) + (p - q)`` with ``u = (q - p) / p`` and
    ``phi(u) = u - log1p(u) >= 0``: for nearly equal distributions the ``p - q`` add up to almost nothing, and the
    result is the sum of the small non-negative ``p phi(u)``, so it keeps its digits where ``sum p log(p/q)``
    cancels. ``p - q`` is exact there (Sterbenz); ``u`` (to ``4u²``), ``phi`` (to ``2**-89``) and ``p phi`` are
    double-doubles, whose both halves become parts: even a term's own rounding error (an ULP of it) would be far
    larger than a result that cancels to below its size. Elsewhere the term is ``p (log p - log q)`` with both
    logarithms in double-double (at least ``log 2`` apart, so the difference keeps ``2**-93`` even for probabilities
    near ``1e-300``). ``p = 0`` contributes 0 and ``p > 0 = q`` infinity.
    """
    shape = np.broadcast_shapes(p.shape, q.shape)
    p, q = np.broadcast_to(p, shape), np.broadcast_to(q, shape)
    parts = np.zeros((6, *shape))
    positive = p > 0
    near = positive & (q >= 0.5 * p) & (q <= 2.0 * p)
    if near.any():
        p_near = p[near]
        difference = q[near] - p_near  # exact
        u = dd.div_double(dd.DoubleDouble(difference, np.zeros_like(difference)), p_near)
        parts[0][near], parts[1][near] = dd.mul_double(dd.x_minus_log1p(u), p_near)
        parts[2][near] = -difference
    far = positive & (q > 0) & ~near
    if far.any():
        p_far = p[far]
        log_q = dd.log(q[far])
        log_ratio = dd.add(dd.log(p_far), dd.DoubleDouble(-log_q.hi, -log_q.lo))
        parts[4][far], parts[5][far] = dd.mul_double(log_ratio, p_far)
    parts[4][positive & (q == 0)] = np.inf
    return np.concatenate(list(parts), axis=-1)


def kl_divergence(p: Any, q: Any, *, base: float | None = None, axis: int = -1) -> Result:
    r"""Kullback-Leibler divergence $D_{KL}(p \,\|\, q) = \sum_i p_i \log(p_i / q_i)$.

    Terms with $p_i = 0$ are 0; a term with $p_i > 0 = q_i$ is infinite. For normalised ``p`` and ``q``
    it is non-negative (Gibbs' inequality) and 0 exactly when ``p = q``. Nearly equal distributions keep their digits:
    where ``p/2 <= q <= 2p`` each term is split into ``p log(p/q) - p + q >= 0`` (evaluated without cancellation,
    in double-double) and the exact ``p - q``, the other terms are double-doubles too, and everything is summed with
    compensation, so the result is within a few ULP even when ``sum p log(p/q)`` cancels to far below its terms.

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
    return _by_rows(_kl_divergence_rows, list(_pair(p, q)), axis, base)
