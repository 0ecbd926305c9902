r"""The log-softmax kernel shared by every softmax-based function, accurate to a few ULP.

For a row ``x`` with maximum ``m`` (at index ``k``), write ``d = fl(x - m)`` and let ``e`` be the rounding error of that
subtraction, recovered exactly with Knuth's TwoSum, so that ``x - m = d + e`` exactly. Then

$$
\log \sum_j e^{x_j} = m + L, \qquad L = \operatorname{log1p}\Big(\sum_{j \ne k} e^{d_j}(1 + e_j)\Big),
\qquad \log\operatorname{softmax}(x)_c = (d_c - L) + e_c .
$$

Why each piece is there:

* Subtracting the maximum keeps ``exp`` from overflowing (the usual log-sum-exp trick).
* ``log1p`` of the sum *without* the maximum's own term (which is exactly 1) keeps every digit of a row whose
  softmax is close to one-hot: the loss of a confidently correct row is ``log1p(s)`` with ``s`` tiny, whereas
  ``log(1 + s)`` rounds it to 0 (torch returns exactly 0 for a target logit 40 above the rest; the true loss is about
  4e-18).
* ``e`` matters in the same rows: ``d`` carries a relative error up to ``|d| u`` that ``exp`` turns into a relative
  error of the term, and a confident row's ``s`` is made of such terms. ``exp(d + e) = exp(d)(1 + e)`` to first order.
* ``d_c - L`` adds two non-positive numbers, so nothing cancels.

Rows whose ``L`` is below ``TINY_PARTITION`` (a target logit more than about 665 above every other) have terms in
the subnormal range, where every rounding is an absolute error of half the subnormal spacing: ``C`` of them would add
up to several ULP of ``L``. Their terms are computed scaled by ``2^PARTITION_SCALE`` (with ``x - m + K ln 2`` split
Cody-Waite style so that the shift stays exact), summed in the normal range, and scaled back once. The scaled sum is
kept (``ShiftedRows.tiny_rows``, ``tiny_scaled``) so that a loss ``w L`` is rounded once, not ``L`` and then ``w L``.

Non-finite rows follow torch: a NaN or ``+inf`` anywhere makes the row NaN, a row of ``-inf`` is NaN (its logsumexp
is ``-inf``), and ``-inf`` at one class gives that class ``-inf`` and the others a finite value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xe_verify import _double_double as dd
from xe_verify._arrays import Float64Array
from xe_verify._blocks import workspace

#: Rows whose log-partition ``L`` is below this are recomputed scaled (see the module docstring). Their terms are all
#: below ``2^-960``: ``C`` subnormal roundings of ``2^-1075`` each stay below ``u L`` for any ``C < 2^62``.
TINY_PARTITION = 2.0**-960

#: The power of two the terms of tiny rows are scaled by: they stay below ``2^40`` (no overflow) and above the
#: subnormal range down to ``x - m = -1100`` (far below the smallest term that can matter).
PARTITION_SCALE = 1000

#: ``ln 2`` split Cody-Waite style: the high part has 42 fractional bits, so ``PARTITION_SCALE * LN2_HIGH`` (52 bits)
#: is exact, and so is ``(x - m) + PARTITION_SCALE * LN2_HIGH`` for the shifts of tiny rows (between -1100 and -665).
LN2_HIGH = float(np.floor(np.log(2.0) * 2.0**42) / 2.0**42)
#: The rest of ``ln 2``: float64 ``ln 2`` less the high part (exact, Sterbenz), plus float64 ``ln 2``'s own error.
LN2_LOW = (0.6931471805599453 - LN2_HIGH) + 2.319046813846299558e-17

_NO_ROWS: Any = np.zeros(0, dtype=np.int64)
_NO_VALUES: Any = np.zeros(0)


@dataclass(frozen=True)
class ShiftedRows:
    """Rows of logits (classes on the last axis) shifted by their maximum, with the shift's rounding error.

    Attributes
    ----------
    maximum : (M, 1) array
        The row maxima ``m``.
    shifted : (M, C) array
        ``d = fl(x - m)``: at most 0, exactly 0 at the maximum.
    error : (M, C) array
        The rounding error ``e = (x - m) - d`` (0 where ``d`` is not finite).
    log_partition : (M, 1) array
        ``L = log(sum_j exp(x_j - m))``, computed as ``log1p`` of the terms other than the maximum's.
    tiny_rows : (T,) int array
        The rows whose ``L`` is below ``TINY_PARTITION``; there ``L`` is the sum of the terms, rounded once.
    tiny_scaled : (T,) array
        ``L * 2^PARTITION_SCALE`` for those rows, so that a product ``w L`` can be rounded once:
        ``np.ldexp(w * tiny_scaled, -PARTITION_SCALE)``.
    """

    maximum: Float64Array
    shifted: Float64Array
    error: Float64Array
    log_partition: Float64Array
    tiny_rows: np.ndarray[Any, np.dtype[np.int64]] = field(default_factory=lambda: _NO_ROWS)
    tiny_scaled: Float64Array = field(default_factory=lambda: _NO_VALUES)

    def take(self, rows: np.ndarray[Any, Any]) -> ShiftedRows:
        """The same for a selection of rows (a boolean mask or indices): copies."""
        selected = np.zeros(self.maximum.shape[0], dtype=bool)
        selected[rows] = True
        tiny = selected[self.tiny_rows]
        renumbered = np.cumsum(selected) - 1
        return ShiftedRows(
            self.maximum[rows],
            self.shifted[rows],
            self.error[rows],
            self.log_partition[rows],
            renumbered[self.tiny_rows[tiny]],
            self.tiny_scaled[tiny],
        )

    def log_softmax(self) -> Float64Array:
        """``log_softmax`` of every element: ``(d - L) + e``."""
        return (self.shifted - self.log_partition) + self.error

    def exp_shifted(self, out: Float64Array | None = None, scratch: Float64Array | None = None) -> Float64Array:
        """``exp(x - m)`` with the shift's rounding error carried: ``exp(d) + exp(d) e`` (into ``out`` if given)."""
        with np.errstate(invalid="ignore"):
            terms = np.exp(self.shifted, out=out)
            correction = np.multiply(terms, self.error, out=scratch)
            terms += correction
        return terms

    def softmax(self) -> Float64Array:
        """``softmax`` of every element: ``exp(x - m) / exp(L)``."""
        with np.errstate(invalid="ignore", over="ignore"):
            return self.exp_shifted() / np.exp(self.log_partition)

    def logsumexp(self) -> Float64Array:
        """``m + L`` per row, shape (M,); an infinite maximum gives itself (torch: ``logsumexp([-inf]) = -inf``)."""
        with np.errstate(invalid="ignore"):
            total = self.maximum + self.log_partition
        return np.where(np.isinf(self.maximum), self.maximum, total)[:, 0]

    def logsumexp_double_double(self) -> Float64Array:
        """``m + L`` per row for finite rows, with ``L`` in double-double and the sum rounded once.

        ``d + e = x - m`` exactly, so ``exp`` of the double-double ``(d, e)`` is each term to ``2**-101``; the
        pairwise sum of the non-negative terms adds ``3u²`` per level and ``log1p`` ``2**-100``: ``L`` is known to
        about ``2**-99`` of itself, and ``m + L`` is rounded once (TwoSum keeps ``m + L.hi`` exact). For the rows
        where ``m + L`` cancels (see ``cancelling_rows``): it costs several times ``logsumexp``.
        """
        terms = dd.exp(dd.DoubleDouble(self.shifted, self.error))
        # The maximum's own term is exactly 1 and stays out of the sum (log1p adds it back), as in shift_rows.
        at_maximum = np.argmax(self.shifted, axis=-1)[:, None]
        np.put_along_axis(terms.hi, at_maximum, 0.0, axis=-1)
        np.put_along_axis(terms.lo, at_maximum, 0.0, axis=-1)
        log_partition = dd.log1p(dd.sum_last_axis(terms))
        head = dd.two_sum(self.maximum[:, 0], log_partition.hi)
        return np.asarray(head.hi + (head.lo + log_partition.lo), dtype=np.float64)


#: ``logsumexp`` rows with ``L > 2 |m + L|`` are recomputed in double-double. Measured on rows of 2 to 10 negative
#: logits, the float64 result is within 2.9 ULP below that cancellation factor and up to 4.4 ULP between 2 and 4.
_LOGSUMEXP_CANCELLATION = 2.0


def cancelling_rows(logsumexp: Float64Array, log_partition: Float64Array) -> np.ndarray[Any, np.dtype[np.intp]]:
    """The rows whose ``m + L`` is small next to ``L`` (so ``m < 0``), by their ``logsumexp`` and ``L``.

    There ``L``'s own rounding errors (of the terms, their sum and ``log1p``, a few ULP of ``L``) would be amplified
    in the result. ``L / 2`` is compared rather than ``2 |m + L|``, which overflows for ``m`` near the largest float;
    NaN rows are never flagged.
    """
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(log_partition * (1.0 / _LOGSUMEXP_CANCELLATION) > np.abs(logsumexp))


def shift_rows(rows: Float64Array, *, in_workspace: bool = False) -> ShiftedRows:
    """Shift each row of a 2-D float64 array (classes on the last axis, at least one class) by its maximum.

    With ``in_workspace=True`` the result lives in the calling thread's workspace buffers 1 to 4 (see
    ``xe_verify._blocks``): no allocation, but it is overwritten by the next such call on the thread.
    """
    shape = rows.shape
    buffers = [workspace(index, *shape) if in_workspace else np.empty(shape) for index in (1, 2, 3, 4)]
    shifted, b, error, scratch = buffers
    maximum = rows.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        np.subtract(rows, maximum, out=shifted)
        # TwoSum(x, -m): with s = fl(x - m) and b = fl(s - x), the error is (x - (s - b)) - (m + b), exactly.
        np.subtract(shifted, rows, out=b)
        np.subtract(shifted, b, out=error)
        np.subtract(rows, error, out=error)
        np.add(b, maximum, out=b)
        np.subtract(error, b, out=error)
    finite = np.isfinite(error)
    if not finite.all():
        error[~finite] = 0.0
    # b is free again: it holds the terms exp(x - m).
    terms = ShiftedRows(maximum, shifted, error, maximum).exp_shifted(out=b, scratch=scratch)
    # The maximum's own term is exactly exp(0) = 1: leave it out of the sum and let log1p add it back.
    top = np.argmax(rows, axis=-1)
    np.put_along_axis(terms, top[:, None], 0.0, axis=-1)
    with np.errstate(invalid="ignore"):
        log_partition = np.log1p(terms.sum(axis=-1, keepdims=True))
    # A +inf maximum's own term is inf - inf = NaN, which the line above left out: put it back, as torch has it.
    log_partition[np.isposinf(maximum)] = np.nan
    # One reduction in the common case (a NaN minimum compares False, and NaN rows are never tiny).
    if not np.min(log_partition, initial=np.inf) < TINY_PARTITION:
        return ShiftedRows(maximum, shifted, error, log_partition)
    tiny_rows = np.flatnonzero(log_partition[:, 0] < TINY_PARTITION)
    tiny_scaled = _scaled_partition(shifted[tiny_rows], error[tiny_rows], top[tiny_rows])
    # log1p(s) = s - s^2/2 rounds to s here (s < 2^-960), so L is the scaled sum scaled back: one rounding.
    log_partition[tiny_rows, 0] = np.ldexp(tiny_scaled, -PARTITION_SCALE)
    return ShiftedRows(maximum, shifted, error, log_partition, tiny_rows, tiny_scaled)


def _scaled_partition(shifted: Float64Array, error: Float64Array, top: np.ndarray[Any, Any]) -> Float64Array:
    """``2^K sum_{j != top} exp(d_j + e_j)`` per row, in the normal range (``K = PARTITION_SCALE``).

    ``2^K exp(d + e) = exp(r + r')`` with ``r = d + K LN2_HIGH`` (exact for the shifts of tiny rows) and the small
    ``r' = e + K LN2_LOW`` (about 1e-10: its square is far below ``u``), carried as ``exp(r)(1 + r')``: a few
    roundings of the term's size each.
    """
    terms = scaled_exp(shifted, error)
    np.put_along_axis(terms, top[:, None], 0.0, axis=-1)
    scaled: Float64Array = terms.sum(axis=-1)
    return scaled


def scaled_exp(shift: Float64Array, error: Float64Array | float = 0.0) -> Float64Array:
    """``2^K exp(shift + error)`` (``K = PARTITION_SCALE``), for shifts where ``exp`` alone would be (nearly) subnormal.

    ``shift + K LN2_HIGH`` is exact for shifts between -1100 and -665, and the small rest
    ``r' = error + K LN2_LOW`` (about 1e-10) is carried as ``exp(r)(1 + r')``: a few roundings of the result's size.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        terms: Float64Array = np.exp(shift + PARTITION_SCALE * LN2_HIGH)
        terms += terms * (error + PARTITION_SCALE * LN2_LOW)
    return terms
