"""What is measured: each loss as the issue names it, on float32 inputs of LLM-like shapes.

A case is a function, one way of calling it and one shape. ``call(module, arguments, reduction)`` calls the same-named
function of ``xe_verify.functional`` or ``torch.nn.functional`` (their signatures agree), so the reference and torch
run exactly the same call on exactly the same input (torch gets zero-copy views of the numpy arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]

#: The vocabulary of the issue's cross-entropy target (4096 x 32000), also the class count of the size sweep.
VOCABULARY = 32_000


@dataclass(frozen=True)
class Case:
    """One measurement: ``function`` called as ``variant`` on inputs of ``shape``."""

    function: str
    variant: str
    shape: tuple[int, ...]
    make: Callable[[np.random.Generator, tuple[int, ...]], Arrays]
    call: Callable[[Any, Any, str], Any]
    reduction: str
    #: The mean's denominator, so that the float64 truth can be summed chunk by chunk; None: evaluate it whole.
    denominator: Callable[[Arrays], float] | None
    #: Arguments that are not split with the rows (per-class weights).
    per_class: tuple[str, ...] = ()
    #: The size sweep this case belongs to, if any.
    family: str | None = None
    #: torch's temporaries in multiples of the float32 input, to skip torch where it would not fit in memory.
    torch_copies: float = 2.0

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


# Inputs ------------------------------------------------------------------------------------------------------------
# Every generator writes float32 directly (no float64 intermediate), so a 10^9-element input costs only itself.


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    values = rng.random(shape, dtype=np.float32)
    values /= values.sum(axis=1, keepdims=True)
    return values


def _class_indices(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    return {"input": _logits(rng, shape), "target": rng.integers(0, shape[1], shape[0])}


def _class_indices_with_weight(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    arrays = _class_indices(rng, shape)
    arrays["weight"] = rng.random(shape[1], dtype=np.float32) + np.float32(0.5)
    return arrays


def _soft_targets(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    return {"input": _logits(rng, shape), "target": _probabilities(rng, shape)}


def _binary(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    return {"input": rng.random(shape, dtype=np.float32), "target": rng.random(shape, dtype=np.float32)}


def _binary_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    return {"input": _logits(rng, shape), "target": rng.random(shape, dtype=np.float32)}


def _logits_only(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    return {"input": _logits(rng, shape)}


# Denominators of the means -----------------------------------------------------------------------------------------


def _rows(arrays: Arrays) -> float:
    return float(arrays["input"].shape[0])


def _elements(arrays: Arrays) -> float:
    return float(arrays["input"].size)


def _target_weights(arrays: Arrays) -> float:
    return math.fsum(np.asarray(arrays["weight"], dtype=np.float64)[arrays["target"]].tolist())


# Cases --------------------------------------------------------------------------------------------------------------


def cross_entropy(shape: tuple[int, ...], family: str | None = None) -> Case:
    return Case(
        "cross_entropy",
        "class index, mean",
        shape,
        _class_indices,
        lambda F, a, r: F.cross_entropy(a["input"], a["target"], reduction=r),
        "mean",
        _rows,
        family=family,
        torch_copies=1.0,
    )


def cross_entropy_soft(shape: tuple[int, ...]) -> Case:
    return Case(
        "cross_entropy",
        "probabilities, mean",
        shape,
        _soft_targets,
        lambda F, a, r: F.cross_entropy(a["input"], a["target"], reduction=r),
        "mean",
        _rows,
    )


def cross_entropy_smoothing(shape: tuple[int, ...]) -> Case:
    return Case(
        "cross_entropy",
        "class index, label_smoothing=0.1, weight, mean",
        shape,
        _class_indices_with_weight,
        lambda F, a, r: F.cross_entropy(a["input"], a["target"], weight=a["weight"], reduction=r, label_smoothing=0.1),
        "mean",
        _target_weights,
        per_class=("weight",),
    )


def nll_loss(shape: tuple[int, ...]) -> Case:
    return Case(
        "nll_loss",
        "mean",
        shape,
        _class_indices,
        lambda F, a, r: F.nll_loss(a["input"], a["target"], reduction=r),
        "mean",
        _rows,
        torch_copies=0.0,
    )


def binary_cross_entropy(size: int) -> Case:
    return Case(
        "binary_cross_entropy",
        "mean",
        (size,),
        _binary,
        lambda F, a, r: F.binary_cross_entropy(a["input"], a["target"], reduction=r),
        "mean",
        _elements,
    )


def binary_cross_entropy_with_logits(size: int, family: str | None = None) -> Case:
    return Case(
        "binary_cross_entropy_with_logits",
        "mean",
        (size,),
        _binary_logits,
        lambda F, a, r: F.binary_cross_entropy_with_logits(a["input"], a["target"], reduction=r),
        "mean",
        _elements,
        family=family,
    )


def kl_div(shape: tuple[int, ...]) -> Case:
    return Case(
        "kl_div",
        "batchmean",
        shape,
        _soft_targets,
        lambda F, a, r: F.kl_div(a["input"], a["target"], reduction="sum" if r == "sum" else "batchmean"),
        "batchmean",
        _rows,
    )


def log_softmax(shape: tuple[int, ...]) -> Case:
    return Case(
        "log_softmax",
        "dim=1",
        shape,
        _logits_only,
        lambda F, a, r: F.log_softmax(a["input"], dim=1),
        "none",
        None,
        torch_copies=1.0,
    )


#: The size sweeps: cross-entropy over rows of the issue's vocabulary, and BCE-with-logits over flat sizes.
CE_FAMILY = f"cross_entropy (N, {VOCABULARY})"
BCE_LOGITS_FAMILY = "binary_cross_entropy_with_logits (N,)"


def full_cases() -> list[Case]:
    """Every loss at LLM sizes, the issue's targets among them; the sweeps' 10^9-element points come last."""
    target_shape = (4096, VOCABULARY)
    return [
        *(cross_entropy((rows, VOCABULARY), CE_FAMILY) for rows in (4, 32, 256, 4096)),
        cross_entropy((1024, 131_072)),
        cross_entropy((512, 262_144)),
        cross_entropy_soft(target_shape),
        cross_entropy_smoothing(target_shape),
        nll_loss(target_shape),
        # Many rows of few classes: the per-row bookkeeping must stay per block (16 Mi rows, 128 MiB of int64 targets).
        cross_entropy((1 << 24, 2)),
        nll_loss((1 << 24, 2)),
        *(binary_cross_entropy(10**power) for power in (6, 7, 8)),
        *(binary_cross_entropy_with_logits(10**power, BCE_LOGITS_FAMILY) for power in range(5, 9)),
        kl_div(target_shape),
        log_softmax(target_shape),
        cross_entropy((32_768, VOCABULARY), CE_FAMILY),
        binary_cross_entropy_with_logits(10**9, BCE_LOGITS_FAMILY),
    ]


def quick_cases() -> list[Case]:
    """The same losses and sweeps at sizes that take a few seconds in all (for the docs build)."""
    small = (64, VOCABULARY)
    return [
        cross_entropy_soft(small),
        cross_entropy_smoothing(small),
        nll_loss((256, VOCABULARY)),
        cross_entropy((1 << 18, 2)),
        binary_cross_entropy(10**6),
        kl_div(small),
        log_softmax(small),
        *(cross_entropy((rows, VOCABULARY), CE_FAMILY) for rows in (4, 32, 256)),
        *(binary_cross_entropy_with_logits(10**power, BCE_LOGITS_FAMILY) for power in range(5, 8)),
    ]
