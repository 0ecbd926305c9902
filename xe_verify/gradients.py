r"""Closed-form gradients of the losses in [`xe_verify.functional`][xe_verify.functional] with respect to ``input``.

Each function has the name and the arguments of the loss it differentiates, plus ``grad_output``, and returns
$\partial L / \partial\,\text{input}$ as a float64 array of the input's shape:

* for ``reduction="mean"`` or ``"sum"`` (and ``"batchmean"``), ``grad_output`` is the scalar $\bar L$ that the loss's
  gradient is multiplied by (default 1), so the result is $\bar L\, \partial L / \partial x$;
* for ``reduction="none"`` it is an array $\bar\ell$ of the loss's shape (default ones) and the result is the
  vector-Jacobian product $\sum_i \bar\ell_i\, \partial \ell_i / \partial x$, as ``loss.backward(grad_output)``
  gives it in torch.

The formulas are torch's own backward formulas (torch 2.13, ATen's ``log_softmax_backward``, ``nll_loss_backward``,
``binary_cross_entropy_backward`` and ``binary_cross_entropy_with_logits_backward``, and autograd through the
composite ``kl_div`` and probability-target cross-entropy), evaluated in the same order, so that NaN and infinities
land where torch's do: a zero ``mean`` denominator, a NaN row whose target is ignored (its ``cross_entropy``
gradient is NaN, its ``nll_loss`` gradient 0), ``p`` at 0 or 1 in ``binary_cross_entropy``. Only the gradient with
respect to ``input`` is computed: torch refuses a gradient for ``weight`` and ``pos_weight`` on every path but the
probability-target cross-entropy, where the loss is linear in the weight.

Arguments are validated exactly as the losses validate them (the same helpers, the same messages).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xe_verify._arrays import (
    Float64Array,
    as_float64,
    as_real,
    check_broadcasts_to,
    check_reduction,
)
from xe_verify._blocks import Block, RowLayout, for_each, workspace
from xe_verify._softmax import shift_rows
from xe_verify.functional import (
    _bce_arguments,
    _bce_with_logits_arguments,
    _check_has_class_dim,
    _check_ignore_index,
    _check_probability_target,
    _class_index_targets,
    _class_weight,
    _counted,
    _elementwise_values,
    _label_smoothing,
    _nll_arguments,
    _output_shape,
    _sigmoid_kernel,
    _valid_targets,
)

__all__ = [
    "BCE_DENOMINATOR_GUARD",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "nll_loss",
]


#: torch's guard in the BCE gradient's denominator, ``max(p (1 - p), EPSILON)``: ATen's ``EPSILON = 1e-12`` is a
#: ``float`` constant, so in float64 it is float32(1e-12) = 9.999999960041972e-13, not 1e-12 (torch-semantics §3).
#: At ``p = 0, t = 1`` the gradient is ``-1 / BCE_DENOMINATOR_GUARD = -1000000003995.8029``.
BCE_DENOMINATOR_GUARD: float = float(np.float32(1e-12))


def _grad_output(grad_output: Any, reduction: str, loss_shape: tuple[int, ...]) -> Float64Array:
    """``grad_output`` as float64: a 0-d array for a reduced loss, an array of the loss's shape for ``none``."""
    if grad_output is None:
        return np.ones(loss_shape if reduction == "none" else ())
    upstream = as_float64(grad_output, "grad_output")
    if reduction == "none":
        check_broadcasts_to(upstream, loss_shape, "grad_output", "loss (reduction='none')")
        return np.broadcast_to(upstream, loss_shape)
    if upstream.shape != ():
        raise ValueError(
            f"grad_output: reduction={reduction!r} gives a scalar loss, so grad_output must be a scalar; got shape "
            f"{upstream.shape}"
        )
    return upstream


# --------------------------------------------------------------------------------------------------------------------
# Softmax losses: the gradient with respect to the log-softmax, then log_softmax's backward.


def _log_softmax_backward(x: np.ndarray[Any, Any], fill: Any) -> Float64Array:
    """``g - softmax(x) * sum_c g`` per row, where ``fill(block, rows_view)`` writes ``g = dL/d log_softmax``.

    This is ATen's ``log_softmax_backward`` (``grad - exp(output) * grad.sum(dim)``), with the softmax of
    ``xe_verify._softmax``. A row whose softmax is NaN (a NaN or ``+inf`` logit, all ``-inf``) gets a NaN gradient
    even where ``g`` is 0, as in torch.
    """
    gradient = np.empty(x.shape)
    if gradient.size == 0:
        return gradient
    layout, output = RowLayout(x), RowLayout(gradient)

    def work(block: Block) -> None:
        # Write straight into the gradient where its layout allows a 2-D view of the block, else through buffer 6.
        view = output.rows_view(block)
        positions = layout.row_slice(block)
        rows = view if view is not None else workspace(6, positions.stop - positions.start, layout.classes)
        fill(block, rows)
        shifted = shift_rows(layout.load(block), in_workspace=True)
        with np.errstate(invalid="ignore", over="ignore"):
            total = rows.sum(axis=-1, keepdims=True)
            # Buffers 2 and 4 are free once shift_rows has returned (see xe_verify._softmax).
            probabilities = shifted.exp_shifted(out=workspace(2, *rows.shape), scratch=workspace(4, *rows.shape))
            probabilities /= np.exp(shifted.log_partition)
            probabilities *= total
            rows -= probabilities
        if view is None:
            output.store(block, rows)

    for_each(work, layout.blocks(), x.size)
    return gradient


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output: Any = None,
) -> Float64Array:
    r"""Gradient of [`cross_entropy`][xe_verify.functional.cross_entropy] with respect to the logits.

    With $p = \operatorname{softmax}(x)$ along the class dimension, $w_c$ the class weights (1 without ``weight``),
    $\varepsilon$ the label smoothing, $C$ the number of classes and $s_i$ the upstream gradient of position $i$
    ($\bar L$ for ``sum``, $\bar L / W$ for ``mean``, $\bar\ell_i$ for ``none``):

    **Class-index target** $y$, with $v_i = [y_i \ne \text{ignore}]$ and $S_w = \sum_c w_c$:

    $$
    \frac{\partial L}{\partial x_{i}} = v_i\, s_i \Big((1-\varepsilon)\, w_{y_i} (p_i - e_{y_i})
        + \frac{\varepsilon}{C} (S_w\, p_i - w)\Big),
    \qquad W = \sum_{i:\, v_i} w_{y_i}
    $$

    **Probability target** $q$, with $q' = (1-\varepsilon) q + \varepsilon / C$ (any values: off the simplex the
    gradient is *not* $p - q$), and $W = \text{input.size} / C$ for ``mean``:

    $$
    \frac{\partial L}{\partial x_{i}} = s_i \Big(\big(\textstyle\sum_c w_c q'_{i,c}\big)\, p_i - w \odot q'_i\Big)
    $$

    Both are evaluated in torch's order: first $g = \partial L / \partial\,\text{lsm}$, which is
    $-s_i w_c q'_{i,c}$, or for class indices $-s_i \varepsilon w_c / C$ in every class plus
    $-s_i (1-\varepsilon) w_{y_i}$ at the target; then log_softmax's backward, $g - p \sum_c g$. So torch's corners
    follow: ignored positions get 0, but a NaN row whose target is ignored gets NaN (``0 * NaN`` in the second step;
    [`nll_loss`][xe_verify.gradients.nll_loss] gives 0 there); a zero ``mean`` denominator gives NaN (or infinities)
    in the rows that count and 0 in the ignored ones. Every row sums to 0 (``log_softmax`` does not change when a
    constant is added to a row), whatever the target, weights and smoothing.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As in [`xe_verify.functional.cross_entropy`][xe_verify.functional.cross_entropy].
    grad_output : array_like, optional
        The upstream gradient: a scalar for ``mean`` and ``sum`` (default 1), an array of the loss's shape for
        ``none`` (default ones).

    Returns
    -------
    numpy.ndarray
        float64, the input's shape.

    Examples
    --------
    >>> from xe_verify.gradients import cross_entropy
    >>> cross_entropy([[0.0, 0.0], [0.0, 0.0]], [0, 1])  # (softmax - onehot) / N
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    >>> cross_entropy([[0.0, 0.0]], [[2.0, 0.0]], reduction="sum")  # a target of mass 2: 2 p - q
    array([[-1.,  1.]])
    >>> cross_entropy([[float("nan"), 0.0], [0.0, 0.0]], [-100, 0], reduction="sum")  # ignored, yet NaN
    array([[ nan,  nan],
           [-0.5,  0.5]])
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
        _check_probability_target(x, target_array, ignore_index)
        return _cross_entropy_probabilities(x, target_array, w, reduction, smoothing, grad_output)

    y = _class_index_targets(x, target_array)
    valid, safe_y = _valid_targets(y, classes, ignore_index)
    target_weight = np.ones(safe_y.shape) if w is None else w[safe_y] if classes else np.zeros(safe_y.shape)
    upstream = _grad_output(grad_output, reduction, _output_shape(x.shape))
    position_upstream = np.broadcast_to(upstream, _output_shape(x.shape)).reshape(-1)
    # torch: (1 - eps) * nll_loss(lsm) + (eps / C) * smoothing term, each branch with its own upstream gradient;
    # without smoothing it is nll_loss alone (no (1 - eps) factor, no smoothing branch: 0/0 must not appear).
    nll_upstream = position_upstream * (1.0 - smoothing) if smoothing > 0.0 else position_upstream
    smooth_upstream = position_upstream * (smoothing / max(classes, 1))
    if reduction == "mean":
        denominator = np.sum(np.where(valid, target_weight, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            nll_upstream = nll_upstream / denominator
            smooth_upstream = smooth_upstream / denominator
    # nll_loss's backward writes only the counted positions; the smoothing term is masked the same way.
    with np.errstate(invalid="ignore"):
        target_gradient = np.where(valid, -nll_upstream if w is None else target_weight * -nll_upstream, 0.0)
    smooth_upstream = np.where(valid, smooth_upstream, 0.0)
    layout = RowLayout(x)

    def fill(block: Block, rows: Float64Array) -> None:
        positions = layout.row_slice(block)
        with np.errstate(invalid="ignore", over="ignore"):
            if smoothing > 0.0:
                np.multiply(-smooth_upstream[positions, None], 1.0 if w is None else w, out=rows)
            else:
                rows[...] = 0.0
            counted = np.flatnonzero(valid[positions])
            rows[counted, safe_y[positions][counted]] += target_gradient[positions][counted]

    return _log_softmax_backward(x, fill)


def _cross_entropy_probabilities(
    x: np.ndarray[Any, Any],
    target: np.ndarray[Any, Any],
    w: Float64Array | None,
    reduction: str,
    smoothing: float,
    grad_output: Any,
) -> Float64Array:
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    upstream = _grad_output(grad_output, reduction, _output_shape(x.shape))
    layout, target_layout = RowLayout(x), RowLayout(target)
    position_upstream = np.broadcast_to(upstream, _output_shape(x.shape)).reshape(-1)
    if reduction == "mean":
        # torch divides by input.numel() / C, the number of positions, whatever the weights.
        with np.errstate(divide="ignore", invalid="ignore"):
            position_upstream = position_upstream / np.float64(layout.rows)

    def fill(block: Block, rows: Float64Array) -> None:
        q = target_layout.load(block, index=5)
        with np.errstate(invalid="ignore", over="ignore"):
            if smoothing > 0.0:
                q *= 1.0 - smoothing
                q += smoothing / classes
            # d/d lsm of -(lsm * q' * w).sum(): -upstream * w * q'.
            scaled = -position_upstream[layout.row_slice(block), None]
            np.multiply(scaled * (1.0 if w is None else w), q, out=rows)

    return _log_softmax_backward(x, fill)


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    grad_output: Any = None,
) -> Float64Array:
    r"""Gradient of [`nll_loss`][xe_verify.functional.nll_loss] with respect to ``input``.

    $$
    \frac{\partial L}{\partial\,\text{input}_{i,c}} = -[c = y_i]\,[y_i \ne \text{ignore}]\; s_i\, w_{y_i},
    \qquad s_i = \bar L / W \text{ (mean)},\ \bar L \text{ (sum)},\ \bar\ell_i \text{ (none)},
    \qquad W = \sum_{i:\, y_i \ne \text{ignore}} w_{y_i}
    $$

    It does not depend on ``input`` at all: a NaN anywhere gives a finite gradient (torch agrees). A zero ``mean``
    denominator gives NaN or infinities at the counted targets, 0 elsewhere (torch: ``w * -(grad / 0)``).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As in [`xe_verify.functional.nll_loss`][xe_verify.functional.nll_loss].
    grad_output : array_like, optional
        A scalar for ``mean`` and ``sum`` (default 1), an array of the loss's shape for ``none`` (default ones).

    Returns
    -------
    numpy.ndarray
        float64, the input's shape.

    Examples
    --------
    >>> from xe_verify.gradients import nll_loss
    >>> nll_loss([[-0.5, -1.0], [-2.0, -0.1]], [0, 1], weight=[1.0, 3.0])  # -w_y / (1 + 3) at the targets
    array([[-0.25,  0.  ],
           [ 0.  , -0.75]])
    """
    reduction = check_reduction(reduction)
    ignore_index = _check_ignore_index(ignore_index)
    x, classes, w, y = _nll_arguments(input, target, weight, ignore_index)
    valid, safe_y = _counted(y, ignore_index)
    target_weight = np.ones(safe_y.shape) if w is None else w[safe_y] if classes else np.zeros(safe_y.shape)
    upstream = _grad_output(grad_output, reduction, _output_shape(x.shape))
    scale = np.broadcast_to(upstream, _output_shape(x.shape)).reshape(-1)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = scale / np.sum(np.where(valid, target_weight, 0.0))
    gradient = np.zeros(x.shape)
    if gradient.size:
        with np.errstate(invalid="ignore"):
            values = np.where(valid, -scale if w is None else target_weight * -scale, 0.0)
        view = RowLayout(gradient).view
        positions = view.shape[:2]
        np.put_along_axis(view, safe_y.reshape(positions)[..., None], values.reshape(positions)[..., None], -1)
    return gradient


# --------------------------------------------------------------------------------------------------------------------
# Elementwise losses


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    *,
    check_range: bool = True,
    grad_output: Any = None,
) -> Float64Array:
    r"""Gradient of [`binary_cross_entropy`][xe_verify.functional.binary_cross_entropy] with respect to ``p``.

    $$
    \frac{\partial L}{\partial p} = s\, w\, \frac{p - t}{\max\big(p (1 - p),\ \epsilon\big)},
    \qquad \epsilon = \text{float32}(10^{-12}) = 9.999999960041972 \times 10^{-13},
    \qquad s = \bar L / \text{numel} \text{ (mean)},\ \bar L \text{ (sum)},\ \bar\ell \text{ (none)}
    $$

    This is torch's backward, guard included: not the derivative of the clamped forward (which is 0 where a log
    is clamped), but finite at ``p = 0`` and ``p = 1``: ``p = 0, t = 1`` gives ``-1000000003995.8029``, ``p = t``
    in {0, 1} gives 0. torch in float64, float32 and bfloat16 agrees; in float16 the guard underflows to 0 and torch
    returns ``+-inf`` (and NaN for ``p = t``). This function always gives the float64 value.

    Parameters
    ----------
    input, target, weight, reduction, check_range
        As in [`xe_verify.functional.binary_cross_entropy`][xe_verify.functional.binary_cross_entropy].
    grad_output : array_like, optional
        A scalar for ``mean`` and ``sum`` (default 1), an array of the input's shape for ``none`` (default ones).

    Returns
    -------
    numpy.ndarray
        float64, the input's shape.

    Examples
    --------
    >>> from xe_verify.gradients import binary_cross_entropy
    >>> binary_cross_entropy([0.0, 1.0, 0.5, 1.0], [1.0, 0.0, 0.0, 1.0], reduction="none").tolist()
    [-1000000003995.8029, 1000000003995.8029, 2.0, 0.0]
    >>> float(binary_cross_entropy([0.25, 0.5], [1.0, 1.0])[0])  # (p - t) / (p (1 - p)) / numel
    -2.0
    """
    reduction = check_reduction(reduction)
    p, t, w = _bce_arguments(input, target, weight, check_range)
    upstream = _grad_output(grad_output, reduction, p.shape)
    count = np.float64(p.size) if reduction == "mean" else None

    def kernel(
        p_chunk: Float64Array, t_chunk: Float64Array, w_chunk: Float64Array | None, upstream_chunk: Float64Array
    ) -> Float64Array:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # ATen: grad * (p - t) / max((1 - p) * p, EPSILON), then * weight, then / numel.
            values = upstream_chunk * (p_chunk - t_chunk) / np.maximum((1.0 - p_chunk) * p_chunk, BCE_DENOMINATOR_GUARD)
            if w_chunk is not None:
                values *= w_chunk
            if count is not None:
                values /= count
        return values

    return _elementwise_values(kernel, [p, t, w, upstream], p.shape)


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    grad_output: Any = None,
) -> Float64Array:
    r"""Gradient of [`binary_cross_entropy_with_logits`][xe_verify.functional.binary_cross_entropy_with_logits].

    With $\ell_w = 1 + (\text{pos\_weight} - 1)\, t$ (1 without ``pos_weight``, where the formula is
    $w(\sigma(x) - t)$):

    $$
    \frac{\partial L}{\partial x} = s\, w \big(\ell_w\, \sigma(x) - \text{pos\_weight}\; t\big),
    \qquad s = \bar L / \text{numel} \text{ (mean)},\ \bar L \text{ (sum)},\ \bar\ell \text{ (none)}
    $$

    Evaluated as ``(1 - t) sigmoid(x) - pw t sigmoid(-x)`` (the same value, without the cancellation of
    ``sigmoid(x) - t`` at a saturated logit); infinite values take ATen's ``((pw t + 1) - t) sigmoid(x) - pw t``, so
    ``x = +inf, t = 1`` gives 0 although the loss there is NaN. Any ``t`` is accepted (no range check, as in torch).

    Parameters
    ----------
    input, target, weight, reduction, pos_weight
        As in the loss,
        [`xe_verify.functional.binary_cross_entropy_with_logits`][xe_verify.functional.binary_cross_entropy_with_logits].
    grad_output : array_like, optional
        A scalar for ``mean`` and ``sum`` (default 1), an array of the input's shape for ``none`` (default ones).

    Returns
    -------
    numpy.ndarray
        float64, the input's shape.

    Examples
    --------
    >>> from xe_verify.gradients import binary_cross_entropy_with_logits as bce_logits_gradient
    >>> bce_logits_gradient([0.0, 0.0], [1.0, 0.0], reduction="sum")  # sigmoid(x) - t
    array([-0.5,  0.5])
    >>> bce_logits_gradient([0.0], [1.0], reduction="sum", pos_weight=3.0)  # (1 + 2) 0.5 - 3
    array([-1.5])
    """
    reduction = check_reduction(reduction)
    x, t, w, pw = _bce_with_logits_arguments(input, target, weight, pos_weight)
    upstream = _grad_output(grad_output, reduction, x.shape)
    count = np.float64(x.size) if reduction == "mean" else None

    def kernel(
        x_chunk: Float64Array,
        t_chunk: Float64Array,
        w_chunk: Float64Array | None,
        pw_chunk: Float64Array | None,
        upstream_chunk: Float64Array,
    ) -> Float64Array:
        with np.errstate(invalid="ignore", over="ignore"):
            positive_weight = 1.0 if pw_chunk is None else pw_chunk
            weighted_target = positive_weight * t_chunk
            literal = ((weighted_target + 1.0) - t_chunk) * _sigmoid_kernel(x_chunk) - weighted_target
            # The same value as (1 - t) sigmoid(x) - pw t sigmoid(-x): two non-negative parts for t in [0, 1], so a
            # saturated logit keeps the tail that sigmoid(x) - t rounds away (x = 40, t = 1: -4.2e-18, not 0).
            accurate = (1.0 - t_chunk) * _sigmoid_kernel(x_chunk) - weighted_target * _sigmoid_kernel(-x_chunk)
            values = np.where(np.isfinite(x_chunk) & np.isfinite(t_chunk), accurate, literal)
            values *= upstream_chunk
            if w_chunk is not None:
                values *= w_chunk
            if count is not None:
                values /= count
        return np.asarray(values, dtype=np.float64)

    return _elementwise_values(kernel, [x, t, w, pw, upstream], x.shape)


def _sum_to_shape(values: Float64Array, shape: tuple[int, ...]) -> Float64Array:
    """Sum a broadcast result back to ``shape`` (the adjoint of broadcasting, as autograd does)."""
    leading = values.ndim - len(shape)
    summed = values.sum(axis=tuple(range(leading))) if leading else values
    stretched = tuple(axis for axis, side in enumerate(shape) if side == 1 and summed.shape[axis] != 1)
    if stretched:
        summed = summed.sum(axis=stretched, keepdims=True)
    return np.asarray(summed, dtype=np.float64).reshape(shape)


def kl_div(
    input: Any,
    target: Any,
    reduction: str = "mean",
    log_target: bool = False,
    grad_output: Any = None,
) -> Float64Array:
    r"""Gradient of [`kl_div`][xe_verify.functional.kl_div] with respect to ``input`` (log q).

    $$
    \frac{\partial L}{\partial x} = -s\,t \quad\text{(log\_target=False)}, \qquad
    \frac{\partial L}{\partial x} = -s\,e^{t} \quad\text{(log\_target=True)},
    $$

    with $s = \bar L / n$ for ``mean`` ($n$ the number of elements of the broadcast result), $\bar L /
    \text{input.shape}[0]$ for ``batchmean`` ($\bar L$ for a 0-d input), $\bar L$ for ``sum`` and $\bar\ell$ for
    ``none``. Where ``input`` is smaller than ``target`` and was broadcast, the gradient is summed over the broadcast
    dimensions. It does not depend on ``input``: ``x = -inf`` or NaN gives a finite gradient, ``t = 0`` gives
    ``-0.0`` (torch agrees).

    Parameters
    ----------
    input, target, reduction, log_target
        As in [`xe_verify.functional.kl_div`][xe_verify.functional.kl_div].
    grad_output : array_like, optional
        A scalar for ``mean``, ``batchmean`` and ``sum`` (default 1), an array of the broadcast shape for ``none``
        (default ones).

    Returns
    -------
    numpy.ndarray
        float64, the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.gradients import kl_div
    >>> kl_div(np.log([[0.25, 0.75]]), [[0.5, 0.5]], reduction="batchmean")  # -p / batch
    array([[-0.5, -0.5]])
    >>> kl_div([0.0, 0.0], [[0.5, 0.5], [0.25, 0.75]], reduction="sum")  # summed over the broadcast rows
    array([-0.75, -1.25])
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
    upstream = _grad_output(grad_output, "none" if reduction == "none" else "sum", shape)
    if reduction == "mean":
        count = np.float64(np.prod(shape, dtype=np.int64))
    elif reduction == "batchmean" and x.ndim:
        count = np.float64(x.shape[0])
    else:
        count = np.float64(1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = upstream / count if reduction in {"mean", "batchmean"} else upstream

    def kernel(t_chunk: Float64Array, scale_chunk: Float64Array) -> Float64Array:
        with np.errstate(over="ignore", invalid="ignore"):
            # autograd through xlogy(t, t) - t * x (or exp(t) * (t - x)): -(upstream * t) (or * exp(t)).
            return np.asarray(-(scale_chunk * (np.exp(t_chunk) if log_target else t_chunk)), dtype=np.float64)

    full = _elementwise_values(kernel, [t, scale], shape)
    return _sum_to_shape(full, x.shape)
