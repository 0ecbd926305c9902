"""The exact oracle (xe_verify.exact) checked on its own: against torch float64 where torch is well conditioned,
against a naive evaluation of the textbook formulas at a much higher precision, and on known values.

Two independent checks, because each alone could share a mistake with the oracle:

* torch float64 pins the *semantics* (reductions, denominators, weights, smoothing, ignored targets, clamps). Its
  error is bounded by a few dozen roundings of the quantities a result is made of, so the comparison is
  ``|torch - exact| <= RTOL * (|exact| + scale) + UNDERFLOW``, where ``scale`` bounds the size of those quantities
  (for a log-softmax, ``2 max|x| + log C + 1``; see each test). ``RTOL = 1e-13`` is 450 units of float64's ``2**-52``:
  over 10x the ~30 roundings (each within 1 ULP, SLEEF's ``exp``/``log``) on torch's longest path, and a thousand
  times below the smallest error a wrong formula makes (a missing ``log C``, a wrong denominator: relative errors of
  1e-3 and up on these inputs).
* A naive evaluation in mpmath at ``NAIVE_DPS = 400`` digits of the formulas as printed in torch's documentation
  (``log(sum(exp(x)))``, ``log(1 + exp(-x))``, ``log(1 - p)``, ...) pins the *maths* of the oracle's rearrangements
  (``log1p`` of the sum without the maximum, exact differences, the sign-split BCE-with-logits). On these inputs
  (logits within +-50, probabilities down to 1e-300) the naive forms lose at most ~310 of their 400 digits to
  cancellation, so they agree with the 50-digit oracle to ``NAIVE_RTOL = 1e-40``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xe_verify import exact

RTOL = 1e-13
# Results below float64's normal range carry absolute errors of a few subnormal spacings (2**-1074) wherever they
# came from; 32 smallest normals cover that, with flush-to-zero of intermediates allowed, and are invisible elsewhere.
UNDERFLOW = 32 * 2.0**-1022
NAIVE_DPS = 400
NAIVE_RTOL = mpmath.mpf("1e-40")
# The naive forms' own noise (400 digits of terms up to ~1e3) is far below this, and so is float64's smallest
# subnormal: a difference this small cannot be seen in a float64 result.
NAIVE_ATOL = mpmath.mpf("1e-330")

pytestmark = pytest.mark.filterwarnings(
    # torch's kl_div(reduction="mean") warns that "mean" will change; we call it on purpose.
    "ignore:reduction. 'mean' divides the total loss:UserWarning"
)


# --------------------------------------------------------------------------------------------------
# Helpers


def _flat(values: Any) -> list[Any]:
    """Exact results (mpf or object array of mpf) as a flat list of mpf, every digit kept.

    ``mpmath.mpf(x)`` of an mpf rounds it to the current precision (53 bits outside the oracle): only floats, which
    convert exactly, go through it.
    """
    return [
        v if isinstance(v, mpmath.mpf) else mpmath.mpf(v) for v in np.asarray(values, dtype=object).reshape(-1).tolist()
    ]


def _torch_flat(tensor: torch.Tensor) -> list[float]:
    return [float(v) for v in tensor.detach().double().reshape(-1).tolist()]


def assert_agrees_with_torch(
    exact_values: Any, torch_values: torch.Tensor, scale: Any, context: str, rtol: float = RTOL
) -> None:
    """``|torch - exact| <= rtol * (|exact| + scale)`` elementwise; NaN only against NaN. ``scale`` broadcasts."""
    __tracebackhide__ = True
    expected, actual = _flat(exact_values), _torch_flat(torch_values)
    assert np.shape(np.asarray(exact_values, dtype=object)) == tuple(torch_values.shape), context
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(expected),)).tolist()
    for index, (e, t, s) in enumerate(zip(expected, actual, scales, strict=True)):
        if mpmath.isnan(e) or math.isnan(t):
            assert mpmath.isnan(e), f"{context}: element {index}: exact {e}, torch {t}"
            assert math.isnan(t), f"{context}: element {index}: exact {e}, torch {t}"
            continue
        if mpmath.isinf(e) or math.isinf(t):
            assert e == t, f"{context}: element {index}: exact {e}, torch {t}"
            continue
        allowed = rtol * (abs(e) + s) + UNDERFLOW
        assert abs(mpmath.mpf(t) - e) <= allowed, (
            f"{context}: element {index}: exact {mpmath.nstr(e, 20)}, torch {t!r}, "
            f"difference {mpmath.nstr(abs(mpmath.mpf(t) - e), 3)} > {rtol} * (|exact| + scale {s:.3g})"
        )


def assert_matches_naive(oracle: Any, naive: Any, context: str) -> None:
    """``|oracle - naive| <= NAIVE_RTOL |naive| + NAIVE_ATOL`` elementwise."""
    __tracebackhide__ = True
    for index, (o, n) in enumerate(zip(_flat(oracle), _flat(naive), strict=True)):
        relative = abs(o - n) / abs(n) if n else mpmath.inf
        assert abs(o - n) <= NAIVE_RTOL * abs(n) + NAIVE_ATOL, (
            f"{context}: element {index}: oracle {mpmath.nstr(o, 30)}, naive {mpmath.nstr(n, 30)}, "
            f"relative difference {mpmath.nstr(relative, 3)}"
        )


def _t(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(array))


# --------------------------------------------------------------------------------------------------
# Strategies (well-conditioned inputs: torch float64 is accurate relative to the scale there)


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def class_problems(draw: st.DrawFn, max_abs: float = 30.0) -> dict[str, Any]:
    """Logits of shape (C,), (N, C) or (N, C, d), matching class-index targets, and every option."""
    classes = draw(st.integers(1, 5))
    shape = draw(
        st.sampled_from([(classes,), (draw(st.integers(0, 4)), classes), (2, classes, draw(st.integers(1, 3)))])
    )
    x = draw(hnp.arrays(np.float64, shape, elements=_floats(-max_abs, max_abs)))
    target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    ignore_index = draw(st.sampled_from([-100, 0, classes - 1, 7]))
    target = draw(hnp.arrays(np.int64, target_shape, elements=st.sampled_from([*range(classes), ignore_index])))
    weight = draw(st.none() | hnp.arrays(np.float64, (classes,), elements=_floats(0.1, 5.0)))
    return {
        "x": x,
        "target": target,
        "weight": weight,
        "ignore_index": ignore_index,
        "reduction": draw(st.sampled_from(["none", "mean", "sum"])),
        "label_smoothing": draw(st.sampled_from([0.0, -0.25]) | _floats(0.0, 1.0)),
    }


def _class_scale(x: np.ndarray, weight: np.ndarray | None) -> float:
    """Size of what one loss is made of: C classes' weights times (2 max|x| + log C + 1)."""
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    largest_weight = 1.0 if weight is None else float(weight.max())
    largest_logit = float(np.abs(x).max()) if x.size else 0.0
    return largest_weight * classes * (2 * largest_logit + math.log(classes) + 1)


def _reduced_scale(per_element: float, reduction: str, count: int, denominator: float) -> float:
    if reduction == "none":
        return per_element
    return per_element * max(count, 1) / (denominator if reduction == "mean" else 1.0)


# --------------------------------------------------------------------------------------------------
# Against torch float64


@given(problem=class_problems())
@example(
    problem={
        "x": np.array([[40.0, 0, 0]]),
        "target": np.array([0]),
        "weight": None,
        "ignore_index": -100,
        "reduction": "none",
        "label_smoothing": 0.0,
    }
)
def test_cross_entropy_class_index_agrees_with_torch_float64(problem: dict[str, Any]) -> None:
    x, target, weight = problem["x"], problem["target"], problem["weight"]
    options = {k: problem[k] for k in ("ignore_index", "reduction", "label_smoothing")}
    expected = exact.cross_entropy(x, target, weight, **options)
    actual = F.cross_entropy(_t(x), _t(target), None if weight is None else _t(weight), **options)
    kept = target.reshape(-1) != problem["ignore_index"]
    denominator = float(kept.sum()) if weight is None else float(weight[target.reshape(-1)[kept]].sum())
    per_element = _class_scale(x, weight)
    scale = _reduced_scale(per_element, problem["reduction"], int(kept.size), max(denominator, 1e-300))
    assert_agrees_with_torch(expected, actual, scale, f"cross_entropy {options}")


@given(problem=class_problems(), data=st.data())
def test_cross_entropy_probabilities_agrees_with_torch_float64(problem: dict[str, Any], data: st.DataObject) -> None:
    x, weight, reduction = problem["x"], problem["weight"], problem["reduction"]
    # Soft targets: the simplex, and off it (torch does not check them).
    q = data.draw(hnp.arrays(np.float64, x.shape, elements=_floats(-1.0, 2.0)) | _simplex(x.shape))
    smoothing = problem["label_smoothing"]
    expected = exact.cross_entropy(x, q, weight, reduction=reduction, label_smoothing=smoothing)
    actual = F.cross_entropy(
        _t(x), _t(q), None if weight is None else _t(weight), reduction=reduction, label_smoothing=smoothing
    )
    positions = x.size // (x.shape[0] if x.ndim == 1 else x.shape[1]) if x.size else 0
    per_element = _class_scale(x, weight) * 2.0  # |q'| <= 2
    scale = _reduced_scale(per_element, reduction, positions, max(positions, 1))
    assert_agrees_with_torch(expected, actual, scale, f"cross_entropy(probabilities) {reduction=} {smoothing=}")


def _simplex(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Non-negative arrays normalised along the class axis (sums are 1 up to rounding)."""
    axis = 0 if len(shape) == 1 else 1

    def normalise(a: np.ndarray) -> np.ndarray:
        total = a.sum(axis=axis, keepdims=True)
        return np.where(total > 0, a / np.where(total > 0, total, 1.0), a)

    return hnp.arrays(np.float64, shape, elements=_floats(0.0, 1.0)).map(normalise)


@given(problem=class_problems())
def test_nll_loss_agrees_with_torch_float64(problem: dict[str, Any]) -> None:
    x, target, weight = problem["x"], problem["target"], problem["weight"]
    options = {k: problem[k] for k in ("ignore_index", "reduction")}
    expected = exact.nll_loss(x, target, weight, **options)
    actual = F.nll_loss(_t(x), _t(target), None if weight is None else _t(weight), **options)
    kept = target.reshape(-1) != problem["ignore_index"]
    denominator = float(kept.sum()) if weight is None else float(weight[target.reshape(-1)[kept]].sum())
    per_element = (1.0 if weight is None else float(weight.max())) * (float(np.abs(x).max()) if x.size else 0.0)
    scale = _reduced_scale(per_element, problem["reduction"], int(kept.size), max(denominator, 1e-300))
    assert_agrees_with_torch(expected, actual, scale, f"nll_loss {options}")


_probability = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, 1e-17, 1e-300, 1.0 - 2.0**-53]),
    _floats(0.0, 1.0),
    st.floats(-300, -1).map(lambda u: 10.0**u),
)


@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=4),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    weighted=st.booleans(),
    data=st.data(),
)
@example(shape=(2,), reduction="sum", weighted=False, data=None)  # the clamp: p = 0 with t = 1, p = 1 with t = 0
def test_binary_cross_entropy_agrees_with_torch_float64(
    shape: tuple[int, ...], reduction: str, weighted: bool, data: st.DataObject | None
) -> None:
    if data is None:
        p, t, w = np.array([0.0, 1.0]), np.array([1.0, 0.0]), None
    else:
        p = data.draw(hnp.arrays(np.float64, shape, elements=_probability))
        t = data.draw(hnp.arrays(np.float64, shape, elements=_probability))
        w = data.draw(hnp.arrays(np.float64, shape[-1:], elements=_floats(0.0, 3.0))) if weighted else None
    expected = exact.binary_cross_entropy(p, t, w, reduction=reduction)
    actual = F.binary_cross_entropy(_t(p), _t(t), None if w is None else _t(w), reduction=reduction)
    # Each term is a product of at most 100 and a weight: torch is accurate relative to the sum of magnitudes,
    # which for non-negative losses is the result itself.
    assert_agrees_with_torch(expected, actual, 0.0, f"binary_cross_entropy {reduction=}")
    if data is None:
        assert expected == 200


@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    data=st.data(),
)
def test_binary_cross_entropy_with_logits_agrees_with_torch_float64(
    shape: tuple[int, ...], reduction: str, data: st.DataObject
) -> None:
    x = data.draw(hnp.arrays(np.float64, shape, elements=_floats(-50.0, 50.0)))
    t = data.draw(hnp.arrays(np.float64, shape, elements=_floats(-1.0, 2.0)))  # torch does not check the range
    w = data.draw(st.none() | hnp.arrays(np.float64, shape[-1:], elements=_floats(0.0, 3.0)))
    pw = data.draw(st.none() | hnp.arrays(np.float64, shape[-1:], elements=_floats(-1.0, 3.0)))
    expected = exact.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=pw)
    actual = F.binary_cross_entropy_with_logits(
        _t(x), _t(t), None if w is None else _t(w), reduction=reduction, pos_weight=None if pw is None else _t(pw)
    )
    # (1 - t) x and lw * softplus(-x): at most 3 * (|x| + 1) and 4 * (|x| + 1), times the weight.
    per_element = 3.0 * 7.0 * (float(np.abs(x).max()) + 1.0)
    scale = _reduced_scale(per_element, reduction, x.size, max(x.size, 1))
    assert_agrees_with_torch(expected, actual, scale, f"binary_cross_entropy_with_logits {reduction=}")


@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
    reduction=st.sampled_from(["none", "mean", "sum", "batchmean"]),
    log_target=st.booleans(),
    data=st.data(),
)
def test_kl_div_agrees_with_torch_float64(
    shape: tuple[int, ...], reduction: str, log_target: bool, data: st.DataObject
) -> None:
    x = data.draw(hnp.arrays(np.float64, shape, elements=_floats(-30.0, 0.0)))
    target_elements = _floats(-30.0, 0.0) if log_target else _probability
    t = data.draw(
        hnp.arrays(np.float64, shape[1:] if shape and data.draw(st.booleans()) else shape, elements=target_elements)
    )
    expected = exact.kl_div(x, t, reduction=reduction, log_target=log_target)
    actual = F.kl_div(_t(x), _t(t), reduction=reduction, log_target=log_target)
    # p (log p - x) or e^t (t - x): at most 1 * (|log p| + |x|); log p >= -700 on these inputs.
    per_element = 700.0 + 30.0
    count = max(int(np.prod(np.broadcast_shapes(x.shape, t.shape))), 1)
    denominator = {"none": 1.0, "sum": 1.0, "mean": count, "batchmean": x.shape[0] if x.ndim else 1}[reduction]
    scale = per_element * (1 if reduction == "none" else count) / max(denominator, 1)
    assert_agrees_with_torch(expected, actual, scale, f"kl_div {reduction=} {log_target=}")


_SOFTMAX_FAMILY: list[tuple[str, Callable[..., Any], Callable[..., torch.Tensor]]] = [
    ("log_softmax", exact.log_softmax, F.log_softmax),
    ("softmax", exact.softmax, F.softmax),
    ("logsumexp", exact.logsumexp, torch.logsumexp),
]


@pytest.mark.parametrize(("name", "oracle", "reference"), _SOFTMAX_FAMILY, ids=[n for n, *_ in _SOFTMAX_FAMILY])
@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), elements=_floats(-30, 30)),
    data=st.data(),
)
def test_softmax_family_agrees_with_torch_float64(
    name: str, oracle: Callable[..., Any], reference: Callable[..., torch.Tensor], x: np.ndarray, data: st.DataObject
) -> None:
    dim = data.draw(st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1))
    expected, actual = oracle(x, dim), reference(_t(x), dim)
    size = x.shape[dim] if x.ndim else 1
    scale = 2 * (float(np.abs(x).max()) if x.size else 0.0) + math.log(max(size, 1)) + 1
    if name == "softmax":  # a probability's relative error grows with the logits' size
        scale = scale * np.asarray([float(v) for v in np.asarray(expected).reshape(-1)])
    assert_agrees_with_torch(expected, actual, scale, f"{name} dim={dim}")


@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2), elements=_floats(-800, 800)))
def test_sigmoids_agree_with_torch_float64(x: np.ndarray) -> None:
    assert_agrees_with_torch(exact.sigmoid(x), torch.sigmoid(_t(x)), 0.0, "sigmoid")
    assert_agrees_with_torch(exact.log_sigmoid(x), F.logsigmoid(_t(x)), 0.0, "log_sigmoid")


@given(
    p=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 5)), elements=_probability),
    base=st.sampled_from([None, 2.0, 10.0]),
    data=st.data(),
)
def test_information_functions_agree_with_torch_float64(p: np.ndarray, base: float | None, data: st.DataObject) -> None:
    q = data.draw(hnp.arrays(np.float64, p.shape, elements=_probability))
    in_base = math.log(base) if base else 1.0
    tp, tq = _t(p), _t(q)
    # The terms are at most 700 in size (log 1e-300 = -690.8); torch sums them pairwise.
    scale = 700.0 * p.shape[-1] / in_base
    assert_agrees_with_torch(
        exact.information.entropy(p, base=base), torch.special.entr(tp).sum(-1) / in_base, scale, "entropy"
    )
    assert_agrees_with_torch(
        exact.information.cross_entropy(p, q, base=base),
        -torch.special.xlogy(tp, tq).sum(-1) / in_base,
        scale,
        "cross_entropy",
    )
    assert_agrees_with_torch(
        exact.information.kl_divergence(p, q, base=base),
        (torch.special.xlogy(tp, tp) - torch.special.xlogy(tp, tq)).sum(-1) / in_base,
        scale,
        "kl_divergence",
    )


# --------------------------------------------------------------------------------------------------
# Against the textbook formulas at 120 digits


def _naive(function: Callable[[], Any]) -> Any:
    with mpmath.workdps(NAIVE_DPS):
        return function()


def _naive_log_softmax(row: list[Any]) -> list[Any]:
    log_partition = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    return [v - log_partition for v in row]


_logit_rows = hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 6)), elements=_floats(-50, 50))


@given(x=_logit_rows)
@example(x=np.array([[40.0, 0.0, 0.0], [-40.0, 0.0, 0.0]]))
@example(x=np.array([[-0.6931471805599453, -0.6931471805599453]]))  # logsumexp ~ 2e-17: the retry path
def test_softmax_family_matches_the_textbook_formulas(x: np.ndarray) -> None:
    rows = [[mpmath.mpf(v) for v in row] for row in x.tolist()]
    naive_lsm = _naive(lambda: [_naive_log_softmax(row) for row in rows])
    assert_matches_naive(exact.log_softmax(x, 1), naive_lsm, "log_softmax")
    assert_matches_naive(
        exact.softmax(x, 1), _naive(lambda: [[mpmath.exp(v) for v in r] for r in naive_lsm]), "softmax"
    )
    assert_matches_naive(
        exact.logsumexp(x, 1),
        _naive(lambda: [mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row)) for row in rows]),
        "logsumexp",
    )


@given(
    x=_logit_rows,
    smoothing=_floats(0.0, 1.0),
    data=st.data(),
)
def test_cross_entropy_matches_the_textbook_formula(x: np.ndarray, smoothing: float, data: st.DataObject) -> None:
    classes = x.shape[1]
    target = data.draw(hnp.arrays(np.int64, x.shape[:1], elements=st.integers(0, classes - 1)))
    weight = data.draw(hnp.arrays(np.float64, (classes,), elements=_floats(0.0, 4.0)))
    rows = [[mpmath.mpf(v) for v in row] for row in x.tolist()]
    w = [mpmath.mpf(v) for v in weight.tolist()]

    def naive() -> list[Any]:
        losses = []
        for row, y in zip(rows, target.tolist(), strict=True):
            lsm = _naive_log_softmax(row)
            smooth = mpmath.fsum(-w_c * l_c for w_c, l_c in zip(w, lsm, strict=True))
            losses.append((1 - mpmath.mpf(smoothing)) * -w[y] * lsm[y] + mpmath.mpf(smoothing) / classes * smooth)
        return losses

    oracle = exact.cross_entropy(x, target, weight, reduction="none", label_smoothing=smoothing)
    assert_matches_naive(oracle, _naive(naive), f"cross_entropy {smoothing=}")


_bce_probability = st.one_of(
    _floats(0.0, 1.0), st.floats(-300, -1).map(lambda u: 10.0**u), st.floats(-16, -1).map(lambda u: 1 - 10.0**u)
)


@given(
    p=hnp.arrays(np.float64, st.integers(1, 8), elements=_bce_probability),
    data=st.data(),
)
def test_binary_cross_entropy_matches_the_textbook_formula(p: np.ndarray, data: st.DataObject) -> None:
    t = data.draw(hnp.arrays(np.float64, p.shape, elements=_floats(0.0, 1.0)))

    def naive() -> list[Any]:
        clamp = mpmath.mpf(-100)
        return [
            -(
                mpmath.mpf(ti) * max(mpmath.log(pi) if pi > 0 else clamp, clamp)
                + (1 - mpmath.mpf(ti)) * max(mpmath.log(1 - mpmath.mpf(pi)) if pi < 1 else clamp, clamp)
            )
            for pi, ti in zip(p.tolist(), t.tolist(), strict=True)
        ]

    assert_matches_naive(exact.binary_cross_entropy(p, t, reduction="none"), _naive(naive), "binary_cross_entropy")


@given(
    x=hnp.arrays(np.float64, st.integers(1, 8), elements=_floats(-50, 50)),
    data=st.data(),
)
@example(x=np.array([-40.0, 40.0]), data=None)
def test_logit_functions_match_the_textbook_formulas(x: np.ndarray, data: st.DataObject | None) -> None:
    if data is None:
        t, pos_weight = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    else:
        t = data.draw(hnp.arrays(np.float64, x.shape, elements=_floats(0.0, 1.0)))
        pos_weight = data.draw(hnp.arrays(np.float64, x.shape, elements=_floats(0.0, 4.0)))

    def naive_bce() -> list[Any]:
        losses = []
        for xi, ti, pw in zip(x.tolist(), t.tolist(), pos_weight.tolist(), strict=True):
            xi, ti = mpmath.mpf(xi), mpmath.mpf(ti)
            log_weight = 1 + (mpmath.mpf(pw) - 1) * ti
            losses.append((1 - ti) * xi + log_weight * mpmath.log(1 + mpmath.exp(-xi)))
        return losses

    oracle = exact.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pos_weight)
    assert_matches_naive(oracle, _naive(naive_bce), "binary_cross_entropy_with_logits")
    assert_matches_naive(
        exact.sigmoid(x), _naive(lambda: [1 / (1 + mpmath.exp(-mpmath.mpf(v))) for v in x.tolist()]), "sigmoid"
    )
    assert_matches_naive(
        exact.log_sigmoid(x),
        _naive(lambda: [-mpmath.log(1 + mpmath.exp(-mpmath.mpf(v))) for v in x.tolist()]),
        "log_sigmoid",
    )


_positive_probability = st.one_of(_floats(1e-6, 1.0), st.floats(-300, -1).map(lambda u: 10.0**u))


@given(
    t=hnp.arrays(np.float64, st.integers(1, 6), elements=_positive_probability),
    data=st.data(),
)
@example(t=np.array([0.3]), data=None)  # input = fl(log 0.3): 53 bits cancel, the evaluation is retried
def test_kl_div_matches_the_textbook_formula(t: np.ndarray, data: st.DataObject | None) -> None:
    if data is None:
        x = np.log(t)
    else:
        x = np.log(t) * data.draw(hnp.arrays(np.float64, t.shape, elements=_floats(1 - 1e-9, 1 + 1e-9)))

    def naive() -> list[Any]:
        return [
            mpmath.mpf(ti) * (mpmath.log(ti) - mpmath.mpf(xi)) for xi, ti in zip(x.tolist(), t.tolist(), strict=True)
        ]

    assert_matches_naive(exact.kl_div(x, t, reduction="none"), _naive(naive), "kl_div")


@given(
    p=hnp.arrays(np.float64, st.integers(1, 6), elements=_positive_probability),
    data=st.data(),
)
@example(p=np.array([0.5, 0.5]), data=None)
def test_information_functions_match_the_textbook_formulas(p: np.ndarray, data: st.DataObject | None) -> None:
    if data is None:
        q = np.array([0.25, 0.75])
    else:
        q = data.draw(
            hnp.arrays(np.float64, p.shape, elements=_positive_probability)
            | st.just(p * data.draw(hnp.arrays(np.float64, p.shape, elements=_floats(1 - 1e-8, 1 + 1e-8))))
        )
    pm, qm = [mpmath.mpf(v) for v in p.tolist()], [mpmath.mpf(v) for v in q.tolist()]
    assert_matches_naive(
        exact.information.entropy(p, base=2),
        _naive(lambda: [-mpmath.fsum(v * mpmath.log(v, 2) for v in pm)]),
        "entropy",
    )
    assert_matches_naive(
        exact.information.cross_entropy(p, q),
        _naive(lambda: [-mpmath.fsum(a * mpmath.log(b) for a, b in zip(pm, qm, strict=True))]),
        "cross_entropy",
    )
    assert_matches_naive(
        exact.information.kl_divergence(p, q),
        _naive(lambda: [mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(pm, qm, strict=True))]),
        "kl_divergence",
    )


# --------------------------------------------------------------------------------------------------
# Known values, types and edges


def test_the_confident_row_of_issue_4_has_loss_log1p_of_2_exp_minus_40() -> None:
    loss = exact.cross_entropy([[40.0, 0.0, 0.0]], [0], reduction="none")
    with mpmath.workdps(60):
        expected = mpmath.log1p(2 * mpmath.exp(-40))
        assert abs(loss[0] - expected) < expected * mpmath.mpf("1e-48")
    assert float(loss[0]) == pytest.approx(8.4967e-18, rel=1e-4)


def test_result_types_are_object_arrays_for_none_and_mpf_for_reductions() -> None:
    x, y = np.zeros((2, 3, 4)), np.zeros((2, 4), dtype=np.int64)
    none = exact.cross_entropy(x, y, reduction="none")
    assert none.dtype == object
    assert none.shape == (2, 4)
    assert all(isinstance(v, mpmath.mpf) for v in none.reshape(-1))
    assert isinstance(exact.cross_entropy(x, y), mpmath.mpf)
    scalar = exact.cross_entropy(np.zeros(3), np.int64(1), reduction="none")
    assert scalar.shape == ()
    assert scalar.dtype == object
    assert exact.logsumexp(np.zeros(3), 0).shape == ()
    assert exact.information.entropy(np.full((2, 5), 0.2), axis=0).shape == (5,)


def test_reductions_of_empty_and_all_ignored_batches_follow_torch() -> None:
    assert mpmath.isnan(exact.cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)))
    assert exact.cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), reduction="sum") == 0
    ignored = np.full(2, -100)
    assert mpmath.isnan(exact.cross_entropy(np.ones((2, 3)), ignored, label_smoothing=0.3))
    assert exact.nll_loss(np.ones((2, 3)), ignored, reduction="sum") == 0
    # Weights summing to 0 over the kept targets: a sum of 3 over 0 is +inf, as in torch.
    assert exact.nll_loss([[1.0, 2.0]] * 4, [0, 1, 0, 0], weight=[1.0, -3.0], reduction="mean") == mpmath.inf


def test_label_smoothing_below_zero_is_treated_as_zero_like_torch() -> None:
    x, y = [[1.0, 2.0, 3.0]], [0]
    assert exact.cross_entropy(x, y, label_smoothing=-5.0) == exact.cross_entropy(x, y)


def test_identical_cancelling_terms_sum_to_an_exact_zero() -> None:
    # 0.5 log 2 + 0.5 log(1/2) = 0: the two rounded terms are exact opposites, and the true value is 0.
    assert exact.information.kl_divergence([0.5, 0.5], [0.25, 1.0])[()] == 0
    # Tied logits under opposite weights: the smoothing term is exactly 0, the loss (1 - e) log 2.
    loss = exact.cross_entropy([[0.0, 0.0]], [0], weight=[1.0, -1.0], label_smoothing=0.5, reduction="none")
    with mpmath.workdps(60):
        assert abs(loss[0] - mpmath.log(2) / 2) < mpmath.mpf("1e-45")


def test_deep_cancellation_is_resolved_at_a_higher_precision() -> None:
    t = 0.3
    term = exact.kl_div([math.log(t)], [t], reduction="none", dps=30)[0]
    with mpmath.workdps(100):
        expected = t * (mpmath.log(t) - mpmath.mpf(math.log(t)))
        assert abs(term - expected) <= abs(expected) * mpmath.mpf("1e-29")


def test_a_chance_exact_cancellation_is_not_trusted() -> None:
    # At dps=1 (36 bits) log(0.3) rounds to exactly the float64 log(0.3): the term cancels to 0 by chance.
    term = exact.kl_div([math.log(0.3)], [0.3], reduction="none", dps=1)[0]
    assert term != 0
    assert abs(term - mpmath.mpf("2.68065647502113e-17")) < mpmath.mpf("1e-17")


def test_cancellation_beyond_the_precision_cap_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact, "MAX_PRECISION_BITS", 1)  # no second try
    with pytest.raises(ArithmeticError, match="cannot certify"):
        exact.kl_div([math.log(0.3)], [0.3], reduction="none", dps=1)


@pytest.mark.parametrize("dps", [20, 60])
def test_dps_is_the_number_of_correct_digits(dps: int) -> None:
    loss = exact.cross_entropy([[40.0, 0.0, 0.0]], [0], reduction="none", dps=dps)[0]
    with mpmath.workdps(100):
        expected = mpmath.log1p(2 * mpmath.exp(-40))
        assert abs(loss - expected) <= expected * mpmath.mpf(10) ** (-dps)


def test_inputs_are_read_exactly_from_any_float_dtype_and_torch_tensors() -> None:
    x32 = np.array([[0.1, 0.7, -2.3]], dtype=np.float32)
    from_numpy = exact.cross_entropy(x32, [2], reduction="none")
    from_torch = exact.cross_entropy(
        torch.from_numpy(x32).to(torch.bfloat16).float(), torch.tensor([2]), reduction="none"
    )
    from_float64 = exact.cross_entropy(x32.astype(np.float64), [2], reduction="none")
    assert from_numpy[0] == from_float64[0]
    assert from_torch.shape == (1,)
    bf16 = exact.sigmoid(torch.tensor([0.1], dtype=torch.bfloat16))
    assert bf16[0] == exact.sigmoid([float(torch.tensor(0.1, dtype=torch.bfloat16))])[0]


def test_caller_arrays_are_not_modified() -> None:
    x = np.array([[3.0, 1.0], [0.5, 0.5]])
    x.setflags(write=False)
    before = x.copy()
    exact.cross_entropy(x, [0, 1], label_smoothing=0.2)
    exact.log_softmax(x, 1)
    assert np.array_equal(x, before)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: exact.cross_entropy([[math.inf, 0.0]], [0]), ValueError, "finite"),
        (lambda: exact.cross_entropy([[math.nan, 0.0]], [0]), ValueError, "finite"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [2]), IndexError, "Target 2 is out of bounds"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [-1]), IndexError, "Target -1 is out of bounds"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [0], reduction="avg"), ValueError, "avg is not a valid"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [0], label_smoothing=1.5), ValueError, "between 0.0 and 1.0"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [0, 1]), ValueError, "does not fit"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [0.5]), ValueError, "integer class indices"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [[0.5, 0.5]], ignore_index=0), ValueError, "ignore_index"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [[1, 0]]), ValueError, "floating dtype"),
        (lambda: exact.cross_entropy([[1.0, 0.0]], [0], weight=[1.0]), ValueError, "weight must have shape"),
        (lambda: exact.cross_entropy(1.0, 0), ValueError, "1 or more dimensions"),
        (lambda: exact.binary_cross_entropy([0.5], [2.0]), ValueError, "target should be between 0 and 1"),
        (lambda: exact.binary_cross_entropy([1.5], [1.0]), ValueError, "input should be between 0 and 1"),
        (lambda: exact.binary_cross_entropy([0.5, 0.5], [1.0]), ValueError, "differs from input shape"),
        (lambda: exact.binary_cross_entropy([0.5], [1.0], weight=[1.0, 2.0]), ValueError, "does not broadcast"),
        (lambda: exact.binary_cross_entropy_with_logits([0.5], [1.0, 0.0]), ValueError, "must be the same"),
        (lambda: exact.kl_div([0.0, 0.0], [0.5, 0.5, 0.0]), ValueError, "do not broadcast"),
        (lambda: exact.kl_div([0.0], [1.0], reduction="avg"), ValueError, "not a valid"),
        (lambda: exact.log_softmax([1.0, 2.0], 1), ValueError, "dim must be"),
        (lambda: exact.information.entropy([0.5, -0.5]), ValueError, "non-negative"),
        (lambda: exact.information.entropy([0.5, 0.5], base=1), ValueError, "base"),
        (lambda: exact.information.entropy(0.5), ValueError, "at least one axis"),
        (lambda: exact.information.kl_divergence([0.5, 0.5], [1.0, 0.0, 0.0]), ValueError, "broadcast"),
        (lambda: exact.sigmoid(["a"]), ValueError, "real numbers"),
        (lambda: exact.sigmoid([1.0], dps=0), ValueError, "dps"),
    ],
)
def test_unsupported_inputs_raise(call: Callable[[], Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_unchecked_binary_cross_entropy_reproduces_old_torch() -> None:
    # The seed notebook's targets 2 and 4: the formula, evaluated without the range check.
    p, t = np.array([0.3, 0.8]), np.array([2.0, 4.0])
    loss = exact.binary_cross_entropy(p, t, reduction="none", check_range=False)
    expected = [-(ti * math.log(pi) + (1 - ti) * math.log1p(-pi)) for pi, ti in zip(p, t, strict=True)]
    assert [float(v) for v in loss] == pytest.approx(expected, rel=1e-14)
    outside = exact.binary_cross_entropy([-0.5, 1.5], [0.0, 1.0], reduction="none", check_range=False)
    assert all(mpmath.isnan(v) for v in outside)


def test_kl_div_follows_torch_on_zero_and_negative_targets() -> None:
    terms = exact.kl_div([-1.0, -1.0], [0.0, -0.5], reduction="none")
    assert terms[0] == 0
    assert mpmath.isnan(terms[1])
    x, t = np.zeros((2, 3)), np.full((2, 3), 0.5)
    batchmean, total = exact.kl_div(x, t, reduction="batchmean"), exact.kl_div(x, t, reduction="sum")
    with mpmath.workdps(60):
        assert abs(batchmean - total / 2) <= abs(batchmean) * mpmath.mpf("1e-49")
