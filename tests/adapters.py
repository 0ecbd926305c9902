"""Implementations under test, behind one interface, so a property never names torch or a device.

An implementation takes the reference's argument names (numpy arrays and Python scalars), runs its own version of
the function in its own dtype and device, and returns a float64 numpy result. ``round_inputs`` gives the values the
implementation actually sees (the inputs rounded to its dtype), so that the reference can be evaluated on exactly
those and the comparison measures the implementation's arithmetic, not the rounding of its inputs.

torch on the CPU is the first implementation; ``--torch-device cuda`` plugs in torch on a GPU with no property
rewritten, and any other kernel (a port, a Triton kernel, JAX) plugs in by implementing ``Implementation``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from xe_verify import functional

#: Floating arguments that are rounded to the implementation's dtype. Class-index targets stay integers.
FLOAT_ARGUMENTS = ("input", "target", "weight", "pos_weight")


class Implementation(Protocol):
    """What a property needs from an implementation under test."""

    name: str
    dtype: str

    def round_inputs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the implementation sees them, as float64 numpy values."""

    def __call__(self, function: str, **arguments: Any) -> np.ndarray:
        """Run ``function`` and return its result as a float64 numpy array."""

    def known_difference(self, function: str, arguments: dict[str, Any]) -> str | None:
        """Why this call is known to differ from torch on the CPU (which the reference mirrors), or ``None``."""


TORCH_FUNCTIONS = {
    "cross_entropy": F.cross_entropy,
    "nll_loss": F.nll_loss,
    "binary_cross_entropy": F.binary_cross_entropy,
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "kl_div": F.kl_div,
    "log_softmax": F.log_softmax,
    "softmax": F.softmax,
    "logsumexp": torch.logsumexp,
    "sigmoid": torch.sigmoid,
    "log_sigmoid": F.logsigmoid,
}


class TorchImplementation:
    """``torch.nn.functional`` in one dtype on one device."""

    def __init__(self, dtype: str = "float64", device: str = "cpu") -> None:
        self.dtype = dtype
        self.device = device
        self.torch_dtype = getattr(torch, dtype)
        self.name = f"torch-{device}-{dtype}"

    def __repr__(self) -> str:
        return self.name

    def _tensor(self, value: Any) -> torch.Tensor:
        array = np.asarray(value)
        if array.dtype.kind in "iu":
            return torch.from_numpy(array.astype(np.int64)).to(self.device)
        return torch.from_numpy(array.astype(np.float64)).to(device=self.device, dtype=self.torch_dtype)

    def round_inputs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        rounded = dict(arguments)
        for name in FLOAT_ARGUMENTS:
            value = arguments.get(name)
            if value is not None and np.asarray(value).dtype.kind == "f":
                rounded[name] = self._tensor(value).to("cpu", torch.float64).numpy()
        return rounded

    def __call__(self, function: str, **arguments: Any) -> np.ndarray:
        arguments = dict(arguments)
        arguments.pop("check_range", None)
        converted = {
            name: self._tensor(value) if name in FLOAT_ARGUMENTS and value is not None else value
            for name, value in arguments.items()
        }
        result = TORCH_FUNCTIONS[function](**converted)
        return result.detach().to("cpu", torch.float64).numpy()

    def known_difference(self, function: str, arguments: dict[str, Any]) -> str | None:
        # Seen with torch 2.11 on CUDA: a (C,) input whose only class-index target is ignored gives a mean of 0.0,
        # where the CPU gives 0/0 = NaN (as it does for an (N, C) input whose targets are all ignored).
        if self.device == "cpu" or function not in {"cross_entropy", "nll_loss"}:
            return None
        x, target = np.asarray(arguments["input"]), np.asarray(arguments["target"])
        ignored = target.dtype.kind in "iu" and bool(np.all(target == arguments.get("ignore_index", -100)))
        if x.ndim == 1 and ignored and arguments.get("reduction", "mean") == "mean":
            return f"torch on {self.device}: the mean of a (C,) input whose target is ignored is 0.0, not NaN"
        return None


class ReferenceImplementation:
    """xe_verify itself, behind the same interface (used to check the harness and by other oracles)."""

    name = "xe_verify-float64"
    dtype = "float64"

    def round_inputs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return dict(arguments)

    def __call__(self, function: str, **arguments: Any) -> np.ndarray:
        return np.asarray(getattr(functional, function)(**arguments), dtype=np.float64)

    def known_difference(self, function: str, arguments: dict[str, Any]) -> str | None:
        return None
