r"""How far a correct implementation in a given dtype may be from the float64 reference, and why.

One error model serves every function and dtype. An implementation that evaluates a loss in a floating dtype with
unit roundoff $u = \epsilon / 2$ (each elementary operation rounded) makes, on each element, a forward error of
at most

$$ |\hat\ell - \ell| \le \epsilon \,(k\, S + |\ell|) + k\,\eta, $$

where $S$ is the *condition scale* of the element, the sum of the magnitudes of the quantities whose rounding
errors reach the result (for ``-log_softmax`` that is the weighted $|x_c - m| + |m| + \log C$, bounded by
$2\max|x| + \log C + 1$), $k$ counts the roundings along the longest path, and the final
$\epsilon |\ell|$ is the rounding of the result itself; $\eta$, the dtype's smallest *normal* number, is the
absolute error of an operation whose result underflows (Higham's model, *Accuracy and Stability of Numerical
Algorithms*, §2.1, with flush-to-zero allowed): torch's float32 ``sigmoid(-90)`` is 0, not the subnormal 8.2e-40,
because ``1 / (1 + exp(90))`` overflows ``exp`` first, and ``softmax`` flushes the same way. We take

$$ k = 16 + 2 \lceil \log_2 C \rceil + \lceil \log_2 n \rceil, $$

16 for the elementwise operations of the longest formula (shift, ``exp``, ``log``, the weight and smoothing products
and sums), each counted twice because vectorised ``exp`` and ``log`` (SLEEF's u10 variants) are within 1 ULP rather
than 0.5; $2\lceil\log_2 C\rceil$ for the two pairwise sums over classes (log-sum-exp and the weighted sum over
classes); $\lceil\log_2 n\rceil$ for the reduction over $n$ elements. A reduced loss's scale is the sum of
its elements' scales plus the sum of their magnitudes; ``mean`` adds the rounding of its denominator $W$, and divides
the numerator's underflow error by it: $k\eta / |W|$ more, which only matters for weights near the underflow
threshold (float32 weights of 1.4e-45 leave a float32 mean no correct digit, and torch's has none).

The inputs are rounded to the dtype *before* the reference sees them, so input rounding is not part of the error:
only the implementation's arithmetic is. The bound is loose by design where the data are benign and tight where the
problem is ill-conditioned (huge logits, a loss near 0 made of large cancelling parts): a wrong formula misses it by
orders of magnitude, a correct one in the given dtype never does.

Non-finite results are not compared by size: the reference and the implementation must agree exactly on NaN,
``+inf`` and ``-inf``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xe_verify._arrays import Float64Array

__all__ = ["MACHINE_EPSILON", "SMALLEST_NORMAL", "allowed_error", "condition_scale", "operation_count"]

#: Machine epsilon (the gap between 1 and the next number) of each dtype the suite compares.
MACHINE_EPSILON: dict[str, float] = {
    "float64": 2.0**-52,
    "float32": 2.0**-23,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}

#: The smallest positive normal number of each dtype: the absolute error of a result that underflows (to a subnormal
#: or, where a kernel flushes, to 0).
SMALLEST_NORMAL: dict[str, float] = {
    "float64": 2.0**-1022,
    "float32": 2.0**-126,
    "float16": 2.0**-14,
    "bfloat16": 2.0**-126,
}


def operation_count(classes: int = 1, elements: int = 1) -> int:
    """Roundings along the longest path: ``16 + 2 ceil(log2 C) + ceil(log2 n)``.

    Examples
    --------
    >>> from xe_verify.tolerances import operation_count
    >>> operation_count(classes=10, elements=64)
    30
    """
    return 16 + 2 * math.ceil(math.log2(max(classes, 1))) + math.ceil(math.log2(max(elements, 1)))


def allowed_error(reference: Any, scale: Any, dtype: str, operations: int) -> Float64Array:
    r"""The largest error allowed, elementwise: $\epsilon_{dtype}(k S + |\ell|) + k \eta_{dtype}$.

    Examples
    --------
    >>> from xe_verify.tolerances import allowed_error
    >>> float(allowed_error(1.0, 2.0, "float32", operations=16))  # 2**-23 * (16 * 2 + 1) + 16 * 2**-149
    3.933906555175781e-06
    """
    epsilon = MACHINE_EPSILON[dtype]
    with np.errstate(invalid="ignore", over="ignore"):
        relative = epsilon * (operations * np.abs(scale) + np.abs(reference))
        return np.asarray(relative + operations * SMALLEST_NORMAL[dtype], dtype=np.float64)


def _rows(values: Float64Array, class_axis: int) -> Float64Array:
    return np.moveaxis(values, class_axis, -1)


def _softmax_spread(logits: Float64Array, class_axis: int) -> Float64Array:
    """``2 max|x| + log C + 1`` per position, a bound on ``|x_c - m| + |m| + log sum exp(x - m)``."""
    classes = logits.shape[class_axis]
    # Infinite logits carry no rounding error (exp(-inf) = 0 exactly): only the finite ones set the spread.
    rows = _rows(logits, class_axis)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.where(np.isinf(rows), 0.0, np.abs(rows))
        largest = np.max(finite, axis=-1) if classes else np.zeros(())
        return np.asarray(2.0 * largest + math.log(max(classes, 1)) + 1.0)


def condition_scale(function: str, **arguments: Any) -> Float64Array:
    """Per-element condition scale ``S`` of ``function`` (``reduction="none"`` shape), for `allowed_error`.

    ``arguments`` are the float64 numpy arguments of the call, named as in
    [`xe_verify.functional`][xe_verify.functional] (``input``, ``target``, ``weight``, ``label_smoothing``,
    ``pos_weight``, ``log_target``, ``dim``).

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.tolerances import condition_scale
    >>> condition_scale("nll_loss", input=np.array([[-0.5, -2.0]]), target=np.array([1]))
    array([2.])
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _condition_scale(function, arguments)


def _condition_scale(function: str, arguments: dict[str, Any]) -> Float64Array:
    x = np.asarray(arguments["input"], dtype=np.float64)
    weight = arguments.get("weight")
    if function in {"cross_entropy", "nll_loss"}:
        class_axis = 0 if x.ndim == 1 else 1
        classes = x.shape[class_axis]
        target = np.asarray(arguments["target"])
        soft = function == "cross_entropy" and target.shape == x.shape
        if x.ndim == 1 and target.shape == (1,) and not soft:
            target = target.reshape(())  # a (C,) input takes a () or (1,) class index; the loss is a scalar
        w = np.ones(classes) if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
        rows = _rows(x, class_axis)
        if soft:
            smoothing = max(float(arguments.get("label_smoothing", 0.0)), 0.0)
            q = _rows(np.asarray(target, dtype=np.float64), class_axis)
            q = q * (1.0 - smoothing) + smoothing / classes if smoothing else q
            mass = np.sum(np.abs(q) * w, axis=-1)
            return np.asarray(mass * _softmax_spread(x, class_axis))
        ignore_index = int(arguments.get("ignore_index", -100))
        valid = (target != ignore_index) & (target >= 0) & (target < classes)
        safe = np.where(valid, target, 0)
        target_weight = np.where(valid, w[safe] if classes else 0.0, 0.0)
        if function == "nll_loss":
            picked = np.take_along_axis(rows, np.expand_dims(safe, -1), axis=-1)[..., 0] if classes else 0.0
            return np.asarray(target_weight * np.abs(picked))
        smoothing = max(float(arguments.get("label_smoothing", 0.0)), 0.0)
        mass = (1.0 - smoothing) * target_weight + np.where(valid, smoothing / max(classes, 1) * np.sum(w), 0.0)
        # An ignored position is exactly 0 on both sides, whatever its logits (NaN included).
        return np.asarray(np.where(valid, mass * _softmax_spread(x, class_axis), 0.0))
    magnitude: Any = 1.0 if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
    t = np.asarray(arguments.get("target", 0.0), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if function == "binary_cross_entropy":
            log_p = np.maximum(np.log(x), -100.0)
            log_one_minus_p = np.maximum(np.log1p(-x), -100.0)
            return np.asarray(magnitude * (np.abs(t * log_p) + np.abs((1.0 - t) * log_one_minus_p)))
        if function == "binary_cross_entropy_with_logits":
            pos_weight = arguments.get("pos_weight")
            pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
            log_weight = 1.0 + np.abs((pw - 1.0) * t)
            softplus = np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x)))
            return np.asarray(magnitude * (np.abs((1.0 - t) * x) + log_weight * softplus))
        if function == "kl_div":
            if arguments.get("log_target", False):
                return np.asarray(np.exp(t) * (np.abs(t) + np.abs(x)))
            return np.asarray(np.abs(t) * (np.abs(np.log(np.where(t > 0, t, 1.0))) + np.abs(x)))
        if function in {"log_softmax", "softmax", "logsumexp"}:
            dim = int(arguments["dim"]) % max(x.ndim, 1)
            spread = np.expand_dims(_softmax_spread(np.atleast_1d(x), dim), dim)
            if function == "logsumexp":
                return np.asarray(np.squeeze(spread, dim))
            if function == "softmax":
                shifted = np.atleast_1d(x) - np.max(np.atleast_1d(x), axis=dim, keepdims=True)
                return np.asarray(np.exp(shifted) * spread).reshape(x.shape)
            return np.asarray(np.broadcast_to(spread, np.atleast_1d(x).shape).reshape(x.shape))
        if function == "sigmoid":
            return np.asarray(1.0 / (1.0 + np.exp(-x)))
        if function == "log_sigmoid":
            return np.asarray(np.abs(x) + 1.0)
    raise ValueError(f"function: no condition scale for {function!r}")
