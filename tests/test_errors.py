"""Error agreement: the reference raises exactly where torch raises, with the matching Python error and a message that
names the argument and the offending value; and it accepts, with torch's value, what it deliberately accepts.

torch's error types map onto the reference's (``functional.DIFFERENCES_FROM_TORCH``): ``IndexError`` to
``IndexError``, ``ValueError`` to ``ValueError``, and ``RuntimeError`` (torch's catch-all) to ``ValueError`` for a
bad value or shape, or ``TypeError`` for a bad dtype. Everything runs in float64 (the ``torch64`` fixture): errors
are about semantics, not rounding.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapters import TorchImplementation
from differential import check_against
from hypothesis import assume, example, given
from hypothesis import strategies as st

from xe_verify import functional
from xe_verify import strategies as xst

#: What each torch error may become in the reference.
MATCHING_ERRORS: dict[type[Exception], tuple[type[Exception], ...]] = {
    IndexError: (IndexError,),
    ValueError: (ValueError,),
    RuntimeError: (ValueError, TypeError),
    # torch's integer- and complex-logit kernels are "not implemented"; the reference rejects complex as TypeError.
    NotImplementedError: (TypeError,),
}


def outcome(call: Callable[[], Any]) -> BaseException | None:
    """The exception ``call`` raises, or ``None``. torch's warnings (kl_div's ``mean``, deprecated spellings) are
    not errors, so they are silenced here rather than turned into errors by pytest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as error:
            return error
    return None


def _describe(error: BaseException | None) -> str:
    return "no error" if error is None else f"{type(error).__name__}: {error}"


def assert_same_outcome(torch64: TorchImplementation, function: str, arguments: dict[str, Any]) -> None:
    """torch raises if and only if the reference raises, and the error types match (``MATCHING_ERRORS``)."""
    __tracebackhide__ = True
    theirs = outcome(lambda: torch64(function, **arguments))
    ours = outcome(lambda: getattr(functional, function)(**arguments))
    if (theirs is None) != (ours is None):
        raise AssertionError(
            f"{function}: torch gave {_describe(theirs)}; the reference gave {_describe(ours)}\n"
            f"arguments: {arguments!r}"
        )
    if theirs is not None:
        allowed = next((v for k, v in MATCHING_ERRORS.items() if isinstance(theirs, k)), ())
        assert isinstance(ours, allowed), (
            f"{function}: torch raised {_describe(theirs)}, so the reference should raise one of "
            f"{[e.__name__ for e in allowed]}, but raised {_describe(ours)}\narguments: {arguments!r}"
        )


# --------------------------------------------------------------------------------------------------------------------
# torch raises <=> the reference raises


@given(arguments=xst.cross_entropy_arguments(allow_invalid=True))
# Out of range, negative, huge; ignore_index tested first (3 with C = 3 is skipped); -1 is not ignored by default.
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 3])})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, -1])})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([2**40, 0])})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([3, 0]), "ignore_index": 3})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([-101, 0]), "label_smoothing": 0.1})
@example(arguments={"input": np.zeros((2, 0)), "target": np.array([0, 0])})
# ignore_index >= 0 with probability targets; a negative one other than -100 is accepted.
@example(arguments={"input": np.zeros((2, 3)), "target": np.full((2, 3), 1 / 3), "ignore_index": 0})
@example(arguments={"input": np.zeros((2, 3)), "target": np.full((2, 3), 1 / 3), "ignore_index": -1})
# Shapes: batch mismatch, (N, 1) target, a (2,) target for a (C,) input, spatial mismatch, 0-d input.
@example(arguments={"input": np.zeros((4, 3)), "target": np.zeros(3, dtype=np.int64)})
@example(arguments={"input": np.zeros((4, 3)), "target": np.zeros((4, 1), dtype=np.int64)})
@example(arguments={"input": np.zeros(3), "target": np.zeros(2, dtype=np.int64)})
@example(arguments={"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 5), dtype=np.int64)})
@example(arguments={"input": np.asarray(0.5), "target": np.asarray(0)})
# Weights of the wrong length, on both paths; label_smoothing 1 is fine, above 1 is not; unknown reductions.
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 1]), "weight": np.ones(4)})
@example(arguments={"input": np.zeros((2, 3)), "target": np.full((2, 3), 1 / 3), "weight": np.ones(2)})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 1]), "label_smoothing": 1.0})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 1]), "label_smoothing": 1.5})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 1]), "reduction": "avg"})
# A float target of another batch size: torch checks the batch size first (ValueError), then the dtype.
@example(arguments={"input": np.zeros((4, 1)), "target": np.zeros((5, 1))})
def test_cross_entropy_raises_exactly_when_torch_raises(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    # The deliberate difference pinned by the strict xfail below (torch's (1,)-target smoothing bug).
    assume(not _one_dimensional_input_with_size_one_target_and_smoothing(arguments))
    assert_same_outcome(torch64, "cross_entropy", arguments)


def _one_dimensional_input_with_size_one_target_and_smoothing(arguments: dict[str, Any]) -> bool:
    x, target = np.asarray(arguments["input"]), np.asarray(arguments["target"])
    smoothing = arguments.get("label_smoothing", 0.0)
    return x.ndim == 1 and target.shape == (1,) and target.dtype.kind in "iu" and float(smoothing) > 0.0


@given(arguments=xst.nll_loss_arguments(allow_invalid=True))
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([1, 5])})
@example(arguments={"input": np.zeros((2, 3)), "target": np.full((2, 3), 0.5)})
@example(arguments={"input": np.asarray(0.5), "target": np.asarray(0)})
@example(arguments={"input": np.zeros((2, 3, 4, 4)), "target": np.zeros((2, 4, 5), dtype=np.int64)})
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 1]), "weight": np.ones((3, 1))})
def test_nll_loss_raises_exactly_when_torch_raises(torch64: TorchImplementation, arguments: dict[str, Any]) -> None:
    assert_same_outcome(torch64, "nll_loss", arguments)


@given(arguments=xst.binary_cross_entropy_arguments(inside=False, allow_invalid=True))
# Values outside [0, 1], NaN and infinities in either argument; 2 and 4 are the seed notebook's targets.
@example(arguments={"input": np.array([0.5, 0.5]), "target": np.array([2.0, 4.0])})
@example(arguments={"input": np.array([0.5, np.nan]), "target": np.array([1.0, 0.0])})
@example(arguments={"input": np.array([0.5, -0.0]), "target": np.array([1.0, 0.0])})
@example(arguments={"input": np.array([0.5, 0.5]), "target": np.array([1.0, np.inf])})
# Weights broadcast to the input without enlarging it: (3,) against (3, 4) fails, (2, 3, 4) too.
@example(arguments={"input": np.full((3, 4), 0.5), "target": np.zeros((3, 4)), "weight": np.ones(3)})
@example(arguments={"input": np.full((3, 4), 0.5), "target": np.zeros((3, 4)), "weight": np.ones((2, 3, 4))})
@example(arguments={"input": np.full((3, 4), 0.5), "target": np.zeros((3, 4)), "weight": np.ones((3, 1))})
@example(arguments={"input": np.full((3, 4), 0.5), "target": np.zeros((3, 1))})
def test_binary_cross_entropy_raises_exactly_when_torch_raises(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    assert_same_outcome(torch64, "binary_cross_entropy", arguments)


@given(arguments=xst.binary_cross_entropy_with_logits_arguments(allow_invalid=True))
# pos_weight aligns with the last dimension: (3,) against (2, 3, 4) fails, (3, 1) works.
@example(arguments={"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 3, 4)), "pos_weight": np.ones(3)})
@example(arguments={"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 3, 4)), "pos_weight": np.ones((3, 1))})
@example(arguments={"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 3, 1))})
# Targets outside [0, 1] are accepted.
@example(arguments={"input": np.array([0.3, 0.3]), "target": np.array([2.0, 4.0])})
def test_binary_cross_entropy_with_logits_raises_exactly_when_torch_raises(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    assert_same_outcome(torch64, "binary_cross_entropy_with_logits", arguments)


@given(arguments=xst.kl_div_arguments(allow_invalid=True))
@example(arguments={"input": np.zeros((3, 4)), "target": np.full(4, 0.25)})
@example(arguments={"input": np.zeros((3, 4)), "target": np.full(3, 0.25)})
@example(arguments={"input": np.zeros((3, 4)), "target": np.full((3, 4), 0.25), "reduction": "avg"})
def test_kl_div_raises_exactly_when_torch_raises(torch64: TorchImplementation, arguments: dict[str, Any]) -> None:
    assert_same_outcome(torch64, "kl_div", arguments)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@given(arguments=xst.softmax_arguments(), dim=st.integers(-5, 4))
def test_softmax_family_raises_exactly_when_torch_raises_for_any_dim(
    torch64: TorchImplementation, function: str, arguments: dict[str, Any], dim: int
) -> None:
    """Every ``dim`` raises in both or neither."""
    arguments = {**arguments, "dim": dim}
    theirs = outcome(lambda: torch64(function, **arguments))
    ours = outcome(lambda: getattr(functional, function)(**arguments))
    assert (theirs is None) == (ours is None), f"torch: {_describe(theirs)}; reference: {_describe(ours)}"


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_dim_out_of_range_is_an_index_error(torch64: TorchImplementation, function: str) -> None:
    assert_same_outcome(torch64, function, {"input": np.zeros((2, 3)), "dim": 5})


@pytest.mark.parametrize(
    ("function", "arguments"),
    [
        ("cross_entropy", {"input": np.zeros((2, 3)), "target": np.array([0, 1])}),
        ("binary_cross_entropy", {"input": np.full(2, 0.5), "target": np.ones(2)}),
        ("kl_div", {"input": np.zeros(2), "target": np.full(2, 0.5)}),
    ],
    ids=["cross_entropy", "binary_cross_entropy", "kl_div"],
)
def test_deprecated_elementwise_mean_is_accepted_like_torch(
    torch64: TorchImplementation, function: str, arguments: dict[str, Any]
) -> None:
    assert_same_outcome(torch64, function, {**arguments, "reduction": "elementwise_mean"})


@pytest.mark.xfail(
    strict=True,
    reason="a deliberate difference (DIFFERENCES_FROM_TORCH): torch 2.13 raises RuntimeError 'output with shape [] "
    "doesn't match the broadcast shape [1]' for a (C,) input with a (1,) target and label_smoothing > 0 (a torch bug: "
    "the same target works without smoothing); the reference returns the loss",
)
def test_one_dimensional_input_with_size_one_target_and_smoothing(torch64: TorchImplementation) -> None:
    assert_same_outcome(
        torch64, "cross_entropy", {"input": np.zeros(2), "target": np.array([0]), "label_smoothing": 0.1}
    )


# --------------------------------------------------------------------------------------------------------------------
# Messages name the argument and the offending value


@given(
    arguments=st.shared(xst.class_input_shapes(), key="shape").flatmap(
        lambda shape: st.fixed_dictionaries(
            {
                "input": xst.logits(shape, max_magnitude=10.0),
                "target": xst.class_index_targets(shape, out_of_range=True),
            }
        )
    ),
    function=st.sampled_from(["cross_entropy", "nll_loss"]),
)
@example(arguments={"input": np.zeros((2, 3)), "target": np.array([0, 5])}, function="cross_entropy")
@example(arguments={"input": np.zeros((2, 3, 2)), "target": np.array([[0, 1], [-1, 0]])}, function="nll_loss")
def test_out_of_range_target_message_names_the_first_offender_like_torch(
    torch64: TorchImplementation, arguments: dict[str, Any], function: str
) -> None:
    """'Target {t} is out of bounds.' -- the same first offending target as torch's message -- and its position."""
    target = np.asarray(arguments["target"]).reshape(-1)
    classes = np.shape(arguments["input"])[0 if np.ndim(arguments["input"]) == 1 else 1]
    offending = (target != -100) & ((target < 0) | (target >= classes))
    assume(offending.any())
    theirs = outcome(lambda: torch64(function, **arguments))
    ours = outcome(lambda: getattr(functional, function)(**arguments))
    assert isinstance(theirs, IndexError), _describe(theirs)
    assert isinstance(ours, IndexError), _describe(ours)
    first = int(target[np.argmax(offending)])
    assert str(theirs).startswith(f"Target {first} is out of bounds."), str(theirs)
    assert str(ours).startswith(f"Target {first} is out of bounds."), str(ours)
    assert str(int(np.argmax(offending))) in str(ours), f"the position is missing: {ours}"


#: (function, arguments, error, what the message must contain: the argument's name and the offending value).
MESSAGE_CASES = [
    (
        "cross_entropy",
        {"input": np.zeros((2, 3)), "target": [0, 1], "reduction": "avg"},
        ValueError,
        ["reduction", "'avg'"],
    ),
    ("kl_div", {"input": np.zeros(2), "target": np.zeros(2), "reduction": "avg"}, ValueError, ["reduction", "'avg'"]),
    (
        "cross_entropy",
        {"input": np.zeros((2, 3)), "target": [0, 1], "label_smoothing": 1.5},
        ValueError,
        ["label_smoothing", "1.5"],
    ),
    (
        "cross_entropy",
        {"input": np.zeros((2, 3)), "target": [0, 1], "weight": np.ones(4)},
        ValueError,
        ["weight", "[4]", "3"],
    ),
    (
        "nll_loss",
        {"input": np.zeros((2, 3)), "target": [0, 1], "weight": np.ones(2)},
        ValueError,
        ["weight", "[2]", "3"],
    ),
    (
        "cross_entropy",
        {"input": np.zeros((2, 3)), "target": np.full((2, 3), 0.5), "ignore_index": 1},
        ValueError,
        ["ignore_index", "1"],
    ),
    ("cross_entropy", {"input": np.zeros((4, 3)), "target": [0, 1, 2]}, ValueError, ["target", "4", "3"]),
    ("cross_entropy", {"input": np.zeros(3), "target": [0, 1]}, ValueError, ["target", "(2,)"]),
    ("cross_entropy", {"input": np.asarray(0.5), "target": np.asarray(0)}, ValueError, ["input", "0-d"]),
    (
        "nll_loss",
        {"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 5), dtype=np.int64)},
        ValueError,
        ["target", "[2, 5]"],
    ),
    (
        "cross_entropy",
        {"input": np.zeros((2, 3)), "target": np.ones((2, 3), dtype=np.int64)},
        TypeError,
        ["target", "int64"],
    ),
    ("binary_cross_entropy", {"input": [0.5, 1.5], "target": [0.0, 1.0]}, ValueError, ["input", "1.5", "[1]"]),
    ("binary_cross_entropy", {"input": [0.5, np.nan], "target": [0.0, 1.0]}, ValueError, ["input", "nan", "[1]"]),
    ("binary_cross_entropy", {"input": [0.5, 0.5], "target": [2.0, 4.0]}, ValueError, ["target", "2.0", "[0]"]),
    (
        "binary_cross_entropy",
        {"input": np.full((3, 4), 0.5), "target": np.zeros((3, 4)), "weight": np.ones(3)},
        ValueError,
        ["weight", "(3,)", "(3, 4)"],
    ),
    (
        "binary_cross_entropy",
        {"input": np.full((3, 4), 0.5), "target": np.zeros((3, 1))},
        ValueError,
        ["target", "(3, 1)", "(3, 4)"],
    ),
    (
        "binary_cross_entropy_with_logits",
        {"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 3, 4)), "pos_weight": np.ones(3)},
        ValueError,
        ["pos_weight", "(3,)", "(2, 3, 4)"],
    ),
    (
        "binary_cross_entropy_with_logits",
        {"input": np.zeros((2, 3)), "target": np.zeros((2, 1))},
        ValueError,
        ["target", "(2, 1)", "(2, 3)"],
    ),
    ("kl_div", {"input": np.zeros((3, 4)), "target": np.zeros(3)}, ValueError, ["target", "(3,)", "(3, 4)"]),
    ("softmax", {"input": np.zeros((2, 3)), "dim": 5}, (ValueError, IndexError), ["dim", "5"]),
]


@pytest.mark.parametrize(
    ("function", "arguments", "error", "fragments"),
    MESSAGE_CASES,
    ids=[f"{case[0]}-{'-'.join(case[3][:2])}" for case in MESSAGE_CASES],
)
def test_error_message_names_the_argument_and_the_offending_value(
    torch64: TorchImplementation,
    function: str,
    arguments: dict[str, Any],
    error: type[Exception] | tuple[type[Exception], ...],
    fragments: list[str],
) -> None:
    assert outcome(lambda: torch64(function, **arguments)) is not None, "torch accepts this: the case is wrong"
    with pytest.raises(error) as raised:
        getattr(functional, function)(**arguments)
    message = str(raised.value)
    assert message.startswith(fragments[0]) or re.search(rf"\b{re.escape(fragments[0])}\b", message), message
    for fragment in fragments[1:]:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


# --------------------------------------------------------------------------------------------------------------------
# What the reference deliberately accepts (DIFFERENCES_FROM_TORCH): accepted, and torch's value on converted inputs


def _assert_torch_rejects(call: Callable[[], Any]) -> None:
    """The difference is real: torch 2.13 raises for the unconverted inputs."""
    assert outcome(call) is not None, "torch accepts this now: drop it from DIFFERENCES_FROM_TORCH"


@given(
    arguments=xst.cross_entropy_arguments(soft=False),
    integer_dtype=st.sampled_from([np.int32, np.int16, np.int8]),
)
def test_any_integer_target_dtype_gives_torchs_value_on_int64(
    torch64: TorchImplementation, arguments: dict[str, Any], integer_dtype: type
) -> None:
    target = np.asarray(arguments["target"])
    limits = np.iinfo(integer_dtype)
    assume(((target >= limits.min) & (target <= limits.max)).all())
    converted = {**arguments, "target": target.astype(np.int64)}
    given_as = {**arguments, "target": target.astype(integer_dtype)}
    _assert_torch_rejects(
        lambda: F.cross_entropy(torch.from_numpy(arguments["input"]), torch.from_numpy(given_as["target"]))
    )
    expected = outcome(lambda: check_against(torch64, "cross_entropy", **_with_reduction(converted)))
    assume(expected is None)  # a known disagreement (see test_functional) is not this law's business
    np.testing.assert_array_equal(
        functional.cross_entropy(**given_as), functional.cross_entropy(**converted), strict=True
    )


def _with_reduction(arguments: dict[str, Any]) -> dict[str, Any]:
    # differential.bound reads a missing reduction as "none" (see test_functional.check).
    return {"reduction": "mean", **arguments}


@given(arguments=xst.cross_entropy_arguments(soft=False, max_magnitude=1000.0))
def test_integer_logits_give_torchs_value_on_float64(torch64: TorchImplementation, arguments: dict[str, Any]) -> None:
    logits = np.round(arguments["input"]).astype(np.int64)
    _assert_torch_rejects(
        lambda: F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(np.asarray(arguments["target"])))
    )
    converted = {**arguments, "input": logits.astype(np.float64)}
    assume(outcome(lambda: check_against(torch64, "cross_entropy", **_with_reduction(converted))) is None)
    np.testing.assert_array_equal(
        functional.cross_entropy(**{**arguments, "input": logits}), functional.cross_entropy(**converted), strict=True
    )


@given(arguments=xst.nll_loss_arguments(max_magnitude=100.0), weight_dtype=st.sampled_from([np.float32, np.float16]))
def test_weight_of_another_float_dtype_is_read_exactly(
    torch64: TorchImplementation, arguments: dict[str, Any], weight_dtype: type
) -> None:
    """torch: 'expected scalar type Double but found Float'; the reference reads the weight's exact values."""
    weight = np.asarray(
        arguments.get("weight", np.ones(np.shape(arguments["input"])[0 if np.ndim(arguments["input"]) == 1 else 1]))
    )
    narrow = weight.astype(weight_dtype)
    _assert_torch_rejects(
        lambda: F.nll_loss(
            torch.from_numpy(arguments["input"]),
            torch.from_numpy(np.asarray(arguments["target"])),
            torch.from_numpy(narrow),
        )
    )
    converted = {**arguments, "weight": narrow.astype(np.float64)}
    check_against(torch64, "nll_loss", **_with_reduction(converted))
    np.testing.assert_array_equal(
        functional.nll_loss(**{**arguments, "weight": narrow}), functional.nll_loss(**converted), strict=True
    )


@given(arguments=xst.binary_cross_entropy_arguments())
def test_binary_cross_entropy_target_of_another_dtype_is_read_exactly(
    torch64: TorchImplementation, arguments: dict[str, Any]
) -> None:
    """torch: 'Found dtype Long but expected Double' (no promotion); the reference converts hard 0/1 targets."""
    hard = (np.asarray(arguments["target"]) >= 0.5).astype(np.int64)
    _assert_torch_rejects(lambda: F.binary_cross_entropy(torch.from_numpy(arguments["input"]), torch.from_numpy(hard)))
    converted = {**arguments, "target": hard.astype(np.float64)}
    check_against(torch64, "binary_cross_entropy", **_with_reduction(converted))
    np.testing.assert_array_equal(
        functional.binary_cross_entropy(**{**arguments, "target": hard}),
        functional.binary_cross_entropy(**converted),
        strict=True,
    )


def test_nan_label_smoothing_is_rejected_though_torch_reads_it_as_zero(torch64: TorchImplementation) -> None:
    arguments = {"input": np.zeros((2, 3)), "target": np.array([0, 1]), "label_smoothing": float("nan")}
    assert outcome(lambda: torch64("cross_entropy", **arguments)) is None
    with pytest.raises(ValueError, match="label_smoothing"):
        functional.cross_entropy(**arguments)
