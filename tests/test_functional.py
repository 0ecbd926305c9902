"""Differential properties: every function of ``xe_verify.functional``, every option combination, equals torch.

Each property draws a whole argument set from ``xe_verify.strategies`` and checks it with
``differential.check_against`` against the ``implementation`` fixture (torch in float64, float32, float16 and
bfloat16): the reference is evaluated on the implementation's rounded inputs and must agree within the error bound of
``xe_verify.tolerances``, with NaN and infinities identical. The ``@example`` cases are the known hard ones (torch
semantics notes, ``../shared/torch-semantics.md``, sections 1 to 5 and the traps of section 8).

Non-finite logits are checked in float64 only: rounding to a smaller dtype creates and moves infinities, which is a
statement about the rounding, not about the formulas.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapters import Implementation, TorchImplementation
from differential import _denominator, check_against
from hypothesis import assume, example, given
from hypothesis import strategies as st

from xe_verify import functional
from xe_verify import strategies as xst
from xe_verify.tolerances import condition_scale

inf, nan = np.inf, np.nan

# torch warns on every kl_div with reduction="mean" (the default); the value is what is compared.
KL_MEAN_WARNING = "ignore:reduction. 'mean' divides the total loss:UserWarning"


def a(*values: Any) -> np.ndarray:
    """A float64 array, to keep the examples short."""
    return np.array(values[0] if len(values) == 1 else values, dtype=np.float64)


def i(*values: Any) -> np.ndarray:
    """An int64 array of class indices."""
    return np.array(values[0] if len(values) == 1 else values, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------------
# float16's range


#: Functions without a reduction.
ELEMENTWISE = {"log_softmax", "softmax", "logsumexp", "sigmoid", "log_sigmoid"}

#: The argument whose magnitude drives each function's loss: halving it shrinks every term.
SCALED_ARGUMENT = {"binary_cross_entropy": "weight"}

#: float16's largest finite number is 65504. A loss (or a sum of losses, which torch accumulates in float16 for
#: nll_loss), or an intermediate such as the smoothing term over all classes, above it is inf in torch and finite in
#: the reference. Keep the whole call's condition scale (what ``differential.bound`` sums) a factor 4 below.
FLOAT16_BUDGET = float(np.finfo(np.float16).max) / 4


def in_range(function: str, arguments: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The arguments, with the driving one halved (exact, ties kept) until float16 can hold the computation.

    Only float16 needs it: float32 and bfloat16 share float32's range, and 1e4 logits are far from it. Halving is a
    power of two, so it changes no digit of the values, only their exponent.
    """
    if dtype != "float16":
        return arguments
    name = SCALED_ARGUMENT.get(function, "input")
    for _ in range(64):
        if arguments.get(name) is None:
            return arguments
        options = {key: value for key, value in arguments.items() if key not in {"reduction", "check_range"}}
        if name != "weight":
            # torch multiplies by the weights last: q * lsm can overflow float16 even where every weight is 0.
            options.pop("weight", None)
        with np.errstate(all="ignore"):
            scale = np.asarray(condition_scale(function, **options), dtype=np.float64)
            losses = np.asarray(getattr(functional, function)(**{**options, **_none(function)}), dtype=np.float64)
            total = np.sum(scale[np.isfinite(scale)]) + np.sum(np.abs(losses[np.isfinite(losses)]))
            if function in {"cross_entropy", "nll_loss"} and arguments.get("reduction", "mean") == "mean":
                # torch divides the sums by the mean's denominator before it scales them by (1 - eps) and eps / C:
                # a denominator below 1 (small weights) enlarges those intermediates.
                total /= min(1.0, abs(_denominator(function, arguments)[0]) or 1.0)
        if total <= FLOAT16_BUDGET:
            return arguments
        arguments = {**arguments, name: np.asarray(arguments[name], dtype=np.float64) / 2.0}
    return arguments


def _none(function: str) -> dict[str, Any]:
    return {} if function in ELEMENTWISE else {"reduction": "none"}


#: Every loss's default reduction (torch's and the reference's; ``test_defaults_match_torch`` checks that they agree).
DEFAULT_REDUCTION = "mean"


def check(implementation: Implementation, function: str, arguments: dict[str, Any]) -> None:
    """``check_against`` on arguments that fit the implementation's range, with the reduction spelled out.

    The default reduction is spelled out so the failure message shows it; that it *is* the default is checked by
    signature.
    """
    __tracebackhide__ = True
    arguments = in_range(function, arguments, implementation.dtype)
    if function not in ELEMENTWISE:
        arguments = {"reduction": DEFAULT_REDUCTION, **arguments}
    check_against(implementation, function, **arguments)


# --------------------------------------------------------------------------------------------------------------------
# cross_entropy


@given(arguments=xst.cross_entropy_arguments(soft=False))
# A logit 40 above the rest: torch returns 0, the true loss is 4.2e-18 (log1p vs log(1 + s)).
@example(arguments={"input": a([[40.0, 0.0, 0.0], [0.0, 40.0, 0.0]]), "target": i(0, 1), "reduction": "none"})
# +-1e4: the shift must come first; with smoothing the other classes' -20000 and -10000 enter (1000.0).
@example(arguments={"input": a([[1e4, -1e4, 0.0]]), "target": i([0]), "reduction": "none"})
@example(arguments={"input": a([[1e4, -1e4, 0.0]]), "target": i([0]), "reduction": "none", "label_smoothing": 0.1})
@example(arguments={"input": a([[-1e4, 1e4, 0.0]]), "target": i([0]), "label_smoothing": 0.1})
# Exact ties.
@example(arguments={"input": a([[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]), "target": i(0, 1), "reduction": "none"})
# C = 1: every loss is 0 (-0.0), also with smoothing.
@example(arguments={"input": a([[3.0], [-2.0]]), "target": i(0, 0), "reduction": "none"})
@example(arguments={"input": a([[3.0], [-2.0]]), "target": i(0, 0), "label_smoothing": 0.5})
# (C,) input with a 0-d and a (1,) target, both giving a scalar.
@example(arguments={"input": a(0.5, -1.0, 2.0), "target": i(2), "reduction": "none"})
@example(arguments={"input": a(0.5, -1.0, 2.0), "target": i([1]), "reduction": "none", "weight": a(1.0, 2.0, 3.0)})
# Empty batch: mean NaN, sum 0, none [].
@example(arguments={"input": np.zeros((0, 3)), "target": np.zeros(0, dtype=np.int64)})
@example(arguments={"input": np.zeros((0, 3)), "target": np.zeros(0, dtype=np.int64), "reduction": "sum"})
@example(arguments={"input": np.zeros((2, 3, 0)), "target": np.zeros((2, 0), dtype=np.int64), "reduction": "none"})
# All targets ignored: mean NaN (0/0), with or without weight and smoothing.
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(-100, -100)})
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(1, 1), "ignore_index": 1, "label_smoothing": 0.2})
# ignore_index may be a valid class, and is tested before the bounds (3 with C = 3 is skipped, not an error).
@example(arguments={"input": a([[1.0, 2.0, 0.0], [3.0, 4.0, 0.5]]), "target": i(1, 0), "ignore_index": 1})
@example(arguments={"input": a([[1.0, 2.0, 0.0], [3.0, 4.0, 0.5]]), "target": i(3, 0), "ignore_index": 3})
# Weighted mean divides by the sum of the target classes' weights, for both smoothing terms.
@example(
    arguments={
        "input": a([[1.0, -1.0, 0.5], [0.0, 2.0, 1.0], [3.0, 0.0, -2.0]]),
        "target": i(0, 2, -100),
        "weight": a(1.0, 3.0, 0.5),
        "label_smoothing": 0.3,
    }
)
# Weights summing to 0 over the targets: mean -inf; all-zero weights: NaN.
@example(arguments={"input": a([[1.0, 2.0, 3.0]] * 4), "target": i(0, 1, 0, 0), "weight": a(1.0, -3.0, 2.0)})
@example(arguments={"input": a([[1.0, 2.0, 3.0]] * 2), "target": i(0, 1), "weight": a(0.0, 0.0, 0.0)})
# label_smoothing 1 (allowed) and negative (silently 0).
@example(arguments={"input": a([[1.0, 2.0, 3.0]] * 2), "target": i(0, 1), "label_smoothing": 1.0})
@example(arguments={"input": a([[1.0, 2.0, 3.0]] * 2), "target": i(0, 1), "label_smoothing": -5.0})
# (N, C, d1, d2) with an ignored position.
@example(
    arguments={
        "input": np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2) / 4.0,
        "target": i([[[0, 1], [2, -100]], [[2, 2], [1, 0]]]),
        "weight": a(0.5, 1.0, 2.0),
        "reduction": "none",
    }
)
# Small weights: torch divides the smoothing sum by the denominator 0.125 before scaling it, and in float16 that
# intermediate (65536) overflows. in_range halves the logits until it fits.
@example(
    arguments={
        "input": a([[0.0] * 5, [0.0] * 5, [0.0, 0.0, 0.0, 0.0, 3852.0]]),
        "target": i(3, 0, 0),
        "weight": a(0.0, 1.0, 1.0, 0.125, 0.125),
        "label_smoothing": 0.1,
    }
)
def test_cross_entropy_class_index_matches_torch(implementation: Implementation, arguments: dict[str, Any]) -> None:
    # Known disagreement, checked on its own below (test_cross_entropy_smoothing_over_zero_denominator_matches_torch).
    assume(not smoothing_over_zero_denominator(arguments))
    check(implementation, "cross_entropy", arguments)


def smoothing_over_zero_denominator(arguments: dict[str, Any]) -> bool:
    """Class-index ``mean`` with label smoothing whose denominator (the targets' summed weight) is 0."""
    target = np.asarray(arguments["target"])
    if arguments.get("reduction", DEFAULT_REDUCTION) != "mean" or arguments.get("label_smoothing", 0.0) <= 0:
        return False
    classes = np.shape(arguments["input"])[0 if np.ndim(arguments["input"]) == 1 else 1]
    weight = np.ones(classes) if arguments.get("weight") is None else np.asarray(arguments["weight"])
    valid = target != arguments.get("ignore_index", -100)
    return bool(np.sum(np.where(valid, weight[np.where(valid, target, 0)], 0.0)) == 0.0)


@pytest.mark.parametrize(
    "arguments",
    [
        # Every target's class has weight 0, the smoothing term does not: torch's mean is 0/0 + x/0 = NaN.
        {"input": np.zeros((4, 5)), "target": i(0, 0, 0, 0), "weight": a(0.0, 1.0, 0.0, 0.0, 0.0)},
        # Weights summing to 0 over the targets (1 - 1), a negative nll sum: torch's mean is -inf + inf = NaN.
        {"input": a([[3.0, 0.0, 0.0], [0.0, -3.0, 0.0]]), "target": i(0, 1), "weight": a(1.0, -1.0, 2.0)},
    ],
    ids=["zero-weights", "cancelling-weights"],
)
def test_cross_entropy_smoothing_over_zero_denominator_matches_torch(
    implementation: Implementation, arguments: dict[str, Any]
) -> None:
    check(implementation, "cross_entropy", {**arguments, "label_smoothing": 0.1})


@given(arguments=xst.cross_entropy_arguments(soft=True))
# Off-simplex targets are not checked: the formula is computed as is (torch-semantics 1.3).
@example(
    arguments={
        "input": a([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0], [3.0, 0.0, -3.0], [0.0, 2.0, 1.0]]),
        "target": a([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [-3.0, 5.0, 1.0], [1.0, 1.0, 1.0]]),
        "reduction": "none",
    }
)
# The soft mean divides by numel / C, weights or not; a one-hot weighted target is not the index mean.
@example(
    arguments={
        "input": a([[1.0, 2.0, 0.0], [0.0, 1.0, 5.0]]),
        "target": a([[1, 0, 0], [0, 0, 1]]),
        "weight": a(1, 3, 0.5),
    }
)
# Smoothing with weights: q' = (1 - e) q + e / C, then times w.
@example(
    arguments={
        "input": a([[1.0, 2.0, 0.0], [0.0, 1.0, 5.0]]),
        "target": a([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]]),
        "weight": a(1.0, 3.0, 0.5),
        "label_smoothing": 0.25,
        "ignore_index": -1,
    }
)
# (C,) input: the mean divides by 1; empty batch: mean NaN, sum -0.0.
@example(arguments={"input": a(1.0, 2.0, 40.0), "target": a(0.0, 0.0, 1.0)})
@example(arguments={"input": np.zeros((0, 3)), "target": np.zeros((0, 3))})
@example(arguments={"input": np.zeros((0, 3)), "target": np.zeros((0, 3)), "reduction": "sum"})
@example(arguments={"input": a([[1e4, -1e4, 0.0]]), "target": a([[1.0, 0.0, 0.0]]), "reduction": "none"})
def test_cross_entropy_probabilities_matches_torch(implementation: Implementation, arguments: dict[str, Any]) -> None:
    check(implementation, "cross_entropy", arguments)


# --------------------------------------------------------------------------------------------------------------------
# nll_loss


@given(arguments=xst.nll_loss_arguments())
# The input is used as given, not as log-probabilities; positive values give a negative loss.
@example(arguments={"input": a([[-0.5, 2.0], [3.0, -1.0]]), "target": i(1, 0), "weight": a(2.0, 0.5)})
# NaN at a non-target column is never read.
@example(arguments={"input": a([[nan, 0.0], [1.0, 2.0]]), "target": i(1, 1)})
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(-100, -100)})
@example(arguments={"input": np.zeros((0, 4)), "target": np.zeros(0, dtype=np.int64)})
@example(arguments={"input": a(-1.0, -2.0, -3.0), "target": i(2), "weight": a(1.0, 1.0, 4.0)})
@example(
    arguments={
        "input": -np.arange(24, dtype=np.float64).reshape(2, 3, 4),
        "target": i([[0, 1, 2, 0], [2, 2, -1, 1]]),
        "ignore_index": -1,
        "reduction": "none",
    }
)
# Weights at float32's smallest subnormal: float32's products w x underflow, and the mean keeps no correct digit
# (torch -0.5, exact -0.375); the bound divides the underflow error by the denominator.
@example(
    arguments={
        "input": a([[0.0, 1.5, 0.0]] + [[0.0, 0.0, 0.0]] * 3),
        "target": i(1, 1, 1, 1),
        "weight": a(1.401298464324817e-45, 1.401298464324817e-45, 1.401298464324817e-45),
    }
)
def test_nll_loss_matches_torch(implementation: Implementation, arguments: dict[str, Any]) -> None:
    check(implementation, "nll_loss", arguments)


# --------------------------------------------------------------------------------------------------------------------
# binary_cross_entropy and binary_cross_entropy_with_logits


@given(arguments=xst.binary_cross_entropy_arguments())
# The clamp at -100, exact in every dtype: 100, 100, 0, -0.0, 50, 50.
@example(
    arguments={
        "input": a(0.0, 1.0, 0.0, 1.0, 0.0, 1.0),
        "target": a(1.0, 0.0, 0.0, 1.0, 0.5, 0.5),
        "reduction": "none",
    }
)
# log1p(-p): p = 1e-17, t = 0 is 1e-17 (log(1 - p) gives 0); p = 1e-50 is clamped to 100.
@example(arguments={"input": a(1e-17, 1e-50), "target": a(0.0, 1.0), "reduction": "none"})
# Weights broadcast to the input's shape; the mean divides by numel, not by the weights.
@example(
    arguments={"input": a([[0.1, 0.9], [0.5, 0.3]]), "target": a([[0.0, 1.0], [1.0, 0.5]]), "weight": a([[2.0], [0.0]])}
)
@example(arguments={"input": a(0.25), "target": a(1.0), "weight": a(3.0), "reduction": "sum"})
@example(arguments={"input": np.zeros((0, 2)), "target": np.zeros((0, 2))})
def test_binary_cross_entropy_matches_torch(implementation: Implementation, arguments: dict[str, Any]) -> None:
    check(implementation, "binary_cross_entropy", arguments)


@given(arguments=xst.binary_cross_entropy_with_logits_arguments())
# Targets outside [0, 1] are accepted: t = 4 gives a negative loss, t = 2 and -1 positive ones.
@example(arguments={"input": a(0.3, 0.3, 0.3), "target": a(4.0, 2.0, -1.0), "reduction": "none"})
# No clamp: exp(-100) survives, and +-1e4 is exact.
@example(arguments={"input": a(100.0, 1e4, -1e4, -1e4), "target": a(1.0, 0.0, 1.0, 0.5), "reduction": "none"})
# pos_weight aligns with the last dimension, and may be negative.
@example(
    arguments={
        "input": a([[0.5, -2.0, 3.0], [1.0, 0.0, -1.0]]),
        "target": a([[1.0, 0.0, 0.5], [1.0, 1.0, 0.0]]),
        "pos_weight": a(-1.0, 2.0, 0.5),
        "weight": a([[1.0], [2.0]]),
    }
)
@example(arguments={"input": np.zeros((2, 0)), "target": np.zeros((2, 0)), "reduction": "sum"})
def test_binary_cross_entropy_with_logits_matches_torch(
    implementation: Implementation, arguments: dict[str, Any]
) -> None:
    check(implementation, "binary_cross_entropy_with_logits", arguments)


# --------------------------------------------------------------------------------------------------------------------
# kl_div


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
@given(arguments=xst.kl_div_arguments())
# t = 0 with input -inf (or NaN) is NaN in torch (xlogy(0, 0) - 0 * -inf), not 0; t = 1 with input -inf is inf.
@example(arguments={"input": a(-inf, -inf, 0.0), "target": a(0.0, 1.0, 0.5), "reduction": "none"})
@example(arguments={"input": a(nan, -1.0), "target": a(0.0, 1.0), "reduction": "sum"})
# log_target with t = -inf: exp(-inf) * (-inf - x) = 0 * -inf = NaN.
@example(arguments={"input": a(-1.0, -2.0), "target": a(-inf, 0.0), "log_target": True, "reduction": "none"})
# batchmean divides by input.shape[0]: C for a 1-D input (= mean), N for (N, C), nothing for 0-d.
@example(arguments={"input": a(-1.0, -2.0, -0.5), "target": a(0.2, 0.3, 0.5), "reduction": "batchmean"})
@example(arguments={"input": np.full((2, 3, 2), -1.5), "target": np.full((2, 3, 2), 1 / 6), "reduction": "batchmean"})
@example(arguments={"input": a(-0.5), "target": a(0.25), "reduction": "batchmean"})
# t < 0 is NaN (xlogy).
@example(arguments={"input": a(-1.0, -1.0), "target": a(-0.5, 0.5), "reduction": "none"})
@example(arguments={"input": np.zeros((0, 3)), "target": np.zeros((0, 3)), "reduction": "batchmean"})
def test_kl_div_matches_torch(implementation: Implementation, arguments: dict[str, Any]) -> None:
    check(implementation, "kl_div", arguments)


# --------------------------------------------------------------------------------------------------------------------
# The softmax and sigmoid families


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@given(arguments=xst.softmax_arguments())
@example(arguments={"input": a([[40.0, 0.0], [1e4, -1e4]]), "dim": 1})
@example(arguments={"input": a([[1.0, 1.0, 1.0]]), "dim": -1})
@example(arguments={"input": a([[2.0, -1.0], [0.0, 3.0]]), "dim": 0})
def test_softmax_family_matches_torch(implementation: Implementation, function: str, arguments: dict[str, Any]) -> None:
    check(implementation, function, arguments)


@pytest.mark.parametrize("function", ["sigmoid", "log_sigmoid"])
@given(x=xst.logits(st.shared(st.sampled_from([(), (3,), (2, 3)]))))
@example(x=a(0.0, 40.0, -40.0, 1e4, -1e4, 100.0, -100.0))
def test_sigmoid_family_matches_torch(implementation: Implementation, function: str, x: np.ndarray) -> None:
    check(implementation, function, {"input": x})


# --------------------------------------------------------------------------------------------------------------------
# Non-finite logits, float64 only (torch-semantics 1.7, traps 8, 14, 20)
#

#: torch-semantics 1.7: one row, target 0.
NON_FINITE_ROWS = [
    [inf, 0.0, 0.0],
    [0.0, inf, 0.0],
    [inf, inf, inf],
    [inf, -inf, 0.0],
    [nan, 0.0, 0.0],
    [0.0, nan, 0.0],
    [-inf, -inf, -inf],
    [-inf, 0.0, 0.0],
    [0.0, -inf, 0.0],
    [1e308, 0.0, 0.0],
    [-1e308, 0.0, 0.0],
    [1e308, -1e308, 0.0],
]

CROSS_ENTROPY_ROW_OPTIONS = {
    "index": {},
    "index-smoothing": {"label_smoothing": 0.1},
    "index-zero-weight": {"weight": a(0.0, 1.0, 1.0)},
    "soft": {"soft": True},
    "soft-smoothing": {"soft": True, "label_smoothing": 0.1},
}


def _cross_entropy_row_cases() -> list[Any]:
    cases = []
    for name, options in CROSS_ENTROPY_ROW_OPTIONS.items():
        for row in NON_FINITE_ROWS:
            cases.append(pytest.param(row, options, id=f"{name}-{row}"))
    return cases


def _softmax_row_cases() -> list[Any]:
    cases = []
    for function in ["softmax", "log_softmax", "logsumexp"]:
        for row in NON_FINITE_ROWS:
            cases.append(pytest.param(function, row, id=f"{function}-{row}"))
    return cases


@pytest.mark.parametrize(("row", "options"), _cross_entropy_row_cases())
def test_cross_entropy_non_finite_row_matches_torch(
    torch64: TorchImplementation, row: list[float], options: dict[str, Any]
) -> None:
    options = dict(options)
    target = a([[1.0, 0.0, 0.0]]) if options.pop("soft", False) else i([0])
    check(torch64, "cross_entropy", {"input": a([row]), "target": target, "reduction": "none", **options})


@pytest.mark.parametrize(("function", "row"), _softmax_row_cases())
def test_softmax_family_non_finite_row_matches_torch(
    torch64: TorchImplementation, function: str, row: list[float]
) -> None:
    check(torch64, function, {"input": a([row]), "dim": 1})


@given(arguments=xst.cross_entropy_arguments(allow_non_finite=True))
# A NaN row whose target is ignored gives a finite loss, with and without smoothing.
@example(arguments={"input": a([[nan, 0.0], [1.0, 2.0]]), "target": i(-100, 1), "label_smoothing": 0.3})
# NaN logits at ignored positions of a K-dim input: their condition scale is 0, not NaN (which allowed no error at all).
@example(arguments={"input": a([[[0.0, 0.0, 2.0], [nan, 0.0, 0.0], [nan, 0.0, 0.0]]]), "target": i([[-100, -100, 0]])})
def test_cross_entropy_with_non_finite_logits_matches_torch(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    check(torch64, "cross_entropy", arguments)


@given(arguments=xst.nll_loss_arguments(allow_non_finite=True))
# NaN at a non-target column is never read; NaN in an ignored row neither.
@example(arguments={"input": a([[nan, nan], [1.0, 2.0]]), "target": i(-100, 1), "reduction": "sum"})
# Weight 0 on an infinite loss is NaN (0 * inf), not 0.
@example(arguments={"input": a([[-inf, 0.0], [1.0, 2.0]]), "target": i(0, 1), "weight": a(0.0, 1.0)})
def test_nll_loss_with_non_finite_input_matches_torch(torch64: TorchImplementation, arguments: dict[str, Any]) -> None:
    check(torch64, "nll_loss", arguments)


@given(arguments=xst.binary_cross_entropy_with_logits_arguments(allow_non_finite=True))
# NaN from (1 - t) x: x = +inf with t = 1, and x = -inf with any t; pos_weight changes nothing there.
@example(
    arguments={
        "input": a(inf, inf, inf, -inf, -inf, -inf),
        "target": a(0.0, 1.0, 0.5, 0.0, 1.0, 0.5),
        "reduction": "none",
    }
)
@example(arguments={"input": a(inf, -inf), "target": a(1.0, 0.0), "pos_weight": a(2.0), "reduction": "none"})
def test_binary_cross_entropy_with_logits_non_finite_matches_torch(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    check(torch64, "binary_cross_entropy_with_logits", arguments)


@pytest.mark.parametrize(
    "function",
    [
        "softmax",
        "log_softmax",
        "logsumexp",
    ],
)
@given(arguments=xst.softmax_arguments(allow_non_finite=True))
@example(arguments={"input": a([[-inf, -inf], [inf, -inf], [nan, 0.0]]), "dim": 1})
def test_softmax_family_with_non_finite_logits_matches_torch(
    torch64: TorchImplementation, function: str, arguments: dict[str, Any]
) -> None:
    check(torch64, function, arguments)


# --------------------------------------------------------------------------------------------------------------------
# Interface: defaults, result types and shapes, argument handling

LOSSES = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

ARGUMENT_SETS = {
    "cross_entropy": xst.cross_entropy_arguments(),
    "nll_loss": xst.nll_loss_arguments(),
    "binary_cross_entropy": xst.binary_cross_entropy_arguments(),
    "binary_cross_entropy_with_logits": xst.binary_cross_entropy_with_logits_arguments(),
    "kl_div": xst.kl_div_arguments(),
}


@pytest.mark.parametrize("function", LOSSES)
def test_defaults_match_torch(function: str) -> None:
    """Same argument names, order and defaults as ``torch.nn.functional`` (its deprecated ones left out)."""
    deprecated = {"size_average", "reduce"}
    ours = inspect.signature(getattr(functional, function)).parameters
    theirs = {
        name: p for name, p in inspect.signature(getattr(F, function)).parameters.items() if name not in deprecated
    }
    shared = [name for name in ours if name in theirs]
    assert shared == list(theirs), f"{function}: reference arguments {list(ours)}, torch {list(theirs)}"
    for name in shared:
        assert ours[name].default == theirs[name].default, f"{function}({name}=...): defaults differ"


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
@pytest.mark.parametrize("function", LOSSES)
@given(data=st.data())
def test_result_is_float64_scalar_or_array_of_torchs_shape(
    torch64: TorchImplementation, function: str, data: st.DataObject
) -> None:
    """``none`` gives a float64 array of torch's shape (the input's without the class dimension for the softmax
    losses); ``mean``, ``sum`` and ``batchmean`` give an ``np.float64`` scalar."""
    arguments = data.draw(ARGUMENT_SETS[function], label="arguments")
    result = getattr(functional, function)(**arguments)
    expected_shape = torch64(function, **arguments).shape
    if arguments.get("reduction", DEFAULT_REDUCTION) == "none":
        assert isinstance(result, np.ndarray)
        assert result.dtype == np.float64
        assert result.shape == expected_shape
    else:
        assert type(result) is np.float64
        assert expected_shape == ()


def _read_only(arguments: dict[str, Any]) -> dict[str, Any]:
    frozen = {}
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
        frozen[name] = value
    return frozen


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
@pytest.mark.parametrize("function", LOSSES)
@given(data=st.data())
def test_inputs_are_never_modified(function: str, data: st.DataObject) -> None:
    """Read-only arrays are accepted (nothing writes to them) and every argument keeps its value."""
    arguments = data.draw(ARGUMENT_SETS[function], label="arguments")
    frozen = _read_only(arguments)
    getattr(functional, function)(**frozen)
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(frozen[name], value, err_msg=f"{function} modified {name}")


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@given(arguments=xst.softmax_arguments())
def test_softmax_family_never_modifies_its_input(function: str, arguments: dict[str, Any]) -> None:
    frozen = _read_only(arguments)
    getattr(functional, function)(**frozen)
    np.testing.assert_array_equal(frozen["input"], arguments["input"])


def _same(expected: Any, actual: Any) -> None:
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected), strict=True)


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
@pytest.mark.parametrize("function", LOSSES)
@given(data=st.data())
def test_lists_and_torch_tensors_give_the_numpy_result(function: str, data: st.DataObject) -> None:
    """Nested lists and float64 torch tensors are read exactly as the float64 numpy arrays they hold."""
    arguments = data.draw(ARGUMENT_SETS[function], label="arguments")
    expected = getattr(functional, function)(**arguments)
    as_lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arguments.items()}
    _same(expected, getattr(functional, function)(**as_lists))
    as_tensors = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in arguments.items()}
    _same(expected, getattr(functional, function)(**as_tensors))


@given(arguments=xst.cross_entropy_arguments(), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_low_precision_tensors_are_read_exactly(arguments: dict[str, Any], dtype: torch.dtype) -> None:
    """A float32, float16 or bfloat16 tensor means the float64 value of its elements (bfloat16 has no numpy dtype)."""
    tensors = {
        k: torch.from_numpy(v).to(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in arguments.items()
    }
    widened = {k: v.double().numpy() if isinstance(v, torch.Tensor) else v for k, v in tensors.items()}
    _same(functional.cross_entropy(**widened), functional.cross_entropy(**tensors))
