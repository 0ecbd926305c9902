"""Shared mechanics: turning array-likes into numpy arrays, validation, reductions.

Everything here is private. The public modules (`functional`, `information`, `gradients`, ...) call these helpers so
that every loss converts, validates and reduces its arguments in exactly one way, and every error message has one
format: it names the argument, the offending value (and where it is) and what was expected.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Float64Array = NDArray[np.float64]
Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


def to_numpy(value: Any, name: str) -> NDArray[Any]:
    """Return ``value`` as a numpy array without copying where numpy allows it.

    Accepts anything ``numpy.asarray`` accepts, and torch tensors (on any device, with or without ``requires_grad``),
    which are detached and moved to the CPU; bfloat16, which numpy lacks, is widened exactly to float32. torch is
    never imported: a tensor is recognised by duck typing.
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: could not be read as an array ({error})") from None
    return array


def _describe_dtype(array: NDArray[Any]) -> str:
    return f"dtype {array.dtype}"


def as_real(value: Any, name: str) -> NDArray[Any]:
    """Return ``value`` as a numpy array of a real dtype (bool, integer or floating), in its own dtype."""
    array = to_numpy(value, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}: expected real numbers (a bool, integer or floating dtype), got {_describe_dtype(array)}"
        )
    return array


def as_float64(value: Any, name: str) -> Float64Array:
    """Return ``value`` as a float64 array (a view where it already is one; callers never write to it)."""
    array = as_real(value, name)
    return array.astype(np.float64, copy=False)


def as_class_indices(value: NDArray[Any], name: str) -> NDArray[np.int64]:
    """Return integer class-index targets as int64 (any signed or unsigned integer dtype is accepted)."""
    return check_class_indices(value, name).astype(np.int64, copy=False)


def check_class_indices(value: NDArray[Any], name: str) -> NDArray[Any]:
    """Check that ``value`` holds integer class indices that fit int64; return it as it is (no copy)."""
    if value.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: class-index targets must have an integer dtype, got {_describe_dtype(value)}; "
            "probability (soft) targets must have the same shape as the input"
        )
    if value.dtype == np.uint64 and value.size and int(value.max()) > np.iinfo(np.int64).max:
        position = _first_position(value > np.iinfo(np.int64).max)
        raise IndexError(
            f"Target {int(value[position])} is out of bounds. ({name}{_format_position(position)} does not fit int64)"
        )
    return value


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    """Validate a ``reduction`` argument and return it."""
    if reduction == "elementwise_mean" and "mean" in allowed:
        return "mean"  # torch still accepts this spelling of "mean" from before 1.0 (with a warning)
    if not isinstance(reduction, str) or reduction not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed)
        raise ValueError(f"reduction: {reduction!r} is not a valid value for reduction; expected one of {choices}")
    return reduction


def _first_position(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _format_position(position: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in position) + "]" if position else ""


def first_offender(mask: NDArray[np.bool_], values: NDArray[Any], name: str) -> str:
    """Describe the first element where ``mask`` is true, as ``name[i, j] = value``."""
    position = _first_position(mask)
    return f"{name}{_format_position(position)} = {values[position]!r}"


def check_in_unit_interval(values: NDArray[Any], name: str) -> None:
    """Raise ``ValueError`` unless every element is in [0, 1] (NaN and infinities are outside)."""
    # min and max propagate NaN and need no temporary the size of the input; the mask is for the error message only.
    if values.size == 0 or (np.min(values) >= 0 and np.max(values) <= 1):
        return
    outside = ~((values >= 0) & (values <= 1))
    if outside.any():
        raise ValueError(
            f"{name}: all elements of {name} should be between 0 and 1; found {first_offender(outside, values, name)}"
        )


def check_broadcasts_to(array: NDArray[Any], shape: tuple[int, ...], name: str, target_name: str) -> None:
    """Raise ``ValueError`` unless ``array`` broadcasts to ``shape`` without enlarging it."""
    try:
        broadcast = np.broadcast_shapes(array.shape, shape)
    except ValueError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(
            f"{name}: shape {array.shape} does not broadcast to the {target_name} shape {shape}; "
            f"expected a shape that broadcasts to {shape} (aligned from the last dimension)"
        )
