r"""Measuring accuracy against the exact oracle: ULP and relative errors, and the published table.

:func:`ulp_error` and :func:`relative_error` compare any implementation's output with the exact values from
:mod:`xe_verify.exact` (or any other mpmath or float values) without first rounding the exact values, so that an
error of a fraction of a ULP is measured as such.

:func:`accuracy_table` is the report behind ``python -m xe_verify accuracy``: for each function and input regime it
measures the reference (:mod:`xe_verify.functional` and :mod:`xe_verify.information`, float64) and torch on the CPU
(float64, float32, float16, bfloat16) on ``reduction="none"`` outputs. It is deterministic (fixed seeds), so the
documentation can publish it. Every implementation is measured against the exact value *of the inputs it was given*:
the inputs are rounded to the implementation's dtype first, so only its arithmetic is measured, not the rounding of
its inputs (a regime's extreme values may not survive that rounding: 1e-300 is 0 in float32).

Batches are rows of 8 classes; weighted functions use the weights ``linspace(0.5, 2, 8)``. torch has no
information-theory functions, so its rows for ``information.*`` evaluate the definitions with torch's primitives:
``special.entr(p).sum(-1)``, ``-special.xlogy(p, q).sum(-1)`` and ``(special.xlogy(p, p) - special.xlogy(p, q))
.sum(-1)``.

Regimes:

``typical``
    Logits :math:`\mathcal{N}(0, 3^2)`, probabilities uniform on (0, 1) or Dirichlet(1) rows, targets uniform in [0, 1]
    with a quarter of them exactly 0 or 1.
``near-zero loss``
    The loss or the quantity is close to 0 relative to the terms it is made of: the target logit 10 to 700 above the
    rest (with half the rows shifted by up to 1000, so that ``x - max(x)`` rounds); the logit of the target side
    10 to 700 (BCE with logits, log-sigmoid); ``p`` within 1e-16 to 1e-1 of a 0/1 target (BCE); a KL term whose
    log-target is within 1e-10 relative of ``log p``; ``q`` within 1e-8 relative of ``p`` (KL divergence).
``huge logits``
    Rows centred anywhere in :math:`[-10^4, 10^4]` with spreads from 1 to :math:`10^4` (softmax family), or logits
    :math:`\pm 10^{u}` with :math:`u` uniform in [0, 4] (elementwise functions).
``tiny probabilities``
    Probabilities :math:`10^{u}` with :math:`u` uniform in [-300, -1].
``near-one probabilities``
    Probabilities :math:`1 - 10^{u}` with :math:`u` uniform in [-16, -1].
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    import mpmath
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "xe_verify.accuracy needs mpmath, an optional dependency: pip install 'xe_verify[exact]'"
    ) from error

__all__ = [
    "REGIMES",
    "AccuracyRow",
    "accuracy_table",
    "format_table",
    "relative_error",
    "ulp_error",
]


# --------------------------------------------------------------------------------------------------
# Error measures.


@dataclass(frozen=True)
class _Format:
    """A binary floating-point format.

    It stores ``mantissa_bits`` fraction bits; its smallest normal number is ``2**min_exponent`` and its
    numbers are below ``2**max_exponent``.
    """

    name: str
    mantissa_bits: int
    min_exponent: int
    max_exponent: int


_BFLOAT16 = _Format("bfloat16", 7, -126, 128)


def _format(dtype: Any) -> _Format:
    """Describe a numpy floating dtype, a torch floating dtype or one of their names (incl. "bfloat16")."""
    name = str(dtype).removeprefix("torch.")
    if name == "bfloat16":
        return _BFLOAT16
    try:
        info = np.finfo(np.dtype(name) if isinstance(dtype, str) or name != str(dtype) else dtype)
    except (TypeError, ValueError):
        raise ValueError(f"dtype must be a floating dtype (or 'bfloat16'), got {dtype!r}") from None
    return _Format(str(info.dtype), int(info.nmant), int(info.minexp), int(info.maxexp))


def _as_float64(values: Any) -> npt.NDArray[np.float64]:
    """Computed values as float64, exactly (torch tensors of any floating dtype included)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"computed values must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _as_exact(values: Any) -> npt.NDArray[np.object_]:
    """Exact values as an object array of ``mpf`` (floats and integers are converted exactly)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=object)
    converted = np.empty(array.shape, dtype=object)
    for index, value in np.ndenumerate(array):
        if isinstance(value, mpmath.mpf):
            converted[index] = value
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            converted[index] = mpmath.mpf(value.item() if isinstance(value, np.generic) else value)
        else:
            raise ValueError(f"exact values must be real numbers or mpmath.mpf, got {value!r} at {index}")
    return converted


def _pairs(computed: Any, exact: Any) -> tuple[tuple[int, ...], list[tuple[Any, Any]]]:
    """Broadcast computed and exact values; return the shape and the element pairs as ``mpf``."""
    computed_array, exact_array = _as_float64(computed), _as_exact(exact)
    try:
        left, right = np.broadcast_arrays(computed_array, exact_array)
    except ValueError:
        raise ValueError(
            f"computed values of shape {computed_array.shape} and exact values of shape "
            f"{exact_array.shape} do not broadcast"
        ) from None
    pairs = [(mpmath.mpf(float(c)), e) for c, e in zip(left.reshape(-1), right.reshape(-1), strict=True)]
    return tuple(left.shape), pairs


def _special_error(computed: Any, exact: Any) -> float | None:
    """The error when either value is NaN or infinite: 0 when both are the same, else infinite."""
    if mpmath.isnan(computed) or mpmath.isnan(exact):
        return 0.0 if mpmath.isnan(computed) and mpmath.isnan(exact) else math.inf
    if mpmath.isinf(computed) or mpmath.isinf(exact):
        return 0.0 if computed == exact else math.inf
    return None


def _rounds_to_infinity(exact: Any, form: _Format) -> bool:
    """Whether a finite exact value rounds to infinity in ``form`` (it is at least max + ulp(max) / 2)."""
    threshold = mpmath.ldexp(1, form.max_exponent) - mpmath.ldexp(1, form.max_exponent - form.mantissa_bits - 2)
    return bool(abs(exact) >= threshold)


def _ulp_exponent(exact: Any, form: _Format) -> int:
    """``k`` such that the spacing of ``form`` at ``exact`` is ``2**k`` (the subnormal spacing at 0)."""
    if exact == 0:
        return form.min_exponent - form.mantissa_bits
    _, exponent = mpmath.frexp(exact)  # |exact| in [2**(exponent - 1), 2**exponent)
    return max(int(exponent) - 1, form.min_exponent) - form.mantissa_bits


def ulp_error(computed: Any, exact: Any, dtype: Any = np.float64) -> npt.NDArray[np.float64]:
    r"""Error of ``computed`` in units in the last place of ``dtype``, measured at the exact value.

    .. math::

        \text{ulp error} = \frac{|\hat y - y|}{\operatorname{ulp}(y)}, \qquad
        \operatorname{ulp}(y) = 2^{\max(\lfloor \log_2 |y| \rfloor,\ e_{\min}) - p},

    where :math:`p` is the number of stored fraction bits of ``dtype`` (52 for float64) and :math:`2^{e_{\min}}` its
    smallest normal number: the spacing of ``dtype``'s numbers in the binade of :math:`y`, and the subnormal spacing
    (:math:`2^{-1074}` for float64) below the normal range. A correctly rounded result has an error of at most 0.5.

    Conventions: at :math:`y = 0` the ULP is the subnormal spacing, so a computed 0 has error 0 and a computed
    ``5e-324`` has error 1 in float64; NaN against NaN, and an infinity against the same infinity, have error 0; any
    other pairing with a NaN or an infinity has error ``inf``. A finite :math:`y` that rounds to infinity in ``dtype``
    (beyond the largest finite number by half a ULP) counts as that infinity.

    Parameters
    ----------
    computed : array_like
        The values to judge: any real numbers or torch tensor (converted to float64 exactly).
    exact : array_like
        The exact values: ``mpmath.mpf`` (as returned by :mod:`xe_verify.exact`), floats or integers; broadcast
        against ``computed``.
    dtype : dtype or str, default numpy.float64
        Whose ULPs to count in: a numpy or torch floating dtype, or a name such as ``"float32"`` or ``"bfloat16"``.

    Returns
    -------
    numpy.ndarray of float64
        The broadcast shape (0-d for scalars).

    Examples
    --------
    >>> import mpmath
    >>> from xe_verify.accuracy import ulp_error
    >>> with mpmath.workdps(30):
    ...     third = mpmath.mpf(1) / 3
    >>> float(ulp_error(1 / 3, third))  # correctly rounded: a third of a ULP off
    0.333...
    >>> f"{float(ulp_error(0.0, mpmath.mpf('8.5e-18'))):.2e}"  # torch's 0 for a confident row: no digit right
    '5.52e+15'
    >>> ulp_error([1.0, float("nan")], [1, float("nan")], dtype="float32").tolist()
    [0.0, 0.0]
    """
    form = _format(dtype)
    shape, pairs = _pairs(computed, exact)
    errors = []
    for c, e in pairs:
        if mpmath.isfinite(e) and _rounds_to_infinity(e, form):
            e = mpmath.inf if e > 0 else -mpmath.inf
        special = _special_error(c, e)
        if special is not None:
            errors.append(special)
            continue
        difference = abs(mpmath.fsub(c, e, prec=64))
        errors.append(float(mpmath.ldexp(difference, -_ulp_exponent(e, form))))
    return np.array(errors, dtype=np.float64).reshape(shape)


def relative_error(computed: Any, exact: Any) -> npt.NDArray[np.float64]:
    r"""Relative error :math:`|\hat y - y| / |y|`, elementwise, computed without rounding :math:`y` first.

    At :math:`y = 0` the error is 0 for a computed 0 and ``inf`` otherwise; NaN and infinities follow
    :func:`ulp_error`. Results below the normal range (``|y| < 2.2e-308`` in float64) cannot be represented to
    full relative precision: for those, :func:`ulp_error` is the meaningful measure.

    Parameters
    ----------
    computed : array_like
        The values to judge (converted to float64 exactly).
    exact : array_like
        The exact values (``mpmath.mpf``, floats or integers); broadcast against ``computed``.

    Returns
    -------
    numpy.ndarray of float64
        The broadcast shape (0-d for scalars).

    Examples
    --------
    >>> from xe_verify.accuracy import relative_error
    >>> relative_error([1.5, 0.0, 0.0], [1.0, 0.0, 1e-300]).tolist()
    [0.5, 0.0, 1.0]
    """
    shape, pairs = _pairs(computed, exact)
    errors = []
    for c, e in pairs:
        special = _special_error(c, e)
        if special is not None:
            errors.append(special)
        elif e == 0:
            errors.append(0.0 if c == 0 else math.inf)
        else:
            errors.append(float(mpmath.fdiv(abs(mpmath.fsub(c, e, prec=64)), abs(e), prec=64)))
    return np.array(errors, dtype=np.float64).reshape(shape)


# --------------------------------------------------------------------------------------------------
# The accuracy table.

REGIMES = (
    "typical",
    "near-zero loss",
    "huge logits",
    "tiny probabilities",
    "near-one probabilities",
)
"""The input regimes of the table, in display order."""

_IMPLEMENTATIONS = (
    ("xe_verify float64", "float64"),
    ("torch float64", "float64"),
    ("torch float32", "float32"),
    ("torch float16", "float16"),
    ("torch bfloat16", "bfloat16"),
)


@dataclass(frozen=True)
class AccuracyRow:
    """One line of the accuracy table: an implementation of a function on one regime.

    Attributes
    ----------
    function : str
        The function, with the options it was called with (``reduction="none"`` always).
    regime : str
        One of :data:`REGIMES`.
    implementation : str
        ``"xe_verify float64"`` or ``"torch <dtype>"``.
    count : int
        Number of output elements measured.
    max_ulp, median_ulp : float
        Largest and median :func:`ulp_error` in float64 ULPs.
    max_relative, median_relative : float
        Largest and median :func:`relative_error`.
    max_ulp_own : float
        Largest :func:`ulp_error` in ULPs of the implementation's own dtype.
    """

    function: str
    regime: str
    implementation: str
    count: int
    max_ulp: float
    median_ulp: float
    max_relative: float
    median_relative: float
    max_ulp_own: float


Arrays = tuple[npt.NDArray[Any], ...]


@dataclass(frozen=True)
class _Case:
    """A function measured on one regime.

    ``make(rng, rows, regime)`` draws float64 inputs (integer arrays are class indices and are never rounded);
    ``reference``, ``oracle`` and ``torch_call`` evaluate the function (``reduction="none"``) on them,
    ``torch_call`` on torch tensors.
    """

    function: str
    regime: str
    make: Callable[[np.random.Generator, int, str], Arrays]
    reference: Callable[..., Any]
    oracle: Callable[..., Any]
    torch_call: Callable[..., Any]


_CLASSES = 8
_ORACLE_DPS = 30  # 100 bits past float64's 53: the oracle's own error is invisible at the scale of a ULP


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: Any) -> npt.NDArray[Any]:
    """``10**u`` with ``u`` uniform in ``[low, high]``."""
    return np.asarray(10.0 ** rng.uniform(low, high, size))


def _some_exact(rng: np.random.Generator, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Replace a quarter of the values (targets in [0, 1]) by exactly 0 or 1."""
    exact = rng.uniform(size=values.shape) < 0.25
    return np.where(exact, rng.integers(0, 2, values.shape).astype(np.float64), values)


def _typical_logits(rng: np.random.Generator, rows: int) -> npt.NDArray[Any]:
    return rng.normal(0.0, 3.0, (rows, _CLASSES))


def _confident_logits(rng: np.random.Generator, rows: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Rows whose target logit is 10 to 700 above the rest; half of them shifted by up to 1000."""
    logits = rng.normal(0.0, 1.0, (rows, _CLASSES))
    target = rng.integers(0, _CLASSES, rows)
    gaps = _log_uniform(rng, 1, math.log10(700), rows)
    others = np.where(np.arange(_CLASSES) == target[:, None], -np.inf, logits).max(axis=1)
    logits[np.arange(rows), target] = others + gaps
    shift = np.where(rng.uniform(size=rows) < 0.5, rng.uniform(-1000, 1000, rows), 0.0)
    return logits + shift[:, None], target


def _huge_logits(rng: np.random.Generator, rows: int) -> npt.NDArray[Any]:
    """Rows centred in [-1e4, 1e4] with spreads from 1 to 1e4 (then clipped to [-1e4, 1e4])."""
    centre = rng.uniform(-1e4, 1e4, (rows, 1))
    spread = _log_uniform(rng, 0, 4, (rows, 1))
    return np.asarray(np.clip(centre + spread * rng.normal(size=(rows, _CLASSES)), -1e4, 1e4))


def _logit_regimes(rng: np.random.Generator, rows: int, regime: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Logits and class targets for the softmax-family regimes."""
    if regime == "near-zero loss":
        return _confident_logits(rng, rows)
    logits = _typical_logits(rng, rows) if regime == "typical" else _huge_logits(rng, rows)
    return logits, rng.integers(0, _CLASSES, rows)


def _soft_targets(rng: np.random.Generator, logits: npt.NDArray[Any], regime: str) -> npt.NDArray[Any]:
    """Dirichlet rows; one-hot at the dominant class in the near-zero-loss regime."""
    if regime == "near-zero loss":
        return np.asarray((np.arange(_CLASSES) == logits.argmax(axis=1)[:, None]).astype(np.float64))
    return rng.dirichlet(np.ones(_CLASSES), logits.shape[0])


def _bce_inputs(rng: np.random.Generator, size: int, regime: str) -> Arrays:
    """Probabilities and targets for binary cross-entropy."""
    if regime == "near-zero loss":
        target = rng.integers(0, 2, size).astype(np.float64)
        close_to_zero = _log_uniform(rng, -300, -1, size)
        close_to_one = 1.0 - _log_uniform(rng, -16, -1, size)
        return np.where(target == 1, close_to_one, close_to_zero), target
    targets = _some_exact(rng, rng.uniform(size=size))
    if regime == "tiny probabilities":
        return _log_uniform(rng, -300, -1, size), targets
    if regime == "near-one probabilities":
        return 1.0 - _log_uniform(rng, -16, -1, size), targets
    return rng.uniform(size=size), targets


def _signed_magnitudes(rng: np.random.Generator, size: int) -> npt.NDArray[Any]:
    """``±10**u``, ``u`` uniform in [0, 4]."""
    return np.asarray(rng.choice([-1.0, 1.0], size) * _log_uniform(rng, 0, 4, size))


def _bce_logit_inputs(rng: np.random.Generator, size: int, regime: str) -> Arrays:
    """Logits and targets for binary cross-entropy with logits."""
    if regime == "near-zero loss":
        target = rng.integers(0, 2, size).astype(np.float64)
        magnitude = _log_uniform(rng, 1, math.log10(700), size)
        return np.where(target == 1, magnitude, -magnitude), target
    targets = _some_exact(rng, rng.uniform(size=size))
    logits = rng.normal(0.0, 3.0, size) if regime == "typical" else _signed_magnitudes(rng, size)
    return logits, targets


def _kl_div_inputs(rng: np.random.Generator, size: int, regime: str) -> Arrays:
    """``(log q, p)`` elementwise for ``kl_div``."""
    if regime == "typical":
        return np.log(rng.uniform(size=size)), rng.uniform(size=size)
    if regime == "near-zero loss":
        target = rng.uniform(size=size)
        return np.log(target) * (1.0 + rng.normal(0.0, 1e-10, size)), target
    if regime == "tiny probabilities":
        target = _log_uniform(rng, -300, -1, size)
        return np.log(target) + rng.normal(0.0, 1.0, size), target
    return np.log1p(-_log_uniform(rng, -16, -1, size)), 1.0 - _log_uniform(rng, -16, -1, size)


def _distribution_rows(rng: np.random.Generator, rows: int, regime: str) -> npt.NDArray[Any]:
    """Probability rows (summing to 1 up to rounding) for the information functions."""
    p = rng.dirichlet(np.ones(_CLASSES), rows)
    if regime == "tiny probabilities":
        tiny = rng.uniform(size=p.shape) < 0.5
        p = np.where(tiny, _log_uniform(rng, -300, -1, p.shape), p)
    elif regime == "near-one probabilities":
        rest = _log_uniform(rng, -16, -1, (rows, 1))
        p = np.concatenate([1.0 - rest, rest * p[:, 1:] / p[:, 1:].sum(axis=1, keepdims=True)], axis=1)
        return np.asarray(rng.permuted(p, axis=1))
    return np.asarray(p / p.sum(axis=1, keepdims=True))


def _information_inputs(rng: np.random.Generator, rows: int, regime: str) -> Arrays:
    p = _distribution_rows(rng, rows, regime)
    if regime == "near-zero loss":
        q = p * (1.0 + rng.normal(0.0, 1e-8, p.shape))
        return p, q / q.sum(axis=1, keepdims=True)
    return p, _distribution_rows(rng, rows, regime)


def _cases() -> list[_Case]:
    """Every (function, regime) pair of the table."""
    import torch
    import torch.nn.functional as F

    from xe_verify import exact, functional, information

    logit_regimes = ("typical", "near-zero loss", "huge logits")
    probability_regimes = ("typical", "near-zero loss", "tiny probabilities", "near-one probabilities")
    information_regimes = ("typical", "tiny probabilities", "near-one probabilities")
    weight = np.linspace(0.5, 2.0, _CLASSES)
    cases: list[_Case] = []

    def add(
        function: str,
        regimes: Sequence[str],
        make: Callable[[np.random.Generator, int, str], Arrays],
        reference: Callable[..., Any],
        oracle: Callable[..., Any],
        torch_call: Callable[..., Any],
    ) -> None:
        cases.extend(_Case(function, regime, make, reference, oracle, torch_call) for regime in regimes)

    def logits_and_targets(rng: np.random.Generator, rows: int, regime: str) -> Arrays:
        return _logit_regimes(rng, rows, regime)

    def logits_targets_weight(rng: np.random.Generator, rows: int, regime: str) -> Arrays:
        return (*_logit_regimes(rng, rows, regime), weight)

    def logits_and_probabilities(rng: np.random.Generator, rows: int, regime: str) -> Arrays:
        logits, _ = _logit_regimes(rng, rows, regime)
        return logits, _soft_targets(rng, logits, regime)

    def logits_only(rng: np.random.Generator, rows: int, regime: str) -> Arrays:
        return (_logit_regimes(rng, rows, regime)[0],)

    add(
        "cross_entropy",
        logit_regimes,
        logits_and_targets,
        lambda x, y: functional.cross_entropy(x, y, reduction="none"),
        lambda x, y: exact.cross_entropy(x, y, reduction="none", dps=_ORACLE_DPS),
        lambda x, y: F.cross_entropy(x, y, reduction="none"),
    )
    add(
        "cross_entropy(weight, label_smoothing=0.1)",
        logit_regimes,
        logits_targets_weight,
        lambda x, y, w: functional.cross_entropy(x, y, w, reduction="none", label_smoothing=0.1),
        lambda x, y, w: exact.cross_entropy(x, y, w, reduction="none", label_smoothing=0.1, dps=_ORACLE_DPS),
        lambda x, y, w: F.cross_entropy(x, y, w, reduction="none", label_smoothing=0.1),
    )
    add(
        "cross_entropy(probabilities)",
        logit_regimes,
        logits_and_probabilities,
        lambda x, q: functional.cross_entropy(x, q, reduction="none"),
        lambda x, q: exact.cross_entropy(x, q, reduction="none", dps=_ORACLE_DPS),
        lambda x, q: F.cross_entropy(x, q, reduction="none"),
    )
    add(
        "nll_loss(weight)",
        ("typical", "huge logits"),
        logits_targets_weight,
        lambda x, y, w: functional.nll_loss(x, y, w, reduction="none"),
        lambda x, y, w: exact.nll_loss(x, y, w, reduction="none", dps=_ORACLE_DPS),
        lambda x, y, w: F.nll_loss(x, y, w, reduction="none"),
    )
    add(
        "log_softmax",
        logit_regimes,
        logits_only,
        lambda x: functional.log_softmax(x, 1),
        lambda x: exact.log_softmax(x, 1, dps=_ORACLE_DPS),
        lambda x: F.log_softmax(x, 1),
    )
    add(
        "softmax",
        logit_regimes,
        logits_only,
        lambda x: functional.softmax(x, 1),
        lambda x: exact.softmax(x, 1, dps=_ORACLE_DPS),
        lambda x: F.softmax(x, 1),
    )
    add(
        "logsumexp",
        logit_regimes,
        logits_only,
        lambda x: functional.logsumexp(x, 1),
        lambda x: exact.logsumexp(x, 1, dps=_ORACLE_DPS),
        lambda x: torch.logsumexp(x, 1),
    )
    add(
        "binary_cross_entropy",
        probability_regimes,
        lambda rng, n, regime: _bce_inputs(rng, n * _CLASSES, regime),
        lambda p, t: functional.binary_cross_entropy(p, t, reduction="none"),
        lambda p, t: exact.binary_cross_entropy(p, t, reduction="none", dps=_ORACLE_DPS),
        lambda p, t: F.binary_cross_entropy(p, t, reduction="none"),
    )
    add(
        "binary_cross_entropy_with_logits",
        logit_regimes,
        lambda rng, n, regime: _bce_logit_inputs(rng, n * _CLASSES, regime),
        lambda x, t: functional.binary_cross_entropy_with_logits(x, t, reduction="none"),
        lambda x, t: exact.binary_cross_entropy_with_logits(x, t, reduction="none", dps=_ORACLE_DPS),
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )
    add(
        "kl_div",
        probability_regimes,
        lambda rng, n, regime: _kl_div_inputs(rng, n * _CLASSES, regime),
        lambda x, t: functional.kl_div(x, t, reduction="none"),
        lambda x, t: exact.kl_div(x, t, reduction="none", dps=_ORACLE_DPS),
        lambda x, t: F.kl_div(x, t, reduction="none"),
    )
    add(
        "sigmoid",
        ("typical", "huge logits"),
        lambda rng, n, regime: _bce_logit_inputs(rng, n * _CLASSES, regime)[:1],
        functional.sigmoid,
        lambda x: exact.sigmoid(x, dps=_ORACLE_DPS),
        torch.sigmoid,
    )
    add(
        "log_sigmoid",
        logit_regimes,
        lambda rng, n, regime: _bce_logit_inputs(rng, n * _CLASSES, regime)[:1],
        functional.log_sigmoid,
        lambda x: exact.log_sigmoid(x, dps=_ORACLE_DPS),
        F.logsigmoid,
    )
    add(
        "information.entropy",
        information_regimes,
        lambda rng, n, regime: _information_inputs(rng, n, regime)[:1],
        information.entropy,
        lambda p: exact.information.entropy(p, dps=_ORACLE_DPS),
        lambda p: torch.special.entr(p).sum(-1),
    )
    add(
        "information.cross_entropy",
        information_regimes,
        _information_inputs,
        information.cross_entropy,
        lambda p, q: exact.information.cross_entropy(p, q, dps=_ORACLE_DPS),
        lambda p, q: -torch.special.xlogy(p, q).sum(-1),
    )
    add(
        "information.kl_divergence",
        ("typical", "near-zero loss", "tiny probabilities", "near-one probabilities"),
        _information_inputs,
        information.kl_divergence,
        lambda p, q: exact.information.kl_divergence(p, q, dps=_ORACLE_DPS),
        lambda p, q: (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1),
    )
    return cases


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _round_inputs(inputs: Arrays, dtype: str) -> Arrays:
    """Round the floating inputs to ``dtype`` (and back to float64, exactly); class indices stay."""
    import torch

    if dtype == "float64":
        return inputs
    return tuple(
        array if array.dtype.kind in "iu" else torch.from_numpy(array).to(_torch_dtype(dtype)).double().numpy()
        for array in inputs
    )


def _call_torch(case: _Case, inputs: Arrays, dtype: str) -> npt.NDArray[np.float64]:
    import torch

    tensors = [
        torch.from_numpy(array) if array.dtype.kind in "iu" else torch.from_numpy(array).to(_torch_dtype(dtype))
        for array in inputs
    ]
    return np.asarray(case.torch_call(*tensors).double().numpy(), dtype=np.float64)


def _row(case: _Case, implementation: str, dtype: str, computed: Any, exact: Any) -> AccuracyRow:
    ulps = ulp_error(computed, exact).reshape(-1)
    relative = relative_error(computed, exact).reshape(-1)
    own = ulp_error(computed, exact, dtype).reshape(-1)
    return AccuracyRow(
        function=case.function,
        regime=case.regime,
        implementation=implementation,
        count=int(ulps.size),
        max_ulp=float(ulps.max()),
        median_ulp=float(statistics.median(ulps.tolist())),
        max_relative=float(relative.max()),
        median_relative=float(statistics.median(relative.tolist())),
        max_ulp_own=float(own.max()),
    )


def accuracy_table(rows: int = 64, seed: int = 20240604) -> list[AccuracyRow]:
    """Measure every function, regime and implementation; the data behind ``python -m xe_verify accuracy``.

    Parameters
    ----------
    rows : int, default 64
        Batch rows drawn per function and regime (of 8 classes: elementwise functions get ``8 * rows`` elements).
    seed : int
        Base seed; each (function, regime) pair draws from its own generator, seeded by the base seed and a hash of
        its name, so the table is reproducible and adding a case does not change the others.

    Returns
    -------
    list of AccuracyRow
        Ordered by function, then regime (in :data:`REGIMES` order), then implementation: the reference, torch
        float64, float32, float16, bfloat16.

    Raises
    ------
    ImportError
        Without torch, which the comparison needs.

    Examples
    --------
    >>> from xe_verify.accuracy import accuracy_table
    >>> rows = accuracy_table(rows=1)
    >>> first = rows[0]
    >>> first.function, first.regime, first.implementation, first.max_ulp <= 4
    ('cross_entropy', 'typical', 'xe_verify float64', True)
    """
    try:
        import torch  # noqa: F401 - only to fail early, with a clear message
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the accuracy table compares against torch: pip install torch") from error
    table = []
    for case in _cases():
        rng = np.random.default_rng([seed, zlib.crc32(f"{case.function}|{case.regime}".encode())])
        inputs = case.make(rng, rows, case.regime)
        exact_by_dtype: dict[str, Any] = {}
        for implementation, dtype in _IMPLEMENTATIONS:
            rounded = _round_inputs(inputs, dtype)
            if dtype not in exact_by_dtype:
                exact_by_dtype[dtype] = case.oracle(*rounded)
            if implementation.startswith("xe_verify"):
                computed = np.asarray(case.reference(*rounded), dtype=np.float64)
            else:
                computed = _call_torch(case, rounded, dtype)
            table.append(_row(case, implementation, dtype, computed, exact_by_dtype[dtype]))
    return table


def _format_ulp(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.2f}" if value < 1000 else f"{value:.1e}"


def format_table(table: Sequence[AccuracyRow]) -> str:
    """Render rows of :func:`accuracy_table` as a Markdown table.

    Parameters
    ----------
    table : sequence of AccuracyRow
        The rows, in the order to print them.

    Returns
    -------
    str
        One Markdown table; ULP columns count float64 ULPs except the last, which counts the implementation's own.

    Examples
    --------
    >>> from xe_verify.accuracy import AccuracyRow, format_table
    >>> row = AccuracyRow("sigmoid", "typical", "torch float32", 512, 4.1e8, 1.2e8, 6.0e-8, 1.5e-8, 0.98)
    >>> print(format_table([row]))
    | function | regime | implementation | max ULP | median ULP | max rel | median rel | max ULP (own dtype) |
    |---|---|---|---:|---:|---:|---:|---:|
    | sigmoid | typical | torch float32 | 4.1e+08 | 1.2e+08 | 6.0e-08 | 1.5e-08 | 0.98 |
    """
    lines = [
        "| function | regime | implementation | max ULP | median ULP | max rel | median rel | max ULP (own dtype) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        lines.append(
            f"| {row.function} | {row.regime} | {row.implementation} | {_format_ulp(row.max_ulp)} "
            f"| {_format_ulp(row.median_ulp)} | {row.max_relative:.1e} | {row.median_relative:.1e} "
            f"| {_format_ulp(row.max_ulp_own)} |"
        )
    return "\n".join(lines)
