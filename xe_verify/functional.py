r"""Reference versions of ``torch.nn.functional``'s losses, in float64 numpy.

Same names, same argument names and defaults, same results as torch (2.13), including its odd corners, which are
mirrored on purpose and listed in each docstring; the few deliberate differences are listed in
[`DIFFERENCES_FROM_TORCH`][xe_verify.functional.DIFFERENCES_FROM_TORCH]. Every function accepts array-likes (lists,
numpy arrays of any real dtype, torch tensors), computes in float64 and returns numpy float64: an array for
``reduction="none"``, an ``np.float64`` scalar otherwise. Arguments are never modified.

The formulas are evaluated so that they are *more* accurate than torch where torch loses digits: log-sum-exp with the
shift's rounding error carried and ``log1p`` of the non-maximal terms (see ``xe_verify._softmax``), ``log1p`` and
``log1p(exp(-|x|))`` for the sigmoid family, sums of non-negative terms kept apart from cancelling ones, and
double-double arithmetic (``xe_verify._double_double``) where a difference cancels anyway: ``kl_div``'s
``log t - x`` for ``x`` close to ``log t``, ``logsumexp``'s ``m + log1p(s)`` near 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

import numpy as np

from xe_verify import _double_double as dd
from xe_verify._arrays import (
    Float64Array,
    as_float64,
    as_real,
    check_broadcasts_to,
    check_class_indices,
    check_in_unit_interval,
    check_reduction,
)
from xe_verify._blocks import BLOCK_ELEMENTS, Block, RowLayout, chunks, elementwise, for_each, workspace
from xe_verify._softmax import PARTITION_SCALE, TINY_PARTITION, ShiftedRows, cancelling_rows, scaled_exp, shift_rows

__all__ = [
    "DIFFERENCES_FROM_TORCH",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "sigmoid",
    "softmax",
]

Loss = Float64Array | np.float64
IndexArray = np.ndarray[Any, np.dtype[np.int64]]

#: Every deliberate difference from ``torch.nn.functional`` (torch 2.13), one line each. The docs publish this list.
DIFFERENCES_FROM_TORCH: tuple[str, ...] = (
    "Computation is always in float64 and results are numpy float64, whatever the input dtype (torch computes in "
    "the input's dtype; BCE-with-logits even returns the target's dtype).",
    "Errors are Python errors that name the argument and the offending value: where torch raises RuntimeError the "
    "reference raises ValueError (bad values or shapes) or TypeError (bad dtypes); IndexError and ValueError match.",
    "Class-index targets may have any integer dtype (torch accepts only int64 and uint8; int32 is a RuntimeError).",
    "Integer and bool logits, probabilities and targets are accepted and converted to float64 (torch rejects integer "
    "logits and requires the target's dtype to match the input's in binary_cross_entropy).",
    "Weights of another float dtype than the input are accepted (torch raises 'expected scalar type Float but found "
    "Double' on the class-index path and in binary_cross_entropy).",
    "binary_cross_entropy(..., check_range=False) computes the unchecked formula for values outside [0, 1], as torch "
    "did before 2.1 (PR #97814); the default raises ValueError like current torch.",
    "A NaN label_smoothing is a ValueError (torch treats it as 0); a negative one is treated as 0, as in torch.",
    "A 0-d input to cross_entropy or nll_loss is a ValueError that says the input needs a class dimension (torch "
    "raises a confusing soft-target dtype error for cross_entropy).",
    "kl_div never warns: torch's UserWarning for reduction='mean' is left out (the value is the same), and "
    "reduction='elementwise_mean' (a spelling of 'mean' torch still accepts) is accepted without torch's warning.",
    "A (C,) input with a (1,) class-index target and label_smoothing > 0 gives the loss; torch 2.13 raises "
    "RuntimeError 'output with shape [] doesn't match the broadcast shape [1]' (the same target works without "
    "smoothing, so this is a torch bug, not a rule).",
    "Non-finite values follow torch's formulas (NaN and infinities appear where torch's do); only finite inputs "
    "take the more accurate evaluation, so results can differ from torch's in the last digits, never in semantics.",
)


# --------------------------------------------------------------------------------------------------------------------
# Layout: every softmax loss works on rows of classes, shape (M, C), whatever the input's shape.


def _output_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the per-position losses: the input's shape without its class dimension."""
    if len(input_shape) == 1:
        return ()
    return (input_shape[0], *input_shape[2:])


def _check_has_class_dim(x: Float64Array) -> None:
    if x.ndim == 0:
        raise ValueError("input: expected 1 or more dimensions, (C,), (N, C) or (N, C, d1, ..., dk), got a 0-d array")


def _class_index_targets(x: np.ndarray[Any, Any], target: Any) -> np.ndarray[Any, Any]:
    """Validate class-index targets against the input's shape; return them flat, in row order, in their own dtype.

    torch's order: the batch size first (whatever the target's dtype), then the dtype, then the other dimensions.
    """
    expected = _output_shape(x.shape)
    target = np.asarray(target)
    if x.ndim > 1 and (target.ndim == 0 or target.shape[0] != x.shape[0]):
        detail = f"Expected input batch_size ({x.shape[0]}) to match target batch_size "
        _raise_class_index_shape(x, detail + f"({target.shape[0] if target.ndim else 'none, 0-d target'}).")
    y = check_class_indices(target, "target")
    if x.ndim == 1:
        if y.shape not in {(), (1,)}:
            raise ValueError(
                f"target: for a 1-D input of shape {x.shape} the class-index target must be a scalar or have "
                f"size 1, but got target shape {y.shape}"
            )
    elif y.shape != expected:
        _raise_class_index_shape(x, f"Expected target size {list(expected)}, got {list(y.shape)}.")
    return y.reshape(-1)


def _raise_class_index_shape(x: np.ndarray[Any, Any], detail: str) -> NoReturn:
    expected = _output_shape(x.shape)
    raise ValueError(
        f"target: {detail} For an input of shape {x.shape} a class-index target must have shape {expected} "
        "(the input's shape without the class dimension 1); a probability target must have the input's shape"
    )


def _class_weight(weight: Any, classes: int) -> Float64Array | None:
    if weight is None:
        return None
    w = as_float64(weight, "weight")
    if w.shape != (classes,):
        raise ValueError(
            f"weight: weight tensor should be defined either for all {classes} classes or no classes but got weight "
            f"tensor of shape: {list(w.shape)}; expected a 1-D array of length {classes}, one weight per class"
        )
    return w


def _check_ignore_index(ignore_index: Any) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index: expected an integer, got {ignore_index!r}")
    return int(ignore_index)


#: Targets per chunk of the bounds check (512 KiB of int64): the check needs no temporary the size of the targets.
_TARGET_CHUNK = 1 << 16


def _check_target_bounds(y: np.ndarray[Any, Any], classes: int, ignore_index: int) -> None:
    """Raise torch's IndexError at the first target outside ``[0, C)`` that is not ``ignore_index``.

    torch tests ``ignore_index`` first, then the bounds, so an ignored target may be any integer. ``min`` and ``max``
    settle the common case without a temporary; otherwise the targets are scanned in chunks, in order.
    """
    if y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < classes):
        return
    for part in chunks(y.size, _TARGET_CHUNK):
        values = y[part].astype(np.int64)
        out_of_bounds = (values != ignore_index) & ((values < 0) | (values >= classes))
        if out_of_bounds.any():
            position = part.start + int(np.argmax(out_of_bounds))
            raise IndexError(
                f"Target {int(y[position])} is out of bounds. (target element {position} in flattened order; "
                f"expected 0 <= target < {classes} or target == ignore_index ({ignore_index}))"
            )


def _valid_targets(y: np.ndarray[Any, Any], classes: int, ignore_index: int) -> tuple[np.ndarray[Any, Any], IndexArray]:
    """Check the bounds; return the mask of the targets that count and the targets with 0 at the ignored ones."""
    _check_target_bounds(y, classes, ignore_index)
    return _counted(y, ignore_index)


def _counted(y: np.ndarray[Any, Any], ignore_index: int) -> tuple[np.ndarray[Any, Any], IndexArray]:
    """The mask of the targets that count (not ``ignore_index``), and the targets as int64 with 0 at the others."""
    indices = y.astype(np.int64, copy=False)
    valid = indices != ignore_index
    return valid, np.where(valid, indices, 0)


def _block_targets(
    y: np.ndarray[Any, Any], w: Float64Array | None, ignore_index: int | None
) -> tuple[np.ndarray[Any, Any] | None, IndexArray, Float64Array | None]:
    """One block's (checked) targets: the mask of those that count, safe indices, their weights.

    The mask is ``None`` where all of them count (``ignore_index`` ``None``: none can be ignored), the weights
    ``None`` without class weights (all 1). Blocks of a 32000-class input hold 4 rows: every numpy call counts.
    """
    indices = y.astype(np.int64, copy=False)
    if ignore_index is None:
        return None, indices, None if w is None else w[indices]
    valid = indices != ignore_index
    if valid.all():
        return None, indices, None if w is None else w[indices]
    safe_y = np.where(valid, indices, 0)
    return valid, safe_y, None if w is None else w[safe_y]


def _counted_weight(valid: np.ndarray[Any, Any] | None, target_weight: Float64Array | None, rows: int) -> float:
    """The mean's denominator over a block of ``rows``: the counted targets' weights, or their number.

    ``valid`` ``None``: every target counts; ``target_weight`` ``None``: every weight is 1.
    """
    if target_weight is None:
        return float(rows if valid is None else np.count_nonzero(valid))
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sum(target_weight if valid is None else np.where(valid, target_weight, 0.0)))


def _label_smoothing(value: Any) -> float:
    smoothing = float(value)
    if np.isnan(smoothing) or smoothing > 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {smoothing}")
    # torch silently treats a negative label_smoothing as 0 (its code tests `label_smoothing > 0`).
    return max(smoothing, 0.0)


def _gather(rows: Float64Array, columns: np.ndarray[Any, np.dtype[np.int64]]) -> Float64Array:
    return np.take_along_axis(rows, columns[:, None], axis=-1)[:, 0]


# --------------------------------------------------------------------------------------------------------------------
# Softmax family


def _along_last_axis(x: np.ndarray[Any, Any], dim: int) -> tuple[np.ndarray[Any, Any], tuple[int, ...], int]:
    """Move ``dim`` last and flatten the rest: rows of shape (M, C), in the input's dtype."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim: expected an integer, got {dim!r}")
    ndim = max(x.ndim, 1)
    if not -ndim <= dim < ndim:
        raise IndexError(
            f"dim: Dimension out of range: {dim} for an input of shape {x.shape}; expected {-ndim} <= dim < {ndim}"
        )
    axis = int(dim) % ndim
    moved = np.moveaxis(np.atleast_1d(x), axis, -1)
    rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
    return moved.reshape(rows, moved.shape[-1]), moved.shape, axis


def _softmax_apply(x: Any, dim: int, name: str) -> Float64Array:
    values = as_real(x, "input")
    rows, moved_shape, axis = _along_last_axis(values, dim)
    result = np.empty(rows.shape)
    if rows.size:
        layout = RowLayout(rows)

        def work(block: Block) -> None:
            shifted = shift_rows(layout.load(block), in_workspace=True)
            out = result[layout.row_slice(block)]
            with np.errstate(invalid="ignore", over="ignore"):
                if name == "log_softmax":
                    np.subtract(shifted.shifted, shifted.log_partition, out=out)
                    out += shifted.error
                else:
                    shifted.exp_shifted(out=out, scratch=workspace(2, *out.shape))
                    out /= np.exp(shifted.log_partition)

        for_each(work, layout.blocks(), rows.size)
    return np.moveaxis(result.reshape(moved_shape), -1, axis).reshape(values.shape)


def log_softmax(input: Any, dim: int) -> Float64Array:
    r"""Log of the softmax along ``dim``, like ``torch.nn.functional.log_softmax``.

    $$ \log\operatorname{softmax}(x)_c = x_c - \log \sum_j e^{x_j} $$

    Evaluated as ``(d_c - L) + e_c`` with ``d = x - max(x)``, its rounding error ``e`` and
    ``L = log1p(sum of the non-maximal exp(d))``, so the dominant class keeps every digit.

    Parameters
    ----------
    input : array_like
        Logits, any shape (a 0-d input is one class).
    dim : int
        The class axis.

    Returns
    -------
    numpy.ndarray
        float64, the input's shape. A row of ``-inf``, or with a NaN or ``+inf``, is all NaN (as in torch).

    Examples
    --------
    >>> from xe_verify.functional import log_softmax
    >>> log_softmax([0.0, 0.0], dim=0)
    array([-0.69314718, -0.69314718])
    >>> float(log_softmax([40.0, 0.0], dim=0)[0])  # -exp(-40): torch returns -0.0
    -4.248354255291589e-18
    """
    return _softmax_apply(input, dim, "log_softmax")


def softmax(input: Any, dim: int) -> Float64Array:
    r"""Softmax along ``dim``, like ``torch.nn.functional.softmax``.

    $$ \operatorname{softmax}(x)_c = \frac{e^{x_c - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j $$

    Examples
    --------
    >>> from xe_verify.functional import softmax
    >>> softmax([[1.0, 1.0], [0.0, float("-inf")]], dim=1)
    array([[0.5, 0.5],
           [1. , 0. ]])
    """
    return _softmax_apply(input, dim, "softmax")


def logsumexp(input: Any, dim: int) -> Float64Array:
    r"""``log(sum(exp(input)))`` along ``dim``, like ``torch.logsumexp``, without overflow.

    $$ \operatorname{logsumexp}(x) = m + \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big), $$
              \qquad m = x_k = \max_j x_j

    An all-``-inf`` row gives ``-inf`` and an empty one ``-inf`` (torch agrees); ``+inf`` anywhere gives ``+inf``.

    Within a few ULP of the exact value for finite rows: where ``m < 0`` and the result is close to 0, so that
    ``m`` and the ``log1p`` term cancel, the row is recomputed with the terms, their sum and ``log1p`` in
    double-double and rounded once (see ``ShiftedRows.logsumexp_double_double``); such rows cost several times
    more (a row of log-probabilities, whose logsumexp is about 0, about 30 times).

    Examples
    --------
    >>> from xe_verify.functional import logsumexp
    >>> logsumexp([1000.0, 1000.0], dim=0)  # 1000 + log(2); exp(1000) alone would overflow
    array(1000.69314718)
    """
    values = as_real(input, "input")
    rows, moved_shape, _ = _along_last_axis(values, dim)
    result = np.full(rows.shape[0], -np.inf)
    if rows.size:
        layout = RowLayout(rows)
        log_partition = np.empty(rows.shape[0])

        def work(block: Block) -> None:
            shifted = shift_rows(layout.load(block), in_workspace=True)
            result[layout.row_slice(block)] = shifted.logsumexp()
            log_partition[layout.row_slice(block)] = shifted.log_partition[:, 0]

        for_each(work, layout.blocks(), rows.size)
        # Rows where m + L cancels are redone with L in double-double, in blocks of a quarter of BLOCK_ELEMENTS (the
        # double-double exponential keeps a few dozen temporaries of a block's size alive). They are found once,
        # after the blocks, so that the common path pays one assignment per block and nothing more.
        cancelling = cancelling_rows(result, log_partition)
        if cancelling.size:
            per_block = max(1, BLOCK_ELEMENTS // 4 // rows.shape[1])
            redo_blocks = [cancelling[start : start + per_block] for start in range(0, cancelling.size, per_block)]

            def redo(block_rows: np.ndarray[Any, np.dtype[np.intp]]) -> None:
                shifted = shift_rows(np.asarray(rows[block_rows], dtype=np.float64))
                result[block_rows] = shifted.logsumexp_double_double()

            for_each(redo, redo_blocks, cancelling.size * rows.shape[1])
    return result.reshape(moved_shape[:-1])


def sigmoid(input: Any) -> Float64Array:
    r"""The logistic function, like ``torch.sigmoid``: $\sigma(x) = 1 / (1 + e^{-x})$.

    Evaluated as ``1 / (1 + exp(-x))`` for ``x >= 0`` and ``exp(x) / (1 + exp(x))`` below, so neither branch
    overflows and tiny results keep their digits.

    Examples
    --------
    >>> from xe_verify.functional import sigmoid
    >>> sigmoid([0.0, -800.0, 800.0])
    array([0.5, 0. , 1. ])
    """
    x = as_real(input, "input")
    return _elementwise_values(_sigmoid_kernel, [x], x.shape)


def _elementwise_values(kernel: Any, operands: list[Any], shape: tuple[int, ...]) -> Float64Array:
    values, _ = elementwise(kernel, operands, shape, keep=True)
    assert values is not None
    return values


def _sigmoid_kernel(x: Float64Array) -> Float64Array:
    with np.errstate(over="ignore"):
        exp_neg_abs = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs))


def _softplus_of_negative_abs(x: Float64Array) -> Float64Array:
    """``log1p(exp(-|x|))``, the non-linear part of every softplus."""
    return np.log1p(np.exp(-np.abs(x)))


def log_sigmoid(input: Any) -> Float64Array:
    r"""``log(sigmoid(x))``, like ``torch.nn.functional.logsigmoid``, for any ``x``.

    $$ \log\sigma(x) = \min(x, 0) - \operatorname{log1p}(e^{-|x|}) $$

    Examples
    --------
    >>> from xe_verify.functional import log_sigmoid
    >>> log_sigmoid([0.0, -1000.0]).tolist()  # log(1/2), and -1000 where exp(-1000) underflows
    [-0.6931471805599453, -1000.0]
    """
    x = as_real(input, "input")
    return _elementwise_values(_log_sigmoid_kernel, [x], x.shape)


def _log_sigmoid_kernel(x: Float64Array) -> Float64Array:
    return np.minimum(x, 0.0) - _softplus_of_negative_abs(x)


# --------------------------------------------------------------------------------------------------------------------
# Cross-entropy and NLL


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Loss:
    r"""Cross-entropy of logits against class indices or class probabilities, like ``F.cross_entropy``.

    With ``lsm = log_softmax(input, dim=class_dim)`` (``class_dim`` is 0 for a ``(C,)`` input and 1 otherwise),
    $w_c$ the class weights (1 without ``weight``) and $\varepsilon$ the label smoothing:

    **Class-index target** ``y`` (shape: the input's without the class dimension), per position $i$:

    $$
    \ell_i = [y_i \ne \text{ignore}]\Big((1-\varepsilon)\, w_{y_i}(-\text{lsm}_{i,y_i})
             + \frac{\varepsilon}{C}\sum_c w_c(-\text{lsm}_{i,c})\Big),
    \qquad \text{mean} = \frac{\sum_i \ell_i}{\sum_{i:\,y_i \ne \text{ignore}} w_{y_i}}
    $$

    Both terms share the denominator, which is the sum of the *target* classes' weights (the count of non-ignored
    positions without ``weight``): all targets ignored gives NaN (0/0), as in torch.

    **Probability target** ``q`` (the input's shape, any float values, not checked: off-simplex targets compute the
    same formula, as in torch), with $q' = (1-\varepsilon) q + \varepsilon / C$:

    $$
    \ell_i = -\sum_c w_c\, q'_{i,c}\, \text{lsm}_{i,c}, \qquad
    \text{mean} = \frac{\sum_i \ell_i}{\text{input.size} / C}
    $$

    The soft mean never has the weights in its denominator.

    Parameters
    ----------
    input : array_like
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : array_like
        Integer class indices (any integer dtype), or floating class probabilities of the input's shape. The path is
        chosen as torch chooses it: by shape equality.
    weight : array_like, optional
        A weight per class, shape ``(C,)``. Zero and negative weights are allowed (a zero denominator gives NaN or
        an infinity, as in torch).
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing, to the sum or to the denominator. It is tested before the
        bounds check, so it may be any integer. With probability targets it must be negative (and then does nothing).
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns the per-position losses (0 at ignored positions).
    label_smoothing : float, default 0.0
        In [0, 1]; a negative value is treated as 0 (torch does the same), above 1 is a ``ValueError``.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        float64 loss: a scalar, or for ``"none"`` an array of the target's shape (class-index) or of the input's
        shape without the class dimension (probabilities).

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``: "Target 5 is out of bounds." (as torch).
    ValueError
        Mismatched shapes, a bad ``weight`` length, an unknown ``reduction``, ``label_smoothing > 1``, a
        non-negative ``ignore_index`` with probability targets, a 0-d input.
    TypeError
        Non-real inputs, floating class indices of the wrong shape, integer probability targets.

    Notes
    -----
    Mirrors torch where torch is surprising: a ``+inf`` logit makes its row NaN; ``-inf`` at the target gives
    ``inf``, at another class a finite loss without smoothing, ``inf`` with smoothing and NaN with a probability
    target (``0 * -inf``); weight 0 on an infinite loss is NaN; an ignored row with NaN logits gives 0.

    Examples
    --------
    >>> from xe_verify.functional import cross_entropy
    >>> logits = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
    >>> round(float(cross_entropy(logits, [0, 2])), 6)
    0.175456
    >>> cross_entropy(logits, [0, -100], reduction="none")  # the ignored position contributes 0
    array([0.2413113, 0.       ])
    >>> float(cross_entropy(logits, [-100, -100]))  # nothing left to average: 0/0
    nan
    >>> bool(cross_entropy(logits, [[1.0, 0, 0], [0, 0, 1.0]]) == cross_entropy(logits, [0, 2]))
    True
    """
    reduction = check_reduction(reduction)
    ignore_index = _check_ignore_index(ignore_index)
    smoothing = _label_smoothing(label_smoothing)
    x = as_real(input, "input")
    _check_has_class_dim(x)
    target_array = as_real(target, "target")
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, classes)
    if target_array.shape == x.shape:
        return _cross_entropy_probabilities(x, target_array, w, ignore_index, reduction, smoothing)

    y = _class_index_targets(x, target_array)
    _check_target_bounds(y, classes, ignore_index)
    layout = RowLayout(x)

    def row_losses(block: Block, rows: _RowTargets) -> tuple[Float64Array, tuple[float, ...]]:
        # (inside _class_index_blocks' errstate: NaN and infinities follow torch without warnings)
        shifted = shift_rows(layout.load(block), in_workspace=True)
        target_shift = _gather(shifted.shifted, rows.picked)
        target_error = _gather(shifted.error, rows.picked)
        losses = (shifted.log_partition[:, 0] - target_shift) - target_error
        if rows.weight is not None:
            losses *= rows.weight
            _round_tiny_rows_once(losses, shifted, rows.weight, (target_shift == 0) & (target_error == 0))
        if smoothing <= 0.0:
            return losses, ()
        smooth = np.ldexp(_smoothing_term(shifted, w, workspace(2, *shifted.shifted.shape)), -rows.exponent)
        # torch divides the nll and smoothing sums by a zero denominator each on its own: keep them apart.
        if rows.valid is None:
            parts = (float(np.sum(losses)), float(np.sum(smooth)))
        else:
            parts = (
                float(np.sum(np.where(rows.valid, losses, 0.0))),
                float(np.sum(np.where(rows.valid, smooth, 0.0))),
            )
        # eps (S / C), not (eps / C) S: a subnormal eps / C would round to a large relative error.
        return (1.0 - smoothing) * losses + smoothing * (smooth / classes), parts

    output, sums = _class_index_blocks(
        layout, y, w, ignore_index, reduction, row_losses, extras=2 if smoothing > 0.0 else 0, columns=None
    )
    if output is not None:
        return output.reshape(_output_shape(x.shape))
    total, denominator, *parts = sums
    if smoothing > 0.0 and reduction == "mean" and denominator == 0:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # torch divides each sum by the zero denominator: 0/0 or inf - inf is NaN, not an infinity.
            over_zero: np.float64 = np.float64(
                (1.0 - smoothing) * (parts[0] / 0.0) + (smoothing / classes) * (parts[1] / 0.0)
            )
        return over_zero
    return _finish(None, total, reduction, denominator)


def _round_tiny_rows_once(
    losses: Float64Array, shifted: ShiftedRows, factor: Float64Array, only_partition: np.ndarray[Any, Any]
) -> None:
    """Where ``L`` is tiny and a loss is ``factor * L`` alone, round it once from the scaled ``L`` (in place).

    Such a loss can be subnormal, and ``factor`` would multiply the rounding error of a subnormal ``L``.
    """
    rows = shifted.tiny_rows
    if rows.size:
        keep = only_partition[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            losses[rows[keep]] = np.ldexp(factor[rows[keep]] * shifted.tiny_scaled[keep], -PARTITION_SCALE)


class _RowTargets(NamedTuple):
    """One block's class-index targets, checked: those that count, safe indices, their weights and its scale.

    ``valid`` is ``None`` where every target counts. ``weight`` is ``None`` without class weights (every weight 1);
    for a ``mean`` it is scaled by ``2^-exponent`` (see ``_scaled_weights``), which leaves the mean unchanged.
    """

    valid: np.ndarray[Any, Any] | None
    picked: IndexArray
    weight: Float64Array | None
    exponent: int


_RowLosses = Callable[[Block, _RowTargets], tuple[Float64Array, tuple[float, ...]]]


def _class_index_blocks(
    layout: RowLayout,
    y: np.ndarray[Any, Any],
    w: Float64Array | None,
    ignore_index: int,
    reduction: str,
    row_losses: _RowLosses,
    *,
    extras: int,
    columns: int | None,
) -> tuple[Float64Array | None, Float64Array]:
    """Run ``row_losses`` over the row blocks of a class-index loss; the losses (for ``none``) and the sums.

    ``row_losses(block, targets)`` returns the block's losses (ignored rows are set to 0 here, whatever their
    logits) and ``extras`` more partial sums; it runs with numpy's invalid and overflow warnings off. Returns the
    per-row losses for ``none`` (else ``None``) and, over all blocks, the sum of the losses, the mean's denominator
    (the counted targets' weights) and the extra sums, each summed per block in a fixed order (the same whatever the
    threads) and brought to one scale (``_sum_blocks``).
    Nothing per row is kept beyond a block: the memory does not grow with the rows.
    """
    blocks = layout.blocks(columns) if layout.classes else []  # with no class, every target is ignored
    output = np.zeros(layout.rows) if reduction == "none" else None
    sums = np.zeros((len(blocks), 3 + extras))  # per block; the last column: the block's weight scale
    # Where no target can equal ignore_index, the blocks skip the mask (a comparison and a reduction each).
    some_ignored = y.size > 0 and int(y.min()) <= ignore_index <= int(y.max())
    block_ignore_index = ignore_index if some_ignored else None

    def work(item: tuple[int, Block]) -> None:
        index, block = item
        rows = layout.row_slice(block)
        valid, picked, target_weight = _block_targets(y[rows], w, block_ignore_index)
        exponent = 0
        if target_weight is not None and reduction == "mean":
            target_weight, exponent = _scaled_weights(target_weight, valid)
        with np.errstate(invalid="ignore", over="ignore"):
            losses, partial = row_losses(block, _RowTargets(valid, picked, target_weight, exponent))
            if valid is not None:
                losses = np.where(valid, losses, 0.0)  # an ignored row is 0, even with NaN logits
            counted = _counted_weight(valid, target_weight, losses.shape[0])
            sums[index] = (np.sum(losses), counted, *partial, exponent)
        if output is not None:
            output[rows] = losses

    for_each(work, list(enumerate(blocks)), layout.rows * (columns or layout.classes))
    # Transposed so that each quantity's blocks are contiguous (numpy sums those pairwise).
    return output, _sum_blocks(np.ascontiguousarray(sums[:, :-1].T), sums[:, -1])


def _scaled_weights(target_weight: Float64Array, valid: np.ndarray[Any, Any] | None) -> tuple[Float64Array, int]:
    """A block's target weights scaled by ``2^-k`` so that the largest counted one is in [1/2, 1), and ``k``.

    A weighted mean is unchanged by scaling every weight by the same power of two, and tiny weights no longer
    underflow in ``w * loss`` (weights of 5e-324 would make every product round, and the mean lose every digit).
    The scale follows the weights of the targets that count: a large weight of an absent class must not push the
    present ones into the subnormal range. Blocks are brought to a common scale by ``_sum_blocks``.
    """
    counted = target_weight if valid is None else np.where(valid, target_weight, 0.0)
    largest = float(np.max(np.abs(counted), initial=0.0))
    if largest == 0.0 or not np.isfinite(largest):
        return target_weight, 0
    exponent = int(np.frexp(largest)[1])
    return np.ldexp(target_weight, -exponent), exponent


def _sum_blocks(sums: Float64Array, exponents: Float64Array) -> Float64Array:
    """Each row of per-block ``sums`` summed over the blocks, the blocks first brought to the largest scale.

    ``exponents[b]``: the power of two block ``b``'s values were divided by (``_scaled_weights``). The sums of a block
    far below the largest scale may lose digits or vanish, next to those of a block whose weights are ``2^60`` times
    larger: negligible in the mean, whose denominator the largest block dominates.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if exponents.size and exponents.any():
            sums = np.ldexp(sums, (exponents - exponents.max()).astype(np.int64))
        totals: Float64Array = sums.sum(axis=1)
    return totals


def _smoothing_term(shifted: ShiftedRows, w: Float64Array | None, scratch: Float64Array) -> Float64Array:
    """``sum_c w_c (-lsm_c)`` per row, as ``L sum_c w_c - sum_c w_c (d_c + e_c)``: two non-negative parts for w >= 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        if w is None:
            weighted_shift = shifted.shifted.sum(axis=-1) + shifted.error.sum(axis=-1)
            term: Float64Array = shifted.log_partition[:, 0] * shifted.shifted.shape[-1] - weighted_shift
        else:
            weighted_shift = np.multiply(shifted.shifted, w, out=scratch).sum(axis=-1)
            weighted_shift += np.multiply(shifted.error, w, out=scratch).sum(axis=-1)
            term = shifted.log_partition[:, 0] * np.sum(w) - weighted_shift
    return term


def _check_probability_target(x: np.ndarray[Any, Any], target: np.ndarray[Any, Any], ignore_index: int) -> None:
    """A target of the input's shape is read as probabilities: it must be floating, and ``ignore_index`` negative."""
    if target.dtype.kind != "f":
        raise TypeError(
            f"target: has the input's shape {x.shape}, so it is read as class probabilities, which must have a "
            f"floating dtype; got {target.dtype}. Class indices must have the input's shape without the class "
            "dimension"
        )
    if ignore_index >= 0:
        raise ValueError(
            f"ignore_index: ignore_index is not supported for floating point target (got {ignore_index}); "
            "expected a negative value with probability targets"
        )


def _cross_entropy_probabilities(
    x: Float64Array,
    target: np.ndarray[Any, Any],
    w: Float64Array | None,
    ignore_index: int,
    reduction: str,
    smoothing: float,
) -> Loss:
    _check_probability_target(x, target, ignore_index)
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    layout, target_layout = RowLayout(x), RowLayout(target)
    blocks = layout.blocks() if classes else []
    output = np.zeros(layout.rows) if reduction == "none" else None
    sums = np.zeros(len(blocks))  # per block, in fixed order

    def work(item: tuple[int, Block]) -> None:
        index, block = item
        shifted = shift_rows(layout.load(block), in_workspace=True)
        q = target_layout.load(block, index=5)
        with np.errstate(invalid="ignore", over="ignore"):
            losses = _soft_target_losses(shifted, q, w, workspace(2, *q.shape))
            if smoothing > 0.0:
                # (1 - eps) sum_c q_c w_c (-lsm_c) + eps (sum_c w_c (-lsm_c)) / C: the smoothed target
                # q' = (1 - eps) q + eps / C is not formed, so a subnormal eps / C cannot round to a large relative
                # error. Where the result is not finite, torch's q' is taken instead, so that NaN and infinities land
                # where torch's do: 0 * -inf where q = 0 (torch's q' > 0 makes it inf), or a sum of -lsm that
                # overflows (torch's products with q' < 1 may not).
                smooth = _smoothing_term(shifted, w, workspace(2, *q.shape))
                losses = (1.0 - smoothing) * losses + smoothing * (smooth / classes)
                rows = np.flatnonzero(~np.isfinite(losses))
                if rows.size:
                    literal_q = target_layout.load(block, index=5)[rows] * (1.0 - smoothing) + smoothing / classes
                    losses[rows] = _soft_target_losses(shifted.take(rows), literal_q, w, None)
            sums[index] = np.sum(losses)
        if output is not None:
            output[layout.row_slice(block)] = losses

    for_each(work, list(enumerate(blocks)), x.size)
    if output is not None:
        return output.reshape(_output_shape(x.shape))
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(sums))
    return _finish(None, total, reduction, layout.rows)


def _soft_target_losses(
    shifted: ShiftedRows, q: Float64Array, w: Float64Array | None, scratch: Float64Array | None
) -> Float64Array:
    """``-sum_c w_c q_c lsm_c`` per row, as ``L sum_c w_c q_c - sum_c w_c q_c (d_c + e_c)`` (``q`` is overwritten).

    Two non-negative parts for ``w q >= 0``; where the second is 0 (all the mass at the maximum) and ``L`` is tiny,
    the product is rounded once (``_round_tiny_rows_once``).
    """
    if w is not None:
        q *= w
    shift_part = np.multiply(q, shifted.shifted, out=scratch).sum(axis=-1)
    shift_part += np.multiply(q, shifted.error, out=scratch).sum(axis=-1)
    mass = q.sum(axis=-1)
    losses: Float64Array = shifted.log_partition[:, 0] * mass - shift_part
    _round_tiny_rows_once(losses, shifted, mass, shift_part == 0)
    return losses


def _nll_arguments(
    input: Any, target: Any, weight: Any, ignore_index: int
) -> tuple[np.ndarray[Any, Any], int, Float64Array | None, np.ndarray[Any, Any]]:
    """Validate ``nll_loss``'s arguments: the input, C, the weights, the flat (bounds-checked) targets."""
    x = as_real(input, "input")
    _check_has_class_dim(x)
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, classes)
    target_array = as_real(target, "target")
    if target_array.shape == x.shape and x.ndim > 1:
        raise ValueError(
            f"target: 0D or 1D target tensor expected, multi-target not supported: nll_loss takes class indices "
            f"of shape {_output_shape(x.shape)}, got shape {target_array.shape}"
        )
    y = _class_index_targets(x, target_array)
    _check_target_bounds(y, classes, ignore_index)
    return x, classes, w, y


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Loss:
    r"""Negative log-likelihood of class-index targets, like ``F.nll_loss``.

    $$
    \ell_i = -[y_i \ne \text{ignore}]\; w_{y_i}\, \text{input}_{i, y_i}, \qquad
    \text{mean} = \frac{\sum_i \ell_i}{\sum_{i:\,y_i \ne \text{ignore}} w_{y_i}}
    $$

    ``input`` is used as given: it does not have to be log-probabilities (torch does not check either). Only the
    target column is read, so a NaN elsewhere in a row does not matter.

    Parameters
    ----------
    input : array_like
        Shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : array_like
        Integer class indices, the input's shape without the class dimension.
    weight, ignore_index, reduction
        As in [`cross_entropy`][xe_verify.functional.cross_entropy].

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Examples
    --------
    >>> from xe_verify.functional import nll_loss
    >>> nll_loss([[-0.5, -1.0], [-2.0, -0.1]], [0, 1], weight=[1.0, 3.0])  # (0.5 * 1 + 0.1 * 3) / (1 + 3)
    np.float64(0.2)
    """
    reduction = check_reduction(reduction)
    ignore_index = _check_ignore_index(ignore_index)
    x, _, w, y = _nll_arguments(input, target, weight, ignore_index)
    layout = RowLayout(x)

    def row_losses(block: Block, rows: _RowTargets) -> tuple[Float64Array, tuple[float, ...]]:
        values = layout.gather(block, rows.picked).astype(np.float64)
        # (inside _class_index_blocks' errstate: NaN and infinities follow torch without warnings)
        return -(values if rows.weight is None else rows.weight * values), ()

    # Only the target column is read, from the input as it is (no float64 copy): blocks count rows, not elements.
    output, sums = _class_index_blocks(layout, y, w, ignore_index, reduction, row_losses, extras=0, columns=1)
    if output is not None:
        return output.reshape(_output_shape(x.shape))
    return _finish(None, sums[0], reduction, sums[1])


# --------------------------------------------------------------------------------------------------------------------
# Binary cross-entropy


def _finish(output: Float64Array | None, total: float, reduction: str, count: float) -> Loss:
    """The result of a loss from its values (kept for ``none``), their sum and the mean's denominator ``count``."""
    if reduction == "none":
        assert output is not None
        return output
    if reduction == "sum":
        summed: np.float64 = np.float64(total)
        return summed
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean: np.float64 = np.float64(total) / np.float64(count)
    return mean


def _same_shape_target(x: np.ndarray[Any, Any], target: Any, message: str) -> np.ndarray[Any, Any]:
    t = as_real(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"target: {message.format(target=t.shape, input=x.shape)}")
    return t


def _broadcast_weight(weight: Any, shape: tuple[int, ...], name: str = "weight") -> Float64Array | None:
    if weight is None:
        return None
    w = as_float64(weight, name)
    check_broadcasts_to(w, shape, name, "input")
    return w


Array = np.ndarray[Any, Any]


def _bce_arguments(input: Any, target: Any, weight: Any, check_range: bool) -> tuple[Array, Array, Array | None]:
    """Validate ``binary_cross_entropy``'s arguments: probabilities, targets of their shape, a broadcast weight."""
    p = as_real(input, "input")
    t = _same_shape_target(
        p,
        target,
        "Using a target size ({target}) that is different to the input size ({input}) is deprecated. "
        "Please ensure they have the same size.",
    )
    w = _broadcast_weight(weight, p.shape)
    if check_range:
        check_in_unit_interval(p, "input")
        check_in_unit_interval(t, "target")
    return p, t, w


def _bce_with_logits_arguments(
    input: Any, target: Any, weight: Any, pos_weight: Any
) -> tuple[Array, Array, Array | None, Array | None]:
    """Validate ``binary_cross_entropy_with_logits``'s arguments: logits, targets of their shape, two weights."""
    x = as_real(input, "input")
    t = _same_shape_target(x, target, "Target size ({target}) must be the same as input size ({input})")
    return x, t, _broadcast_weight(weight, x.shape), _broadcast_weight(pos_weight, x.shape, "pos_weight")


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    *,
    check_range: bool = True,
) -> Loss:
    r"""Binary cross-entropy of probabilities, like ``F.binary_cross_entropy`` (with its log clamp at -100).

    $$
    \ell = -w\big(t \max(\log p, -100) + (1 - t)\max(\operatorname{log1p}(-p), -100)\big),
    \qquad \text{mean} = \frac{\sum \ell}{\text{numel}}
    $$

    The clamp bounds each element's loss by ``100 w`` (``p = 0, t = 1`` gives exactly 100) and keeps
    ``0 * log 0`` from becoming NaN. ``log1p(-p)`` keeps the digits of tiny ``p`` (``p = 1e-17, t = 0`` gives
    ``1e-17``; ``-log(1 - p)`` gives 0). The weights are not in the mean's denominator.

    Parameters
    ----------
    input : array_like
        Probabilities ``p`` in [0, 1].
    target : array_like
        Targets ``t`` in [0, 1], the input's shape.
    weight : array_like, optional
        Broadcast to the input's shape (it may not enlarge it).
    reduction : {"mean", "sum", "none"}
    check_range : bool, default True
        torch (since 2.1, PR #97814) raises when ``p`` or ``t`` is outside [0, 1] or NaN, and so does the default.
        ``check_range=False`` computes the formula above for any values, which is what torch returned before the
        check: targets of 2 or 4 then give a finite loss that can be negative, and ``p`` outside [0, 1] gives NaN.

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Raises
    ------
    ValueError
        A value outside [0, 1] (with ``check_range=True``), mismatched shapes, a weight that does not broadcast,
        an unknown ``reduction``.

    Examples
    --------
    >>> from xe_verify.functional import binary_cross_entropy
    >>> binary_cross_entropy([0.0, 1.0, 0.5], [1.0, 0.0, 0.5], reduction="none")  # the clamp: 100, not inf
    array([100.        , 100.        ,   0.69314718])
    >>> round(float(binary_cross_entropy([0.9], [4.0], check_range=False)), 6)  # old torch: no range check
    -6.486313
    """
    reduction = check_reduction(reduction)
    p, t, w = _bce_arguments(input, target, weight, check_range)
    output, total = elementwise(_binary_cross_entropy_kernel, [p, t, w], p.shape, keep=reduction == "none")
    return _finish(output, total, reduction, p.size)


def _binary_cross_entropy_kernel(p: Float64Array, t: Float64Array, w: Float64Array | None) -> Float64Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_one_minus_p = np.maximum(np.log1p(-p), -100.0)
        losses = -(t * log_p + (1.0 - t) * log_one_minus_p)
        if w is not None:
            losses *= w
    return losses


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Loss:
    r"""Binary cross-entropy of logits, like ``F.binary_cross_entropy_with_logits``: stable for any logit.

    With $\ell_w = 1 + (\text{pos\_weight} - 1)\, t$ (1 without ``pos_weight``):

    $$
    \ell = w\big((1 - t)\, x + \ell_w \operatorname{softplus}(-x)\big),
    \qquad \operatorname{softplus}(-x) = \max(-x, 0) + \operatorname{log1p}(e^{-|x|}),
    \qquad \text{mean} = \frac{\sum \ell}{\text{numel}}
    $$

    For finite values it is evaluated as ``(1 - t) x + l_w log1p(exp(-x))`` when ``x >= 0`` and as
    ``pos_weight t (-x) + l_w log1p(exp(x))`` when ``x < 0`` (the same value, without the cancellation between
    ``(1 - t) x`` and ``-x``): sums of non-negative terms for ``t`` in [0, 1].

    Targets are **not** range-checked (torch does not check them either): ``t`` outside [0, 1] computes the same
    formula, so the loss can be negative and is unbounded below (``x = 0.3, t = 4`` gives about -0.346). torch
    PRs #177506 and #188297 (2026) propose a check; this mirrors torch 2.13. Infinite logits follow torch too:
    ``x = +inf, t = 1`` and ``x = -inf`` (any ``t``) give NaN, from ``(1 - t) x``.

    Parameters
    ----------
    input : array_like
        Logits ``x``.
    target : array_like
        Targets ``t``, the input's shape.
    weight : array_like, optional
        Broadcast to the input's shape.
    reduction : {"mean", "sum", "none"}
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against the input from the last dimension (per class for an
        ``(N, C)`` input). Negative values are allowed.

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Examples
    --------
    >>> from xe_verify.functional import binary_cross_entropy_with_logits as bce_logits
    >>> bce_logits([100.0, -1e4], [1.0, 0.0], reduction="none")  # exp(-100) and exp(-1e4): nothing overflows
    array([3.72007598e-44, 0.00000000e+00])
    >>> round(float(bce_logits([0.3], [4.0])), 6)  # a target outside [0, 1]: a negative loss, as in torch
    -0.345645
    """
    reduction = check_reduction(reduction)
    x, t, w, pw = _bce_with_logits_arguments(input, target, weight, pos_weight)
    output, total = elementwise(_bce_with_logits_kernel, [x, t, w, pw], x.shape, keep=reduction == "none")
    return _finish(output, total, reduction, x.size)


def _bce_with_logits_kernel(
    x: Float64Array, t: Float64Array, w: Float64Array | None, pw: Float64Array | None
) -> Float64Array:
    with np.errstate(invalid="ignore", over="ignore"):
        softplus_part = _softplus_of_negative_abs(x)
        # l_w = 1 + (pw - 1) t, as (1 - t) + pw t: non-negative parts, no cancellation for a tiny pos_weight.
        log_weight = 1.0 if pw is None else (1.0 - t) + pw * t
        # pw (t |x|), not (pw t) |x|: a tiny pos_weight times a tiny t would round in the subnormal range first.
        positive_part = t * -x if pw is None else pw * (t * -x)
        losses = np.where(x >= 0, (1.0 - t) * x, positive_part) + log_weight * softplus_part
        finite = np.isfinite(x) & np.isfinite(t)
        if not finite.all():
            # torch's own expression, so that NaN and infinities land where torch's do.
            torch_log_weight = 1.0 if pw is None else 1.0 + (pw - 1.0) * t
            literal = (1.0 - t) * x + torch_log_weight * (softplus_part + np.maximum(-x, 0.0))
            losses = np.where(finite, losses, literal)
        if w is not None:
            losses *= w
        _round_tiny_softplus_once(losses, x, t, w, log_weight)
    return np.asarray(losses, dtype=np.float64)


def _round_tiny_softplus_once(
    losses: Float64Array, x: Float64Array, t: Float64Array, w: Float64Array | None, log_weight: Float64Array | float
) -> None:
    """Where the loss is ``w l_w log1p(exp(-|x|))`` alone and that is tiny, round it once (in place).

    For ``|x|`` above 665 the softplus is ``exp(-|x|)``, near or in the subnormal range, and the weights would
    multiply its rounding error; it is computed scaled by ``2^PARTITION_SCALE`` instead (see ``xe_verify._softmax``).
    """
    tiny = np.flatnonzero((np.abs(x) > -np.log(TINY_PARTITION)) & np.isfinite(x) & ((x < 0) | (t == 1.0)))
    if not tiny.size:
        return
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = scaled_exp(-np.abs(x[tiny])) * np.broadcast_to(log_weight, x.shape)[tiny]
        if w is not None:
            scaled *= w[tiny]
        # Below 0 the loss has a pw t |x| part too: only where it is 0 (t = 0) is the softplus all there is.
        alone = (x[tiny] >= 0) | (t[tiny] == 0.0)
        losses[tiny[alone]] = np.ldexp(scaled[alone], -PARTITION_SCALE)


# --------------------------------------------------------------------------------------------------------------------
# KL divergence


def kl_div(input: Any, target: Any, reduction: str = "mean", log_target: bool = False) -> Loss:
    r"""Pointwise KL divergence, like ``F.kl_div``: ``input`` is **log q**, ``target`` is p (or log p).

    $$
    \ell = \begin{cases} t\,(\log t - x) & \text{log\_target=False (0 where } t = 0\text{)} \\
                         e^{t}\,(t - x) & \text{log\_target=True} \end{cases}
    $$

    Reductions: ``"sum"``; ``"mean"`` divides by the number of elements (torch's default; it is *not* the KL
    divergence of the distributions, and torch warns about it); ``"batchmean"`` divides by ``input.shape[0]``, which
    for a 1-D input is the number of classes, so it equals ``"mean"`` there (torch does the same). ``input`` and
    ``target`` broadcast against each other.

    Mirrors torch's edge cases: ``t = 0`` with ``x = -inf`` or NaN gives NaN (``0 * -inf``), ``t < 0`` gives NaN,
    ``t = 1`` with ``x = -inf`` gives ``inf``.

    For ``0 < t < inf`` and finite ``x`` the term is evaluated as ``t (log t - x)``. Where ``x`` is close to
    ``log t`` (a good model) the difference cancels, and the float64 ``log t`` would leave only its own rounding error
    (torch returns 0 for ``x = fl(log t)``, where the exact term is about ``1e-17 t``): there ``log t`` is taken in
    double-double, to ``2**-69``, or to ``2**-100`` when ``x`` is within ``2**-16`` of ``log t`` relatively. The
    term is then within 4 ULP (measured: 3.8 at most, just below the cancellation at which double-double takes
    over) as long as ``log t - x`` is not below about ``2**-48 |log t|``. Closer still, as for ``x = fl(log t)``
    itself, the term's digits are those of ``log t`` from its 54th bit on, and double-double knows ``log t`` to
    about ``2**-100``: the error stays below ``2**-100 t |log t|`` but can be hundreds of ULP of the term
    (``kl_div([log(0.63)], [0.63])``: 107 ULP; about 7% of such terms exceed 4 ULP). The double-double terms cost
    about 30 times the float64 ones: an input whose every term cancels (a model close to the target throughout)
    takes some 25 to 35 times as long as the plain formula.

    Parameters
    ----------
    input : array_like
        Log-probabilities ``log q``.
    target : array_like
        Probabilities ``p``, or ``log p`` with ``log_target=True``.
    reduction : {"mean", "batchmean", "sum", "none"}
    log_target : bool, default False

    Returns
    -------
    numpy.float64 or numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.functional import kl_div
    >>> p, q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    >>> round(float(kl_div(np.log(q), p, reduction="batchmean")), 6)  # KL(p || q) = 0.5 log(4/3)
    0.143841
    """
    reduction = check_reduction(reduction, ("none", "mean", "sum", "batchmean"))
    x = as_real(input, "input")
    t = as_real(target, "target")
    try:
        shape = np.broadcast_shapes(x.shape, t.shape)
    except ValueError:
        raise ValueError(
            f"target: shape {t.shape} does not broadcast with the input shape {x.shape}; expected shapes that "
            "broadcast against each other"
        ) from None
    kernel = _kl_div_log_target_kernel if log_target else _kl_div_kernel
    output, total = elementwise(kernel, [x, t], shape, keep=reduction == "none")
    if reduction == "batchmean":
        return _finish(output, total, "sum", 1) if x.ndim == 0 else _finish(output, total, "mean", x.shape[0])
    return _finish(output, total, reduction, int(np.prod(shape, dtype=np.int64)))


#: ``kl_div``'s term is recomputed with a more accurate ``log t`` where ``|log t - x| < |log t| / 4``: there the
#: rounding error of ``log t`` (up to 0.58 ULP for numpy's) is amplified more than 4 times and can push the term past
#: 4 ULP (measured: at most 3.8 ULP for a cancellation factor below 4, 7.4 ULP between 4 and 8, 14 between 8 and 16,
#: 55 between 16 and 64). The price: for x normal and t uniform in (0, 1), 7% of the terms cancel that much, and the
#: double-double logarithm (about 90 numpy operations on them per chunk) doubles kl_div's time on such inputs (with a
#: factor of 8: 1.4 times, 16: 1.2, 32: 1.05; measured on 10**7 float32 elements, 2 threads).
_KL_DIV_CANCELLATION = 4.0

#: Up to this cancellation factor ``log t`` to ``2**-69`` is enough (it adds at most ``2**-53`` of the term);
#: beyond it ``log t`` is taken to ``2**-100``. (Two levels because the second costs five times the first, and all
#: but a few in ``10**5`` cancelling terms of a typical input need only the first.)
_KL_DIV_DEEP_CANCELLATION = 2.0**16


def _kl_div_kernel(x: Float64Array, t: Float64Array) -> Float64Array:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_t = np.log(t)
        # For 0 < t < inf, t * (log t - x) rounds less than torch's xlogy(t, t) - t * x and has the same infinities
        # and NaN for any x; elsewhere (t <= 0, inf or NaN) torch's own expression is kept.
        in_domain = np.isfinite(log_t)
        literal = None if in_domain.all() else np.where(t == 0, 0.0, t * log_t) - t * x
        losses = log_t - x
        losses *= t
        if literal is not None:
            np.copyto(losses, literal, where=~in_domain)
        # x close to log t (a good model): the difference cancels, and log t's rounding error dominates it. The test
        # |x / log t - 1| < 1 / K is |log t - x| < |log t| / K, computed in log_t's buffer: a chunk-sized temporary
        # costs more here than the arithmetic (page faults). (NaN compares false: t = 1, infinities.)
        ratio = np.divide(x, log_t, out=log_t)
        ratio -= 1.0
        close = np.flatnonzero(np.abs(ratio, out=ratio) < 1.0 / _KL_DIV_CANCELLATION)
        if close.size:
            x_close, t_close = x[close], t[close]
            difference = _log_minus(t_close, x_close, precise=False)
            losses[close] = t_close * difference
            deep = np.flatnonzero(np.abs(difference) * _KL_DIV_DEEP_CANCELLATION < np.abs(x_close))
            if deep.size:
                t_deep = t_close[deep]
                losses[close[deep]] = t_deep * _log_minus(t_deep, x_close[deep], precise=True)
        return losses


def _log_minus(t: Float64Array, x: Float64Array, *, precise: bool) -> Float64Array:
    """``log t - x`` for ``0 < t < inf`` and finite ``x``, rounded once, with ``log t`` in double-double.

    ``log t = H + L`` to ``2**-100`` of itself (``2**-60`` unless ``precise``, see ``xe_verify._double_double.log``),
    and ``(H - x) + L`` is rounded once (TwoSum keeps ``H - x`` exact): the error is half an ULP of the result plus
    the logarithm's error, ``2**-100 |log t|``, which is ``2**-47`` of ``|log t - x|`` even when ``x`` is the
    float64 nearest ``log t``.
    """
    log_t = dd.log(t, precise=precise)
    head = dd.two_sum(log_t.hi, -x)
    return head.hi + (head.lo + log_t.lo)


def _kl_div_log_target_kernel(x: Float64Array, t: Float64Array) -> Float64Array:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(np.exp(t) * (t - x), dtype=np.float64)
