"""Compensated summation: sums as accurate as if computed in twice the working precision, vectorised.

A pairwise tree of error-free additions (Knuth's TwoSum): at each level neighbours are added and the rounding error of
every addition is kept exactly; the errors are summed plainly at the end and added back. The result's error is at
most about ``u |S| + (log2(n) u)^2 sum |x_i|`` (the bound of Ogita, Rump and Oishi's Sum2), so a sum whose terms
cancel, such as the terms of a KL divergence of nearly equal distributions, keeps its digits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xe_verify._arrays import Float64Array


def compensated_sum(values: Float64Array, axis: int = -1) -> Float64Array:
    """Sum ``values`` along ``axis`` with compensation.

    A sum with non-finite values is numpy's plain one (NaN, infinities); the other sums keep their compensation.

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify._summation import compensated_sum
    >>> float(compensated_sum(np.array([1.0, 1e-16, -1.0])))  # a plain sum gives 0.0
    1e-16
    """
    level: np.ndarray[Any, Any] = np.moveaxis(values, axis, -1)
    finite = np.isfinite(level).all(axis=-1)
    if not finite.all():
        plain = np.sum(level, axis=-1)
        compensated = compensated_sum(np.where(finite[..., None], level, 0.0))
        return np.asarray(np.where(finite, compensated, plain), dtype=np.float64)
    errors = np.zeros(level.shape[:-1])
    while level.shape[-1] > 1:
        odd = level[..., -1:] if level.shape[-1] % 2 else level[..., :0]
        a, b = level[..., 0:-1:2], level[..., 1::2]
        total = a + b
        b_virtual = total - a
        errors += np.sum((a - (total - b_virtual)) + (b - b_virtual), axis=-1)
        level = np.concatenate([total, odd], axis=-1)
    result = level[..., 0] if level.shape[-1] else np.zeros(level.shape[:-1])
    return np.asarray(result + errors, dtype=np.float64)
