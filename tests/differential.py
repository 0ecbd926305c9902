"""The differential check: the reference on the implementation's own (rounded) inputs, compared within the error
bound of ``xe_verify.tolerances``, with a failure message that says which element, by how much, and why that much.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from adapters import Implementation
from hypothesis import assume

from xe_verify import functional
from xe_verify.tolerances import SMALLEST_NORMAL, allowed_error, condition_scale, operation_count

SOFTMAX_LOSSES = {"cross_entropy", "nll_loss"}


def _classes_and_elements(function: str, arguments: dict[str, Any]) -> tuple[int, int]:
    x = np.asarray(arguments["input"])
    if function in SOFTMAX_LOSSES:
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        return classes, max(x.size // max(classes, 1), 1)
    if function in {"log_softmax", "softmax", "logsumexp"}:
        return (np.atleast_1d(x).shape[int(arguments["dim"])], 1)
    return 1, max(x.size, 1)


def _denominator(function: str, arguments: dict[str, Any]) -> tuple[float, float]:
    """``mean``'s denominator and the sum of its terms' magnitudes (its rounding error's scale)."""
    x = np.asarray(arguments["input"])
    reduction = arguments.get("reduction", "mean")
    if function == "kl_div" and reduction == "batchmean":
        count = float(x.shape[0]) if x.ndim else 1.0
        return count, count
    if function in SOFTMAX_LOSSES:
        target = np.asarray(arguments["target"])
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        if target.shape == x.shape:
            count = float(x.size // max(classes, 1))
            return count, count
        valid = target != int(arguments.get("ignore_index", -100))
        weight = arguments.get("weight")
        w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
        picked = np.where(valid, w[np.where(valid, target, 0)], 0.0)
        return float(np.sum(picked)), float(np.sum(np.abs(picked)))
    count = float(np.prod(np.broadcast_shapes(x.shape, np.shape(arguments.get("target", 0.0)))))
    return count, count


def bound(function: str, dtype: str, arguments: dict[str, Any], reference: np.ndarray) -> np.ndarray:
    """The allowed error of ``function(**arguments)`` in ``dtype``, elementwise for ``none``."""
    classes, elements = _classes_and_elements(function, arguments)
    operations = operation_count(classes, elements)
    reduction = arguments.get("reduction", "mean")  # the losses' default, as in torch
    scale_arguments = {key: value for key, value in arguments.items() if key != "reduction"}
    per_element = condition_scale(function, **scale_arguments)
    if function in {"log_softmax", "softmax", "logsumexp", "sigmoid", "log_sigmoid"} or reduction == "none":
        return allowed_error(reference, per_element, dtype, operations)
    losses = np.asarray(getattr(functional, function)(**{**arguments, "reduction": "none"}))
    with np.errstate(invalid="ignore", over="ignore"):
        total_scale = np.sum(per_element) + np.sum(np.abs(losses))
        if reduction == "sum":
            return allowed_error(reference, total_scale, dtype, operations)
        denominator, denominator_scale = _denominator(function, arguments)
        with np.errstate(divide="ignore"):
            scale = total_scale / abs(denominator) + np.abs(reference) * denominator_scale / abs(denominator)
            # The numerator's underflow error (k eta, see xe_verify.tolerances) divided by the denominator.
            underflow = operations * SMALLEST_NORMAL[dtype] / np.abs(np.float64(denominator))
    return allowed_error(reference, scale, dtype, operations) + underflow


def _same_non_finite(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Elements whose non-finite status differs: NaN against not-NaN, or infinities of different sign."""
    nan_mismatch = np.isnan(expected) != np.isnan(actual)
    inf_mismatch = (np.isinf(expected) | np.isinf(actual)) & ~(np.isnan(expected) | np.isnan(actual))
    inf_mismatch &= expected != actual
    return nan_mismatch | inf_mismatch


def assert_within(
    function: str,
    expected: np.ndarray,
    actual: np.ndarray,
    allowed: np.ndarray,
    *,
    label: str,
    arguments: dict[str, Any],
) -> None:
    """Assert ``|actual - expected| <= allowed`` elementwise, with identical NaN and infinities."""
    __tracebackhide__ = True
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise AssertionError(f"{function} [{label}]: shape {actual.shape}, reference shape {expected.shape}")
    allowed = np.broadcast_to(allowed, expected.shape)
    mismatch = _same_non_finite(expected, actual)
    both_finite = np.isfinite(expected) & np.isfinite(actual)
    with np.errstate(invalid="ignore"):
        error = np.where(both_finite, np.abs(actual - expected), 0.0)
    # An exact match passes even where the bound is NaN (a zero weight times an infinite scale, say).
    too_far = both_finite & (error != 0) & ~(error <= allowed)
    if not (mismatch.any() or too_far.any()):
        return
    bad = mismatch | too_far
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if expected.ndim else ()
    options = {k: v for k, v in arguments.items() if k not in {"input", "target", "weight", "pos_weight"}}
    message = (
        f"{function} {options} [{label}] differs at index {index} ({int(bad.sum())} of {bad.size} elements): "
        f"reference {expected[index]!r}, {label} {actual[index]!r}, |error| {error[index]:.3e}, "
        f"allowed {allowed[index]:.3e} (eps_dtype * (k S + |ref|), see xe_verify.tolerances)"
    )
    failure = AssertionError(message)
    if hasattr(failure, "add_note"):
        repro = ", ".join(f"{k}={np.asarray(v).tolist() if hasattr(v, 'shape') else v!r}" for k, v in arguments.items())
        failure.add_note(f"reproduce: xe_verify.functional.{function}({repro})")
    raise failure


def check_against(implementation: Implementation, function: str, **arguments: Any) -> None:
    """The reference on the implementation's rounded inputs equals the implementation within the error bound."""
    __tracebackhide__ = True
    rounded = implementation.round_inputs(arguments)
    # A device's documented departure from torch's CPU semantics is not a bug of the reference (see adapters).
    if implementation.known_difference(function, rounded) is not None:
        assume(False)
    expected = np.asarray(getattr(functional, function)(**rounded), dtype=np.float64)
    actual = implementation(function, **rounded)
    allowed = bound(function, implementation.dtype, rounded, expected)
    assert_within(function, expected, actual, allowed, label=implementation.name, arguments=rounded)
