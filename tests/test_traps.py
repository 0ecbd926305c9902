"""One test per trap of ``../shared/torch-semantics.md`` section 8 (traps 1 to 21), each failing if the reference
fell into it.

Where torch is the authority, torch's value is computed here (never hard-coded) and compared with
``differential.check_against`` (the ``xe_verify.tolerances`` bound in float64, NaN and infinities identical). Where a
formula is the authority, it is written out by hand below, in the plainest numpy, and compared within the same
float64 bound. Each trap also shows the wrong answer it guards against and checks that the reference is far from it.

Traps about gradients (the second half of 9, and 12 and 22) belong to the gradients issue: only their forward part
is tested here, as the comments say.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapters import TorchImplementation
from differential import assert_within, bound, check_against
from torch.distributions import Bernoulli, Categorical

from xe_verify import functional, information
from xe_verify.tolerances import MACHINE_EPSILON, allowed_error, condition_scale, operation_count

inf, nan = np.inf, np.nan

LOGITS = np.array([[1.5, -0.3, 0.2], [0.1, 2.0, -1.0], [-0.5, 0.4, 0.9], [2.2, -1.7, 0.0]])
TARGETS = np.array([0, 2, -100, 1])
WEIGHT = np.array([0.2, 1.0, 3.0])

# torch warns on every kl_div with reduction="mean"; the warning is part of trap 17 and asserted there.
KL_MEAN_WARNING = "reduction: 'mean' divides the total loss by both the batch size and the support size"


def t64(value: Any) -> torch.Tensor:
    """A torch tensor: float64 for floats, int64 for integers (the dtypes torch's CPU kernels accept together)."""
    array = np.asarray(value)
    return torch.from_numpy(array.astype(np.int64 if array.dtype.kind in "iu" else np.float64))


def naive_log_softmax(x: np.ndarray) -> np.ndarray:
    """``x - log(sum(exp(x)))`` along the last axis: fine for the moderate logits of these hand formulas."""
    return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


def assert_formula(function: str, arguments: dict[str, Any], by_hand: Any, label: str) -> np.float64 | np.ndarray:
    """The reference equals a hand-derived float64 formula within twice the float64 bound (two evaluations)."""
    __tracebackhide__ = True
    value = np.asarray(getattr(functional, function)(**arguments), dtype=np.float64)
    allowed = 2 * bound(function, "float64", arguments, value)
    assert_within(function, value, np.asarray(by_hand, dtype=np.float64), allowed, label=label, arguments=arguments)
    return value


def far_from(value: Any, wrong: Any, relative: float = 1e-3) -> bool:
    """``value`` is not the trap's wrong answer: they differ by more than ``relative`` (far beyond any rounding)."""
    value, wrong = np.asarray(value, dtype=np.float64), np.asarray(wrong, dtype=np.float64)
    return bool(np.all(np.abs(value - wrong) > relative * np.maximum(np.abs(value), np.abs(wrong))))


@pytest.fixture(scope="module")
def torch32(torch_device: str) -> TorchImplementation:
    return TorchImplementation("float32", torch_device)


# --------------------------------------------------------------------------------------------------------------------


def test_trap_01_cross_entropy_takes_logits_not_probabilities(torch64: TorchImplementation) -> None:
    # The seed notebook (In[187]-In[190]) fed sigmoid outputs to CrossEntropyLoss: CE softmaxes them again.
    probabilities = np.array([[0.3136, 0.3328], [0.4025, 0.2240], [0.6256, 0.1918], [0.3765, 0.6219], [0.1897, 0.1764]])
    truth = np.array([0, 0, 0, 1, 0])
    arguments = {"input": probabilities, "target": truth, "reduction": "mean"}
    check_against(torch64, "cross_entropy", **arguments)
    # By hand: -mean log softmax(p)[y].
    by_hand = -np.mean(naive_log_softmax(probabilities)[np.arange(5), truth])
    value = assert_formula("cross_entropy", arguments, by_hand, "-mean log softmax(p)[y]")
    # The trap: reading the input as probabilities, -mean log p[y] (0.935, not 0.615).
    assert far_from(value, -np.mean(np.log(probabilities[np.arange(5), truth])))


def test_trap_02_weighted_mean_divides_by_target_weights_soft_mean_by_positions(torch64: TorchImplementation) -> None:
    arguments = {"input": LOGITS, "target": TARGETS, "weight": WEIGHT, "reduction": "mean"}
    check_against(torch64, "cross_entropy", **arguments)
    valid = TARGETS != -100
    picked = WEIGHT[TARGETS[valid]]
    weighted_sum = np.sum(picked * -naive_log_softmax(LOGITS)[valid, TARGETS[valid]])
    value = assert_formula("cross_entropy", arguments, weighted_sum / np.sum(picked), "sum / sum w[y] (non-ignored)")
    # sum w[y] = 4.2; the traps divide by N = 4 or by the 3 non-ignored positions.
    assert far_from(value, weighted_sum / len(TARGETS))
    assert far_from(value, weighted_sum / valid.sum())

    # Soft targets divide by numel / C, even one-hot and weighted (here the one-hot of the 3 valid rows).
    one_hot = np.eye(3)[TARGETS[valid]]
    soft = {"input": LOGITS[valid], "target": one_hot, "weight": WEIGHT, "reduction": "mean"}
    check_against(torch64, "cross_entropy", **soft)
    soft_value = assert_formula("cross_entropy", soft, weighted_sum / 3, "sum / (numel / C)")
    assert far_from(soft_value, weighted_sum / np.sum(picked))


def test_trap_03_label_smoothing_with_weights_shares_the_denominator(torch64: TorchImplementation) -> None:
    smoothing, classes = 0.2, 3
    arguments = {"input": LOGITS, "target": TARGETS, "weight": WEIGHT, "label_smoothing": smoothing}
    for reduction in ("none", "mean"):
        check_against(torch64, "cross_entropy", **arguments, reduction=reduction)
    valid = TARGETS != -100
    safe = np.where(valid, TARGETS, 0)
    minus_lsm = -naive_log_softmax(LOGITS)
    nll = WEIGHT[safe] * minus_lsm[np.arange(4), safe]
    smooth = np.sum(WEIGHT * minus_lsm, axis=-1)
    # (1 - e) w_y (-lsm_y) + (e / C) sum_c w_c (-lsm_c), both zero at ignored positions, both / sum w[y].
    per_position = np.where(valid, (1 - smoothing) * nll + smoothing / classes * smooth, 0.0)
    value = assert_formula(
        "cross_entropy", {**arguments, "reduction": "mean"}, per_position.sum() / WEIGHT[safe][valid].sum(), "by hand"
    )
    # The traps: the smoothing term kept at the ignored position, unweighted, or divided by N.
    kept_ignored = (1 - smoothing) * np.where(valid, nll, 0.0) + smoothing / classes * smooth
    assert far_from(value, kept_ignored.sum() / WEIGHT[safe][valid].sum())
    unweighted = np.where(valid, (1 - smoothing) * nll + smoothing / classes * minus_lsm.sum(axis=-1), 0.0)
    assert far_from(value, unweighted.sum() / WEIGHT[safe][valid].sum())
    assert far_from(value, per_position.sum() / len(TARGETS))

    # Soft path: q' = (1 - e) q + e / C, the weights multiply per class, the mean divides by N.
    q = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]])
    soft = {"input": LOGITS, "target": q, "weight": WEIGHT, "label_smoothing": smoothing, "reduction": "mean"}
    check_against(torch64, "cross_entropy", **soft)
    smoothed = (1 - smoothing) * q + smoothing / classes
    assert_formula("cross_entropy", soft, np.mean(np.sum(WEIGHT * smoothed * minus_lsm, axis=-1)), "soft by hand")


def test_trap_04_negative_smoothing_is_zero_above_one_raises_one_is_allowed(torch64: TorchImplementation) -> None:
    for target in (TARGETS, np.eye(3)[[0, 2, 1, 1]]):
        unsmoothed = functional.cross_entropy(LOGITS, target, reduction="sum")
        for smoothing in (-5.0, -0.1):
            check_against(
                torch64, "cross_entropy", input=LOGITS, target=target, label_smoothing=smoothing, reduction="sum"
            )
            assert functional.cross_entropy(LOGITS, target, reduction="sum", label_smoothing=smoothing) == unsmoothed
        check_against(torch64, "cross_entropy", input=LOGITS, target=target, label_smoothing=1.0, reduction="none")
        message = "label_smoothing must be between 0.0 and 1.0. Got: 1.5"
        with pytest.raises(RuntimeError, match=re.escape(message)):
            F.cross_entropy(t64(LOGITS), t64(target), label_smoothing=1.5)
        with pytest.raises(ValueError, match=re.escape(message)):
            functional.cross_entropy(LOGITS, target, label_smoothing=1.5)
    # e = 1 by hand: only the uniform term, (1 / C) sum_c w_c (-lsm_c), over sum w[y].
    valid = TARGETS != -100
    uniform = np.sum(WEIGHT * -naive_log_softmax(LOGITS), axis=-1)[valid] / 3
    arguments = {"input": LOGITS, "target": TARGETS, "weight": WEIGHT, "label_smoothing": 1.0, "reduction": "mean"}
    assert_formula("cross_entropy", arguments, uniform.sum() / WEIGHT[TARGETS[valid]].sum(), "e = 1 by hand")


def test_trap_05_ignore_index_is_tested_before_the_bounds(torch64: TorchImplementation) -> None:
    # A valid class as ignore_index drops its targets: the same as slicing those rows away.
    targets = np.array([0, 1, 2, 1])
    arguments = {"input": LOGITS, "target": targets, "ignore_index": 1, "label_smoothing": 0.1}
    check_against(torch64, "cross_entropy", **arguments, reduction="mean")
    kept = targets != 1
    sliced = functional.cross_entropy(LOGITS[kept], targets[kept], label_smoothing=0.1, reduction="mean")
    assert_formula("cross_entropy", {**arguments, "reduction": "mean"}, sliced, "rows of class 1 sliced away")
    # An out-of-range ignore_index (3 with C = 3) silently skips targets equal to it: no IndexError.
    out_of_range = {"input": LOGITS, "target": np.array([0, 3, 2, 3]), "ignore_index": 3, "reduction": "none"}
    check_against(torch64, "cross_entropy", **out_of_range)
    assert np.all(functional.cross_entropy(**out_of_range)[[1, 3]] == 0.0)
    # Soft targets: a negative ignore_index is accepted and does nothing; a non-negative one is an error.
    q = np.eye(3)[[0, 2, 1, 1]]
    for ignore_index in (-1, -101):
        check_against(torch64, "cross_entropy", input=LOGITS, target=q, ignore_index=ignore_index, reduction="none")
    with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(t64(LOGITS), t64(q), ignore_index=0)
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        functional.cross_entropy(LOGITS, q, ignore_index=0)


@pytest.mark.parametrize("bad", [3, -1, -101, 2**40])
@pytest.mark.parametrize(
    ("logits", "shape"),
    [(LOGITS[0], ()), (LOGITS, (4,)), (np.zeros((2, 3, 2)), (2, 2))],
    ids=["(C,)", "(N,C)", "(N,C,d)"],
)
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "reduction": "sum"}, {"reduction": "none"}])
def test_trap_06_out_of_range_targets_raise_index_error_and_are_never_wrapped(
    bad: int, logits: np.ndarray, shape: tuple[int, ...], options: dict[str, Any]
) -> None:
    targets = np.zeros(shape, dtype=np.int64)
    targets.reshape(-1)[-1] = bad
    message = f"Target {bad} is out of bounds."
    with pytest.raises(IndexError, match=re.escape(message)):
        F.cross_entropy(t64(logits), t64(targets), **options)
    with pytest.raises(IndexError, match=re.escape(message)):
        functional.cross_entropy(logits, targets, **options)
    with pytest.raises(IndexError, match=re.escape(message)):
        functional.nll_loss(logits, targets, **{k: v for k, v in options.items() if k != "label_smoothing"})
    # -1 is ignored only when it is the ignore_index (then it equals slicing, not class C - 1).
    if bad == -1:
        ignored = functional.cross_entropy(logits, targets, ignore_index=-1, reduction="sum")
        torch_ignored = F.cross_entropy(t64(logits), t64(targets), ignore_index=-1, reduction="sum").item()
        assert ignored == pytest.approx(torch_ignored, rel=1e-12, abs=1e-15)  # torch-semantics 8.21: f64 rtol 1e-12
        wrapped = np.where(targets == -1, 2, targets)
        assert ignored != functional.cross_entropy(logits, wrapped, reduction="sum")


def test_trap_07_degenerate_means_nan_sums_zero_weights_may_cancel(torch64: TorchImplementation) -> None:
    all_ignored = np.full(4, -100)
    for options in ({}, {"weight": WEIGHT}, {"label_smoothing": 0.3}):
        for reduction in ("mean", "sum", "none"):
            check_against(torch64, "cross_entropy", input=LOGITS, target=all_ignored, reduction=reduction, **options)
        assert np.isnan(functional.cross_entropy(LOGITS, all_ignored, **options))
        assert functional.cross_entropy(LOGITS, all_ignored, reduction="sum", **options) == 0.0
        assert np.all(functional.cross_entropy(LOGITS, all_ignored, reduction="none", **options) == 0.0)
    # Empty batches, class-index and soft: mean nan (0 / 0), sum 0 (torch's soft sum is -0.0: signs not compared).
    empty = np.zeros((0, 3))
    for target in (np.zeros(0, dtype=np.int64), np.zeros((0, 3))):
        for reduction in ("mean", "sum", "none"):
            check_against(torch64, "cross_entropy", input=empty, target=target, reduction=reduction)
        assert np.isnan(functional.cross_entropy(empty, target))
        assert functional.cross_entropy(empty, target, reduction="sum") == 0.0
    # Weights summing to 0 over the targets: all zero gives nan; [1, -3, 2] on targets [0, 1, 0, 0] gives
    # sum / (1 - 3 + 1 + 1) = +inf here (a positive sum over 0).
    targets = np.array([0, 1, 0, 0])
    for weight in (np.zeros(3), np.array([1.0, -3.0, 2.0])):
        check_against(torch64, "cross_entropy", input=LOGITS, target=targets, weight=weight, reduction="mean")
        check_against(torch64, "cross_entropy", input=LOGITS, target=targets, weight=weight, reduction="sum")
    assert functional.cross_entropy(LOGITS, targets, weight=[1.0, -3.0, 2.0]) == inf
    # Negative weights are allowed, a negative denominator flips the mean's sign.
    negative = np.array([-1.0, -2.0, -0.5])
    check_against(torch64, "cross_entropy", input=LOGITS, target=targets, weight=negative, reduction="mean")
    assert functional.cross_entropy(LOGITS, targets, weight=negative) > 0


#: torch-semantics 1.7: one row per case, target 0.
NON_FINITE_ROWS = np.array(
    [
        [inf, 0, 0],
        [0, inf, 0],
        [inf, inf, inf],
        [inf, -inf, 0],
        [nan, 0, 0],
        [0, nan, 0],
        [-inf, -inf, -inf],
        [-inf, 0, 0],
        [0, -inf, 0],
        [1e4, -1e4, 0],
        [-1e4, 1e4, 0],
        [1e308, 0, 0],
        [-1e308, 0, 0],
    ]
)


@pytest.mark.parametrize(
    "options",
    [
        {"target": np.zeros(len(NON_FINITE_ROWS), dtype=np.int64)},
        {"target": np.zeros(len(NON_FINITE_ROWS), dtype=np.int64), "label_smoothing": 0.1},
        {"target": np.tile([1.0, 0.0, 0.0], (len(NON_FINITE_ROWS), 1))},
        {"target": np.zeros(len(NON_FINITE_ROWS), dtype=np.int64), "weight": np.array([0.0, 1.0, 1.0])},
    ],
    ids=["index", "smoothing", "soft", "weight-0"],
)
def test_trap_08_non_finite_logits_follow_torch(torch64: TorchImplementation, options: dict[str, Any]) -> None:
    # +inf anywhere -> nan; -inf at the target -> inf; -inf elsewhere -> finite (index), inf (smoothing), nan (soft,
    # 0 * -inf); weight 0 on an infinite loss -> nan. check_against demands identical NaN and infinities. Its bound
    # cannot take every row: 2 max|x| overflows at 1e308 (a numpy warning, an error in this suite: silenced), and a
    # target weight of 0 times an infinite condition scale is NaN, so with weight 0 it is skipped. Every row is also
    # held to rtol 1e-12 against torch (torch-semantics 8.21), which these exactly representable results meet.
    with np.errstate(over="ignore", invalid="ignore"):
        check_against(torch64, "log_softmax", input=NON_FINITE_ROWS, dim=1)
        if "weight" not in options:
            check_against(torch64, "cross_entropy", input=NON_FINITE_ROWS, reduction="none", **options)
    losses = functional.cross_entropy(NON_FINITE_ROWS, reduction="none", **options)
    expected = F.cross_entropy(
        t64(NON_FINITE_ROWS),
        **{k: t64(v) for k, v in options.items() if k != "label_smoothing"},
        label_smoothing=options.get("label_smoothing", 0.0),
        reduction="none",
    ).numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-12, atol=0, equal_nan=True)
    assert np.isnan(losses[0])
    assert np.isnan(losses[4])
    if "weight" in options:
        assert np.isnan(losses[7])  # 0 * inf, not 0
        # nll_loss too (on the same log-probabilities; check_against's bound is 0 * inf there as well).
        log_probabilities = functional.log_softmax(NON_FINITE_ROWS, dim=1)
        torch_nll = F.nll_loss(t64(log_probabilities), **{k: t64(v) for k, v in options.items()}, reduction="none")
        nll = functional.nll_loss(log_probabilities, reduction="none", **options)
        np.testing.assert_allclose(nll, torch_nll.numpy(), rtol=1e-12, atol=0, equal_nan=True)
        assert np.isnan(nll[7])
    else:
        assert losses[7] == inf


def test_trap_09_nan_in_an_ignored_row_leaves_the_loss_finite(torch64: TorchImplementation) -> None:
    # Forward part only. That row's gradient (nan through log_softmax's backward) belongs to the gradients issue.
    logits = LOGITS.copy()
    logits[2] = nan  # TARGETS[2] is ignored
    for options in ({}, {"label_smoothing": 0.2}, {"weight": WEIGHT}):
        for reduction in ("mean", "sum", "none"):
            arguments = {"target": TARGETS, "reduction": reduction, **options}
            value = np.asarray(functional.cross_entropy(logits, **arguments))
            torch_options = {k: t64(v) if isinstance(v, np.ndarray) else v for k, v in arguments.items()}
            expected = F.cross_entropy(t64(logits), **torch_options).numpy()
            # check_against cannot take this case: the bound's condition scale is 0 * NaN = NaN at the ignored row.
            # The ignored row contributes an exact 0, so the clean logits' bound is the bound of this evaluation.
            allowed = bound("cross_entropy", "float64", {"input": LOGITS, **arguments}, value)
            assert_within("cross_entropy", value, expected, allowed, label="torch-cpu-float64", arguments=arguments)
            assert np.isfinite(value).all()
            assert np.array_equal(value, functional.cross_entropy(LOGITS, **arguments))  # masked to an exact 0


def test_trap_10_bce_clamps_each_log_at_minus_100_and_uses_log1p(torch64: TorchImplementation) -> None:
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1e-50, 1e-17])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])
    check_against(torch64, "binary_cross_entropy", input=p, target=t, reduction="none")
    losses = functional.binary_cross_entropy(p, t, reduction="none")
    # By hand: clamp -> exactly 100, 100, 0, 0, 50, 50, 100; each element <= 100 w.
    assert losses[:7].tolist() == [100.0, 100.0, 0.0, 0.0, 50.0, 50.0, 100.0]
    weight = np.full(8, 2.5)
    assert np.all(functional.binary_cross_entropy(p, t, weight, reduction="none") <= 100 * weight)
    # p = 1e-17, t = 0: -log1p(-1e-17) = 1e-17 (to an ULP: log1p(z) = z - z^2/2 + ..., z^2 far below an ULP).
    assert losses[7] == pytest.approx(1e-17, rel=MACHINE_EPSILON["float64"], abs=0)
    # The trap: -log(1 - p) rounds 1 - 1e-17 to 1 and gives -0.0, which an rtol-only check rejects.
    naive = -np.log(1.0 - 1e-17)
    assert naive == 0.0
    assert not np.isclose(naive, losses[7], rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [-0.1, 1.1, nan, inf, -inf])
@pytest.mark.parametrize("argument", ["input", "target"])
def test_trap_11_bce_rejects_values_outside_the_unit_interval(argument: str, bad: float) -> None:
    arguments = {"input": np.array([0.3, 0.6]), "target": np.array([0.0, 1.0])}
    arguments[argument] = np.array([0.5, bad])
    with pytest.raises(RuntimeError, match=f"all elements of {argument} should be between 0 and 1"):
        F.binary_cross_entropy(t64(arguments["input"]), t64(arguments["target"]))
    with pytest.raises(ValueError, match=rf"all elements of {argument} should be between 0 and 1.*{argument}\[1\]"):
        functional.binary_cross_entropy(**arguments)


def test_trap_11_bce_with_logits_accepts_any_target(torch64: TorchImplementation) -> None:
    # Targets 2 and 4 (the seed's) and -1: accepted, the loss can be negative; BCE's unchecked formula agrees.
    x, t = np.array([0.3, 0.3, 0.3, -1.2]), np.array([2.0, 4.0, -1.0, 4.0])
    check_against(torch64, "binary_cross_entropy_with_logits", input=x, target=t, reduction="none")
    losses = functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert losses[1] < 0
    # By hand: (1 - t) x + softplus(-x).
    assert_formula(
        "binary_cross_entropy_with_logits",
        {"input": x, "target": t, "reduction": "none"},
        (1 - t) * x + np.log1p(np.exp(-x)),
        "(1 - t) x + log(1 + e^-x)",
    )


def test_trap_12_bce_forward_at_the_clamped_points(implementation: TorchImplementation) -> None:
    # Forward part only: the values at p in {0, 1}, where the gradient's max(p (1 - p), float32(1e-12)) acts, are the
    # clamp's exact 100, 50 and 0 in every dtype (f16 rounds 0.9999 to 1). The gradient belongs to the gradients issue.
    p = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.9999])
    t = np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0])
    check_against(implementation, "binary_cross_entropy", input=p, target=t, reduction="none")
    assert functional.binary_cross_entropy(p, t, reduction="none")[:6].tolist() == [0.0, 50.0, 100.0, 100.0, 50.0, 0.0]


@pytest.mark.parametrize("function", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_trap_13_bce_means_divide_by_numel_not_by_the_weights(torch64: TorchImplementation, function: str) -> None:
    x = np.array([[0.1, 0.5, 0.9, 0.3], [0.7, 0.2, 0.6, 0.4], [0.05, 0.95, 0.5, 0.25]])
    t = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.2, 0.0]])
    weight = np.array([0.5, 2.0, 3.0, 0.25])  # broadcast along the last dimension
    arguments = {"input": x, "target": t, "weight": weight, "reduction": "mean"}
    check_against(torch64, function, **arguments)
    if function == "binary_cross_entropy":
        per_element = -(t * np.log(x) + (1 - t) * np.log(1 - x))
    else:
        per_element = (1 - t) * x + np.log1p(np.exp(-x))
    weighted = weight * per_element
    value = assert_formula(function, arguments, weighted.sum() / x.size, "sum(w l) / numel")
    assert far_from(value, weighted.sum() / np.broadcast_to(weight, x.shape).sum())


def test_trap_14_bce_with_logits_infinities_dtype_and_pos_weight(torch64: TorchImplementation) -> None:
    x = np.array([inf, inf, inf, -inf, -inf, -inf])
    t = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5])
    for options in ({}, {"pos_weight": np.array([2.0])}):
        check_against(torch64, "binary_cross_entropy_with_logits", input=x, target=t, reduction="none", **options)
        losses = functional.binary_cross_entropy_with_logits(x, t, reduction="none", **options)
        # (1 - t) x: inf * 0 = nan at x = +inf, t = 1; -inf + inf = nan at x = -inf.
        assert losses[0] == inf
        assert losses[2] == inf
        assert np.isnan(losses[[1, 3, 4, 5]]).all()
    # torch returns the target's dtype (an f32 target makes an f32 loss); the reference is float64 by design.
    torch_loss = F.binary_cross_entropy_with_logits(t64([0.3]), torch.tensor([4.0], dtype=torch.float32))
    assert torch_loss.dtype == torch.float32
    assert functional.binary_cross_entropy_with_logits([0.3], np.float32([4.0])).dtype == np.float64
    assert any("target's dtype" in line for line in functional.DIFFERENCES_FROM_TORCH)
    # pos_weight aligns with the last dimension.
    logits = np.linspace(-2, 2, 24).reshape(2, 3, 4)
    targets = np.linspace(0, 1, 24).reshape(2, 3, 4)
    for pos_weight in (np.array([1.0, 2.0, 3.0, 4.0]), np.array([[2.0], [0.5], [-1.0]])):
        check_against(
            torch64,
            "binary_cross_entropy_with_logits",
            input=logits,
            target=targets,
            pos_weight=pos_weight,
            reduction="none",
        )
    with pytest.raises(RuntimeError, match="must match the size of tensor b"):
        F.binary_cross_entropy_with_logits(t64(logits), t64(targets), pos_weight=t64([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="pos_weight"):
        functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=[1.0, 2.0, 3.0])


def test_trap_15_dtypes_torch_rejects_and_uint8_targets() -> None:
    # torch: index-path weights must have the input's dtype and class indices must be int64 or uint8. The reference
    # accepts both on purpose (DIFFERENCES_FROM_TORCH) and must then compute what torch computes on matching dtypes.
    targets = np.array([0, 2, 1, 1])
    with pytest.raises(RuntimeError, match="expected scalar type Float but found Double"):
        F.cross_entropy(t64(LOGITS).float(), t64(targets), weight=t64(WEIGHT))
    with pytest.raises(RuntimeError, match="expected target dtype to be Long or Byte, but got Int"):
        F.cross_entropy(t64(LOGITS), torch.from_numpy(targets.astype(np.int32)))
    expected = F.cross_entropy(t64(LOGITS), t64(targets), weight=t64(WEIGHT.astype(np.float32))).item()
    mixed = functional.cross_entropy(LOGITS, targets.astype(np.int32), weight=WEIGHT.astype(np.float32))
    assert mixed == pytest.approx(expected, rel=1e-12)  # torch-semantics 8.21: float64 agrees within rtol 1e-12
    differences = " ".join(functional.DIFFERENCES_FROM_TORCH)
    assert "int32" in differences
    assert "expected scalar type Float but found Double" in differences
    # Soft targets are promoted: an f32 target with f64 logits gives torch's f64 result.
    q32 = np.float32([[0.2, 0.3, 0.5], [1, 0, 0], [0, 0, 1], [0.5, 0.5, 0]])
    promoted = F.cross_entropy(t64(LOGITS), torch.from_numpy(q32))
    assert promoted.dtype == torch.float64
    assert functional.cross_entropy(LOGITS, q32) == pytest.approx(promoted.item(), rel=1e-12)
    # uint8 targets: 255 is never -100 (so it is out of bounds), but ignore_index=255 ignores it. A reference that
    # cast uint8 to int8 would see -1.
    as_uint8 = np.array([0, 255, 2, 1], dtype=np.uint8)
    with pytest.raises(IndexError, match=re.escape("Target 255 is out of bounds.")):
        F.cross_entropy(t64(LOGITS), torch.from_numpy(as_uint8))
    with pytest.raises(IndexError, match=re.escape("Target 255 is out of bounds.")):
        functional.cross_entropy(LOGITS, as_uint8)
    ignored = F.cross_entropy(t64(LOGITS), torch.from_numpy(as_uint8), ignore_index=255).item()
    assert functional.cross_entropy(LOGITS, as_uint8, ignore_index=255) == pytest.approx(ignored, rel=1e-12)


def test_trap_16_shapes(torch64: TorchImplementation) -> None:
    row = LOGITS[0]
    for target in (np.array(2), np.array([2])):
        for reduction in ("none", "mean"):
            check_against(torch64, "cross_entropy", input=row, target=target, reduction=reduction)
            assert np.shape(functional.cross_entropy(row, target, reduction=reduction)) == ()
    message = "For 1D input, 1D target must have size 1, but got target size: 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        F.cross_entropy(t64(row), t64([0, 1]))
    with pytest.raises(ValueError, match="target"):
        functional.cross_entropy(row, [0, 1])
    # A 0-d input: torch's error is about soft-target dtypes; the reference says what is wrong (a listed difference).
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities"):
        F.cross_entropy(t64(1.0), t64(0))
    with pytest.raises(ValueError, match="1 or more dimensions"):
        functional.cross_entropy(1.0, 0)
    # BCE: a target of another shape is a ValueError in both (torch's deprecated-broadcast message).
    with pytest.raises(ValueError, match="Using a target size"):
        F.binary_cross_entropy(t64([[0.5, 0.5]]), t64([[0.5], [0.5]]))
    with pytest.raises(ValueError, match="Using a target size"):
        functional.binary_cross_entropy([[0.5, 0.5]], [[0.5], [0.5]])


def test_trap_17_kl_div_order_reductions_and_zero_targets(torch64: TorchImplementation) -> None:
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    q = np.array([[0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    # Argument order (log q, p): the sum is KL(p || q), by hand, not KL(q || p).
    summed = {"input": np.log(q), "target": p, "reduction": "sum"}
    check_against(torch64, "kl_div", **summed)
    by_hand = np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0))
    value = assert_formula("kl_div", summed, by_hand, "KL(p || q) by hand")
    assert far_from(value, np.sum(q * np.log(q / np.where(p > 0, p, 1e-300))))
    # 'mean' (the default) divides by numel, and torch warns about it; the reference does not warn (filterwarnings
    # is "error" in this suite, so a warning would fail this test).
    with pytest.warns(UserWarning, match=re.escape(KL_MEAN_WARNING)):
        torch_mean = F.kl_div(t64(np.log(q)), t64(p)).item()
    assert functional.kl_div(np.log(q), p) == pytest.approx(torch_mean, rel=1e-12)
    assert_formula("kl_div", {**summed, "reduction": "mean"}, by_hand / p.size, "sum / numel")
    # 'batchmean' divides by input.shape[0]: the batch for 2-D, the C classes for 1-D (so it equals 'mean').
    check_against(torch64, "kl_div", **{**summed, "reduction": "batchmean"})
    assert_formula("kl_div", {**summed, "reduction": "batchmean"}, by_hand / 2, "sum / batch")
    one_row = {"input": np.log(q[0]), "target": p[0]}
    check_against(torch64, "kl_div", **one_row, reduction="batchmean")
    assert functional.kl_div(**one_row, reduction="batchmean") == functional.kl_div(**one_row, reduction="mean")
    # t = 0 with log q = -inf or NaN -> nan (0 * -inf, not 0); t < 0 -> nan; t = 1 with -inf -> inf.
    edges = {"input": np.array([-inf, nan, 0.0, -inf, -1.0]), "target": np.array([0.0, 0.0, -1.0, 1.0, 0.0])}
    check_against(torch64, "kl_div", **edges, reduction="none")
    losses = functional.kl_div(**edges, reduction="none")
    assert np.isnan(losses[:3]).all()
    assert losses[3] == inf
    assert losses[4] == 0.0


def categorical_clamp_bound(p: np.ndarray, dtype: str) -> float:
    """How far Categorical's entropy may be from -sum p log p because it clamps probs to [eps, 1 - eps].

    For p <= eps the term changes by p log(eps / p) <= eps / e; for p >= 1 - eps by p log(p / (1 - eps)) <=
    -log1p(-eps) <= eps (1 + eps). So at most eps (1 + eps) per clamped element.
    """
    eps = float(np.finfo(dtype).eps)
    clamped = int(np.sum((p < eps) | (p > 1 - eps)))
    return clamped * eps * (1 + eps)


@pytest.mark.parametrize(
    ("probs", "dtype"),
    [
        ([1.0, 0.0, 0.0], "float64"),
        ([0.5, 0.5, 0.0], "float64"),
        ([0.2, 0.3, 0.5], "float64"),
        ([1e-40, 1.0], "float32"),
    ],
)
def test_trap_18_categorical_entropy_of_a_certainty_is_eps_not_zero(probs: list[float], dtype: str) -> None:
    p = np.asarray(probs, dtype=dtype).astype(np.float64)  # the values torch sees
    torch_entropy = Categorical(probs=torch.tensor(probs, dtype=getattr(torch, dtype))).entropy().item()
    reference = float(information.entropy(p))
    # Categorical also renormalises (a no-op here up to n u) and rounds in its dtype: the tolerances module's bound.
    scale = float(np.sum(np.where(p > 0, p * np.abs(np.log(np.where(p > 0, p, 1.0))), 0.0))) + 1.0
    rounding = float(allowed_error(reference, scale, dtype, operation_count(classes=len(probs))))
    assert abs(torch_entropy - reference) <= categorical_clamp_bound(p, dtype) + rounding
    if max(probs) == 1.0:
        # The trap: the reference's certainty is 0 (9.2e-39 with the 1e-40 term: 1e-40 * ln(1e40)); torch's is
        # eps-sized, which an rtol-only comparison calls different.
        assert reference == (0.0 if set(probs) == {0.0, 1.0} else pytest.approx(-1e-40 * math.log(p[0]), rel=1e-3))
        assert torch_entropy >= float(np.finfo(dtype).eps) / 2
        assert not np.isclose(torch_entropy, reference, rtol=1e-12, atol=0)


def test_trap_18_bernoulli_renormalising_and_validation() -> None:
    probs = np.array([0.0, 0.5, 1.0, 0.3])
    torch_entropy = Bernoulli(probs=t64(probs)).entropy().numpy()
    binary = np.asarray(information.entropy(np.stack([probs, 1 - probs], axis=-1)))
    eps = float(np.finfo(np.float64).eps)
    # Clamped elements (p = 0 and p = 1: each of its two terms within eps (1 + eps)), plus float64 rounding.
    rounding = allowed_error(binary, binary + 1.0, "float64", operation_count(classes=2))
    assert np.all(np.abs(torch_entropy - binary) <= 2 * eps * (1 + eps) + rounding)
    assert binary[[0, 2]].tolist() == [0.0, 0.0]
    assert torch_entropy[2] > 0
    # Bernoulli(logits) is BCE-with-logits(logits, sigmoid(logits)): nan at +-inf (trap 14), in both.
    logits = np.array([-inf, 0.0, inf, 1e4, -1e4])
    expected = Bernoulli(logits=t64(logits)).entropy().numpy()
    actual = functional.binary_cross_entropy_with_logits(logits, functional.sigmoid(logits), reduction="none")
    assert np.array_equal(np.isnan(expected), np.isnan(actual))
    finite = ~np.isnan(expected)
    assert np.allclose(actual[finite], expected[finite], rtol=1e-12, atol=0)
    # Categorical renormalises silently ([2, 2, 0] -> ln 2); the reference does not (documented in information).
    assert Categorical(probs=t64([2.0, 2.0, 0.0])).entropy().item() == pytest.approx(math.log(2), rel=1e-15)
    assert information.entropy([2.0, 2.0, 0.0]) == pytest.approx(-4 * math.log(2), rel=1e-15)
    assert information.entropy(np.array([2.0, 2.0, 0.0]) / 4) == pytest.approx(math.log(2), rel=1e-15)
    # Both reject negative probabilities with a ValueError.
    with pytest.raises(ValueError, match="Simplex"):
        Categorical(probs=t64([-0.1, 1.1]))
    with pytest.raises(ValueError, match=r"p\[0\].*-0\.1"):
        information.entropy([-0.1, 1.1])


def test_trap_19_entr_and_xlogy_conventions() -> None:
    # entr(0) = 0 (not nan), entr(1) = -0.0 (signs of zeros not compared); the reference's terms are entr's.
    p = np.array([0.0, 1.0, 0.5, 1e-300, 0.25])
    entr = torch.special.entr(t64(p)).numpy()
    terms = np.asarray(information.entropy(p[:, None]))  # one-element vectors: each term on its own
    scale = np.abs(entr) + 1.0
    assert_within(
        "entropy",
        entr,
        terms,
        allowed_error(entr, scale, "float64", operation_count()),
        label="entr",
        arguments={"p": p},
    )
    # The trap: p log p at 0 is nan.
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(0.0 * np.log(0.0))
    assert information.entropy([0.0, 1.0]) == 0.0
    # entr(x < 0) = -inf; the information module rejects negative probabilities instead (naming the value).
    assert torch.special.entr(t64([-1.0])).item() == -inf
    with pytest.raises(ValueError, match=r"p\[0\].*-1\.0"):
        information.entropy([-1.0])
    # xlogy(0, 0) = xlogy(0, -1) = 0: p = 0 contributes 0 whatever q is, in cross-entropy and KL.
    assert torch.special.xlogy(t64([0.0]), t64([0.0])).item() == 0.0
    assert information.cross_entropy([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert information.kl_divergence([0.0, 1.0], [0.0, 1.0]) == 0.0
    # xlogy(0, nan) = nan, which kl_div inherits (t = 0 with input nan, trap 17); information rejects NaN.
    assert np.isnan(torch.special.xlogy(t64([0.0]), t64([nan])).item())
    assert np.isnan(functional.kl_div([nan], [0.0], reduction="sum"))
    with pytest.raises(ValueError, match=r"q\[0\].*nan"):
        information.cross_entropy([0.0], [nan])


def test_trap_20_all_minus_infinity_rows(torch64: TorchImplementation) -> None:
    row = np.array([[-inf, -inf, -inf], [0.0, 1.0, 2.0]])
    check_against(torch64, "logsumexp", input=row, dim=1)
    check_against(torch64, "log_softmax", input=row, dim=1)
    check_against(torch64, "softmax", input=row, dim=1)
    assert functional.logsumexp(row, dim=1)[0] == -inf
    assert np.isnan(functional.log_softmax(row, dim=1)[0]).all()
    assert np.isnan(functional.softmax(row, dim=1)[0]).all()
    for target in (np.array([0, 1]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])):
        check_against(torch64, "cross_entropy", input=row, target=target, reduction="none")
        assert np.isnan(functional.cross_entropy(row, target, reduction="none")[0])


def test_trap_21_tolerances_rtol_alone_fails_near_zero_the_suite_bound_passes(
    torch64: TorchImplementation, torch32: TorchImplementation
) -> None:
    # A target logit 40 above the rest: the true loss is about 4.2e-18 and the reference keeps it; torch rounds
    # log(1 + e^-40) to 0 and returns -0.0. Both are right to float64 precision at the logits' scale, but an rtol-only
    # comparison (rtol 1e-12, atol 0) calls them different.
    confident = {"input": np.array([[40.0, 0.0]]), "target": np.array([0]), "reduction": "none"}
    reference = functional.cross_entropy(**confident)
    actual = F.cross_entropy(t64(confident["input"]), t64(confident["target"]), reduction="none").numpy()
    assert reference[0] > 0
    assert actual[0] == 0.0
    assert not np.isclose(actual, reference, rtol=1e-12, atol=0).all()
    check_against(torch64, "cross_entropy", **confident)
    # The bound scales with the logits (condition scale 2 max|x| + log C + 1), not with the tiny result:
    scale = condition_scale("cross_entropy", input=confident["input"], target=confident["target"])
    assert scale[0] == pytest.approx(2 * 40 + math.log(2) + 1)
    # Negative zeros: C = 1 and p = t = 1 give -0.0 in torch; the suite compares values, not signs.
    check_against(torch64, "cross_entropy", input=np.array([[3.0], [-2.0]]), target=np.array([0, 0]), reduction="none")
    check_against(torch64, "binary_cross_entropy", input=np.array([1.0]), target=np.array([1.0]), reduction="none")
    # float32: rtol 1e-12 is a float64 tolerance; torch in float32 misses it, and meets the float32 bound.
    arguments = {"input": LOGITS, "target": TARGETS, "weight": WEIGHT, "reduction": "none"}
    in_float32 = torch32("cross_entropy", **torch32.round_inputs(arguments))
    assert not np.allclose(in_float32, functional.cross_entropy(**torch32.round_inputs(arguments)), rtol=1e-12, atol=0)
    check_against(torch32, "cross_entropy", **arguments)
    # The bound is not vacuous: the /N mean instead of /sum w[y] (trap 2) misses it by orders of magnitude.
    mean = {**arguments, "reduction": "mean"}
    value = np.asarray(functional.cross_entropy(**mean))
    wrong = np.asarray(functional.cross_entropy(**{**arguments, "reduction": "sum"}) / len(TARGETS))
    with pytest.raises(AssertionError, match="differs"):
        assert_within(
            "cross_entropy", value, wrong, bound("cross_entropy", "float32", mean, value), label="/N", arguments=mean
        )


# --------------------------------------------------------------------------------------------------------------------
# Found while writing these tests: torch returns inf silently where the reference's value is also inf, but numpy warns
# on the way (an error under this suite's filterwarnings = "error"). Values agree; the warning is the bug.


def test_a_mean_over_a_tiny_denominator_overflows_to_inf_silently() -> None:
    # Trap 7's neighbour: sum w[y] = 3 * 2.2e-308 is not 0, so the mean is finite / tiny = inf, as in torch.
    arguments = {
        "input": np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 40.0]]),
        "target": np.array([0, 0, 0]),
        "weight": np.array([np.finfo(np.float64).tiny, 1.0, 1.0]),
        "label_smoothing": 1.0,
    }
    torch_arguments = {k: t64(v) if isinstance(v, np.ndarray) else v for k, v in arguments.items()}
    assert F.cross_entropy(**torch_arguments).item() == inf
    assert functional.cross_entropy(**arguments) == inf


def test_a_sum_that_overflows_is_inf_silently() -> None:
    x, t = np.array([1e308, 1e308]), np.array([0.0, 0.0])
    assert F.binary_cross_entropy_with_logits(t64(x), t64(t), reduction="sum").item() == inf
    assert functional.binary_cross_entropy_with_logits(x, t, reduction="sum") == inf
