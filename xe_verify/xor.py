r"""The seed notebook's XOR network, from scratch in float64 numpy, with the backward pass written out by hand.

The network is ``nn.Sequential(nn.Linear(2, 5), nn.Sigmoid(), nn.Linear(5, 2), nn.Sigmoid())`` trained with
``nn.CrossEntropyLoss()`` and ``optim.SGD(lr=0.03)`` (seed notebook, cells In[280] to In[288]). With torch's
parameter layout ($W_1$ of shape (hidden, 2), $W_2$ of shape (2, hidden), ``y = x W^T + b``):

$$
z_1 = X W_1^\top + b_1, \quad h = \sigma(z_1), \quad z_2 = h W_2^\top + b_2, \quad
o = \sigma(z_2) \text{ (or } o = z_2 \text{ without the final sigmoid)}, \quad L = \text{loss}(o, y)
$$

and, backwards, with $\bar o = \partial L / \partial o$ from [`xe_verify.gradients`][xe_verify.gradients]:

$$
\bar z_2 = \bar o \odot o (1 - o), \quad \bar W_2 = \bar z_2^\top h, \quad \bar b_2 = \textstyle\sum_n \bar z_2, \quad
\bar z_1 = (\bar z_2 W_2) \odot h (1 - h), \quad \bar W_1 = \bar z_1^\top X, \quad \bar b_1 = \textstyle\sum_n \bar z_1
$$

The notebook feeds the *sigmoid outputs* to ``CrossEntropyLoss``, which applies a softmax to them again (its loss
0.6954 is the cross-entropy of ``softmax(sigmoid(z_2))``); ``final_sigmoid=False`` is the correct way to feed it
logits. ``loss="bce"`` is binary cross-entropy of the two outputs against the one-hot targets (with logits when there
is no final sigmoid). Nothing here imports torch except [`to_torch`][xe_verify.xor.to_torch] and
[`from_torch`][xe_verify.xor.from_torch].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from xe_verify import functional, gradients
from xe_verify._arrays import Float64Array, as_float64, as_real
from xe_verify.functional import _sigmoid_kernel

__all__ = [
    "XOR_INPUTS",
    "XOR_TARGETS",
    "Params",
    "Training",
    "accuracy",
    "forward",
    "from_torch",
    "init",
    "loss_and_grads",
    "sgd_step",
    "to_torch",
    "train",
]

LossName = Literal["cross_entropy", "bce"]

#: The four XOR inputs, in the notebook's order (In[237]).
XOR_INPUTS: Float64Array = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_INPUTS.flags.writeable = False

#: Their classes, ``x1 XOR x2`` (In[237]).
XOR_TARGETS: np.ndarray[Any, np.dtype[np.int64]] = np.array([0, 1, 1, 0], dtype=np.int64)
XOR_TARGETS.flags.writeable = False


class Params(NamedTuple):
    """The network's parameters in torch's layout: ``Linear(2, H)`` then ``Linear(H, 2)``.

    Attributes
    ----------
    W1 : numpy.ndarray
        ``(H, 2)``, the first layer's ``weight``.
    b1 : numpy.ndarray
        ``(H,)``, its ``bias``.
    W2 : numpy.ndarray
        ``(2, H)``, the second layer's ``weight``.
    b2 : numpy.ndarray
        ``(2,)``, its ``bias``.
    """

    W1: Float64Array
    b1: Float64Array
    W2: Float64Array
    b2: Float64Array


def _params(W1: Any, b1: Any, W2: Any, b2: Any) -> Params:
    """Validated float64 parameters (shapes of a 2 -> H -> 2 network)."""
    params = Params(
        *(as_float64(value, name).copy() for value, name in zip((W1, b1, W2, b2), Params._fields, strict=True))
    )
    hidden = params.W1.shape[0] if params.W1.ndim == 2 else -1
    expected = {"W1": (hidden, 2), "b1": (hidden,), "W2": (2, hidden), "b2": (2,)}
    for name, value in zip(Params._fields, params, strict=True):
        if hidden < 1 or value.shape != expected[name]:
            raise ValueError(
                f"{name}: expected shape {expected[name] if hidden >= 1 else '(H, 2) with H >= 1'} for a 2 -> H -> 2 "
                f"network, got {value.shape}"
            )
    return params


def init(seed: int | np.random.Generator, hidden: int = 5) -> Params:
    r"""Parameters drawn as torch's ``nn.Linear`` draws them, from numpy's ``Generator``.

    torch's default is ``kaiming_uniform_(weight, a=sqrt(5))`` and a uniform bias, which both come to
    $U(-1/\sqrt{\text{fan\_in}},\ 1/\sqrt{\text{fan\_in}})$: $\pm 1/\sqrt 2$ for the first layer and
    $\pm 1/\sqrt H$ for the second. The distribution is torch's; the numbers are not (torch has its own generator).

    Parameters
    ----------
    seed : int or numpy.random.Generator
        Seed of ``numpy.random.default_rng``, or a generator to draw from.
    hidden : int, default 5
        The hidden width ``H`` (the notebook's is 5).

    Returns
    -------
    Params

    Examples
    --------
    >>> from xe_verify.xor import init
    >>> params = init(0)
    >>> [value.shape for value in params]
    [(5, 2), (5,), (2, 5), (2,)]
    >>> bool(abs(params.W1).max() <= 2**-0.5 and abs(params.W2).max() <= 5**-0.5)
    True
    """
    if hidden < 1:
        raise ValueError(f"hidden: expected a positive integer, got {hidden!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    first, second = 1.0 / np.sqrt(2.0), 1.0 / np.sqrt(hidden)
    return Params(
        W1=rng.uniform(-first, first, size=(hidden, 2)),
        b1=rng.uniform(-first, first, size=hidden),
        W2=rng.uniform(-second, second, size=(2, hidden)),
        b2=rng.uniform(-second, second, size=2),
    )


def to_torch(params: Params, *, final_sigmoid: bool = True, dtype: Any = None) -> Any:
    """The notebook's ``nn.Sequential`` holding ``params`` (imports torch).

    Parameters
    ----------
    params : Params
    final_sigmoid : bool, default True
        ``False`` leaves out the last ``nn.Sigmoid()`` (the model then outputs logits).
    dtype : torch.dtype, optional
        Default ``torch.float64``.

    Returns
    -------
    torch.nn.Sequential
        ``Linear(2, H), Sigmoid(), Linear(H, 2)[, Sigmoid()]``.

    Examples
    --------
    >>> from xe_verify.xor import from_torch, init, to_torch
    >>> model = to_torch(init(0))
    >>> model
    Sequential(
      (0): Linear(in_features=2, out_features=5, bias=True)
      (1): Sigmoid()
      (2): Linear(in_features=5, out_features=2, bias=True)
      (3): Sigmoid()
    )
    >>> all((a == b).all() for a, b in zip(from_torch(model), init(0)))
    True
    """
    import torch

    params = _params(*params)
    dtype = torch.float64 if dtype is None else dtype
    hidden = params.W1.shape[0]
    layers = [torch.nn.Linear(2, hidden), torch.nn.Sigmoid(), torch.nn.Linear(hidden, 2)]
    if final_sigmoid:
        layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for parameter, value in zip(model.parameters(), params, strict=True):
            parameter.copy_(torch.from_numpy(value))
    return model


def from_torch(model: Any) -> Params:
    """The parameters of a ``Linear(2, H) -> Sigmoid -> Linear(H, 2) [-> Sigmoid]`` model, as float64 ``Params``.

    Parameters
    ----------
    model : torch.nn.Sequential
        Its two ``nn.Linear`` layers are read in order.

    Returns
    -------
    Params

    Examples
    --------
    >>> import torch
    >>> from xe_verify.xor import from_torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 2))
    >>> [value.shape for value in from_torch(model)]
    [(3, 2), (3,), (2, 3), (2,)]
    """
    import torch

    linear = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    if len(linear) != 2:
        raise ValueError(f"model: expected exactly two nn.Linear layers, found {len(linear)}")
    tensors = [tensor for layer in linear for tensor in (layer.weight, layer.bias)]
    values = [tensor.detach().cpu().to(torch.float64).numpy() for tensor in tensors]
    return _params(*values)


@dataclass(frozen=True)
class _Activations:
    """What the backward pass needs from the forward pass."""

    inputs: Float64Array
    hidden: Float64Array
    output: Float64Array


def _forward(params: Params, X: Any, final_sigmoid: bool) -> _Activations:
    inputs = as_float64(X, "X")
    if inputs.ndim != 2 or inputs.shape[1] != 2:
        raise ValueError(f"X: expected shape (N, 2), got {inputs.shape}")
    # The reference's sigmoid kernel, without functional.sigmoid's conversions (this runs thousands of times).
    hidden = _sigmoid_kernel(inputs @ params.W1.T + params.b1)
    logits = hidden @ params.W2.T + params.b2
    output = _sigmoid_kernel(logits) if final_sigmoid else logits
    return _Activations(inputs, hidden, output)


def forward(params: Params, X: Any, final_sigmoid: bool = True) -> Float64Array:
    r"""The network's output $o$ for inputs ``X`` of shape ``(N, 2)``: ``(N, 2)``.

    $$ o = \sigma\big(\sigma(X W_1^\top + b_1)\, W_2^\top + b_2\big) $$

    (without the outer $\sigma$ when ``final_sigmoid`` is false).

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.xor import XOR_INPUTS, Params, forward
    >>> zeros = Params(np.zeros((5, 2)), np.zeros(5), np.zeros((2, 5)), np.zeros(2))
    >>> forward(zeros, XOR_INPUTS[:1])
    array([[0.5, 0.5]])
    """
    return _forward(_params(*params), X, final_sigmoid).output


def _loss_target(output: Float64Array, y: Any, loss: str) -> Any:
    """Class indices for cross-entropy; for BCE, one-hot rows (or ``y`` itself if it already has the output's shape)."""
    target = as_real(y, "y")
    if loss == "cross_entropy" or target.shape == output.shape:
        return target
    indices = target.astype(np.int64)
    if target.shape != output.shape[:1] or target.dtype.kind not in "iu" or ((indices < 0) | (indices > 1)).any():
        raise ValueError(f"y: expected classes 0 or 1 of shape {output.shape[:1]} or targets of shape {output.shape}")
    return np.eye(2)[indices]


def loss_and_grads(
    params: Params,
    X: Any,
    y: Any,
    loss: LossName = "cross_entropy",
    final_sigmoid: bool = True,
) -> tuple[np.float64, Params]:
    r"""The mean loss and its gradient with respect to every parameter, by hand-written backpropagation.

    The loss gradient $\bar o$ comes from [`xe_verify.gradients`][xe_verify.gradients]; then (module docstring)
    $\bar z_2 = \bar o \odot o(1-o)$ (skipped without the final sigmoid), $\bar W_2 = \bar z_2^\top h$,
    $\bar b_2 = \sum_n \bar z_2$, $\bar z_1 = (\bar z_2 W_2) \odot h(1-h)$, $\bar W_1 = \bar z_1^\top X$,
    $\bar b_1 = \sum_n \bar z_1$.

    Parameters
    ----------
    params : Params
    X : array_like
        Inputs, ``(N, 2)``.
    y : array_like
        Class indices ``(N,)`` (0 or 1); for ``loss="cross_entropy"`` also class probabilities ``(N, 2)``, for
        ``loss="bce"`` also float targets ``(N, 2)``.
    loss : {"cross_entropy", "bce"}
        ``cross_entropy``: ``CrossEntropyLoss()`` on the output (the notebook: on the sigmoid outputs). ``bce``:
        ``BCELoss()`` on the sigmoid outputs, or ``BCEWithLogitsLoss()`` without the final sigmoid, against one-hot
        targets.
    final_sigmoid : bool, default True

    Returns
    -------
    tuple of numpy.float64 and Params
        The loss and the gradients, in the parameters' layout.

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.xor import XOR_INPUTS, XOR_TARGETS, Params, loss_and_grads
    >>> zeros = Params(np.zeros((5, 2)), np.zeros(5), np.zeros((2, 5)), np.zeros(2))
    >>> value, grads = loss_and_grads(zeros, XOR_INPUTS, XOR_TARGETS)
    >>> float(value), float(abs(grads.W2).max()), float(abs(grads.W1).max())  # ln 2; nothing reaches W1 yet
    (0.6931471805599453, 0.0, 0.0)
    """
    params = _params(*params)
    if loss not in ("cross_entropy", "bce"):
        raise ValueError(f"loss: expected 'cross_entropy' or 'bce', got {loss!r}")
    activations = _forward(params, X, final_sigmoid)
    output = activations.output
    target = _loss_target(output, y, loss)
    if loss == "cross_entropy":
        value = np.float64(functional.cross_entropy(output, target))
        output_gradient = gradients.cross_entropy(output, target)
    elif final_sigmoid:
        value = np.float64(functional.binary_cross_entropy(output, target))
        output_gradient = gradients.binary_cross_entropy(output, target)
    else:
        value = np.float64(functional.binary_cross_entropy_with_logits(output, target))
        output_gradient = gradients.binary_cross_entropy_with_logits(output, target)
    # Sigmoid's backward as torch writes it: grad * (1 - o) * o.
    logit_gradient = output_gradient * (1.0 - output) * output if final_sigmoid else output_gradient
    hidden = activations.hidden
    hidden_gradient = (logit_gradient @ params.W2) * (1.0 - hidden) * hidden
    grads = Params(
        W1=hidden_gradient.T @ activations.inputs,
        b1=hidden_gradient.sum(axis=0),
        W2=logit_gradient.T @ hidden,
        b2=logit_gradient.sum(axis=0),
    )
    return value, grads


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    r"""One step of plain SGD, as ``torch.optim.SGD(lr=lr)`` takes it.

    $$ \theta \leftarrow \theta - \text{lr}\; \nabla_\theta L $$

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.xor import Params, sgd_step
    >>> ones = Params(np.ones((1, 2)), np.ones(1), np.ones((2, 1)), np.ones(2))
    >>> sgd_step(ones, ones, 0.25).b2
    array([0.75, 0.75])
    """
    # torch: param.add_(grad, alpha=-lr).
    return Params(
        *(value + (-lr) * gradient for value, gradient in zip(_params(*params), _params(*grads), strict=True))
    )


def accuracy(params: Params, X: Any, y: Any, final_sigmoid: bool = True) -> float:
    """The fraction of rows whose larger output is at the class in ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from xe_verify.xor import XOR_INPUTS, XOR_TARGETS, Params, accuracy
    >>> zeros = Params(np.zeros((5, 2)), np.zeros(5), np.zeros((2, 5)), np.zeros(2))
    >>> accuracy(zeros, XOR_INPUTS, XOR_TARGETS)  # a tie goes to class 0: rows 0 and 3 are right
    0.5
    """
    predicted = np.argmax(forward(params, X, final_sigmoid), axis=1)
    return float(np.mean(predicted == np.asarray(y)))


class Training(NamedTuple):
    """What [`train`][xe_verify.xor.train] returns.

    Attributes
    ----------
    losses : numpy.ndarray
        ``(steps,)``: the loss at the parameters *before* each step (what a training loop prints).
    params : Params
        The parameters after the last step.
    snapshots : tuple of Params
        With ``snapshots=True``, the parameters before every step and after the last (``steps + 1`` entries;
        ``snapshots[k]`` gave ``losses[k]``); empty otherwise.
    """

    losses: Float64Array
    params: Params
    snapshots: tuple[Params, ...]


def train(
    params: Params,
    X: Any,
    y: Any,
    lr: float,
    steps: int,
    loss: LossName = "cross_entropy",
    final_sigmoid: bool = True,
    snapshots: bool = False,
) -> Training:
    """Full-batch SGD for ``steps`` steps: the notebook's loop ``loss.backward(); optimizer.step()``.

    Parameters
    ----------
    params : Params
        The starting point.
    X, y, loss, final_sigmoid
        As in [`loss_and_grads`][xe_verify.xor.loss_and_grads].
    lr : float
        The learning rate.
    steps : int
        The number of steps.
    snapshots : bool, default False
        Whether to keep the parameters of every step.

    Returns
    -------
    Training

    Examples
    --------
    >>> from xe_verify.xor import XOR_INPUTS, XOR_TARGETS, accuracy, init, train
    >>> run = train(init(0), XOR_INPUTS, XOR_TARGETS, lr=5.0, steps=1000, final_sigmoid=False)
    >>> bool(run.losses[-1] < run.losses[0] / 10), accuracy(run.params, XOR_INPUTS, XOR_TARGETS, final_sigmoid=False)
    (True, 1.0)
    """
    current = _params(*params)
    losses = np.empty(int(steps))
    kept = [current] if snapshots else []
    for step in range(int(steps)):
        losses[step], grads = loss_and_grads(current, X, y, loss, final_sigmoid)
        current = sgd_step(current, grads, lr)
        if snapshots:
            kept.append(current)
    return Training(losses, current, tuple(kept))
