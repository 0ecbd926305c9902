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
    """Sum ``values`` along ``axis`` with compensation; non-finite values give numpy's plain sum (NaN, infinities).

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify._summation import compensated_sum
    >>> float(compensated_sum(np.array([1.0, 1e-16, -1.0])))  # a plain sum gives 0.0
    1e-16
    """
    level: np.ndarray[Any, Any] = np.moveaxis(values, axis, -1)
    if not np.isfinite(level).all():
        return np.asarray(np.sum(level, axis=-1), dtype=np.float64)
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
