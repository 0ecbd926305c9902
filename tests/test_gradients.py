"""``xe_verify.gradients``: every closed-form gradient equals torch's autograd, finite differences, and its laws.

Three kinds of evidence, as micrograd's tests build the same computation twice and compare:

* **autograd**: for every loss and option combination drawn by ``xe_verify.strategies``, the gradient equals
  ``loss.backward(grad_output)`` of torch in float64, float32, float16 and bfloat16 (the ``implementation`` fixture),
  within the error model of ``xe_verify.tolerances`` applied to the gradient's own formula (``gradient_scale``),
  with NaN and infinities identical;
* **finite differences** of the reference's *forward* functions, where they are smooth, within a derived bound
  (truncation ``h^2 |f'''| / 6`` plus rounding ``eps_f / h``);
* **laws** that hold whatever the implementation: softmax rows sum to zero, ``mean`` is ``sum`` over the
  denominator, ignored positions get 0, ``none`` with ones is ``sum``.

And the torch facts the gradients mirror or document (torch-semantics §6, traps 9, 12 and 22).
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
from differential import bound
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_functional import ARGUMENT_SETS, LOSSES

from xe_verify import functional, gradients
from xe_verify import strategies as xst
from xe_verify.tolerances import MACHINE_EPSILON, SMALLEST_NORMAL, allowed_error, operation_count

# torch warns on every kl_div with reduction="mean" (the default); the value is what is compared.
pytestmark = [
    pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

SOFTMAX_LOSSES = ("cross_entropy", "nll_loss")
TORCH_LOSSES = {name: getattr(F, name) for name in LOSSES}
FLOAT_ARGUMENTS = ("input", "target", "weight", "pos_weight")
GUARD = gradients.BCE_DENOMINATOR_GUARD

#: max over p in [0, 1] of |p (1 - p) (1 - 2 p)| = 1 / (6 sqrt 3): the third derivative of -log_softmax and of
#: softplus along one logit is (weighted target mass) times this at most (see test_*_is_a_central_difference).
THIRD_DERIVATIVE_OF_SOFTMAX = 1.0 / (6.0 * math.sqrt(3.0))

inf, nan = np.inf, np.nan


def a(*values: Any) -> np.ndarray:
    """A float64 array, to keep the examples short."""
    return np.array(values[0] if len(values) == 1 else values, dtype=np.float64)


def i(*values: Any) -> np.ndarray:
    """An int64 array of class indices."""
    return np.array(values[0] if len(values) == 1 else values, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------------
# Shapes, upstream gradients, torch's autograd


def loss_shape(function: str, arguments: dict[str, Any]) -> tuple[int, ...]:
    """The shape of the ``reduction="none"`` loss: what ``grad_output`` has for ``none``."""
    options = {key: value for key, value in arguments.items() if key != "reduction"}
    return tuple(np.shape(getattr(functional, function)(**options, reduction="none")))


@st.composite
def grad_outputs(draw: st.DrawFn, function: str, arguments: dict[str, Any]) -> np.ndarray | None:
    """``None`` (the default: 1 or ones), or an upstream gradient: a scalar, or an array of the loss's shape."""
    elements = st.one_of(st.sampled_from([1.0, -1.0, 0.0, 0.5]), st.floats(-4.0, 4.0, allow_subnormal=False))
    if arguments.get("reduction", "mean") != "none":
        value = draw(st.none() | elements)
        return None if value is None else np.float64(value)
    return draw(st.none() | hnp.arrays(np.float64, loss_shape(function, arguments), elements=elements))


def autograd(
    implementation: TorchImplementation, function: str, arguments: dict[str, Any], grad_output: Any
) -> np.ndarray:
    """torch's ``input.grad`` after ``F.<function>(**arguments).backward(grad_output)``, as float64."""
    tensors: dict[str, Any] = {}
    for name, value in arguments.items():
        if name == "check_range":
            continue
        array = np.asarray(value) if name in FLOAT_ARGUMENTS and value is not None else None
        if array is None:
            tensors[name] = value
        elif array.dtype.kind in "iu":
            tensors[name] = torch.from_numpy(array.astype(np.int64)).to(implementation.device)
        else:
            tensors[name] = torch.from_numpy(array.astype(np.float64)).to(
                implementation.device, implementation.torch_dtype
            )
    x = tensors["input"].requires_grad_(True)
    target = tensors.get("target")
    if function in SOFTMAX_LOSSES and x.ndim == 1 and not target.is_floating_point() and target.shape == (1,):
        # torch's backward refuses the (1,) target its forward accepts (test_one_element_target_of_a_1d_input):
        # compare with the same call on the 0-d target.
        tensors["target"] = tensors["target"].reshape(())
    loss = TORCH_LOSSES[function](**tensors)
    upstream = torch.ones_like(loss) if grad_output is None else torch.as_tensor(np.asarray(grad_output))
    loss.backward(upstream.to(loss.device, loss.dtype).expand_as(loss))
    return x.grad.detach().to("cpu", torch.float64).numpy()


def rounded(implementation: TorchImplementation, value: Any) -> Any:
    """``value`` as the implementation sees it (rounded to its dtype), as float64; ``None`` stays ``None``."""
    if value is None:
        return None
    return torch.as_tensor(np.asarray(value, dtype=np.float64)).to(implementation.torch_dtype).double().numpy()


def assert_within(
    function: str, expected: Any, actual: Any, allowed: Any, *, label: str, arguments: dict[str, Any]
) -> None:
    """``|actual - expected| <= allowed`` elementwise, NaN and infinities identical; says where and by how much."""
    __tracebackhide__ = True
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    assert expected.shape == actual.shape, f"{function} [{label}]: shape {actual.shape}, expected {expected.shape}"
    allowed = np.broadcast_to(allowed, expected.shape)
    both_finite = np.isfinite(expected) & np.isfinite(actual)
    with np.errstate(invalid="ignore"):
        error = np.where(both_finite, np.abs(actual - expected), 0.0)
        non_finite_differs = ~both_finite & ~((expected == actual) | (np.isnan(expected) & np.isnan(actual)))
        bad = non_finite_differs | (both_finite & (error > 0) & ~(error <= allowed))
    if not bad.any():
        return
    index = tuple(int(k) for k in np.argwhere(bad)[0]) if expected.ndim else ()
    options = {key: value for key, value in arguments.items() if key not in FLOAT_ARGUMENTS}
    failure = AssertionError(
        f"{function} {options} [{label}] differs at index {index} ({int(bad.sum())} of {bad.size} elements): "
        f"expected {expected[index]!r}, {label} {actual[index]!r}, |error| {error[index]:.3e}, "
        f"allowed {allowed[index]:.3e} (eps_dtype (k S + |g|) + k eta (1 + U), see gradient_scale)"
    )
    repro = ", ".join(f"{k}={np.asarray(v).tolist() if hasattr(v, 'shape') else v!r}" for k, v in arguments.items())
    failure.add_note(f"reproduce: xe_verify.{function}({repro})")
    raise failure


# --------------------------------------------------------------------------------------------------------------------
# The error model, applied to the gradients' formulas


def _to_rows(array: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C); (N, C) -> itself; (N, C, d1..dk) -> (N * d1 * .. * dk, C) with classes last."""
    if array.ndim == 1:
        return array[None, :]
    if array.ndim == 2:
        return array
    moved = np.moveaxis(array, 1, -1)
    return moved.reshape(int(np.prod(moved.shape[:-1], dtype=np.int64)), array.shape[1])


def _rows_back(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of ``_to_rows``: (M, C) rows back to the input's shape."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


def _upstream(grad_output: Any, reduction: str, shape: tuple[int, ...]) -> np.ndarray:
    """``grad_output`` (default ones) broadcast to ``shape``: per position for ``none``, the scalar otherwise."""
    return np.broadcast_to(1.0 if grad_output is None else np.asarray(grad_output, dtype=np.float64), shape)


def _class_index_denominator(arguments: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``valid``, the target weights, ``W = sum of valid w_y`` and ``sum |w_y|`` (its rounding scale)."""
    x, y = np.asarray(arguments["input"]), np.asarray(arguments["target"]).reshape(-1)
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = np.ones(classes) if arguments.get("weight") is None else np.asarray(arguments["weight"], dtype=np.float64)
    valid = y != int(arguments.get("ignore_index", -100))
    target_weight = np.where(valid, w[np.where(valid, y, 0)], 0.0)
    return valid, target_weight, float(np.sum(target_weight)), float(np.sum(np.abs(target_weight)))


def gradient_scale(
    function: str, arguments: dict[str, Any], grad_output: Any, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    r"""The condition scale ``S`` and the underflow scale ``U`` of every gradient element (the input's shape).

    An implementation of the gradient in a dtype with machine epsilon :math:`\epsilon` and smallest normal
    :math:`\eta` is then within ``eps (k S + |g|) + k eta (1 + U)`` of the reference (``xe_verify.tolerances``'
    model, ``k`` its operation count). ``S`` sums the magnitudes whose rounding reaches the element:

    * softmax losses, :math:`g = b - p \sum_c b_c` with :math:`b = \partial L / \partial \text{lsm}` (torch's order):
      ``T p (1 + |lsm|) + |b|`` with ``T = sum_c |b_c|`` -- ``p = exp(lsm)`` has relative error
      ``eps (1 + |lsm|)``; ``U = T``, since ``p`` underflows with absolute error ``eta``; ``mean`` adds the
      relative rounding of its denominator, ``|g| sum|w_y| / |W|``;
    * BCE: ``|s w| (|p| + |t|) / D + |g| (1 + eta / (eps D))``, ``D = max(p (1 - p), guard)``: ``p - t`` rounds
      relative to ``|p| + |t|`` and ``p (1 - p)`` underflows below ``eta``; ``U = 1 / D``, since ``s w (p - t)``
      underflows with absolute error ``eta`` before the division;
    * BCE with logits: ``|s w| ((|pw t| + 1 + |t|) sigma (1 + |x| (1 - sigma)) + |pw t|) + |g|``, ``U = |s w l_w|``
      (``l_w`` rounds relative to ``|pw t| + 1 + |t|``; ``sigma``'s relative condition number is ``|x| (1 - sigma)``);
    * kl_div: ``|g| (1 + |t|)`` with a log target (``exp``'s condition number is ``|t|``), ``|g|`` otherwise, summed
      where the input was broadcast.
    """
    x = np.asarray(arguments["input"], dtype=np.float64)
    reduction = arguments.get("reduction", "mean")
    epsilon, smallest = MACHINE_EPSILON[dtype], SMALLEST_NORMAL[dtype]
    with np.errstate(all="ignore"):
        g = np.asarray(getattr(gradients, function)(**arguments, grad_output=grad_output))
        if function in SOFTMAX_LOSSES:
            return _softmax_gradient_scale(function, arguments, grad_output, g)
        t = np.asarray(arguments["target"], dtype=np.float64)
        shape = np.broadcast_shapes(x.shape, t.shape)
        count = np.prod(shape) if reduction == "mean" else 1.0
        if function == "kl_div" and reduction == "batchmean":
            count = x.shape[0] if x.ndim else 1.0
        s = np.abs(_upstream(grad_output, reduction, shape)) / count
        w = np.abs(np.asarray(1.0 if arguments.get("weight") is None else arguments["weight"], dtype=np.float64))
        if function == "binary_cross_entropy":
            denominator = np.maximum(x * (1.0 - x), GUARD)
            scale = s * w * (np.abs(x) + np.abs(t)) / denominator + np.abs(g) * (
                1.0 + smallest / (epsilon * denominator)
            )
            # torch forms s w (p - t) before it divides by D: its underflow (eta) is divided by D too.
            return scale, np.broadcast_to(1.0 / denominator, shape)
        if function == "binary_cross_entropy_with_logits":
            pw = np.asarray(1.0 if arguments.get("pos_weight") is None else arguments["pos_weight"], dtype=np.float64)
            sigma = functional.sigmoid(x)
            parts = np.abs(pw * t) + 1.0 + np.abs(t)
            condition = np.where(np.isfinite(x), 1.0 + np.abs(x) * (1.0 - sigma), 1.0)
            scale = s * w * (parts * sigma * condition + np.abs(pw * t)) + np.abs(g)
            return scale, s * w * parts
        # kl_div: elementwise over the broadcast shape, then summed back to the input's shape.
        log_target = bool(arguments.get("log_target", False))
        magnitude = s * (np.exp(t) if log_target else np.abs(t))
        scale = np.where(magnitude > 0, magnitude * (1.0 + (np.abs(t) if log_target else 0.0)), 0.0)
        underflow = s if log_target else np.zeros(shape)
        return _sum_to(scale + magnitude, x.shape), _sum_to(underflow, x.shape)


def _sum_to(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = np.broadcast_to(values, np.broadcast_shapes(values.shape, shape))
    values = values.sum(axis=tuple(range(values.ndim - len(shape))))
    stretched = tuple(axis for axis, side in enumerate(shape) if side == 1 and values.shape[axis] != 1)
    return np.asarray(values.sum(axis=stretched, keepdims=True) if stretched else values).reshape(shape)


def _softmax_gradient_scale(
    function: str, arguments: dict[str, Any], grad_output: Any, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(arguments["input"], dtype=np.float64)
    reduction = arguments.get("reduction", "mean")
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    rows = _to_rows(x)
    target = np.asarray(arguments["target"])
    weight = arguments.get("weight")
    w = np.ones(classes) if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
    out_shape = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    s = np.abs(_upstream(grad_output, reduction, out_shape)).reshape(-1) * np.ones(rows.shape[0])
    denominator_scale = np.zeros(())
    if function == "cross_entropy" and target.shape == x.shape:
        smoothing = max(float(arguments.get("label_smoothing", 0.0)), 0.0)
        q = _to_rows(np.asarray(target, dtype=np.float64))
        q = q * (1.0 - smoothing) + smoothing / classes if smoothing > 0 else q
        if reduction == "mean":
            s = s / rows.shape[0]
        b = s[:, None] * np.abs(w * q)
    else:
        valid, target_weight, denominator, magnitude = _class_index_denominator(arguments)
        if reduction == "mean":
            s = s / abs(denominator)
            denominator_scale = np.abs(g) * magnitude / abs(denominator)
        safe = np.where(valid, target.reshape(-1), 0)
        smoothing = max(float(arguments.get("label_smoothing", 0.0)), 0.0) if function == "cross_entropy" else 0.0
        s = np.where(valid, s, 0.0)  # ignored rows get nothing, even from an infinite s = 1 / 0
        b = np.zeros(rows.shape) + s[:, None] * (smoothing / classes) * w
        b[np.arange(rows.shape[0]), safe] += s * (1.0 - smoothing) * np.abs(target_weight)
        if function == "nll_loss":
            return _rows_back(b, x.shape) + denominator_scale, np.zeros(x.shape)
    total = b.sum(axis=-1, keepdims=True)
    p, lsm = functional.softmax(rows, dim=1), functional.log_softmax(rows, dim=1)
    scale = np.where(p > 0, total * p * (1.0 + np.abs(lsm)), 0.0) + b
    return _rows_back(scale, x.shape) + denominator_scale, _rows_back(np.broadcast_to(total, rows.shape), x.shape)


def _classes_and_elements(function: str, arguments: dict[str, Any]) -> tuple[int, int]:
    x = np.asarray(arguments["input"])
    if function in SOFTMAX_LOSSES:
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        return classes, max(x.size // max(classes, 1), 1)
    return 1, max(int(np.prod(np.broadcast_shapes(x.shape, np.shape(arguments["target"])))), 1)


def gradient_bound(function: str, arguments: dict[str, Any], grad_output: Any, dtype: str, reference: Any) -> Any:
    """The largest error allowed in each gradient element: ``eps (k S + |g|) + k eta (1 + U)``."""
    scale, underflow = gradient_scale(function, arguments, grad_output, dtype)
    operations = operation_count(*_classes_and_elements(function, arguments))
    with np.errstate(invalid="ignore"):
        return allowed_error(reference, scale, dtype, operations) + operations * SMALLEST_NORMAL[dtype] * underflow


# --------------------------------------------------------------------------------------------------------------------
# The autograd comparison


#: Values of a float16 gradient's intermediates (``grad_output / W``, ``sum_c |b_c|``, the gradient) must stay below
#: its largest finite number, 65504, or torch overflows to inf where the reference is finite: keep a factor 4 below.
FLOAT16_BUDGET = float(np.finfo(np.float16).max) / 4
#: float16 rounds p within 2**-11 of 0 or 1 to 0 or 1, where its gradient is +-inf or NaN (trap 12), and it cannot
#: hold 1 / (p (1 - p)) for p below 2**-16: BCE's float16 inputs stay in [2**-6, 1 - 2**-6] (1 / (p (1 - p)) < 66).
FLOAT16_BCE_MARGIN = 2.0**-6


def in_range(function: str, arguments: dict[str, Any], grad_output: Any, dtype: str) -> tuple[dict[str, Any], Any]:
    """Arguments a dtype can represent: halve ``grad_output`` (exact) until every intermediate fits the dtype.

    The gradient is linear in ``grad_output``, so halving it changes no digit of the computation, only exponents.
    """
    largest = float(torch.finfo(getattr(torch, dtype)).max) / 4
    if dtype == "float16" and function == "binary_cross_entropy":
        p = np.clip(arguments["input"], FLOAT16_BCE_MARGIN, 1.0 - FLOAT16_BCE_MARGIN)
        arguments = {**arguments, "input": p}
    if grad_output is None:
        grad_output = np.ones(loss_shape(function, arguments)) if arguments.get("reduction") == "none" else 1.0
    for _ in range(400):
        scale, underflow = gradient_scale(function, arguments, grad_output, dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            worst = np.max(np.where(np.isfinite(scale), scale, 0.0), initial=0.0)
            worst = max(worst, np.max(np.where(np.isfinite(underflow), underflow, 0.0), initial=0.0))
            if _divides_by_target_weights(function, arguments):
                # torch divides grad_output by W before it multiplies by w_y: tiny weights overflow that first.
                denominator = abs(_class_index_denominator(arguments)[2])
                quotient = np.max(np.abs(grad_output)) / denominator if denominator else 0.0
                worst = max(worst, quotient if np.isfinite(quotient) else np.inf)
        if worst <= largest:
            break
        grad_output = np.asarray(grad_output, dtype=np.float64) / 2.0
    return arguments, grad_output


def _divides_by_target_weights(function: str, arguments: dict[str, Any]) -> bool:
    """Whether the gradient is a class-index ``mean``, whose upstream torch divides by the target weights' sum."""
    if function not in SOFTMAX_LOSSES or arguments.get("reduction", "mean") != "mean":
        return False
    return np.asarray(arguments["target"]).shape != np.asarray(arguments["input"]).shape


def check_gradient(
    implementation: TorchImplementation, function: str, arguments: dict[str, Any], grad_output: Any
) -> None:
    """The reference gradient on the implementation's rounded inputs equals torch's, within ``gradient_bound``."""
    __tracebackhide__ = True
    arguments, grad_output = in_range(function, arguments, grad_output, implementation.dtype)
    seen = {
        name: rounded(implementation, value) if name in FLOAT_ARGUMENTS else value for name, value in arguments.items()
    }
    if np.asarray(arguments["target"]).dtype.kind in "iu":
        seen["target"] = arguments["target"]
    upstream = rounded(implementation, grad_output)
    expected = getattr(gradients, function)(**seen, grad_output=upstream)
    actual = autograd(implementation, function, seen, upstream)
    allowed = gradient_bound(function, seen, upstream, implementation.dtype, expected)
    label = f"autograd-{implementation.name}"
    assert_within(
        f"gradients.{function}", expected, actual, allowed, label=label, arguments={**seen, "grad_output": upstream}
    )


@given(arguments=xst.cross_entropy_arguments(), data=st.data())
# A logit 40 above the rest: p_y = 1 - 4e-18; +-1e4 logits with smoothing.
@example(arguments={"input": a([[40.0, 0.0, 0.0], [0.0, 40.0, 0.0]]), "target": i(0, 1)}, data=None)
@example(arguments={"input": a([[1e4, -1e4, 0.0]]), "target": i([0]), "label_smoothing": 0.1}, data=None)
# Zero weights: at the only target, a 0/0 mean (NaN rows); at a class that is not a target, nothing.
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(0, 0), "weight": a(0.0, 1.0)}, data=None)
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(1, 1), "weight": a(0.0, 1.0)}, data=None)
# All targets ignored: mean 0/0, yet the gradient is 0 (nothing is written), with and without smoothing.
@example(arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(-100, -100)}, data=None)
@example(
    arguments={"input": a([[1.0, 2.0], [3.0, 4.0]]), "target": i(1, 1), "ignore_index": 1, "label_smoothing": 0.2},
    data=None,
)
# K-dim input, weight, smoothing and an ignored position at once.
@example(
    arguments={
        "input": np.arange(24.0).reshape(2, 3, 4) / 7.0,
        "target": i([[0, 1, 2, -100], [2, 2, 1, 0]]),
        "weight": a(0.5, 2.0, 1.0),
        "label_smoothing": 0.3,
    },
    data=None,
)
# Soft targets off the simplex, with smoothing (q' = (1 - eps) q + eps / C) and weights.
@example(
    arguments={
        "input": a([[0.5, -1.0, 2.0]]),
        "target": a([[2.0, -1.0, 0.5]]),
        "label_smoothing": 0.4,
        "weight": a(1, 2, 3),
    },
    data=None,
)
def test_cross_entropy_gradient_matches_autograd(
    implementation: TorchImplementation, arguments: dict[str, Any], data: st.DataObject | None
) -> None:
    grad_output = None if data is None else data.draw(grad_outputs("cross_entropy", arguments))
    check_gradient(implementation, "cross_entropy", arguments, grad_output)


@given(arguments=xst.nll_loss_arguments(), data=st.data())
# A zero mean denominator: NaN at the counted targets (w * -(1/0)), 0 elsewhere.
@example(arguments={"input": a([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]]), "target": i(0, 1), "weight": a(0, 0, 1)}, data=None)
@example(arguments={"input": a(0.5, -1.0, 2.0), "target": i(2), "reduction": "none"}, data=None)
# A weight at float32's smallest subnormal: torch's 1 / W overflows float32 (in_range halves grad_output).
@example(arguments={"input": np.zeros(1), "target": i(0), "weight": np.array([1.401298464324817e-45])}, data=None)
def test_nll_loss_gradient_matches_autograd(
    implementation: TorchImplementation, arguments: dict[str, Any], data: st.DataObject | None
) -> None:
    grad_output = None if data is None else data.draw(grad_outputs("nll_loss", arguments))
    check_gradient(implementation, "nll_loss", arguments, grad_output)


@given(arguments=xst.binary_cross_entropy_arguments(), data=st.data())
# The guard: p at 0 and 1 against every target (-1 / float32(1e-12), +1 / float32(1e-12), 0, half of it).
@example(arguments={"input": a(0, 1, 0, 1, 0), "target": a(1, 0, 0, 1, 0.5), "reduction": "none"}, data=None)
@example(arguments={"input": a([[1e-17, 0.5], [1.0 - 2**-53, 0.25]]), "target": a([[0, 1], [1, 0.5]])}, data=None)
# torch's s (p - t) underflows in float32 (the mean's 1/2 times -1.4e-45 is -0) before the division by the guard.
@example(arguments={"input": a(0.0, 0.0), "target": a(1.401298464324817e-45, 1.401298464324817e-45)}, data=None)
def test_binary_cross_entropy_gradient_matches_autograd(
    implementation: TorchImplementation, arguments: dict[str, Any], data: st.DataObject | None
) -> None:
    grad_output = None if data is None else data.draw(grad_outputs("binary_cross_entropy", arguments))
    check_gradient(implementation, "binary_cross_entropy", arguments, grad_output)


@given(arguments=xst.binary_cross_entropy_with_logits_arguments(), data=st.data())
# Infinite logits: the gradient is finite where the loss is NaN (x = +inf, t = 1).
@example(arguments={"input": a(inf, inf, -inf, -inf), "target": a(1, 0, 0, 1), "pos_weight": a(2.0)}, data=None)
@example(arguments={"input": a([[0.3, -2.0]]), "target": a([[4.0, -1.0]]), "pos_weight": a(-1.0, 3.0)}, data=None)
def test_binary_cross_entropy_with_logits_gradient_matches_autograd(
    implementation: TorchImplementation, arguments: dict[str, Any], data: st.DataObject | None
) -> None:
    grad_output = None if data is None else data.draw(grad_outputs("binary_cross_entropy_with_logits", arguments))
    check_gradient(implementation, "binary_cross_entropy_with_logits", arguments, grad_output)


@given(arguments=xst.kl_div_arguments(), data=st.data())
# input -inf and NaN do not reach the gradient; a broadcast input gets the sum over the broadcast rows.
@example(arguments={"input": a(-inf, nan, 0.0), "target": a(0.0, 0.0, 0.5), "reduction": "sum"}, data=None)
@example(
    arguments={"input": a(-1.0, -2.0), "target": a([[0.5, 0.5], [0.25, 0.75]]), "reduction": "batchmean"}, data=None
)
@example(arguments={"input": a(0.0, 0.0), "target": a(-inf, 0.0), "log_target": True}, data=None)
def test_kl_div_gradient_matches_autograd(
    implementation: TorchImplementation, arguments: dict[str, Any], data: st.DataObject | None
) -> None:
    grad_output = None if data is None else data.draw(grad_outputs("kl_div", arguments))
    check_gradient(implementation, "kl_div", arguments, grad_output)


# --------------------------------------------------------------------------------------------------------------------
# Central finite differences of the reference's forward functions, where they are smooth


def forward_error(function: str, arguments: dict[str, Any], grad_output: Any) -> float:
    """A bound on the rounding error of ``f = <grad_output, loss>`` as the reference computes it.

    The reference's forward error is within ``differential.bound`` of the exact value (the forward suite's claim,
    for a float64 implementation; the reference itself is more accurate). For ``none``, ``f`` is the dot product
    with ``grad_output``: its error is ``sum |go_i| bound_i`` plus the dot product's own rounding.
    """
    reference = np.asarray(getattr(functional, function)(**arguments), dtype=np.float64)
    allowed = bound(function, "float64", arguments, reference)
    if arguments.get("reduction", "mean") != "none":
        return float(np.sum(np.abs(1.0 if grad_output is None else grad_output) * np.asarray(allowed)))
    upstream = np.broadcast_to(1.0 if grad_output is None else grad_output, reference.shape)
    operations = operation_count(elements=max(reference.size, 1))
    dot_rounding = MACHINE_EPSILON["float64"] * operations * np.sum(np.abs(upstream * reference))
    return float(np.sum(np.abs(upstream) * allowed) + dot_rounding)


def scalar_loss(function: str, arguments: dict[str, Any], grad_output: Any) -> float:
    """``<grad_output, loss>``: the function whose gradient ``gradients.<function>(..., grad_output)`` is."""
    value = np.asarray(getattr(functional, function)(**arguments), dtype=np.float64)
    upstream = 1.0 if grad_output is None else np.asarray(grad_output, dtype=np.float64)
    return float(np.sum(upstream * value))


def central_difference(
    function: str, arguments: dict[str, Any], grad_output: Any, index: tuple[int, ...], step: float
) -> tuple[float, float, float]:
    """``(f(x + h) - f(x - h)) / (x_+ - x_-)`` along one element, the step actually taken, and the rounding bound.

    ``x +- h`` are rounded; dividing by their exact difference keeps that rounding out of the error. The rounding
    bound is ``(eps_f(x+) + eps_f(x-)) / (x_+ - x_-)``.
    """
    x = np.asarray(arguments["input"], dtype=np.float64)
    plus, minus = x.copy(), x.copy()
    plus[index] += step
    minus[index] -= step
    width = float(plus[index] - minus[index])
    up, down = {**arguments, "input": plus}, {**arguments, "input": minus}
    difference = (scalar_loss(function, up, grad_output) - scalar_loss(function, down, grad_output)) / width
    rounding = (forward_error(function, up, grad_output) + forward_error(function, down, grad_output)) / width
    return difference, width / 2.0, rounding


def best_step(rounding_error: float, third_derivative: float, largest: float) -> float:
    """The step minimising ``h^2 M3 / 6 + eps_f / h``: ``(3 eps_f / M3)^(1/3)``, at most ``largest``."""
    if third_derivative <= 0.0:
        return largest
    return min(largest, (3.0 * rounding_error / third_derivative) ** (1.0 / 3.0))


def check_central_differences(
    function: str,
    arguments: dict[str, Any],
    grad_output: Any,
    indices: list[tuple[int, ...]],
    third_derivative: Any,
    largest_step: Any = 1.0,
) -> None:
    """``gradients.<function>`` equals the central difference at each index within truncation plus rounding.

    ``third_derivative(index, h)`` bounds ``|f'''|`` on ``[x - h, x + h]`` along the element; ``largest_step(index)``
    keeps the interval inside the smooth region. Error: ``h^2 M3 / 6 + (eps_f+ + eps_f-) / 2h``.
    """
    __tracebackhide__ = True
    if not np.isfinite(scalar_loss(function, arguments, grad_output)):
        return  # a 0/0 mean (everything ignored or weighted 0): no function to differentiate
    gradient = getattr(gradients, function)(**arguments, grad_output=grad_output)
    base_error = forward_error(function, arguments, grad_output)
    for index in indices:
        largest = float(largest_step(index)) if callable(largest_step) else float(largest_step)
        step = best_step(base_error, float(third_derivative(index, largest)), largest)
        difference, half_width, rounding = central_difference(function, arguments, grad_output, index, step)
        truncation = half_width**2 * float(third_derivative(index, half_width)) / 6.0
        allowed = truncation + rounding
        assert abs(gradient[index] - difference) <= allowed, (
            f"gradients.{function} at {index}: analytic {gradient[index]!r}, central difference {difference!r} "
            f"(h = {half_width:.3e}), |error| {abs(gradient[index] - difference):.3e}, allowed {allowed:.3e} "
            f"= truncation {truncation:.3e} + rounding {rounding:.3e}; options "
            f"{ {k: v for k, v in arguments.items() if k not in FLOAT_ARGUMENTS} }"
        )


@st.composite
def some_indices(draw: st.DrawFn, shape: tuple[int, ...], most: int = 4) -> list[tuple[int, ...]]:
    """Up to ``most`` distinct element indices of an array of ``shape`` (finite differences cost two calls each)."""
    size = int(np.prod(shape))
    if size == 0:
        return []
    flat = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=most, unique=True))
    return [tuple(int(k) for k in np.unravel_index(f, shape)) for f in flat]


def _target_mass(arguments: dict[str, Any], grad_output: Any) -> np.ndarray:
    """``|s_i| |sum_c w_c q'_ic|`` per position: ``|f'''|`` along a logit is this times 1 / (6 sqrt 3)."""
    x = np.asarray(arguments["input"])
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    target = np.asarray(arguments["target"])
    reduction = arguments.get("reduction", "mean")
    out_shape = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    s = np.abs(_upstream(grad_output, reduction, out_shape)).reshape(-1) * np.ones(_to_rows(x).shape[0])
    weight = arguments.get("weight")
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    smoothing = max(float(arguments.get("label_smoothing", 0.0)), 0.0)
    if target.shape == x.shape:
        q = _to_rows(np.asarray(target, dtype=np.float64))
        q = q * (1.0 - smoothing) + smoothing / classes if smoothing > 0 else q
        mass = np.abs(np.sum(w * q, axis=-1))
        if reduction == "mean":
            s = s / q.shape[0]
    else:
        valid, target_weight, denominator, _ = _class_index_denominator(arguments)
        mass = np.where(valid, np.abs((1.0 - smoothing) * target_weight + smoothing / classes * np.sum(w)), 0.0)
        if reduction == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(valid, s / abs(denominator), 0.0)
    return np.asarray(s * mass)


@given(arguments=xst.cross_entropy_arguments(max_magnitude=30.0), data=st.data())
def test_cross_entropy_gradient_is_a_central_difference(arguments: dict[str, Any], data: st.DataObject) -> None:
    """Along logit ``x_ic``, ``d3/dx3 (-sum_j b_j lsm_j) = A p_c (1 - p_c)(1 - 2 p_c)``, ``A = sum_j b_j``.

    So ``|f'''| <= |s_i A_i| / (6 sqrt 3)`` everywhere: one bound for every step.
    """
    grad_output = data.draw(grad_outputs("cross_entropy", arguments))
    gradient = gradients.cross_entropy(**arguments, grad_output=grad_output)
    if not np.isfinite(gradient).all():  # a zero mean denominator: nothing smooth to compare
        return
    x = np.asarray(arguments["input"])
    mass = _target_mass(arguments, grad_output)
    position_of = np.arange(mass.size).reshape(() if x.ndim == 1 else (x.shape[0], *x.shape[2:]))

    def third_derivative(index: tuple[int, ...], _: float) -> float:
        position = position_of[() if x.ndim == 1 else (index[0], *index[2:])]
        return float(mass[position] * THIRD_DERIVATIVE_OF_SOFTMAX)

    indices = data.draw(some_indices(x.shape))
    check_central_differences("cross_entropy", arguments, grad_output, indices, third_derivative)


@given(arguments=xst.nll_loss_arguments(), data=st.data())
def test_nll_loss_gradient_is_a_central_difference(arguments: dict[str, Any], data: st.DataObject) -> None:
    """nll_loss is linear in its input: the central difference has no truncation error, any step will do."""
    grad_output = data.draw(grad_outputs("nll_loss", arguments))
    if not np.isfinite(gradients.nll_loss(**arguments, grad_output=grad_output)).all():
        return
    indices = data.draw(some_indices(np.shape(arguments["input"])))
    check_central_differences("nll_loss", arguments, grad_output, indices, lambda index, h: 0.0)


#: Where BCE is smooth *and* torch's backward is its derivative: neither the -100 clamp (p > e^-100) nor the
#: denominator guard (p (1 - p) > float32(1e-12)) acts. Inside this margin both hold with room to spare.
BCE_SMOOTH_MARGIN = 1e-6


@given(
    arguments=xst.binary_cross_entropy_arguments().map(
        lambda arguments: {**arguments, "input": np.clip(arguments["input"], BCE_SMOOTH_MARGIN, 1 - BCE_SMOOTH_MARGIN)}
    ),
    data=st.data(),
)
def test_binary_cross_entropy_gradient_is_a_central_difference(arguments: dict[str, Any], data: st.DataObject) -> None:
    """``f''' = -2 s w (t / p^3 - (1 - t) / (1 - p)^3)``: bounded on ``[p - h, p + h]`` by its value at the ends."""
    grad_output = data.draw(grad_outputs("binary_cross_entropy", arguments))
    p, t = np.asarray(arguments["input"]), np.asarray(arguments["target"])
    weight = np.broadcast_to(1.0 if arguments.get("weight") is None else arguments["weight"], p.shape)
    reduction = arguments.get("reduction", "mean")
    s = np.abs(_upstream(grad_output, reduction, p.shape)) / (p.size if reduction == "mean" else 1.0)

    def third_derivative(index: tuple[int, ...], h: float) -> float:
        low, high = p[index] - h, 1.0 - p[index] - h
        return float(2.0 * s[index] * abs(weight[index]) * (abs(t[index]) / low**3 + abs(1.0 - t[index]) / high**3))

    def largest_step(index: tuple[int, ...]) -> float:
        return float(min(p[index], 1.0 - p[index]) / 2.0)

    indices = data.draw(some_indices(p.shape))
    check_central_differences("binary_cross_entropy", arguments, grad_output, indices, third_derivative, largest_step)


@given(arguments=xst.binary_cross_entropy_with_logits_arguments(max_magnitude=30.0), data=st.data())
def test_binary_cross_entropy_with_logits_gradient_is_a_central_difference(
    arguments: dict[str, Any], data: st.DataObject
) -> None:
    """``f''' = s w l_w sigma (1 - sigma)(1 - 2 sigma)``, at most ``|s w l_w| / (6 sqrt 3)`` everywhere."""
    grad_output = data.draw(grad_outputs("binary_cross_entropy_with_logits", arguments))
    x, t = np.asarray(arguments["input"]), np.asarray(arguments["target"])
    weight = np.broadcast_to(1.0 if arguments.get("weight") is None else arguments["weight"], x.shape)
    pw = np.broadcast_to(1.0 if arguments.get("pos_weight") is None else arguments["pos_weight"], x.shape)
    reduction = arguments.get("reduction", "mean")
    s = np.abs(_upstream(grad_output, reduction, x.shape)) / (x.size if reduction == "mean" else 1.0)
    log_weight = np.abs(1.0 + (pw - 1.0) * t)

    def third_derivative(index: tuple[int, ...], _: float) -> float:
        return float(s[index] * abs(weight[index]) * log_weight[index] * THIRD_DERIVATIVE_OF_SOFTMAX)

    indices = data.draw(some_indices(x.shape))
    check_central_differences("binary_cross_entropy_with_logits", arguments, grad_output, indices, third_derivative)


@given(arguments=xst.kl_div_arguments(), data=st.data())
def test_kl_div_gradient_is_a_central_difference(arguments: dict[str, Any], data: st.DataObject) -> None:
    """kl_div is linear in its input where it is finite (a log target of -inf gives 0 * -inf = NaN: not smooth)."""
    target = np.asarray(arguments["target"])
    if not np.isfinite(target).all():
        arguments = {**arguments, "target": np.where(np.isfinite(target), target, -50.0)}
    grad_output = data.draw(grad_outputs("kl_div", arguments))
    indices = data.draw(some_indices(np.shape(arguments["input"])))
    check_central_differences("kl_div", arguments, grad_output, indices, lambda index, h: 0.0)


# --------------------------------------------------------------------------------------------------------------------
# Laws


@given(arguments=xst.cross_entropy_arguments(), data=st.data())
def test_cross_entropy_gradient_rows_sum_to_zero(arguments: dict[str, Any], data: st.DataObject) -> None:
    """``sum_c (A p_c - b_c) = A - A = 0``: log_softmax is invariant under adding a constant to a row.

    This holds for every target -- weights, smoothing, soft targets off the simplex -- not only for ``p - onehot``.
    Tolerance: the row sum of the gradient's rounding scale (``gradient_scale``) in float64.
    """
    grad_output = data.draw(grad_outputs("cross_entropy", arguments))
    gradient = gradients.cross_entropy(**arguments, grad_output=grad_output)
    if not np.isfinite(gradient).all():
        return
    x = np.asarray(arguments["input"])
    scale, _ = gradient_scale("cross_entropy", arguments, grad_output, "float64")
    operations = operation_count(*_classes_and_elements("cross_entropy", arguments))
    class_axis = 0 if x.ndim == 1 else 1
    row_sums = gradient.sum(axis=class_axis)
    allowed = allowed_error(0.0, scale.sum(axis=class_axis), "float64", operations)
    assert_within(
        "gradients.cross_entropy row sums", np.zeros_like(row_sums), row_sums, allowed, label="sum", arguments=arguments
    )


@given(
    x=xst.logits(st.shared(xst.class_input_shapes(), key="shape"), max_magnitude=50.0),
    q=xst.soft_targets(st.shared(xst.class_input_shapes(), key="shape")),
)
def test_cross_entropy_gradient_is_softmax_minus_target(x: np.ndarray, q: np.ndarray) -> None:
    """Without weights and smoothing, with q on the simplex: ``sum`` gradient = ``softmax(x) - q``."""
    gradient = gradients.cross_entropy(x, q, reduction="sum")
    class_axis = 0 if x.ndim == 1 else 1
    expected = functional.softmax(x, dim=class_axis) - q
    arguments = {"input": x, "target": q, "reduction": "sum"}
    scale, _ = gradient_scale("cross_entropy", arguments, None, "float64")
    allowed = allowed_error(
        expected, scale, "float64", operation_count(*_classes_and_elements("cross_entropy", arguments))
    )
    assert_within("gradients.cross_entropy", expected, gradient, allowed, label="p - q", arguments=arguments)


@given(
    x=xst.logits(st.shared(xst.class_input_shapes(), key="shape"), max_magnitude=50.0),
    y=xst.class_index_targets(st.shared(xst.class_input_shapes(), key="shape")),
)
def test_cross_entropy_mean_gradient_is_softmax_minus_onehot_over_count(x: np.ndarray, y: np.ndarray) -> None:
    """The textbook form: ``(softmax(x) - onehot(y)) / (number of counted targets)``, ignored rows 0."""
    gradient = gradients.cross_entropy(x, y)
    rows, targets = _to_rows(x), y.reshape(-1)
    counted = targets != -100
    onehot = np.eye(rows.shape[1])[np.where(counted, targets, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_rows = np.where(counted[:, None], (functional.softmax(rows, dim=1) - onehot) / np.sum(counted), 0.0)
    expected = _rows_back(expected_rows, x.shape)
    arguments = {"input": x, "target": y}
    scale, _ = gradient_scale("cross_entropy", arguments, None, "float64")
    allowed = allowed_error(
        expected, scale, "float64", operation_count(*_classes_and_elements("cross_entropy", arguments))
    )
    assert_within("gradients.cross_entropy", expected, gradient, allowed, label="(p - onehot) / n", arguments=arguments)


def _denominator(function: str, arguments: dict[str, Any]) -> float:
    """What ``mean`` (or ``batchmean``) divides by."""
    x = np.asarray(arguments["input"])
    if function in SOFTMAX_LOSSES:
        if np.shape(arguments["target"]) == x.shape:
            return float(_to_rows(x).shape[0])
        return _class_index_denominator(arguments)[2]
    if arguments.get("reduction") == "batchmean":
        return float(x.shape[0]) if x.ndim else 1.0
    return float(np.prod(np.broadcast_shapes(x.shape, np.shape(arguments["target"]))))


@pytest.mark.parametrize("function", LOSSES)
@given(data=st.data())
def test_mean_gradient_is_sum_gradient_over_the_denominator(function: str, data: st.DataObject) -> None:
    """``mean``'s gradient is ``sum``'s divided by the forward's denominator (``batchmean``: the batch size).

    Tolerance: both are the same products in a different order; a few roundings of the gradient itself,
    ``eps (k S + |g|)``.
    """
    arguments = data.draw(ARGUMENT_SETS[function])
    mean = "batchmean" if function == "kl_div" and data.draw(st.booleans()) else "mean"
    summed = getattr(gradients, function)(**{**arguments, "reduction": "sum"})
    averaged = getattr(gradients, function)(**{**arguments, "reduction": mean})
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = summed / _denominator(function, {**arguments, "reduction": mean})
    options = {**arguments, "reduction": mean}
    if function in SOFTMAX_LOSSES and _denominator(function, options) == 0.0:
        return  # 0/0 in the counted rows either way; that NaN pattern is compared with torch above
    scale, _ = gradient_scale(function, options, None, "float64")
    allowed = allowed_error(expected, scale, "float64", operation_count(*_classes_and_elements(function, options)))
    assert_within(f"gradients.{function}", expected, averaged, allowed, label="sum / denominator", arguments=options)


@pytest.mark.parametrize("function", LOSSES)
@given(data=st.data())
def test_none_gradient_with_ones_is_the_sum_gradient(function: str, data: st.DataObject) -> None:
    """The vector-Jacobian product with ones is the gradient of the sum: the same numbers, bit for bit."""
    arguments = data.draw(ARGUMENT_SETS[function])
    per_element = getattr(gradients, function)(**{**arguments, "reduction": "none"})
    summed = getattr(gradients, function)(**{**arguments, "reduction": "sum"})
    np.testing.assert_array_equal(per_element, summed)


@given(arguments=xst.cross_entropy_arguments(soft=False), data=st.data())
def test_ignored_positions_get_zero_gradient(arguments: dict[str, Any], data: st.DataObject) -> None:
    """Rows whose target is ``ignore_index`` get exactly 0 (finite logits), in cross_entropy and nll_loss."""
    grad_output = data.draw(grad_outputs("cross_entropy", arguments))
    x = np.asarray(arguments["input"])
    ignored = np.asarray(arguments["target"]).reshape(-1) == int(arguments.get("ignore_index", -100))
    nll_arguments = {key: value for key, value in arguments.items() if key != "label_smoothing"}
    for function, options in (("cross_entropy", arguments), ("nll_loss", nll_arguments)):
        rows = _to_rows(getattr(gradients, function)(**options, grad_output=grad_output))
        assert (rows[ignored] == 0.0).all(), f"{function}: ignored rows {rows[ignored]} (input shape {x.shape})"


# --------------------------------------------------------------------------------------------------------------------
# torch's corners, mirrored or documented


def test_nan_row_with_ignored_target_has_nan_gradient_in_cross_entropy_and_zero_in_nll_loss(
    torch64: TorchImplementation,
) -> None:
    """Trap 9: the loss is finite, but log_softmax's backward multiplies the row's NaN softmax by 0."""
    x, y = a([[nan, 2.0, 3.0], [0.0, 1.0, 2.0]]), i(-100, 1)
    for smoothing in (0.0, 0.3):
        ours = gradients.cross_entropy(x, y, label_smoothing=smoothing)
        assert np.isnan(ours[0]).all()
        assert np.isfinite(ours[1]).all()
        theirs = autograd(torch64, "cross_entropy", {"input": x, "target": y, "label_smoothing": smoothing}, None)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=4 * MACHINE_EPSILON["float64"])
    assert np.isfinite(float(functional.cross_entropy(x, y)))
    ours_nll = gradients.nll_loss(x, y)
    np.testing.assert_array_equal(ours_nll, [[0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    np.testing.assert_array_equal(ours_nll, autograd(torch64, "nll_loss", {"input": x, "target": y}, None))


@pytest.mark.parametrize("function", SOFTMAX_LOSSES)
def test_one_element_target_of_a_1d_input(torch64: TorchImplementation, function: str) -> None:
    """A ``(C,)`` input with a ``(1,)`` target: torch's forward accepts it, its backward raises (torch 2.13).

    What we do: the gradient of what the forward computes, i.e. the same as for the 0-d target.
    """
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape("size mismatch (got input: [3], target: [1])")):
        getattr(F, function)(x, torch.tensor([1])).backward()
    ours = getattr(gradients, function)(a(0.0, 1.0, -1.0), i([1]))
    np.testing.assert_array_equal(ours, getattr(gradients, function)(a(0.0, 1.0, -1.0), i(1)))
    theirs = autograd(torch64, function, {"input": a(0.0, 1.0, -1.0), "target": i(1)}, None)
    np.testing.assert_allclose(ours, theirs, rtol=4 * MACHINE_EPSILON["float64"], atol=0)


#: torch 2.13's BCE gradient at p in {0, 1}, targets (1, 0, 0, 1, 0.5), per dtype (torch-semantics §3, trap 12).
BCE_EDGE_GRADIENTS = {
    "float64": [-1000000003995.8029, 1000000003995.8029, 0.0, 0.0, -500000001997.9014],
    "float32": [-999999995904.0, 999999995904.0, 0.0, 0.0, -499999997952.0],
    "bfloat16": [-996432412672.0, 996432412672.0, 0.0, 0.0, -498216206336.0],
    "float16": [-inf, inf, nan, nan, -inf],
}


@pytest.mark.parametrize("dtype", list(BCE_EDGE_GRADIENTS))
def test_binary_cross_entropy_gradient_at_the_edges(dtype: str) -> None:
    """Trap 12: ``max(p (1 - p), float32(1e-12))`` is finite in every dtype but float16, where 1e-12 underflows.

    What we do: the reference computes in float64 whatever the input's dtype, so it always gives the float64
    values (``-+1 / float32(1e-12)``, 0 where ``p = t``). torch's float32 and bfloat16 values are those rounded
    (the guard rounded to the dtype: relative differences 4e-9 and 3.6e-3); its float16 gradient is ``+-inf`` and
    NaN (0/0), which the reference does not mirror -- the one dtype-dependent *semantic* difference here.
    """
    p, t = a(0, 1, 0, 1, 0), a(1, 0, 0, 1, 0.5)
    implementation = TorchImplementation(dtype)
    theirs = autograd(implementation, "binary_cross_entropy", {"input": p, "target": t, "reduction": "none"}, None)
    np.testing.assert_array_equal(theirs, BCE_EDGE_GRADIENTS[dtype])
    ours = gradients.binary_cross_entropy(torch.tensor(p).to(getattr(torch, dtype)), t, reduction="none")
    np.testing.assert_array_equal(ours, BCE_EDGE_GRADIENTS["float64"])
    assert BCE_EDGE_GRADIENTS["float64"][0] == -1.0 / GUARD


@pytest.mark.parametrize(
    ("function", "arguments", "name"),
    [
        ("cross_entropy", {"input": a([[1.0, 2.0], [0.5, 0.0]]), "target": i(0, 1)}, "weight"),
        ("cross_entropy", {"input": a([[1.0, 2.0], [0.5, 0.0]]), "target": i(0, 1), "label_smoothing": 0.2}, "weight"),
        ("nll_loss", {"input": a([[1.0, 2.0], [0.5, 0.0]]), "target": i(0, 1)}, "weight"),
        ("binary_cross_entropy", {"input": a(0.2, 0.7), "target": a(0.0, 1.0)}, "weight"),
        ("binary_cross_entropy_with_logits", {"input": a(0.2, 0.7), "target": a(0.0, 1.0)}, "weight"),
        ("binary_cross_entropy_with_logits", {"input": a(0.2, 0.7), "target": a(0.0, 1.0)}, "pos_weight"),
    ],
)
def test_weights_are_not_differentiable_in_torch(function: str, arguments: dict[str, Any], name: str) -> None:
    """Trap 22: torch refuses ``weight.requires_grad`` on these paths, so ``xe_verify.gradients`` has no weight
    gradient (it differentiates with respect to ``input`` only)."""
    tensors = {key: torch.tensor(value) for key, value in arguments.items() if key != "label_smoothing"}
    tensors[name] = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    options = {"label_smoothing": arguments["label_smoothing"]} if "label_smoothing" in arguments else {}
    with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{name}'"):
        TORCH_LOSSES[function](**tensors, **options)


@given(
    x=xst.logits(st.shared(xst.class_input_shapes(min_classes=2), key="shape"), max_magnitude=30.0),
    q=xst.soft_targets(st.shared(xst.class_input_shapes(min_classes=2), key="shape"), on_simplex=False),
)
def test_soft_target_weight_gradient_is_the_weighted_loss_per_class(x: np.ndarray, q: np.ndarray) -> None:
    """Trap 22's exception: on the probability-target path torch does differentiate the weight, and since the loss
    is linear in it, ``dL/dw_c = -sum_i q_ic lsm_ic`` (``sum``): the reference's log_softmax gives it."""
    class_axis = 0 if x.ndim == 1 else 1
    classes = x.shape[class_axis]
    weight = torch.ones(classes, dtype=torch.float64, requires_grad=True)
    F.cross_entropy(torch.tensor(x), torch.tensor(q), weight=weight, reduction="sum").backward()
    rows, q_rows = _to_rows(x), _to_rows(q)
    per_class = -q_rows * functional.log_softmax(rows, dim=1)
    expected = per_class.sum(axis=0)
    # -lsm's condition scale is 2 max|x| + log C + 1 per row (xe_verify.tolerances), times |q| per class.
    spread = 2.0 * np.max(np.abs(rows), axis=1, keepdims=True) + math.log(classes) + 1.0
    scale = np.sum(np.abs(q_rows) * spread, axis=0)
    allowed = allowed_error(expected, scale, "float64", operation_count(classes, rows.shape[0]))
    assert_within("weight gradient", expected, weight.grad.numpy(), allowed, label="torch", arguments={"input": x})


# --------------------------------------------------------------------------------------------------------------------
# Validation: the forward's, exactly


INVALID = [
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": i([2])}),
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": i([0]), "weight": a(1.0, 2.0, 3.0)}),
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": i([0]), "label_smoothing": 1.5}),
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": i([[0, 1]])}),
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": a([[0.5, 0.5]]), "ignore_index": 0}),
    ("cross_entropy", {"input": a([[1.0, 2.0]]), "target": i([0]), "reduction": "avg"}),
    ("nll_loss", {"input": a([[1.0, 2.0]]), "target": i([-1])}),
    ("nll_loss", {"input": a([[1.0, 2.0]]), "target": a([[0.5, 0.5]])}),
    ("binary_cross_entropy", {"input": a(0.5, 1.5), "target": a(0.0, 1.0)}),
    ("binary_cross_entropy", {"input": a(0.5, 0.5), "target": a(0.0, 2.0)}),
    ("binary_cross_entropy", {"input": a(0.5, 0.5), "target": a(0.0)}),
    ("binary_cross_entropy_with_logits", {"input": a(0.5, 0.5), "target": a(0.0, 1.0), "pos_weight": a(1, 2, 3)}),
    ("kl_div", {"input": a(0.5, 0.5), "target": a(0.1, 0.2, 0.3)}),
    ("kl_div", {"input": a(0.5, 0.5), "target": a(0.1, 0.2), "reduction": "batchsum"}),
]


@pytest.mark.parametrize(("function", "arguments"), INVALID)
def test_gradient_rejects_what_the_loss_rejects(function: str, arguments: dict[str, Any]) -> None:
    """Same helpers, same exception type, same message."""
    with pytest.raises((ValueError, TypeError, IndexError)) as forward_error:
        getattr(functional, function)(**arguments)
    with pytest.raises(type(forward_error.value)) as gradient_error:
        getattr(gradients, function)(**arguments)
    assert str(gradient_error.value) == str(forward_error.value)


@pytest.mark.parametrize("function", LOSSES)
def test_grad_output_must_have_the_loss_shape(function: str) -> None:
    """``none`` takes an upstream gradient of the loss's shape; a reduced loss takes a scalar."""
    arguments = {
        "cross_entropy": {"input": a([[1.0, 2.0], [0.0, 1.0]]), "target": i(0, 1)},
        "nll_loss": {"input": a([[1.0, 2.0], [0.0, 1.0]]), "target": i(0, 1)},
        "binary_cross_entropy": {"input": a(0.2, 0.4), "target": a(0.0, 1.0)},
        "binary_cross_entropy_with_logits": {"input": a(0.2, 0.4), "target": a(0.0, 1.0)},
        "kl_div": {"input": a(0.2, 0.4), "target": a(0.5, 0.5)},
    }[function]
    with pytest.raises(ValueError, match="grad_output"):
        getattr(gradients, function)(**arguments, reduction="none", grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        getattr(gradients, function)(**arguments, reduction="sum", grad_output=np.ones(2))
    scaled = getattr(gradients, function)(**arguments, reduction="sum", grad_output=-2.0)
    np.testing.assert_array_equal(scaled, -2.0 * getattr(gradients, function)(**arguments, reduction="sum"))
