"""Hypothesis strategies for testing cross-entropy, NLL, BCE and KL kernels (needs the ``strategies`` extra).

Two layers, both public:

* **Arrays** -- :func:`logits`, :func:`class_index_targets`, :func:`soft_targets`, :func:`probabilities`,
  :func:`bce_targets`, :func:`class_weights`, :func:`broadcastable_weights` -- built on ``hypothesis.extra.numpy``.
  Each takes a shape, or a *strategy* of shapes, so that several arrays drawn in one test agree through
  ``st.shared``::

      shape = st.shared(class_input_shapes(), key="shape")
      @given(x=logits(shape), y=class_index_targets(shape))
      def test_my_kernel(x, y): ...

* **Whole argument sets** -- :func:`cross_entropy_arguments`, :func:`nll_loss_arguments`,
  :func:`binary_cross_entropy_arguments`, :func:`binary_cross_entropy_with_logits_arguments`,
  :func:`kl_div_arguments`, :func:`softmax_arguments` -- dicts of keyword arguments for the function of the same name
  in :mod:`xe_verify.functional` (and ``torch.nn.functional``), drawn over every option combination. An option left
  at its default is *left out* of the dict, so the defaults are exercised as defaults.

Every value is float64 (class indices int64). The values are chosen to shrink to readable cases: small integers
first (which also make exact ties), then the edges that break implementations (``+-max_magnitude``, a logit 40 above
the rest, exact 0 and 1 probabilities, ``1e-17``), then arbitrary floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

__all__ = [
    "ShapeLike",
    "bce_targets",
    "binary_cross_entropy_arguments",
    "binary_cross_entropy_with_logits_arguments",
    "broadcastable_weights",
    "class_index_targets",
    "class_input_shapes",
    "class_weights",
    "cross_entropy_arguments",
    "kl_div_arguments",
    "logits",
    "nll_loss_arguments",
    "probabilities",
    "soft_targets",
    "softmax_arguments",
]

Shape = tuple[int, ...]
#: A shape, or a strategy that draws one (for instance ``st.shared(class_input_shapes(), key="shape")``).
ShapeLike = Shape | st.SearchStrategy[Shape]
Arguments = dict[str, Any]

#: A logit this far above the rest of its row makes a softmax that rounds to one-hot in float64 (exp(-40) ~ 4e-18
#: is below half an ULP of 1): the row where ``log(1 + s)`` loses the loss and ``log1p(s)`` keeps it.
CONFIDENT_GAP = 40.0


def _draw_shape(draw: st.DrawFn, shape: ShapeLike) -> Shape:
    if isinstance(shape, st.SearchStrategy):
        return tuple(draw(shape))
    return tuple(int(side) for side in shape)


def _classes_of(shape: Shape) -> int:
    if not shape:
        raise ValueError("shape: expected (C,), (N, C) or (N, C, d1, ..., dk), got a 0-d shape")
    return shape[0] if len(shape) == 1 else shape[1]


def _target_shape(shape: Shape) -> Shape:
    """The class-index target's shape for an input of ``shape``: the input's without its class dimension."""
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


# --------------------------------------------------------------------------------------------------------------------
# Shapes


def class_input_shapes(
    *,
    min_classes: int = 1,
    max_classes: int = 5,
    max_batch: int = 4,
    max_spatial_dims: int = 2,
    max_side: int = 3,
    allow_empty: bool = False,
) -> st.SearchStrategy[Shape]:
    """Shapes of a softmax loss's input: ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.

    Parameters
    ----------
    min_classes, max_classes : int
        Bounds on ``C`` (``C = 1`` is a legal, degenerate case: every loss is 0).
    max_batch : int
        Largest ``N``.
    max_spatial_dims : int
        Largest ``k``, the number of spatial dimensions after the class dimension.
    max_side : int
        Largest spatial size.
    allow_empty : bool
        Whether ``N`` and the spatial sizes may be 0 (an empty batch: ``mean`` is NaN, ``sum`` is 0).

    Returns
    -------
    SearchStrategy[tuple[int, ...]]
        Shrinks towards ``(min_classes,)``.

    Examples
    --------
    >>> from hypothesis import find
    >>> find(class_input_shapes(), lambda shape: len(shape) == 4)  # the smallest 4-D shape
    (1, 1, 1, 1)
    """
    smallest = 0 if allow_empty else 1

    @st.composite
    def shapes(draw: st.DrawFn) -> Shape:
        classes = draw(st.integers(min_classes, max_classes))
        ndim = draw(st.integers(1, 2 + max_spatial_dims))
        if ndim == 1:
            return (classes,)
        batch = draw(st.integers(smallest, max_batch))
        spatial = draw(st.lists(st.integers(smallest, max_side), min_size=ndim - 2, max_size=ndim - 2))
        return (batch, classes, *spatial)

    return shapes()


# --------------------------------------------------------------------------------------------------------------------
# Arrays


def _logit_elements(max_magnitude: float, allow_ties: bool, allow_infinities: bool) -> st.SearchStrategy[float]:
    readable = st.integers(-3, 3).map(float)
    edges = st.sampled_from([CONFIDENT_GAP, -CONFIDENT_GAP, max_magnitude, -max_magnitude])
    elements = st.one_of(readable, edges, _floats(-max_magnitude, max_magnitude))
    if not allow_ties:
        elements = _floats(-max_magnitude, max_magnitude)
    if allow_infinities:
        elements = elements | st.sampled_from([np.inf, -np.inf])
    return elements


@st.composite
def logits(
    draw: st.DrawFn,
    shape: ShapeLike | None = None,
    *,
    max_magnitude: float = 1e4,
    allow_ties: bool = True,
    allow_infinities: bool = False,
    allow_nan: bool = False,
) -> NDArray[np.float64]:
    """Float64 logits of ``shape`` (default: any :func:`class_input_shapes`), with magnitudes up to ``max_magnitude``.

    The elements mix small integers (readable, and exact ties within a row), the edges ``+-40`` (a logit 40 above the
    rest of its row) and ``+-max_magnitude``, and arbitrary floats in ``[-max_magnitude, max_magnitude]``.

    Parameters
    ----------
    shape : tuple of int or SearchStrategy, optional
        The array's shape, or a strategy drawing it.
    max_magnitude : float
        Bound on ``|x|``. Keep it below the dtype's range with room for the loss: ``1e4`` suits float64, float32 and
        bfloat16; float16 (largest 65504) needs the *loss* to stay in range too.
    allow_ties : bool
        With ``False`` all elements are distinct (drawn from the continuous range only).
    allow_infinities : bool
        Whether ``+-inf`` may appear.
    allow_nan : bool
        Whether NaN may appear.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import find
    >>> x = find(logits((2, 3)), lambda x: np.ptp(x, axis=1).max() >= 1e4)
    >>> x.shape, x.dtype, bool(np.abs(x).max() <= 1e4)
    ((2, 3), dtype('float64'), True)
    >>> tied = find(logits((4,)), lambda x: len(set(x)) < 4)  # exact ties are drawn (and shrink to zeros)
    >>> tied
    array([0., 0., 0., 0.])
    """
    actual_shape = _draw_shape(draw, shape if shape is not None else class_input_shapes())
    elements = _logit_elements(max_magnitude, allow_ties, allow_infinities)
    if allow_nan:
        elements = elements | st.just(np.nan)
    unique = not allow_ties
    array = draw(hnp.arrays(np.float64, actual_shape, elements=elements, unique=unique))
    return np.asarray(array, dtype=np.float64)


def _class_index_elements(classes: int, ignore_index: int | None, out_of_range: bool) -> st.SearchStrategy[int]:
    choices: list[st.SearchStrategy[int]] = []
    if classes > 0:
        choices.append(st.integers(0, classes - 1))
    if ignore_index is not None:
        choices.append(st.just(ignore_index))
    if out_of_range or not choices:
        choices.append(st.integers(classes, classes + 2))
        choices.append(st.integers(-3, -1))
        choices.append(st.sampled_from([-100, -101, 2**40, -(2**40)]))
    return st.one_of(choices)


@st.composite
def class_index_targets(
    draw: st.DrawFn,
    input_shape: ShapeLike,
    *,
    ignore_index: int | None = -100,
    out_of_range: bool = False,
) -> NDArray[np.int64]:
    """Int64 class indices for an input of ``input_shape`` (shape: the input's without the class dimension).

    For a ``(C,)`` input the target is 0-d or, as torch also accepts, of shape ``(1,)`` -- except for ``C = 1``,
    where a ``(1,)`` target has the input's shape and would be read as class probabilities.

    Parameters
    ----------
    input_shape : tuple of int or SearchStrategy
        The *input's* shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; share it with :func:`logits`.
    ignore_index : int or None
        A value that may appear among the targets (any integer: torch tests it before the bounds); ``None`` for
        none.
    out_of_range : bool
        Whether indices ``>= C`` and negative ones (``-1``, ``-100``, ``2**40``, ...) may appear. They are
        ``IndexError`` in torch unless equal to ``ignore_index``.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> from hypothesis import find
    >>> y = find(class_index_targets((3, 4)), lambda y: (y == -100).any() and (y == 3).any())
    >>> y.shape, y.dtype, bool(((y == -100) | ((0 <= y) & (y < 4))).all())
    ((3,), dtype('int64'), True)
    >>> int(find(class_index_targets((2, 4), out_of_range=True), lambda y: (y >= 4).any()).max())  # shrinks to C
    4
    """
    shape = _draw_shape(draw, input_shape)
    classes = _classes_of(shape)
    target_shape = _target_shape(shape)
    if len(shape) == 1 and classes != 1:
        target_shape = draw(st.sampled_from([(), (1,)]))
    elements = _class_index_elements(classes, ignore_index, out_of_range)
    return np.asarray(draw(hnp.arrays(np.int64, target_shape, elements=elements)), dtype=np.int64)


@st.composite
def soft_targets(
    draw: st.DrawFn,
    input_shape: ShapeLike,
    *,
    on_simplex: bool = True,
) -> NDArray[np.float64]:
    """Float64 class-probability targets of the input's shape (the class dimension is 0 for 1-D, 1 otherwise).

    Parameters
    ----------
    input_shape : tuple of int or SearchStrategy
        The input's shape; the target has the same one.
    on_simplex : bool
        ``True``: every row is non-negative and sums to 1 up to rounding (one-hot and uniform rows included; a row
        drawn as all zeros becomes uniform). ``False``: any values in ``[-3, 5]``, negative ones and rows that do not
        sum to 1 included -- torch does not check soft targets and computes the same formula.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import find
    >>> q = find(soft_targets((2, 3)), lambda q: (q == 1.0).any())  # a one-hot row
    >>> q.shape, bool(np.allclose(q.sum(axis=1), 1.0)), bool((q >= 0).all())
    ((2, 3), True, True)
    >>> bool((find(soft_targets((2, 3), on_simplex=False), lambda q: (q < 0).any()) < 0).any())
    True
    """
    shape = _draw_shape(draw, input_shape)
    class_axis = 0 if len(shape) == 1 else 1
    if not on_simplex:
        elements = st.one_of(st.integers(-3, 5).map(float), _floats(-3.0, 5.0))
        return np.asarray(draw(hnp.arrays(np.float64, shape, elements=elements)), dtype=np.float64)
    elements = st.one_of(st.integers(0, 3).map(float), _floats(0.0, 1.0))
    mass = np.asarray(draw(hnp.arrays(np.float64, shape, elements=elements)), dtype=np.float64)
    totals = mass.sum(axis=class_axis, keepdims=True)
    uniform = np.ones_like(mass)
    mass = np.where(totals > 0, mass, uniform)
    return np.asarray(mass / mass.sum(axis=class_axis, keepdims=True), dtype=np.float64)


def _probability_elements(allow_edges: bool) -> st.SearchStrategy[float]:
    if not allow_edges:
        return st.one_of(st.just(0.5), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
    return st.one_of(
        st.sampled_from([0.0, 1.0, 0.5]),
        st.sampled_from([1e-17, 1e-50, 1.0 - 2.0**-53]),
        _floats(0.0, 1.0),
    )


@st.composite
def probabilities(
    draw: st.DrawFn,
    shape: ShapeLike | None = None,
    *,
    allow_edges: bool = True,
) -> NDArray[np.float64]:
    """Float64 values in [0, 1], for BCE's input: exact 0 and 1, tiny ``p`` (``1e-17``, ``1e-50``), ``1 - 2**-53``.

    Parameters
    ----------
    shape : tuple of int or SearchStrategy, optional
        Default: any shape of up to 3 dimensions (0-d included).
    allow_edges : bool
        With ``False``: strictly inside (0, 1), and no tiny values.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> from hypothesis import find
    >>> [float(find(probabilities(()), lambda p, v=v: p == v)) for v in (0.0, 1.0, 1e-17)]  # all drawn exactly
    [0.0, 1.0, 1e-17]
    """
    actual_shape = _draw_shape(draw, shape if shape is not None else hnp.array_shapes(min_dims=0, max_dims=3))
    elements = _probability_elements(allow_edges)
    return np.asarray(draw(hnp.arrays(np.float64, actual_shape, elements=elements)), dtype=np.float64)


@st.composite
def bce_targets(
    draw: st.DrawFn,
    shape: ShapeLike,
    *,
    inside: bool = True,
) -> NDArray[np.float64]:
    """Float64 binary targets: hard 0 and 1, soft values in [0, 1], and (``inside=False``) values outside.

    Parameters
    ----------
    shape : tuple of int or SearchStrategy
    inside : bool
        ``True``: in [0, 1]. ``False``: values may also be outside -- ``2`` and ``4`` (the seed notebook's), ``-1``,
        and arbitrary floats in ``[-5, 5]`` -- for ``binary_cross_entropy_with_logits`` (accepted, the loss can go
        negative) and for BCE's range check.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> from hypothesis import find
    >>> float(find(bce_targets((), inside=False), lambda t: t > 1))  # the simplest target outside [0, 1]
    2.0
    """
    actual_shape = _draw_shape(draw, shape)
    elements = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), _floats(0.0, 1.0))
    if not inside:
        elements = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 4.0, -1.0]), _floats(-5.0, 5.0))
    return np.asarray(draw(hnp.arrays(np.float64, actual_shape, elements=elements)), dtype=np.float64)


def _weight_elements(allow_zero: bool, allow_negative: bool, max_weight: float) -> st.SearchStrategy[float]:
    simple = [1.0, 2.0, 0.5] + ([0.0] if allow_zero else [])
    low = -max_weight if allow_negative else (0.0 if allow_zero else 2.0**-10)
    return st.one_of(st.sampled_from(simple), _floats(low, max_weight))


@st.composite
def class_weights(
    draw: st.DrawFn,
    classes: int | st.SearchStrategy[int],
    *,
    allow_zero: bool = True,
    allow_negative: bool = False,
    max_weight: float = 4.0,
) -> NDArray[np.float64]:
    """A float64 weight per class, shape ``(C,)``, as ``cross_entropy`` and ``nll_loss`` take it.

    Parameters
    ----------
    classes : int or SearchStrategy[int]
        ``C``.
    allow_zero : bool
        Whether a weight may be exactly 0 (all zeros included: the ``mean`` is then NaN).
    allow_negative : bool
        Whether weights may be negative (torch accepts them).
    max_weight : float
        Bound on ``|w|``.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> from hypothesis import find
    >>> w = find(class_weights(3), lambda w: (w == 0).any())  # zeros are drawn
    >>> w.shape, bool((w >= 0).all())
    ((3,), True)
    """
    count = draw(classes) if isinstance(classes, st.SearchStrategy) else int(classes)
    elements = _weight_elements(allow_zero, allow_negative, max_weight)
    return np.asarray(draw(hnp.arrays(np.float64, (count,), elements=elements)), dtype=np.float64)


@st.composite
def broadcastable_weights(
    draw: st.DrawFn,
    shape: ShapeLike,
    *,
    allow_zero: bool = True,
    allow_negative: bool = False,
    max_weight: float = 4.0,
) -> NDArray[np.float64]:
    """Float64 weights whose shape broadcasts to ``shape`` without enlarging it (BCE's ``weight``, ``pos_weight``).

    The weight's shape keeps a suffix of ``shape``'s dimensions (aligned from the last, as numpy and torch broadcast),
    each either the full size or 1.

    Parameters
    ----------
    shape : tuple of int or SearchStrategy
        The input's shape.
    allow_zero, allow_negative, max_weight
        As in :func:`class_weights`.

    Returns
    -------
    SearchStrategy[numpy.ndarray]

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import find
    >>> w = find(broadcastable_weights((2, 3)), lambda w: w.ndim == 2 and w.shape != (2, 3))
    >>> 1 in w.shape, np.broadcast_shapes(w.shape, (2, 3))
    (True, (2, 3))
    """
    full = _draw_shape(draw, shape)
    kept = draw(st.integers(0, len(full)))
    suffix = full[len(full) - kept :]
    weight_shape = tuple(draw(st.sampled_from([side, 1])) for side in suffix)
    elements = _weight_elements(allow_zero, allow_negative, max_weight)
    return np.asarray(draw(hnp.arrays(np.float64, weight_shape, elements=elements)), dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------------
# Arguments torch rejects (``allow_invalid=True``): at most one argument is spoiled, so the error has one cause.

#: Reductions no loss accepts. ``"batchmean"`` is kl_div's alone; torch also accepts ``"elementwise_mean"`` (a
#: deprecated spelling of ``"mean"``, with a warning), so it is not drawn.
INVALID_REDUCTIONS = ("avg", "MEAN", "", "batchmean")


def _invalid_reduction(function: str = "") -> st.SearchStrategy[str]:
    return st.sampled_from([r for r in INVALID_REDUCTIONS if not (function == "kl_div" and r == "batchmean")])


@st.composite
def _unbroadcastable_shape(draw: st.DrawFn, shape: Shape) -> Shape:
    """A shape that does not broadcast to ``shape`` without enlarging it: one side changed, or a leading side added."""
    change_a_side = draw(st.booleans())
    if len(shape) > 0 and change_a_side:
        axis = draw(st.integers(0, len(shape) - 1))
        side = shape[axis] + draw(st.integers(1, 2))
        return (*shape[:axis], side, *shape[axis + 1 :])
    return (draw(st.integers(2, 3)), *shape)


def _spoil_class_loss(draw: st.DrawFn, arguments: Arguments, shape: Shape, kinds: list[str]) -> None:
    """Spoil one argument of ``cross_entropy`` / ``nll_loss`` (the kinds listed apply)."""
    classes = _classes_of(shape)
    kind = draw(st.sampled_from(kinds))
    if kind == "reduction":
        arguments["reduction"] = draw(_invalid_reduction())
    elif kind == "label_smoothing":
        arguments["label_smoothing"] = draw(
            st.sampled_from([1.5, 1.0 + 2.0**-52]) | _floats(1.0, 10.0).filter(lambda v: v > 1)
        )
    elif kind == "weight":
        length = draw(st.sampled_from([classes + 1, classes + 2, max(classes - 1, 0)]))
        weight = draw(class_weights(length))
        arguments["weight"] = weight if draw(st.booleans()) else weight.reshape(-1, 1)
    elif kind == "target_index":
        arguments["target"] = draw(
            class_index_targets(shape, ignore_index=arguments.get("ignore_index", -100), out_of_range=True)
        )
    elif kind == "target_shape":
        target = np.asarray(arguments["target"])
        if draw(st.booleans()):
            arguments["target"] = target.reshape(*target.shape, 1)
        else:
            extra = np.zeros((1, *target.shape[1:]) if target.ndim else (2,), dtype=target.dtype)
            arguments["target"] = np.concatenate([target.reshape(-1, *target.shape[1:]), extra])
    elif kind == "soft_ignore_index":
        arguments["ignore_index"] = draw(st.integers(0, classes + 1))
    elif kind == "soft_integer_target":
        arguments["target"] = np.asarray(arguments["target"]).round().astype(np.int64)
    elif kind == "soft_target_for_nll":
        arguments["target"] = draw(soft_targets(shape))
    elif kind == "zero_dimensional_input":
        arguments["input"] = np.asarray(0.5)
        arguments["target"] = np.asarray(0, dtype=np.int64)


def _spoil_elementwise_loss(
    draw: st.DrawFn, arguments: Arguments, shape: Shape, kinds: list[str], function: str = ""
) -> None:
    """Spoil one argument of the BCE losses or ``kl_div``."""
    kind = draw(st.sampled_from(kinds))
    if kind == "reduction":
        arguments["reduction"] = draw(_invalid_reduction(function))
    elif kind in {"weight", "pos_weight"}:
        arguments[kind] = draw(hnp.arrays(np.float64, draw(_unbroadcastable_shape(shape)), elements=st.just(1.0)))
    elif kind == "target_shape":
        wrong = draw(_unbroadcastable_shape(shape))
        arguments["target"] = np.full(wrong, 0.5)


# --------------------------------------------------------------------------------------------------------------------
# Whole argument sets


def _maybe(draw: st.DrawFn, arguments: Arguments, name: str, options: st.SearchStrategy[Any]) -> None:
    """Set ``arguments[name]`` to a drawn option, or leave it out (``None``: the function's default)."""
    value = draw(st.none() | options)
    if value is not None:
        arguments[name] = value


def _label_smoothing_values() -> st.SearchStrategy[float]:
    # 0 and 1 are both legal; a negative value is silently 0 in torch.
    return st.one_of(st.sampled_from([0.0, 0.1, 0.5, 1.0, -0.5]), _floats(0.0, 1.0))


@st.composite
def cross_entropy_arguments(
    draw: st.DrawFn,
    *,
    soft: bool | None = None,
    max_magnitude: float = 1e4,
    max_classes: int = 5,
    allow_empty: bool = False,
    allow_non_finite: bool = False,
    allow_invalid: bool = False,
) -> Arguments:
    """Keyword arguments for ``cross_entropy``: ``input`` and ``target``, and any of the options.

    Draws: class-index or soft targets (on and off the simplex); ``weight`` or none (zeros included);
    ``ignore_index`` default, a custom negative value, a valid class or ``C`` (class-index targets contain it at some
    positions; soft targets get only negative values, the rest is an error); ``reduction`` among ``none``, ``mean``
    (default) and ``sum``; ``label_smoothing`` among 0, 1, values between and a negative one (treated as 0).
    Only calls torch 2.13 accepts are drawn: a ``(C,)`` input with label smoothing gets a 0-d target, never a
    ``(1,)`` one (torch raises a broadcast error for that combination, which it accepts without smoothing).

    Parameters
    ----------
    soft : bool, optional
        ``True`` for probability targets only, ``False`` for class indices only, ``None`` for both.
    max_magnitude : float
        Bound on the logits' magnitude.
    max_classes : int
        Largest ``C``.
    allow_empty : bool
        Whether the batch may be empty.
    allow_non_finite : bool
        Whether the logits may contain ``+-inf`` and NaN (torch's rules for them are in its semantics notes: a
        ``+inf`` or NaN makes the row NaN, ``-inf`` at the target gives ``inf``, ...).
    allow_invalid : bool
        Whether, half of the time, one argument is spoiled in a way torch rejects (an unknown reduction,
        ``label_smoothing > 1``, a weight of the wrong length, an out-of-range or negative class index, a target of the
        wrong shape, ``ignore_index >= 0`` or integer values with probability targets, a 0-d input): for the
        error-agreement law "torch raises if and only if the reference raises". The drawn call may still be valid (an
        out-of-range index can equal ``ignore_index``).

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> from xe_verify.functional import cross_entropy
    >>> arguments = find(cross_entropy_arguments(soft=False), lambda a: a.get("label_smoothing", 0) > 0)
    >>> sorted(arguments), float(cross_entropy(**arguments))  # C = 1: every loss is 0
    (['input', 'label_smoothing', 'target'], 0.0)
    """
    shape = draw(class_input_shapes(max_classes=max_classes, allow_empty=allow_empty))
    classes = _classes_of(shape)
    use_soft = draw(st.booleans()) if soft is None else soft
    x = logits(shape, max_magnitude=max_magnitude, allow_infinities=allow_non_finite, allow_nan=allow_non_finite)
    arguments: Arguments = {"input": draw(x)}
    if use_soft:
        arguments["target"] = draw(soft_targets(shape, on_simplex=draw(st.booleans())))
        _maybe(draw, arguments, "ignore_index", st.sampled_from([-1, -101]))
    else:
        ignore_index = draw(st.sampled_from([-100, -1, classes]) | st.integers(0, classes - 1))
        if ignore_index != -100:
            arguments["ignore_index"] = ignore_index
        arguments["target"] = draw(class_index_targets(shape, ignore_index=ignore_index))
    _maybe(draw, arguments, "weight", class_weights(classes))
    _maybe(draw, arguments, "reduction", st.sampled_from(["none", "sum", "mean"]))
    _maybe(draw, arguments, "label_smoothing", _label_smoothing_values())
    smoothing = arguments.get("label_smoothing", 0.0)
    if len(shape) == 1 and not use_soft and smoothing > 0 and arguments["target"].shape == (1,):
        # torch 2.13 raises "output with shape [] doesn't match the broadcast shape [1]" for a (C,) input with a
        # (1,) target and label smoothing (it accepts that target otherwise): draw the 0-d target instead.
        arguments["target"] = arguments["target"].reshape(())
    if allow_invalid and draw(st.booleans()):
        kinds = ["reduction", "label_smoothing", "weight", "target_shape", "zero_dimensional_input"]
        kinds += ["soft_ignore_index", "soft_integer_target"] if use_soft else ["target_index"]
        _spoil_class_loss(draw, arguments, shape, kinds)
    return arguments


@st.composite
def nll_loss_arguments(
    draw: st.DrawFn,
    *,
    max_magnitude: float = 1e4,
    max_classes: int = 5,
    allow_empty: bool = False,
    allow_non_finite: bool = False,
    allow_invalid: bool = False,
) -> Arguments:
    """Keyword arguments for ``nll_loss``: any real ``input`` (it need not be log-probabilities) and class indices.

    Options as in :func:`cross_entropy_arguments` (class-index targets, no ``label_smoothing``).
    ``allow_non_finite`` lets ``+-inf`` and NaN into the input.
    allow_invalid : bool
        Whether, half of the time, one argument is spoiled in a way torch rejects (an unknown reduction, a weight of the
        wrong length, an out-of-range class index, a target of the wrong shape, a probability target, a 0-d input): for
        the error-agreement law "torch raises if and only if the reference raises". The drawn call may still be valid
        (an out-of-range index can equal ``ignore_index``).

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> from xe_verify.functional import nll_loss
    >>> arguments = find(nll_loss_arguments(), lambda a: a["input"].ndim == 2 and "weight" in a)
    >>> sorted(arguments)
    ['input', 'target', 'weight']
    """
    shape = draw(class_input_shapes(max_classes=max_classes, allow_empty=allow_empty))
    classes = _classes_of(shape)
    x = logits(shape, max_magnitude=max_magnitude, allow_infinities=allow_non_finite, allow_nan=allow_non_finite)
    arguments: Arguments = {"input": draw(x)}
    ignore_index = draw(st.sampled_from([-100, -1, classes]) | st.integers(0, classes - 1))
    if ignore_index != -100:
        arguments["ignore_index"] = ignore_index
    arguments["target"] = draw(class_index_targets(shape, ignore_index=ignore_index))
    _maybe(draw, arguments, "weight", class_weights(classes))
    _maybe(draw, arguments, "reduction", st.sampled_from(["none", "sum", "mean"]))
    if allow_invalid and draw(st.booleans()):
        kinds = ["reduction", "weight", "target_index", "target_shape", "soft_target_for_nll", "zero_dimensional_input"]
        _spoil_class_loss(draw, arguments, shape, kinds)
    return arguments


def _elementwise_shapes(allow_empty: bool) -> st.SearchStrategy[Shape]:
    return hnp.array_shapes(min_dims=0, max_dims=3, min_side=0 if allow_empty else 1, max_side=4)


@st.composite
def binary_cross_entropy_arguments(
    draw: st.DrawFn,
    *,
    inside: bool = True,
    allow_empty: bool = False,
    allow_invalid: bool = False,
) -> Arguments:
    """Keyword arguments for ``binary_cross_entropy``: probabilities, targets, maybe a broadcast weight, a reduction.

    Parameters
    ----------
    inside : bool
        ``True``: ``input`` and ``target`` in [0, 1] (exact 0 and 1 included: the log clamp at -100).
        ``False``: ``target`` may be outside [0, 1] (2, 4, -1, ...) and ``input`` may be outside too or NaN -- what
        torch's range check rejects, and ``check_range=False`` computes (add that key yourself).
    allow_empty : bool
        Whether the shape may have a 0 side.
    allow_invalid : bool
        Whether, half of the time, one argument is spoiled in a way torch rejects besides the values ``inside=False``
        draws (an unknown reduction, a weight that does not broadcast to the input, a target of another shape): for the
        error-agreement law "torch raises if and only if the reference raises". The drawn call may still be valid (an
        out-of-range index can equal ``ignore_index``).

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> from xe_verify.functional import binary_cross_entropy
    >>> arguments = find(binary_cross_entropy_arguments(), lambda a: (a["input"] == 0).any() and a["target"].all())
    >>> arguments["input"], arguments["target"], float(binary_cross_entropy(**arguments))  # the clamp: not inf
    (array(0.), array(1.), 100.0)
    """
    shape = draw(_elementwise_shapes(allow_empty))
    if inside:
        p = draw(probabilities(shape))
    else:
        outside = st.sampled_from([-0.5, 1.5, np.nan, -np.inf, np.inf])
        p = draw(hnp.arrays(np.float64, shape, elements=_probability_elements(True) | outside))
    arguments: Arguments = {"input": np.asarray(p, dtype=np.float64), "target": draw(bce_targets(shape, inside=inside))}
    _maybe(draw, arguments, "weight", broadcastable_weights(shape))
    _maybe(draw, arguments, "reduction", st.sampled_from(["none", "sum", "mean"]))
    if allow_invalid and draw(st.booleans()):
        _spoil_elementwise_loss(draw, arguments, shape, ["reduction", "weight", "target_shape"])
    return arguments


@st.composite
def binary_cross_entropy_with_logits_arguments(
    draw: st.DrawFn,
    *,
    inside: bool | None = None,
    max_magnitude: float = 1e4,
    allow_empty: bool = False,
    allow_non_finite: bool = False,
    allow_invalid: bool = False,
) -> Arguments:
    """Keyword arguments for ``binary_cross_entropy_with_logits``: logits, targets, ``weight``, ``pos_weight``.

    ``pos_weight`` broadcasts from the last dimension (per class for an ``(N, C)`` input); negative values are
    drawn, as torch accepts them.

    Parameters
    ----------
    inside : bool, optional
        ``True``: targets in [0, 1]; ``False``: targets may be outside (2, 4, -1, ...: torch accepts them and the
        loss can be negative); ``None``: either.
    max_magnitude : float
        Bound on the logits' magnitude.
    allow_empty : bool
        Whether the shape may have a 0 side.
    allow_non_finite : bool
        Whether the logits may contain ``+-inf`` and NaN.
    allow_invalid : bool
        Whether, half of the time, one argument is spoiled in a way torch rejects (an unknown reduction, a weight or
        pos_weight that does not broadcast to the input, a target of another shape): for the error-agreement law "torch
        raises if and only if the reference raises". The drawn call may still be valid (an out-of-range index can equal
        ``ignore_index``).

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> from xe_verify.functional import binary_cross_entropy_with_logits
    >>> arguments = find(binary_cross_entropy_with_logits_arguments(), lambda a: "pos_weight" in a)
    >>> sorted(arguments)
    ['input', 'pos_weight', 'target']
    """
    shape = draw(_elementwise_shapes(allow_empty))
    targets_inside = draw(st.booleans()) if inside is None else inside
    arguments: Arguments = {
        "input": draw(
            logits(shape, max_magnitude=max_magnitude, allow_infinities=allow_non_finite, allow_nan=allow_non_finite)
        ),
        "target": draw(bce_targets(shape, inside=targets_inside)),
    }
    _maybe(draw, arguments, "weight", broadcastable_weights(shape))
    _maybe(draw, arguments, "reduction", st.sampled_from(["none", "sum", "mean"]))
    _maybe(draw, arguments, "pos_weight", broadcastable_weights(shape, allow_negative=True))
    if allow_invalid and draw(st.booleans()):
        _spoil_elementwise_loss(draw, arguments, shape, ["reduction", "weight", "pos_weight", "target_shape"])
    return arguments


@st.composite
def kl_div_arguments(
    draw: st.DrawFn,
    *,
    log_target: bool | None = None,
    max_magnitude: float = 50.0,
    allow_empty: bool = False,
    allow_invalid: bool = False,
) -> Arguments:
    """Keyword arguments for ``kl_div``: ``input`` = log q (any reals), ``target`` = p (exact 0 included) or log p.

    Parameters
    ----------
    log_target : bool, optional
        ``True``: the target is ``log p`` (``-inf`` where ``p = 0``); ``False``: ``p``; ``None``: either (the key is
        left out for ``False`` half the time, to exercise the default).
    max_magnitude : float
        Bound on ``|log q|``.
    allow_empty : bool
        Whether the shape may have a 0 side.
    allow_invalid : bool
        Whether, half of the time, one argument is spoiled in a way torch rejects (an unknown reduction, a target whose
        shape does not broadcast with the input's): for the error-agreement law "torch raises if and only if the
        reference raises". The drawn call may still be valid (an out-of-range index can equal ``ignore_index``).

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> arguments = find(kl_div_arguments(), lambda a: a.get("reduction") == "batchmean")
    >>> sorted(arguments)
    ['input', 'reduction', 'target']
    """
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0 if allow_empty else 1, max_side=4))
    use_log_target = draw(st.booleans()) if log_target is None else log_target
    input_elements = st.one_of(st.integers(-3, 0).map(float), _floats(-max_magnitude, max_magnitude))
    p = draw(probabilities(shape))
    arguments: Arguments = {"input": np.asarray(draw(hnp.arrays(np.float64, shape, elements=input_elements)))}
    if use_log_target:
        with np.errstate(divide="ignore"):
            arguments["target"] = np.log(p)
        arguments["log_target"] = True
    else:
        arguments["target"] = p
        _maybe(draw, arguments, "log_target", st.just(False))
    _maybe(draw, arguments, "reduction", st.sampled_from(["none", "sum", "mean", "batchmean"]))
    if allow_invalid and draw(st.booleans()):
        _spoil_elementwise_loss(draw, arguments, shape, ["reduction", "target_shape"], "kl_div")
    return arguments


@st.composite
def softmax_arguments(
    draw: st.DrawFn,
    *,
    max_magnitude: float = 1e4,
    allow_non_finite: bool = False,
) -> Arguments:
    """Keyword arguments for ``softmax``, ``log_softmax`` and ``logsumexp``: ``input`` (1 to 3 dims) and ``dim``.

    ``dim`` is drawn from ``[-ndim, ndim)``: negative axes included.

    Parameters
    ----------
    max_magnitude : float
        Bound on the logits' magnitude.
    allow_non_finite : bool
        Whether ``+-inf`` and NaN logits may appear.

    Returns
    -------
    SearchStrategy[dict]

    Examples
    --------
    >>> from hypothesis import find
    >>> arguments = find(softmax_arguments(), lambda a: a["dim"] < 0)
    >>> arguments["input"].shape, arguments["dim"]
    ((1,), -1)
    """
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    x = draw(logits(shape, max_magnitude=max_magnitude, allow_infinities=allow_non_finite, allow_nan=allow_non_finite))
    return {"input": x, "dim": draw(st.integers(-len(shape), len(shape) - 1))}
