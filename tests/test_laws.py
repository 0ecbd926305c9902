"""Metamorphic laws: identities the reference must satisfy whatever torch does, one ``@given`` per law.

Each law evaluates the reference twice (or three times) on inputs that describe the same exact value, so the two
results may differ only by rounding. Unless a test derives its own, the tolerance is the sum of both evaluations'
float64 error bounds from ``differential.bound`` (``xe_verify.tolerances``' model): each evaluation is within its bound
of the exact value, so the two are within the sum of the bounds of each other. NaN and infinities must agree exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from differential import assert_within, bound
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xe_verify import functional, information
from xe_verify import strategies as xst
from xe_verify.tolerances import MACHINE_EPSILON, allowed_error, operation_count

EPSILON = MACHINE_EPSILON["float64"]

#: An input shape shared by every array drawn in one example (logits, targets, weights).
SHAPE = st.shared(xst.class_input_shapes(), key="shape")
REDUCTIONS = st.sampled_from(["none", "sum", "mean"])


def class_axis(x: np.ndarray) -> int:
    return 0 if x.ndim == 1 else 1


def classes_of(x: np.ndarray) -> int:
    return int(x.shape[class_axis(x)])


def one_hot(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The one-hot soft target of class indices ``y`` for the input ``x`` (the class dimension where torch has it)."""
    indices = y.reshape(()) if x.ndim == 1 else y
    return np.moveaxis(np.eye(classes_of(x))[indices], -1, class_axis(x))


def evaluate(function: str, arguments: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The reference's result and its float64 error bound (always pass ``reduction``: ``bound`` reads it)."""
    result = np.asarray(getattr(functional, function)(**arguments), dtype=np.float64)
    return result, bound(function, "float64", arguments, result)


def assert_law(function: str, left: dict[str, Any], right: dict[str, Any], law: str) -> None:
    """``function(**left)`` and ``function(**right)`` are the same exact value: equal within both bounds."""
    __tracebackhide__ = True
    left_value, left_allowed = evaluate(function, left)
    right_value, right_allowed = evaluate(function, right)
    assert_within(function, left_value, right_value, left_allowed + right_allowed, label=law, arguments=left)


@st.composite
def targets(draw: st.DrawFn) -> np.ndarray:
    """Class-index (with ignored positions) or soft targets (on or off the simplex) for the shared shape."""
    if draw(st.booleans()):
        return draw(xst.class_index_targets(SHAPE))
    return draw(xst.soft_targets(SHAPE, on_simplex=draw(st.booleans())))


#: Class weights or none. A weight between 0 and 2**-10 is made 0: tiny weights add nothing to these laws, and a
#: weighted mean over a denominator like 2.2e-308 overflows (to inf in torch and the reference alike), where numpy
#: warns inside the reference's reduction and the bound's arithmetic (both reported; test_traps has the repro).
optional_weights = st.none() | SHAPE.flatmap(
    lambda shape: xst.class_weights(shape[0] if len(shape) == 1 else shape[1]).map(
        lambda weight: np.where(weight < 2.0**-10, 0.0, weight)
    )
)
smoothing = st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0.0, 1.0)


# --------------------------------------------------------------------------------------------------------------------
# Softmax losses


@given(
    x=xst.logits(SHAPE),
    target=targets(),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=REDUCTIONS,
    shift=st.floats(-1e4, 1e4) | st.sampled_from([1e6, -1e6]),
)
def test_cross_entropy_is_invariant_to_shifting_the_logits(
    x: np.ndarray, target: np.ndarray, weight: Any, label_smoothing: float, reduction: str, shift: float
) -> None:
    # One shift per batch row (a ramp from s / 2 to s), the same for every class and spatial position. Rounding
    # fl(x + s) moves each logit by at most u |x + s|, the loss by at most 2 u max|x + s| per unit of target mass: the
    # shifted side's bound has the condition scale (2 max|x + s| + log C + 1) times that mass, times k >= 16, so the
    # shift's magnitude is in the tolerance through it.
    if x.ndim == 1:
        shifted = x + shift
    else:
        per_row = np.linspace(shift / 2, shift, x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
        shifted = x + per_row
    options = {"target": target, "weight": weight, "label_smoothing": label_smoothing, "reduction": reduction}
    assert_law("cross_entropy", {"input": x, **options}, {"input": shifted, **options}, "shifted logits")


@given(arguments=xst.softmax_arguments(), shift=st.floats(-1e6, 1e6))
def test_log_softmax_is_invariant_to_shifting_the_logits(arguments: dict[str, Any], shift: float) -> None:
    # The tolerance grows with the shift as in the cross-entropy law: the scale is 2 max|x + s| + log C + 1.
    shifted = {**arguments, "input": arguments["input"] + shift}
    assert_law("log_softmax", arguments, shifted, "shifted logits")


@given(
    x=xst.logits(SHAPE),
    y=xst.class_index_targets(SHAPE, ignore_index=None),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=st.sampled_from(["none", "sum"]),
)
def test_one_hot_soft_target_equals_class_index(
    x: np.ndarray, y: np.ndarray, weight: Any, label_smoothing: float, reduction: str
) -> None:
    options = {"input": x, "weight": weight, "label_smoothing": label_smoothing, "reduction": reduction}
    assert_law("cross_entropy", {**options, "target": y}, {**options, "target": one_hot(y, x)}, "one-hot target")


@given(x=xst.logits(SHAPE), y=xst.class_index_targets(SHAPE, ignore_index=None), label_smoothing=smoothing)
def test_one_hot_soft_target_mean_equals_class_index_mean_without_weights(
    x: np.ndarray, y: np.ndarray, label_smoothing: float
) -> None:
    # Without weights both means divide by the number of positions (no position is ignored here).
    options = {"input": x, "label_smoothing": label_smoothing, "reduction": "mean"}
    assert_law("cross_entropy", {**options, "target": y}, {**options, "target": one_hot(y, x)}, "one-hot target")


@given(
    x=xst.logits(SHAPE, max_magnitude=30.0),
    y=xst.class_index_targets(SHAPE, ignore_index=None),
    weight=SHAPE.flatmap(lambda shape: xst.class_weights(shape[0] if len(shape) == 1 else shape[1], allow_zero=False)),
    label_smoothing=smoothing,
)
def test_weighted_one_hot_mean_divides_by_positions_and_class_index_mean_by_target_weights(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, label_smoothing: float
) -> None:
    # With weights the two means differ on purpose (torch-semantics 1.3): the class-index mean divides the shared sum
    # by the target classes' weights, the soft mean by the number of positions. So mean * denominator is the same sum.
    options = {"input": x, "weight": weight, "label_smoothing": label_smoothing}
    total, total_allowed = evaluate("cross_entropy", {**options, "target": y, "reduction": "sum"})
    target_weights = math.fsum(weight[y.reshape(-1)])
    positions = y.size
    index_mean = functional.cross_entropy(**options, target=y, reduction="mean")
    soft_mean = functional.cross_entropy(**options, target=one_hot(y, x), reduction="mean")
    # Each mean is the sum (within total_allowed, the one-hot sum being the same exact value) divided with one more
    # rounding, and the reference's own denominator is a float sum of `positions` weights (error <= n u sum|w|).
    divide = EPSILON * (1.0 + positions)
    assert_within(
        "cross_entropy",
        total,
        np.asarray(index_mean * target_weights),
        2 * total_allowed + divide * abs(total),
        label="index mean * sum(w[y])",
        arguments=options,
    )
    assert_within(
        "cross_entropy",
        total,
        np.asarray(soft_mean * positions),
        2 * total_allowed + divide * abs(total),
        label="one-hot mean * positions",
        arguments=options,
    )
    # ... and therefore they differ wherever the denominators do by more than the rounding: each mean is within
    # `error` of total / denominator, so |index_mean - soft_mean| >= gap - 2 error.
    gap = abs(total) * abs(1.0 / target_weights - 1.0 / positions)
    error = (2 * total_allowed + divide * abs(total)) * max(1.0 / target_weights, 1.0 / positions)
    if gap > 2 * error:
        assert abs(index_mean - soft_mean) >= gap - 2 * error, (index_mean, soft_mean, gap, error)


@given(
    x=xst.logits(SHAPE),
    y=xst.class_index_targets(SHAPE, ignore_index=None),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=REDUCTIONS,
)
def test_label_smoothing_equals_smoothed_soft_targets_for_class_indices(
    x: np.ndarray, y: np.ndarray, weight: Any, label_smoothing: float, reduction: str
) -> None:
    # (1 - e) one_hot(y) + e / C, evaluated with smoothing off. With weights the class-index mean divides by
    # sum w[y] and the soft mean by N (the previous law), so `mean` is compared only without weights.
    assume(weight is None or reduction != "mean")
    classes = classes_of(x)
    smoothed = (1.0 - label_smoothing) * one_hot(y, x) + label_smoothing / classes
    options = {"input": x, "weight": weight, "reduction": reduction}
    assert_law(
        "cross_entropy",
        {**options, "target": y, "label_smoothing": label_smoothing},
        {**options, "target": smoothed},
        "smoothed soft target",
    )


@given(
    x=xst.logits(SHAPE),
    q=SHAPE.flatmap(lambda shape: st.booleans().flatmap(lambda on: xst.soft_targets(shape, on_simplex=on))),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=REDUCTIONS,
)
def test_label_smoothing_equals_smoothed_soft_targets_for_probabilities(
    x: np.ndarray, q: np.ndarray, weight: Any, label_smoothing: float, reduction: str
) -> None:
    smoothed = (1.0 - label_smoothing) * q + label_smoothing / classes_of(x)
    options = {"input": x, "weight": weight, "reduction": reduction}
    assert_law(
        "cross_entropy",
        {**options, "target": q, "label_smoothing": label_smoothing},
        {**options, "target": smoothed},
        "smoothed soft target",
    )


@given(
    x=xst.logits(SHAPE),
    target=targets(),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=REDUCTIONS,
    permutation=SHAPE.flatmap(lambda shape: st.permutations(range(shape[0] if len(shape) == 1 else shape[1]))),
)
def test_cross_entropy_is_invariant_to_permuting_the_classes(
    x: np.ndarray, target: np.ndarray, weight: Any, label_smoothing: float, reduction: str, permutation: list[int]
) -> None:
    # Class j of the permuted problem is class permutation[j] of the original: logits, weights and soft targets are
    # gathered with the permutation, class indices mapped through its inverse; ignored positions stay ignored.
    order = np.asarray(permutation, dtype=np.int64)
    axis = class_axis(x)
    if target.shape == x.shape:
        permuted_target = np.take(target, order, axis=axis)
    else:
        inverse = np.argsort(order)
        permuted_target = np.where(target == -100, target, inverse[np.where(target == -100, 0, target)])
    options = {"label_smoothing": label_smoothing, "reduction": reduction}
    assert_law(
        "cross_entropy",
        {"input": x, "target": target, "weight": weight, **options},
        {
            "input": np.take(x, order, axis=axis),
            "target": permuted_target,
            "weight": None if weight is None else weight[order],
            **options,
        },
        "permuted classes",
    )


@given(
    x=xst.logits(SHAPE),
    y=xst.class_index_targets(SHAPE),
    weight=optional_weights,
    label_smoothing=smoothing,
    reduction=st.sampled_from(["sum", "mean"]),
    garbage=st.sampled_from([np.nan, np.inf, -np.inf, 0.0]),
)
def test_ignored_positions_contribute_nothing(
    x: np.ndarray, y: np.ndarray, weight: Any, label_smoothing: float, reduction: str, garbage: float
) -> None:
    # Masking (ignore_index) equals slicing the ignored positions away, even when their logits are NaN or infinite
    # (torch-semantics 1.7: an ignored NaN row leaves the loss finite).
    rows = np.moveaxis(x, class_axis(x), -1).reshape(-1, classes_of(x))
    flat_targets = y.reshape(-1)
    kept = flat_targets != -100
    polluted = np.array(x, copy=True)
    positions = np.moveaxis(polluted, class_axis(x), -1)  # a view: classes last, one row per position
    positions[(y == -100).reshape(positions.shape[:-1])] = garbage
    options = {"weight": weight, "label_smoothing": label_smoothing, "reduction": reduction}
    masked = np.asarray(functional.cross_entropy(polluted, y, **options))
    # The bound of the clean masked call: the polluted positions add exact zeros to the same sum.
    _, masked_allowed = evaluate("cross_entropy", {"input": x, "target": y, **options})
    sliced, sliced_allowed = evaluate("cross_entropy", {"input": rows[kept], "target": flat_targets[kept], **options})
    assert_within("cross_entropy", sliced, masked, masked_allowed + sliced_allowed, label="masked", arguments=options)
    per_position = np.asarray(functional.cross_entropy(polluted, y, **{**options, "reduction": "none"}))
    assert np.all(per_position[(y == -100).reshape(per_position.shape)] == 0.0)


# --------------------------------------------------------------------------------------------------------------------
# Reductions


def mean_denominator(function: str, arguments: dict[str, Any]) -> tuple[float, float]:
    """What ``mean`` divides by, computed independently of the reference, and how far the reference's own float
    evaluation of it may be off (0 for a count; for a sum of n target weights, recursive summation's n u sum|w|)."""
    x = np.asarray(arguments["input"])
    if function in {"cross_entropy", "nll_loss"}:
        target = np.asarray(arguments["target"])
        if function == "cross_entropy" and target.shape == x.shape:
            return x.size / classes_of(x), 0.0
        flat = target.reshape(-1)
        valid = flat[flat != arguments.get("ignore_index", -100)]
        weight = arguments.get("weight")
        picked = np.ones(valid.shape) if weight is None else np.asarray(weight)[valid]
        return math.fsum(picked), flat.size * (EPSILON / 2) * math.fsum(np.abs(picked))
    if function == "kl_div" and arguments.get("reduction") == "batchmean":
        return float(x.shape[0]), 0.0
    return float(np.prod(np.broadcast_shapes(x.shape, np.shape(arguments["target"])))), 0.0


MEAN_STRATEGIES = {
    "cross_entropy": xst.cross_entropy_arguments(),
    "nll_loss": xst.nll_loss_arguments(),
    "binary_cross_entropy": xst.binary_cross_entropy_arguments(),
    "binary_cross_entropy_with_logits": xst.binary_cross_entropy_with_logits_arguments(),
    "kl_div": xst.kl_div_arguments(),
}


@pytest.mark.parametrize("function", sorted(MEAN_STRATEGIES))
@given(data=st.data())
def test_mean_times_its_denominator_equals_sum(function: str, data: st.DataObject) -> None:
    # Denominators: sum of target weights over non-ignored positions (class index), numel / C (soft), numel (BCE,
    # BCE-with-logits, kl_div 'mean'), input.shape[0] (kl_div 'batchmean').
    arguments = data.draw(MEAN_STRATEGIES[function])
    mean_reduction = data.draw(st.sampled_from(["mean", "batchmean"])) if function == "kl_div" else "mean"
    arguments = {**arguments, "reduction": mean_reduction}
    total = float(getattr(functional, function)(**{**arguments, "reduction": "sum"}))
    mean = float(getattr(functional, function)(**arguments))
    denominator, denominator_error = mean_denominator(function, arguments)
    assume(denominator != 0 and math.isfinite(total))
    # mean = fl(total / D') with |D' - D| <= e (the reference's float denominator), and our product rounds once more:
    # |mean * D - total| <= |total| ((1 + u)^2 (1 + e / |D'|) - 1) <= |total| (2u + u^2) (1 + ...) + |total| e / |D'|
    # (1 + 3u), below 2 |total| (EPSILON + e / |D|) with EPSILON = 2u and e << |D|.
    allowed = 2 * abs(total) * (EPSILON + denominator_error / abs(denominator))
    assert_within(
        function,
        np.asarray(total),
        np.asarray(mean * denominator),
        np.asarray(allowed),
        label=f"{mean_reduction} * {denominator!r}",
        arguments=arguments,
    )


# --------------------------------------------------------------------------------------------------------------------
# BCE


ELEMENTWISE_SHAPE = st.shared(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), key="elementwise")


@given(
    x=hnp.arrays(np.float64, ELEMENTWISE_SHAPE, elements=st.integers(-30, 30).map(float) | st.floats(-30.0, 30.0)),
    t=st.booleans().flatmap(lambda inside: xst.bce_targets(ELEMENTWISE_SHAPE, inside=inside)),
    weight=st.none() | xst.broadcastable_weights(ELEMENTWISE_SHAPE),
)
def test_bce_with_logits_equals_bce_on_sigmoid_away_from_saturation(x: np.ndarray, t: np.ndarray, weight: Any) -> None:
    # |x| <= 30: sigmoid(x) is in [9.4e-14, 1 - 9.4e-14], so neither log reaches BCE's clamp at -100. Targets outside
    # [0, 1] need BCE's unchecked formula (check_range=False), which is the same expression.
    p = functional.sigmoid(x)
    check_range = bool(np.all((t >= 0) & (t <= 1)))
    options = {"target": t, "weight": weight, "reduction": "none"}
    through_probabilities, bce_allowed = evaluate(
        "binary_cross_entropy", {"input": p, **options, "check_range": check_range}
    )
    with_logits, logits_allowed = evaluate("binary_cross_entropy_with_logits", {"input": x, **options})
    # p = sigma(x)(1 + d) with |d| <= 4u = 2 EPSILON (exp, add, divide, each within an ULP). BCE's logs see that
    # error as |log(1 + d)| <= |d| / (1 - |d|) in log p and, since p / (1 - p) = e^x, as
    # |log(1 - d e^x)| <= |d| e^x / (1 - |d| e^x) in log(1 - p): the conditioning of going through probabilities.
    d = 2 * EPSILON
    growth = np.exp(x)
    magnitude = 1.0 if weight is None else np.abs(weight)
    perturbation = magnitude * (np.abs(t) * d / (1 - d) + np.abs(1 - t) * d * growth / (1 - d * growth))
    assert_within(
        "binary_cross_entropy_with_logits",
        with_logits,
        through_probabilities,
        logits_allowed + bce_allowed + perturbation,
        label="binary_cross_entropy(sigmoid(x))",
        arguments={"input": x, **options},
    )


# --------------------------------------------------------------------------------------------------------------------
# Information functions

VECTOR_SHAPE = st.shared(hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), key="vectors")
INFORMATION = {
    "entropy": lambda p, q, **options: information.entropy(p, **options),
    "cross_entropy": information.cross_entropy,
    "kl_divergence": information.kl_divergence,
}


@pytest.mark.parametrize("function", sorted(INFORMATION))
@given(
    p=xst.probabilities(VECTOR_SHAPE),
    q=xst.probabilities(VECTOR_SHAPE),
    base=st.sampled_from([2.0, 10.0, math.e, 0.5]) | st.floats(1e-3, 1e3).filter(lambda b: abs(b - 1) > 1e-3),
)
def test_base_change_divides_by_log_of_base(function: str, p: np.ndarray, q: np.ndarray, base: float) -> None:
    # H_b = S / fl(ln b), with S the nats sum: H_b * ln b rounds twice more, and ln b itself may be one ULP off the
    # reference's: |H_b ln b - S| <= (3u + O(u^2)) |S| < 2 EPSILON |S|.
    nats = np.asarray(INFORMATION[function](p, q), dtype=np.float64)
    in_base = np.asarray(INFORMATION[function](p, q, base=base), dtype=np.float64)
    assert_within(
        function,
        nats,
        in_base * math.log(base),
        2 * EPSILON * np.abs(nats),
        label=f"base {base!r} times ln(base)",
        arguments={"p": p, "q": q, "base": base},
    )


def information_scale(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """sum p (|log p| + |log q|) per vector: bounds every term of H(p), H(p, q) and KL(p || q) where p > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.abs(np.log(p)) + np.abs(np.log(q))), 0.0)
    return np.sum(terms, axis=-1)


@given(p=xst.probabilities(VECTOR_SHAPE), q=xst.probabilities(VECTOR_SHAPE))
def test_cross_entropy_is_entropy_plus_kl_divergence(p: np.ndarray, q: np.ndarray) -> None:
    # An identity for any non-negative p and q (normalised or not): -sum p log q = -sum p log p + sum p log(p / q).
    # Three float64 sums over n terms, each term within a few ULPs of a quantity bounded by p (|log p| + |log q|).
    cross = np.asarray(information.cross_entropy(p, q))
    decomposed = np.asarray(information.entropy(p) + information.kl_divergence(p, q))
    operations = operation_count(classes=p.shape[-1])
    allowed = 3 * allowed_error(cross, information_scale(p, q), "float64", operations)
    assert_within("cross_entropy", cross, decomposed, allowed, label="H(p) + KL(p || q)", arguments={"p": p, "q": q})


#: Probability vectors along the last axis (soft_targets normalises axis 1 of a 2-D shape, which is the last).
NORMALISED = xst.soft_targets(VECTOR_SHAPE)


@given(p=NORMALISED, q=NORMALISED)
def test_kl_divergence_is_non_negative_and_zero_only_at_equality(p: np.ndarray, q: np.ndarray) -> None:
    divergence = np.asarray(information.kl_divergence(p, q))
    # Equality: every term is p log1p((p - p) / p) = 0 exactly.
    assert np.all(np.asarray(information.kl_divergence(p, p)) == 0.0)
    # Pinsker: KL >= ||p - q||_1^2 / 2 for normalised p, q; strictly positive whenever p != q. Our vectors sum to 1
    # within n u, which moves the right-hand side by less than 3 n u (P log(P / Q) and the norm's change), and the
    # float64 KL is within its bound of the exact one.
    classes = p.shape[-1]
    pinsker = 0.5 * np.sum(np.abs(p - q), axis=-1) ** 2
    slack = 2 * classes * EPSILON + allowed_error(
        divergence, information_scale(p, q), "float64", operation_count(classes=classes)
    )
    assert np.all((divergence >= pinsker - slack) | np.isinf(divergence)), (divergence, pinsker, slack)


@given(
    z=hnp.arrays(np.float64, VECTOR_SHAPE, elements=st.integers(-30, 30).map(float) | st.floats(-30.0, 30.0)),
    p=NORMALISED,
)
def test_kl_div_of_log_q_and_p_summed_is_kl_divergence_of_p_and_q(z: np.ndarray, p: np.ndarray) -> None:
    # q = softmax(z) with |z| <= 30 is positive, so log q is finite (torch's kl_div gives NaN for p = 0 at log q =
    # -inf, where KL's convention says 0: trap 17, tested there).
    q = functional.softmax(z, dim=-1)
    log_q = np.log(q)
    summed = np.asarray(functional.kl_div(log_q, p, reduction="sum"))
    divergence = information.kl_divergence(p, q)
    # Two evaluations of sums of terms bounded by p (|log p| + |log q|); fl(log q) adds u |log q| per term.
    operations = operation_count(classes=p.shape[-1], elements=max(p.size // p.shape[-1], 1))
    allowed = 2 * allowed_error(summed, np.sum(information_scale(p, q)), "float64", operations)
    arguments = {"p": p, "q": q}
    assert_within("kl_div", summed, np.asarray(np.sum(divergence)), allowed, label="sum", arguments=arguments)
    if p.ndim == 2:
        batchmean = np.asarray(functional.kl_div(log_q, p, reduction="batchmean"))
        mean_of_rows = np.asarray(np.mean(divergence))
        assert_within("kl_div", batchmean, mean_of_rows, allowed / p.shape[0], label="batchmean", arguments=arguments)
