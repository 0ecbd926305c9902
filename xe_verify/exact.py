r"""The exact oracle: the formulas of :mod:`xe_verify.functional` and ``information`` in mpmath.

Each function here has the name, arguments and semantics of its float64 counterpart (reductions,
denominators, ``ignore_index``, weights, label smoothing, soft targets, ``pos_weight``, the BCE
clamp at -100, ``batchmean``, log bases), plus a keyword-only ``dps``. The inputs are read as the
**exact** float64 values they hold (``mpmath.mpf(float)`` is exact) and every formula is evaluated
in Python loops with mpmath arithmetic. This is a second, slow and simple code path, meant to be
read as the definition; numpy only reads shapes and converts inputs. The information-theory
functions live in the :class:`information` namespace, because
``xe_verify.information.cross_entropy`` and ``xe_verify.functional.cross_entropy`` share a name:
``exact.information.cross_entropy(p, q)`` mirrors the former, ``exact.cross_entropy(input, target)``
the latter.

**Result types.** Functions with a ``reduction`` return, for ``reduction="none"``, a numpy
``object`` array of ``mpmath.mpf`` with torch's output shape (a 0-d array for a ``(C,)`` input), and
a single ``mpmath.mpf`` for ``"mean"``, ``"sum"`` and ``"batchmean"``. The softmax family, the
sigmoids and the information functions always return an ``object`` array (0-d where the result is
one number). Plain ``mpf`` objects keep every digit; :func:`xe_verify.accuracy.ulp_error` measures
against them without rounding them first, and ``float(x)`` converts one to float64 for display.

**Accuracy.** ``dps`` is the number of significant decimal digits the result is computed to,
relative to its own magnitude. The formulas are arranged so that, on the valid domain, no two terms
of opposite sign are ever added: differences of inputs are exact (``mpmath.fsub(..., exact=True)``),
``log1p`` is used wherever its argument can be small, and every remaining sum of rounded terms is
checked for cancellation. When a sum cancels more digits than the working precision's guard bits
cover (a KL term whose log-target is the float nearest to ``log t``, a ``logsumexp`` near zero,
negative weights), the whole evaluation is repeated at twice the precision, up to
:data:`MAX_PRECISION_BITS`; beyond that :class:`ArithmeticError` is raised rather than a wrong value
returned. The default ``dps=50`` leaves over 30 digits to spare for measuring float64 ULPs.

**Inputs.** The oracle is for valid, finite inputs. It raises :class:`ValueError` (out-of-bounds
class indices: :class:`IndexError`, like torch) on anything it does not support, in particular NaN
or infinite values; torch's non-finite semantics are mirrored by :mod:`xe_verify.functional`, not
here. Values torch defines on finite inputs are mirrored: ignored targets, out-of-range soft
targets, negative weights, ``label_smoothing < 0`` (treated as 0), targets outside [0, 1] for
``binary_cross_entropy_with_logits``, ``kl_div`` targets below 0 (NaN, as ``xlogy``) and, with
``check_range=False``, the unchecked BCE formula (NaN where ``log`` of a value outside [0, 1] is
taken).

**Precision state.** The evaluation sets mpmath's global working precision (``mpmath.workprec``) for
its duration and restores it afterwards; do not call the oracle from several threads at once.

Examples
--------
The confident row of issue 4: the target logit is 40 above the others, torch's float64
``cross_entropy`` returns 0.

>>> import mpmath
>>> from xe_verify import exact
>>> loss = exact.cross_entropy([[40.0, 0.0, 0.0]], [0], reduction="none")
>>> loss.shape, mpmath.nstr(loss[0], 10)
((1,), '8.496708511e-18')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from functools import reduce
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

try:
    import mpmath
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("xe_verify.exact needs mpmath, an optional dependency: pip install 'xe_verify[exact]'") from error

__all__ = [
    "DEFAULT_DPS",
    "MAX_PRECISION_BITS",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "information",
    "kl_div",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "sigmoid",
    "softmax",
]

ExactArray = npt.NDArray[np.object_]
"""A numpy ``object`` array whose elements are ``mpmath.mpf``."""

DEFAULT_DPS = 50
"""Default number of significant decimal digits of every result."""

MAX_PRECISION_BITS = 1 << 16
"""Working precision (bits) beyond which a cancelling sum raises :class:`ArithmeticError`."""

# Working precision = target + _GUARD_BITS. A sum of rounded terms may cancel up to
# _GUARD_BITS - _TERM_ERROR_BITS bits before the evaluation is repeated at a higher precision;
# _TERM_ERROR_BITS covers the few roundings (products, exp, log1p) each term carries.
_GUARD_BITS = 32
_TERM_ERROR_BITS = 8

_target_bits: ContextVar[int] = ContextVar("_target_bits")
_retried: ContextVar[bool] = ContextVar("_retried", default=False)

_T = TypeVar("_T")
_REDUCTIONS = ("none", "mean", "sum")


class _PrecisionLost(ArithmeticError):
    """A sum cancelled more bits than the working precision can spare: evaluate again, higher."""


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _evaluate(dps: int, compute: Callable[[], _T]) -> _T:
    """Run ``compute`` at ``dps`` digits plus guard bits; double the precision while sums cancel."""
    if not _is_integer(dps) or dps < 1:
        raise ValueError(f"dps must be a positive integer (decimal digits), got {dps!r}")
    target = math.ceil(dps * math.log2(10))
    precision = target + _GUARD_BITS
    token = _target_bits.set(target)
    retried = _retried.set(False)
    try:
        while True:
            try:
                with mpmath.workprec(precision):
                    return compute()
            except _PrecisionLost:
                _retried.set(True)
                if precision >= MAX_PRECISION_BITS:
                    raise ArithmeticError(
                        f"a sum cancels to within 2**-{MAX_PRECISION_BITS - target} of its "
                        "terms' size; the oracle cannot certify the result (is it exactly 0?)"
                    ) from None
                precision *= 2
    finally:
        _retried.reset(retried)
        _target_bits.reset(token)


# --------------------------------------------------------------------------------------------------
# Arithmetic helpers. "Exact" values are the inputs and sums/products of them; "rounded" values
# carry a relative error of a few units of the working precision.


def _exact_sum(values: Iterable[Any]) -> Any:
    """The sum of exact values (inputs, their products), computed exactly and then rounded once."""
    total = reduce(lambda left, right: mpmath.fadd(left, right, exact=True), values, mpmath.mpf(0))
    return +total  # unary plus rounds to the working precision


def _sum(terms: Sequence[Any]) -> Any:
    """Sum rounded terms; raise :class:`_PrecisionLost` if cancellation leaves too few correct bits.

    The terms are added exactly, except those below ``2**(-3 * prec)`` of the largest (they cannot
    matter unless the rest cancels exactly, in which case they are summed on their own).

    Terms that cancel *exactly* are trusted only at a repeated evaluation, at a higher precision: a
    rounded term can coincide with an exact one by chance at one precision (``log(0.3)`` to 36 bits
    is the float64 ``log(0.3)``), while bit-for-bit opposite terms that come from the same
    computation (tied logits under opposite weights) cancel at every precision, and their true sum
    is 0 too.
    """
    if not terms:
        return mpmath.mpf(0)
    if not all(mpmath.isfinite(term) for term in terms):
        return mpmath.fsum(terms)
    largest = max(abs(term) for term in terms)
    if largest == 0:
        return mpmath.mpf(0)
    threshold = mpmath.ldexp(largest, -3 * mpmath.mp.prec)
    kept = [term for term in terms if abs(term) >= threshold]
    small = [term for term in terms if abs(term) < threshold]
    total = reduce(lambda left, right: mpmath.fadd(left, right, exact=True), kept, mpmath.mpf(0))
    if total == 0:
        if not _retried.get():
            raise _PrecisionLost
        return _sum(small)
    magnitude = mpmath.fsum(terms, absolute=True)
    spare_bits = mpmath.mp.prec - _target_bits.get() - _TERM_ERROR_BITS
    if magnitude > abs(total) * mpmath.ldexp(1, spare_bits):
        raise _PrecisionLost
    return +total


def _divide(numerator: Any, denominator: Any) -> Any:
    """Divide with IEEE semantics for a zero denominator (mpmath raises instead)."""
    if denominator != 0:
        return numerator / denominator
    if numerator == 0 or mpmath.isnan(numerator):
        return mpmath.nan
    return mpmath.inf if numerator > 0 else -mpmath.inf


def _one_minus(value: Any) -> Any:
    """``1 - value``, exactly."""
    return mpmath.fsub(1, value, exact=True)


def _softplus(x: Any) -> Any:
    """``log(1 + exp(x))``, called with ``x <= 0`` only (``log1p`` keeps tiny results)."""
    return mpmath.log1p(mpmath.exp(x))


def _surprisals(row: Sequence[Any]) -> list[Any]:
    r"""Return ``-log_softmax(row)``, each as :math:`(m - x_j) + \operatorname{log1p}(R)`.

    Here :math:`R = \sum_{c \ne k} e^{x_c - m}`.

    ``m = x_k`` is the row maximum. Both terms are non-negative (the difference is exact), so the
    dominant class's tiny surprisal keeps every digit.
    """
    if not row:
        return []
    maximum = max(row)
    top = row.index(maximum)
    rest = mpmath.fsum(
        mpmath.exp(mpmath.fsub(value, maximum, exact=True)) for index, value in enumerate(row) if index != top
    )
    log_partition = mpmath.log1p(rest)
    return [mpmath.fsub(maximum, value, exact=True) + log_partition for value in row]


# --------------------------------------------------------------------------------------------------
# Reading inputs. numpy only converts and reshapes here; no arithmetic.


def _as_float64(value: Any, name: str) -> npt.NDArray[np.float64]:
    """Read a finite input as float64 (exact for every float16/32/64 and bfloat16 value)."""
    if hasattr(value, "detach"):  # a torch tensor, maybe bfloat16, which numpy cannot read
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"{name} must be finite for the exact oracle, got {array[position]!r} at {position}")
    return array


def _as_indices(value: Any, name: str) -> npt.NDArray[np.int64]:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _mpf_list(array: npt.NDArray[Any]) -> list[Any]:
    """The elements in C order as ``mpf`` (exact)."""
    return [mpmath.mpf(value) for value in array.reshape(-1).tolist()]


def _rows(array: npt.NDArray[np.float64], axis: int) -> list[list[Any]]:
    """The 1-D slices along ``axis``, in C order of the other axes, as lists of ``mpf``."""
    moved = np.moveaxis(array, axis, -1)
    # Explicit sizes, because reshape(-1, 0) is ambiguous for an empty class axis.
    flat = moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1])
    return [_mpf_list(row) for row in flat]


def _object_array(values: Sequence[Any], shape: tuple[int, ...]) -> ExactArray:
    result = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        result[index] = value
    return result.reshape(shape)


def _from_rows(rows: Sequence[Sequence[Any]], shape: tuple[int, ...], axis: int) -> ExactArray:
    """Inverse of :func:`_rows` for an array of ``shape``."""
    moved_shape = tuple(np.moveaxis(np.empty(shape, dtype=np.bool_), axis, -1).shape)
    flat = [value for row in rows for value in row]
    return np.moveaxis(_object_array(flat, moved_shape), -1, axis)


def _check_reduction(reduction: str, allowed: Sequence[str] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce(losses: Sequence[Any], shape: tuple[int, ...], reduction: str, denominator: Any) -> Any:
    """Apply a reduction; ``mean`` divides the sum by ``denominator``."""
    if reduction == "none":
        return _object_array(losses, shape)
    total = _sum(losses)
    if reduction == "sum":
        return total
    return _divide(total, denominator)


def _axis(dim: int, ndim: int) -> int:
    """Normalise a torch ``dim`` (a 0-d input has the one dimension ``0``/``-1``, as in torch)."""
    size = max(ndim, 1)
    if not _is_integer(dim) or not -size <= dim < size:
        raise ValueError(f"dim must be an integer in [{-size}, {size - 1}], got {dim!r}")
    return int(dim) % size


# --------------------------------------------------------------------------------------------------
# Class-axis losses.


def _class_rows(
    x: npt.NDArray[np.float64], target_shape: tuple[int, ...], name: str
) -> tuple[list[list[Any]], tuple[int, ...]]:
    """Cut the logits into rows (one per target position); also return the ``none`` output shape."""
    if x.ndim == 0:
        raise ValueError(f"{name}: input must have 1 or more dimensions (got 0)")
    if x.ndim == 1:
        if target_shape not in ((), (1,)):
            raise ValueError(
                f"{name}: for a 1-D input of shape {x.shape} the target must have shape () or (1,), got {target_shape}"
            )
        return [_mpf_list(x)], ()
    expected = (x.shape[0], *x.shape[2:])
    if target_shape != expected:
        raise ValueError(
            f"{name}: target of shape {target_shape} does not fit input of shape {x.shape} (expected {expected})"
        )
    return _rows(x, 1), expected


def _class_weight(weight: Any, classes: int) -> list[Any]:
    if weight is None:
        return [mpmath.mpf(1)] * classes
    w = _as_float64(weight, "weight")
    if w.shape != (classes,):
        raise ValueError(f"weight must have shape ({classes},), got {w.shape}")
    return _mpf_list(w)


def _class_of(index: int, classes: int) -> int:
    if not 0 <= index < classes:
        raise IndexError(f"Target {index} is out of bounds.")
    return index


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    dps: int = DEFAULT_DPS,
) -> Any:
    r"""Exact ``torch.nn.functional.cross_entropy``, on class-index or class-probability targets.

    With :math:`S_{ic} = -\log\operatorname{softmax}(x_i)_c` (the class axis is 0 for a ``(C,)``
    input, else 1), smoothing :math:`\varepsilon` (values below 0 are treated as 0, as torch does)
    and class weights :math:`w`:

    * class index :math:`y_i`, kept unless :math:`y_i` equals ``ignore_index``:

      .. math::

          \ell_i = (1 - \varepsilon)\, w_{y_i} S_{i y_i} + \frac{\varepsilon}{C} \sum_c w_c S_{ic},
          \qquad \text{mean} = \frac{\sum_i \ell_i}{\sum_{i \text{ kept}} w_{y_i}}

      and :math:`\ell_i = 0` at ignored positions;
    * probabilities :math:`q` (``target`` has the input's shape), with
      :math:`q' = (1 - \varepsilon) q + \varepsilon / C`:

      .. math::

          \ell_i = \sum_c w_c\, q'_{ic} S_{ic}, \qquad \text{mean} = \frac{\sum_i \ell_i}{\text{numel} / C}.

    Parameters
    ----------
    input : array_like
        Logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``, finite.
    target : array_like
        Integer class indices of the input's shape without the class axis (``()`` or ``(1,)`` for a
        ``(C,)`` input), or floating probabilities of the input's shape.
    weight : array_like, optional
        Class weights, shape ``(C,)``.
    ignore_index : int, default -100
        Class-index target value whose positions contribute nothing. Must be negative with
        probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        As in torch.
    label_smoothing : float, default 0.0
        :math:`\varepsilon`, at most 1.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf, or mpmath.mpf
        The per-position losses (``"none"``), or their reduction.

    Raises
    ------
    ValueError
        On shapes, dtypes or options torch rejects, and on non-finite values.
    IndexError
        On a class index outside ``[0, C)`` that is not ``ignore_index``.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> mpmath.nstr(exact.cross_entropy([[2.0, 0.0], [0.0, 1.0]], [0, 1]), 12)
    '0.220094849281'
    >>> mpmath.nstr(exact.cross_entropy([1.0, 2.0, 3.0], [0.0, 0.5, 0.5], label_smoothing=0.1), 12)
    '0.957605964444'
    """
    x = _as_float64(input, "input")
    _check_reduction(reduction)
    smoothing = _label_smoothing(label_smoothing)
    target_shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
    if x.ndim >= 1 and target_shape == x.shape:
        return _cross_entropy_probabilities(x, target, weight, ignore_index, reduction, smoothing, dps)
    rows, shape = _class_rows(x, target_shape, "cross_entropy")
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, classes)
    targets = _as_indices(target, "target").reshape(-1).tolist()
    kept = [None if y == ignore_index else _class_of(y, classes) for y in targets]

    def compute() -> Any:
        losses = []
        for row, y in zip(rows, kept, strict=True):
            if y is None:
                losses.append(mpmath.mpf(0))
                continue
            surprisal = _surprisals(row)
            nll = w[y] * surprisal[y]
            if smoothing == 0:
                losses.append(nll)
                continue
            smooth = _sum([w_c * s_c for w_c, s_c in zip(w, surprisal, strict=True)])
            losses.append(_sum([_one_minus(smoothing) * nll, smoothing * smooth / classes]))
        denominator = _exact_sum(w[y] for y in kept if y is not None)
        return _reduce(losses, shape, reduction, denominator)

    return _evaluate(dps, compute)


def _label_smoothing(value: float) -> Any:
    smoothing = float(value)
    if math.isnan(smoothing) or smoothing > 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {value}")
    # torch treats a negative label_smoothing as 0 on both target paths.
    return mpmath.mpf(max(smoothing, 0.0))


def _cross_entropy_probabilities(
    x: npt.NDArray[np.float64],
    target: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    smoothing: Any,
    dps: int,
) -> Any:
    is_torch = hasattr(target, "detach")
    if not (bool(target.is_floating_point()) if is_torch else np.asarray(target).dtype.kind == "f"):
        raise ValueError("cross_entropy: probability targets must have a floating dtype")
    if ignore_index >= 0:
        raise ValueError("cross_entropy: ignore_index is not supported for probability targets")
    q = _as_float64(target, "target")
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    class_axis = 0 if x.ndim == 1 else 1
    rows = _rows(x, class_axis)
    target_rows = _rows(q, class_axis)
    shape = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    w = _class_weight(weight, classes)

    def smoothed(probability: Any) -> Any:
        if smoothing == 0:
            return probability
        # (C q (1 - eps) + eps) / C: an exact numerator, so a q' of exactly 0 stays 0.
        numerator = mpmath.fadd(
            mpmath.fmul(mpmath.fmul(probability, classes, exact=True), _one_minus(smoothing), exact=True),
            smoothing,
            exact=True,
        )
        return numerator / classes

    def compute() -> Any:
        losses = []
        for row, q_row in zip(rows, target_rows, strict=True):
            surprisal = _surprisals(row)
            losses.append(_sum([w_c * smoothed(q_c) * s_c for w_c, q_c, s_c in zip(w, q_row, surprisal, strict=True)]))
        return _reduce(losses, shape, reduction, mpmath.mpf(len(rows)))

    return _evaluate(dps, compute)


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    *,
    dps: int = DEFAULT_DPS,
) -> Any:
    r"""Exact ``torch.nn.functional.nll_loss``: :math:`\ell_i = -w_{y_i} x_{i y_i}`.

    The loss is 0 where ``y_i == ignore_index``.

    ``mean`` divides :math:`\sum_i \ell_i` by :math:`\sum_{i \text{ kept}} w_{y_i}`. Both sums are
    exact, so the result is the correctly rounded quotient at the working precision.

    Parameters
    ----------
    input : array_like
        Any finite values (not necessarily log-probabilities), shape ``(C,)``, ``(N, C)`` or
        ``(N, C, d1, ..., dk)``.
    target : array_like
        Integer class indices of the input's shape without the class axis.
    weight : array_like, optional
        Class weights, shape ``(C,)``.
    ignore_index : int, default -100
        Target value whose positions contribute nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        As in torch.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf, or mpmath.mpf
        The per-position losses (``"none"``), or their reduction.

    Raises
    ------
    ValueError
        On shapes, dtypes or options torch rejects, and on non-finite values.
    IndexError
        On a class index outside ``[0, C)`` that is not ``ignore_index``.

    Examples
    --------
    >>> from xe_verify import exact
    >>> exact.nll_loss([[-1.0, -2.0], [-3.0, -0.5]], [1, 0], weight=[1.0, 3.0], reduction="sum")
    mpf('9.0')
    """
    x = _as_float64(input, "input")
    _check_reduction(reduction)
    targets_array = _as_indices(target, "target")
    rows, shape = _class_rows(x, tuple(targets_array.shape), "nll_loss")
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, classes)
    kept = [None if y == ignore_index else _class_of(y, classes) for y in targets_array.reshape(-1).tolist()]

    def compute() -> Any:
        # The products w * x are exact; so are the sums below, rounded once.
        losses = [
            mpmath.mpf(0) if y is None else -mpmath.fmul(w[y], row[y], exact=True)
            for row, y in zip(rows, kept, strict=True)
        ]
        if reduction == "none":
            return _object_array([+loss for loss in losses], shape)
        total = _exact_sum(losses)
        if reduction == "sum":
            return total
        return _divide(total, _exact_sum(w[y] for y in kept if y is not None))

    return _evaluate(dps, compute)


# --------------------------------------------------------------------------------------------------
# Elementwise losses.


def _same_shape(x: npt.NDArray[np.float64], target: npt.NDArray[np.float64], name: str) -> None:
    if target.shape != x.shape:
        raise ValueError(f"{name}: target shape {target.shape} differs from input shape {x.shape}")


def _broadcast_to_input(value: Any, shape: tuple[int, ...], name: str) -> list[Any] | None:
    if value is None:
        return None
    array = _as_float64(value, name)
    try:
        broadcast = np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {array.shape} does not broadcast to the input shape {shape}") from None
    return _mpf_list(broadcast)


def _clamped_log(value: Any) -> Any:
    """``max(log(value), -100)``; NaN for a negative value (the unchecked formula's real log)."""
    if value < 0:
        return mpmath.nan
    if value == 0:
        return mpmath.mpf(-100)
    return max(mpmath.log(value), mpmath.mpf(-100))


def _clamped_log_one_minus(value: Any) -> Any:
    """``max(log1p(-value), -100)``; NaN for a value above 1."""
    if value > 1:
        return mpmath.nan
    if value == 1:
        return mpmath.mpf(-100)
    return max(mpmath.log1p(-value), mpmath.mpf(-100))


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    *,
    check_range: bool = True,
    dps: int = DEFAULT_DPS,
) -> Any:
    r"""Exact ``torch.nn.functional.binary_cross_entropy``, with torch's clamp of each log at -100.

    .. math::

        \ell = -w\,\big(t \max(\log p, -100) + (1 - t) \max(\log(1 - p), -100)\big),
        \qquad \text{mean} = \frac{\sum \ell}{\text{numel}}.

    Parameters
    ----------
    input : array_like
        Probabilities :math:`p`, finite.
    target : array_like
        Targets :math:`t`, the input's shape, finite.
    weight : array_like, optional
        Broadcast to the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
        As in torch.
    check_range : bool, default True
        Require :math:`p, t \in [0, 1]` (torch since 2.1). ``False`` evaluates the formula on any
        finite values, like older torch: NaN where :math:`p \notin [0, 1]`.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf, or mpmath.mpf
        The elementwise losses (``"none"``), or their reduction.

    Raises
    ------
    ValueError
        On a shape mismatch, a value outside [0, 1] (unless ``check_range=False``) or a non-finite
        value.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> exact.binary_cross_entropy([0.0, 1.0], [1.0, 1.0], reduction="sum")  # the clamp: 100 + 0
    mpf('100.0')
    >>> mpmath.nstr(exact.binary_cross_entropy([1e-17], [0.0], reduction="none")[0], 10)
    '1.0e-17'
    """
    x = _as_float64(input, "input")
    t = _as_float64(target, "target")
    _same_shape(x, t, "binary_cross_entropy")
    _check_reduction(reduction)
    if check_range:
        for array, name in ((x, "input"), (t, "target")):
            if ((array < 0) | (array > 1)).any():
                raise ValueError(f"all elements of {name} should be between 0 and 1")
    w = _broadcast_to_input(weight, x.shape, "weight")
    probabilities, targets = _mpf_list(x), _mpf_list(t)

    def compute() -> Any:
        losses = []
        for index, (p, target_value) in enumerate(zip(probabilities, targets, strict=True)):
            # Both logs are <= 0 and, for t in [0, 1], so are both terms: nothing cancels.
            loss = -_sum(
                [
                    target_value * _clamped_log(p),
                    _one_minus(target_value) * _clamped_log_one_minus(p),
                ]
            )
            losses.append(loss if w is None else w[index] * loss)
        return _reduce(losses, x.shape, reduction, mpmath.mpf(len(losses)))

    return _evaluate(dps, compute)


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    *,
    dps: int = DEFAULT_DPS,
) -> Any:
    r"""Exact ``torch.nn.functional.binary_cross_entropy_with_logits``.

    .. math::

        \ell = w\,\big((1 - t)\,x + l_w \operatorname{softplus}(-x)\big), \qquad l_w = 1 + (\text{pos\_weight} - 1)\,t,

    with :math:`\operatorname{softplus}(z) = \log(1 + e^z)`; ``mean`` divides by numel. For
    :math:`x < 0` the same value is evaluated as
    :math:`w\,\big(((1 - t) - l_w)\,x + l_w \operatorname{softplus}(x)\big)` (from
    :math:`\operatorname{softplus}(-x) = -x + \operatorname{softplus}(x)`), whose terms do not
    cancel for :math:`t \in [0, 1]` and a non-negative ``pos_weight``; the coefficients are exact.

    Parameters
    ----------
    input : array_like
        Logits :math:`x`, finite.
    target : array_like
        Targets :math:`t`, the input's shape, any finite values (torch does not check their range).
    weight, pos_weight : array_like, optional
        Broadcast to the input's shape (``pos_weight`` therefore aligns with the last axis).
    reduction : {"mean", "sum", "none"}, default "mean"
        As in torch.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf, or mpmath.mpf
        The elementwise losses (``"none"``), or their reduction.

    Raises
    ------
    ValueError
        On a shape mismatch or a non-finite value.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> mpmath.nstr(exact.binary_cross_entropy_with_logits([100.0], [1.0], reduction="none")[0], 10)
    '3.720075976e-44'
    """
    x = _as_float64(input, "input")
    t = _as_float64(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"Target size ({t.shape}) must be the same as input size ({x.shape})")
    _check_reduction(reduction)
    w = _broadcast_to_input(weight, x.shape, "weight")
    pw = _broadcast_to_input(pos_weight, x.shape, "pos_weight")
    logits, targets = _mpf_list(x), _mpf_list(t)

    def compute() -> Any:
        losses = []
        for index, (logit, target_value) in enumerate(zip(logits, targets, strict=True)):
            log_weight = (
                mpmath.mpf(1)
                if pw is None
                else mpmath.fadd(
                    1,
                    mpmath.fmul(mpmath.fsub(pw[index], 1, exact=True), target_value, exact=True),
                    exact=True,
                )
            )
            if logit >= 0:
                terms = [_one_minus(target_value) * logit, log_weight * _softplus(-logit)]
            else:
                coefficient = mpmath.fsub(_one_minus(target_value), log_weight, exact=True)
                terms = [coefficient * logit, log_weight * _softplus(logit)]
            loss = _sum(terms)
            losses.append(loss if w is None else w[index] * loss)
        return _reduce(losses, x.shape, reduction, mpmath.mpf(len(losses)))

    return _evaluate(dps, compute)


def kl_div(
    input: Any,
    target: Any,
    reduction: str = "mean",
    log_target: bool = False,
    *,
    dps: int = DEFAULT_DPS,
) -> Any:
    r"""Exact ``torch.nn.functional.kl_div`` (``input`` is :math:`\log q`, ``target`` is :math:`p`).

    .. math::

        \ell = p\,(\log p - x) \quad (0 \text{ where } p = 0,\ \text{NaN where } p < 0), \qquad
        \ell = e^{t}\,(t - x) \quad (\texttt{log\_target}).

    ``input`` and ``target`` broadcast. ``mean`` divides the sum by numel, ``batchmean`` by
    ``input.shape[0]`` (so a 1-D input gives ``mean``; a 0-d input gives the sum).

    Parameters
    ----------
    input : array_like
        Log-probabilities :math:`x`, finite.
    target : array_like
        Probabilities, or log-probabilities when ``log_target``; finite.
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        As in torch.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf, or mpmath.mpf
        The elementwise terms (``"none"``), or their reduction.

    Raises
    ------
    ValueError
        On shapes that do not broadcast, an unknown reduction or a non-finite value.

    Examples
    --------
    >>> import math, mpmath
    >>> from xe_verify import exact
    >>> p, q = [0.25, 0.75], [0.5, 0.5]
    >>> kl = exact.kl_div([math.log(v) for v in q], p, reduction="sum")
    >>> mpmath.nstr(kl, 12)
    '0.130812035941'
    """
    x = _as_float64(input, "input")
    t = _as_float64(target, "target")
    _check_reduction(reduction, (*_REDUCTIONS, "batchmean"))
    try:
        x_broadcast, t_broadcast = np.broadcast_arrays(x, t)
    except ValueError:
        raise ValueError(f"kl_div: input of shape {x.shape} and target of shape {t.shape} do not broadcast") from None
    shape = tuple(x_broadcast.shape)
    inputs, targets = _mpf_list(x_broadcast), _mpf_list(t_broadcast)

    def term(x_value: Any, t_value: Any) -> Any:
        if log_target:
            return mpmath.exp(t_value) * mpmath.fsub(t_value, x_value, exact=True)
        if t_value < 0:
            return mpmath.nan  # torch: xlogy(t, t) with t < 0
        if t_value == 0:
            return mpmath.mpf(0)
        # log p - x cancels when x is close to log p (q close to p): _sum checks the bits left.
        return t_value * _sum([mpmath.log(t_value), -x_value])

    def compute() -> Any:
        losses = [term(x_value, t_value) for x_value, t_value in zip(inputs, targets, strict=True)]
        if reduction == "batchmean":
            total = _sum(losses)
            return total if x.ndim == 0 else _divide(total, mpmath.mpf(x.shape[0]))
        return _reduce(losses, shape, reduction, mpmath.mpf(len(losses)))

    return _evaluate(dps, compute)


# --------------------------------------------------------------------------------------------------
# The softmax family and the sigmoids.


def _along(input: Any, dim: int) -> tuple[npt.NDArray[np.float64], int, tuple[int, ...]]:
    """The input (a 0-d one as shape (1,)), the normalised axis and the input's own shape."""
    x = _as_float64(input, "input")
    axis = _axis(dim, x.ndim)
    return (x.reshape(1) if x.ndim == 0 else x), axis, x.shape


def log_softmax(input: Any, dim: int, *, dps: int = DEFAULT_DPS) -> ExactArray:
    r"""Exact ``torch.nn.functional.log_softmax``: :math:`x_j - \log\sum_c e^{x_c}`.

    Evaluated as :math:`-(m - x_j) - \operatorname{log1p}\big(\sum_{c \ne k} e^{x_c - m}\big)` with
    :math:`m = x_k = \max_c x_c`: both parts are non-positive and the difference is exact.

    Parameters
    ----------
    input : array_like
        Finite logits.
    dim : int
        The class axis (negative values count from the end).
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf
        The input's shape.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> [mpmath.nstr(v, 8) for v in exact.log_softmax([0.0, 40.0], dim=0)]
    ['-40.0', '-4.2483543e-18']
    """
    x, axis, shape = _along(input, dim)
    rows = _rows(x, axis)

    def compute() -> ExactArray:
        result = [[-value for value in _surprisals(row)] for row in rows]
        return _from_rows(result, x.shape, axis).reshape(shape)

    return _evaluate(dps, compute)


def softmax(input: Any, dim: int, *, dps: int = DEFAULT_DPS) -> ExactArray:
    r"""Exact ``torch.nn.functional.softmax``: :math:`e^{x_j - m} / (1 + R)`.

    Here :math:`m = x_k` is the maximum and :math:`R = \sum_{c \ne k} e^{x_c - m}`.

    Parameters
    ----------
    input : array_like
        Finite logits.
    dim : int
        The class axis.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf
        The input's shape.

    Examples
    --------
    >>> from xe_verify import exact
    >>> exact.softmax([0.0, 0.0, 0.0, 0.0], dim=-1).tolist()
    [mpf('0.25'), mpf('0.25'), mpf('0.25'), mpf('0.25')]
    """
    x, axis, shape = _along(input, dim)
    rows = _rows(x, axis)

    def compute() -> ExactArray:
        result = []
        for row in rows:
            maximum = max(row)
            top = row.index(maximum)
            terms = [mpmath.exp(mpmath.fsub(value, maximum, exact=True)) for value in row]
            partition = 1 + mpmath.fsum(term for index, term in enumerate(terms) if index != top)
            result.append([term / partition for term in terms])
        return _from_rows(result, x.shape, axis).reshape(shape)

    return _evaluate(dps, compute)


def logsumexp(input: Any, dim: int, *, dps: int = DEFAULT_DPS) -> ExactArray:
    r"""Exact ``torch.logsumexp``: :math:`m + \operatorname{log1p}(R)`, :math:`R = \sum_{c \ne k} e^{x_c - m}`.

    The final sum cancels when :math:`m < 0`; it is checked and, if needed, evaluated again at a
    higher precision.
    An empty slice gives :math:`-\infty`, as in torch.

    Parameters
    ----------
    input : array_like
        Finite values.
    dim : int
        The axis to reduce.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf
        The input's shape without ``dim`` (0-d for a 1-D input).

    Examples
    --------
    >>> import math, mpmath
    >>> from xe_verify import exact
    >>> x = [-math.log(2), -math.log(2)]  # log(1/2 + 1/2) = 0 but for the rounding of log(2)
    >>> mpmath.nstr(exact.logsumexp(x, dim=0)[()], 5)
    '2.319e-17'
    """
    x, axis, shape = _along(input, dim)
    out_shape = tuple(size for index, size in enumerate(shape) if index != axis)
    rows = _rows(x, axis)

    def row_logsumexp(row: list[Any]) -> Any:
        if not row:
            return -mpmath.inf
        maximum = max(row)
        top = row.index(maximum)
        rest = mpmath.fsum(
            mpmath.exp(mpmath.fsub(value, maximum, exact=True)) for index, value in enumerate(row) if index != top
        )
        return _sum([maximum, mpmath.log1p(rest)])

    def compute() -> ExactArray:
        return _object_array([row_logsumexp(row) for row in rows], out_shape)

    return _evaluate(dps, compute)


def sigmoid(input: Any, *, dps: int = DEFAULT_DPS) -> ExactArray:
    r"""Exact ``torch.sigmoid``: :math:`1 / (1 + e^{-x})`, or :math:`e^x / (1 + e^x)` for :math:`x < 0`.

    Parameters
    ----------
    input : array_like
        Finite values.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf
        The input's shape.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> [mpmath.nstr(v, 6) for v in exact.sigmoid([0.0, -800.0])]
    ['0.5', '3.66787e-348']
    """
    x = _as_float64(input, "input")
    values = _mpf_list(x)

    def compute() -> ExactArray:
        result = []
        for value in values:
            if value >= 0:
                result.append(1 / (1 + mpmath.exp(-value)))
            else:
                exp_value = mpmath.exp(value)
                result.append(exp_value / (1 + exp_value))
        return _object_array(result, x.shape)

    return _evaluate(dps, compute)


def log_sigmoid(input: Any, *, dps: int = DEFAULT_DPS) -> ExactArray:
    r"""Exact ``torch.nn.functional.logsigmoid``: :math:`-\log(1 + e^{-x})`.

    For :math:`x < 0` it is evaluated as :math:`x - \log(1 + e^{x})`, two non-positive parts.

    Parameters
    ----------
    input : array_like
        Finite values.
    dps : int, default 50
        Significant decimal digits of the result.

    Returns
    -------
    numpy.ndarray of mpmath.mpf
        The input's shape.

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify import exact
    >>> mpmath.nstr(exact.log_sigmoid([40.0])[0], 10)
    '-4.248354255e-18'
    """
    x = _as_float64(input, "input")
    values = _mpf_list(x)

    def compute() -> ExactArray:
        result = [-_softplus(-value) if value >= 0 else value - _softplus(value) for value in values]
        return _object_array(result, x.shape)

    return _evaluate(dps, compute)


# --------------------------------------------------------------------------------------------------
# Information theory.


def _probability_rows(
    arrays: Sequence[Any], names: Sequence[str], axis: int
) -> tuple[list[list[list[Any]]], tuple[int, ...]]:
    """Broadcast the probability arrays and cut them into 1-D slices along ``axis``."""
    checked = []
    for value, name in zip(arrays, names, strict=True):
        array = _as_float64(value, name)
        if (array < 0).any():
            position = tuple(int(i) for i in np.argwhere(array < 0)[0])
            raise ValueError(f"{name} must be non-negative probabilities, got {array[position]!r} at {position}")
        checked.append(array)
    try:
        broadcast = np.broadcast_arrays(*checked)
    except ValueError:
        shapes = ", ".join(f"{name} {array.shape}" for name, array in zip(names, checked, strict=True))
        raise ValueError(f"shapes do not broadcast: {shapes}") from None
    if broadcast[0].ndim == 0:
        raise ValueError("probabilities must have at least one axis")
    ndim = broadcast[0].ndim
    if not _is_integer(axis) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for {ndim}-D probabilities")
    normalised = int(axis) % ndim
    out_shape = tuple(size for index, size in enumerate(broadcast[0].shape) if index != normalised)
    return [_rows(array, normalised) for array in broadcast], out_shape


def _checked_base(base: float | None) -> float | None:
    """The log base as a float: positive, finite and not 1 (``None`` for nats)."""
    if base is None:
        return None
    value = float(base)
    if not math.isfinite(value) or value <= 0 or value == 1:
        raise ValueError(f"base must be a positive finite number other than 1, got {base!r}")
    return value


def _in_base(nats: Any, base: float | None) -> Any:
    """Convert from nats; call at the working precision (``log(base)`` is rounded to it)."""
    return nats if base is None else nats / mpmath.log(base)


# Lower case on purpose: exact.information.entropy reads like xe_verify.information.entropy.
class information:
    r"""Exact mirrors of :mod:`xe_verify.information`, as ``exact.information.entropy`` and so on.

    All three reduce along ``axis`` with :math:`0 \log 0 = 0`, reject negative (and non-finite)
    probabilities with :class:`ValueError`, broadcast their two arguments, and divide by
    :math:`\log(\text{base})` when ``base`` is given (2 for bits; ``None`` for nats). They return a
    numpy ``object`` array of ``mpmath.mpf`` with the broadcast shape without ``axis``.
    """

    @staticmethod
    def entropy(p: Any, *, base: float | None = None, axis: int = -1, dps: int = DEFAULT_DPS) -> ExactArray:
        r"""Exact entropy :math:`H(p) = -\sum_i p_i \log p_i`.

        Parameters
        ----------
        p : array_like
            Non-negative probabilities (not required to sum to 1).
        base : float, optional
            Logarithm base; natural log when omitted.
        axis : int, default -1
            The axis to sum over.
        dps : int, default 50
            Significant decimal digits of the result.

        Returns
        -------
        numpy.ndarray of mpmath.mpf
            Shape of ``p`` without ``axis``.

        Examples
        --------
        >>> from xe_verify import exact
        >>> exact.information.entropy([0.5, 0.25, 0.25, 0.0], base=2)[()]
        mpf('1.5')
        """
        checked = _checked_base(base)
        (rows,), shape = _probability_rows([p], ["p"], axis)

        def compute() -> ExactArray:
            results = [_in_base(_sum([-p_i * mpmath.log(p_i) for p_i in row if p_i != 0]), checked) for row in rows]
            return _object_array(results, shape)

        return _evaluate(dps, compute)

    @staticmethod
    def cross_entropy(
        p: Any, q: Any, *, base: float | None = None, axis: int = -1, dps: int = DEFAULT_DPS
    ) -> ExactArray:
        r"""Exact cross-entropy :math:`H(p, q) = -\sum_i p_i \log q_i`.

        A term with :math:`p_i > 0 = q_i` is :math:`\infty`.

        Parameters
        ----------
        p, q : array_like
            Non-negative probabilities; they broadcast.
        base : float, optional
            Logarithm base; natural log when omitted.
        axis : int, default -1
            The axis to sum over.
        dps : int, default 50
            Significant decimal digits of the result.

        Returns
        -------
        numpy.ndarray of mpmath.mpf
            The broadcast shape without ``axis``.

        Examples
        --------
        >>> from xe_verify import exact
        >>> exact.information.cross_entropy([0.5, 0.5], [0.25, 0.75], base=2)[()]
        mpf('1.2075187496394219...')
        """
        checked = _checked_base(base)
        (p_rows, q_rows), shape = _probability_rows([p, q], ["p", "q"], axis)

        def term(p_i: Any, q_i: Any) -> Any:
            if p_i == 0:
                return mpmath.mpf(0)
            return mpmath.inf if q_i == 0 else -p_i * mpmath.log(q_i)

        def compute() -> ExactArray:
            results = [
                _in_base(_sum([term(p_i, q_i) for p_i, q_i in zip(p_row, q_row, strict=True)]), checked)
                for p_row, q_row in zip(p_rows, q_rows, strict=True)
            ]
            return _object_array(results, shape)

        return _evaluate(dps, compute)

    @staticmethod
    def kl_divergence(
        p: Any, q: Any, *, base: float | None = None, axis: int = -1, dps: int = DEFAULT_DPS
    ) -> ExactArray:
        r"""Exact KL divergence :math:`D(p \| q) = \sum_i p_i \log(p_i / q_i)`.

        A term with :math:`p_i > 0 = q_i` is :math:`\infty`. Where :math:`q_i / 2 \le p_i \le 2 q_i`
        a term is evaluated as :math:`p_i \operatorname{log1p}\big((p_i - q_i) / q_i\big)` with an
        exact difference, so terms with :math:`q_i` close to :math:`p_i` keep their digits; the sum
        is checked for cancellation.

        Parameters
        ----------
        p, q : array_like
            Non-negative probabilities; they broadcast.
        base : float, optional
            Logarithm base; natural log when omitted.
        axis : int, default -1
            The axis to sum over.
        dps : int, default 50
            Significant decimal digits of the result.

        Returns
        -------
        numpy.ndarray of mpmath.mpf
            The broadcast shape without ``axis``.

        Examples
        --------
        >>> import mpmath
        >>> from xe_verify import exact
        >>> mpmath.nstr(exact.information.kl_divergence([0.25, 0.75], [0.5, 0.5])[()], 12)
        '0.130812035941'
        """
        checked = _checked_base(base)
        (p_rows, q_rows), shape = _probability_rows([p, q], ["p", "q"], axis)

        def term(p_i: Any, q_i: Any) -> Any:
            if p_i == 0:
                return mpmath.mpf(0)
            if q_i == 0:
                return mpmath.inf
            if q_i / 2 <= p_i <= 2 * q_i:
                return p_i * mpmath.log1p(mpmath.fsub(p_i, q_i, exact=True) / q_i)
            # Far from 1, log(p / q) is well conditioned; (p - q) / q could round to -1 instead.
            return p_i * mpmath.log(p_i / q_i)

        def compute() -> ExactArray:
            results = [
                _in_base(_sum([term(p_i, q_i) for p_i, q_i in zip(p_row, q_row, strict=True)]), checked)
                for p_row, q_row in zip(p_rows, q_rows, strict=True)
            ]
            return _object_array(results, shape)

        return _evaluate(dps, compute)
