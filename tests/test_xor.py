"""``xe_verify.xor``: the seed notebook's XOR network by hand, held to torch's autograd step by step.

micrograd's test, scaled up: build the same computation with ``xe_verify.xor`` (numpy, hand-written backward) and
with ``torch.nn.Sequential`` + autograd, in float64, and compare

* the loss and every parameter gradient, for generated parameters and inputs, within a first-order running error
  bound of the network (``network_error``);
* whole SGD trajectories of 1000 steps, within the per-step bound carried through the training dynamics' own
  tangent map (``trajectory_bound``): errors grow with the steps exactly as the dynamics amplify them;
* training outcomes: 100% XOR accuracy where torch gets it;
* the numbers the notebook printed (cells In[281] to In[292]).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from differential import bound
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_gradients import assert_within, gradient_bound
from torch.func import functional_call, jacrev

from xe_verify import functional, gradients, xor
from xe_verify.tolerances import MACHINE_EPSILON, operation_count
from xe_verify.xor import XOR_INPUTS, XOR_TARGETS, Params

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------------------------
# The same network in torch


def torch_criterion(loss: str, final_sigmoid: bool) -> Any:
    """What the notebook's ``criterion`` is for each variant: CE on the outputs, BCE, or BCE with logits."""
    if loss == "cross_entropy":
        return F.cross_entropy
    return F.binary_cross_entropy if final_sigmoid else F.binary_cross_entropy_with_logits


def torch_target(y: Any, loss: str) -> torch.Tensor:
    target = np.asarray(y)
    if loss == "bce" and target.ndim == 1:
        target = np.eye(2)[target]
    return torch.tensor(target if target.dtype.kind in "iu" else target.astype(np.float64))


def torch_loss_and_grads(params: Params, X: Any, y: Any, loss: str, final_sigmoid: bool) -> tuple[float, Params]:
    """``criterion(model(X), y).backward()`` on ``xor.to_torch(params)``: the loss and ``.grad`` of each parameter."""
    model = xor.to_torch(params, final_sigmoid=final_sigmoid)
    value = torch_criterion(loss, final_sigmoid)(
        model(torch.tensor(np.asarray(X, dtype=np.float64))), torch_target(y, loss)
    )
    value.backward()
    return float(value.detach()), Params(*(parameter.grad.numpy().copy() for parameter in model.parameters()))


def flat(params: Params) -> np.ndarray:
    return np.concatenate([np.ravel(value) for value in params])


class FlatNetwork:
    """The torch model as functions of one flat parameter vector, for ``torch.func``'s derivatives."""

    def __init__(self, params: Params, X: Any, y: Any, loss: str, final_sigmoid: bool) -> None:
        self.model = xor.to_torch(params, final_sigmoid=final_sigmoid)
        self.names = [name for name, _ in self.model.named_parameters()]
        self.shapes = [tuple(value.shape) for value in params]
        self.inputs = torch.tensor(np.asarray(X, dtype=np.float64))
        self.target = torch_target(y, loss)
        self.criterion = torch_criterion(loss, final_sigmoid)

    def _unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        tensors, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = int(np.prod(shape))
            tensors[name] = vector[start : start + size].reshape(shape)
            start += size
        return tensors

    def outputs(self, vector: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self._unflatten(vector), (self.inputs,)).reshape(-1)

    def loss(self, vector: torch.Tensor) -> torch.Tensor:
        return self.criterion(functional_call(self.model, self._unflatten(vector), (self.inputs,)), self.target)


# --------------------------------------------------------------------------------------------------------------------
# A first-order running error bound of the whole network


def network_error(
    params: Params, X: Any, y: Any, loss: str, final_sigmoid: bool, dtype: str = "float64", with_loss: bool = True
) -> tuple[float, np.ndarray, Params]:
    r"""Bounds on the rounding error of the loss, the outputs and each parameter gradient of ONE implementation.

    First-order running error analysis (Higham, ch. 3): every stage rounds with relative error
    ``u = eps k`` (``k`` from ``xe_verify.tolerances.operation_count``, over the stage's sums) on the magnitudes it
    adds up, and passes on its inputs' errors through its derivative:

    * forward: ``z1 = X W1^T + b1`` (``E = u (|X||W1|^T + |b1|)``), ``h = sigma(z1)`` (``E_h = h(1-h) E_z1 + u h``),
      ``z2 = h W2^T + b2`` (``E_h |W2|^T + u (h |W2|^T + |b2|)``), ``o = sigma(z2)`` likewise;
    * the loss gradient: the error model of ``gradient_bound`` (``test_gradients``) for its own rounding, plus the
      outputs' error through the loss's Hessian (CE: ``(A/N) p (E_o + p . E_o)``; BCE:
      ``(t/p^2 + (1-t)/(1-p)^2) E_o / n``; BCE with logits: ``sigma(1-sigma) E_o / n``);
    * backward: ``|a| E_b + E_a |b| + u |a||b|`` for every product, sums of errors for sums.

    Two implementations that each satisfy these bounds differ by at most twice them.
    """
    epsilon = MACHINE_EPSILON[dtype]
    W1, b1, W2, b2 = (np.abs(value) for value in params)
    x = np.abs(np.asarray(X, dtype=np.float64))
    samples, hidden_width = x.shape[0], W1.shape[0]
    u = epsilon * operation_count(classes=max(hidden_width, 2), elements=samples)
    z1 = np.asarray(X, dtype=np.float64) @ params.W1.T + params.b1
    h = functional.sigmoid(z1)
    error_h = h * (1 - h) * u * (x @ W1.T + b1) + u * h
    z2 = h @ params.W2.T + params.b2
    error_z2 = error_h @ W2.T + u * (h @ W2.T + b2)
    output = functional.sigmoid(z2) if final_sigmoid else z2
    error_output = output * (1 - output) * error_z2 + u * output if final_sigmoid else error_z2

    target: Any = np.asarray(y)
    if loss == "bce" and target.ndim == 1:
        target = np.eye(2)[target]
    function = (
        "cross_entropy"
        if loss == "cross_entropy"
        else ("binary_cross_entropy" if final_sigmoid else "binary_cross_entropy_with_logits")
    )
    arguments = {"input": output, "target": target, "reduction": "mean"}
    output_gradient = getattr(gradients, function)(**arguments)
    error_loss = np.nan
    if with_loss:
        value = np.float64(getattr(functional, function)(**arguments))
        error_loss = float(bound(function, dtype, arguments, value)) + float(
            np.sum(np.abs(output_gradient) * error_output)
        )
    error_gradient = gradient_bound(function, arguments, None, dtype, output_gradient)
    count = output.shape[0] if function == "cross_entropy" else output.size
    if function == "cross_entropy":
        p = functional.softmax(output, dim=1)
        mass = np.abs(target).sum(axis=1, keepdims=True) if target.shape == output.shape else 1.0
        curvature = mass / count * p * (error_output + np.sum(p * error_output, axis=1, keepdims=True))
    elif function == "binary_cross_entropy":
        curvature = (target / output**2 + (1 - target) / (1 - output) ** 2) * error_output / count
    else:
        sigma = functional.sigmoid(output)
        curvature = sigma * (1 - sigma) * error_output / count
    error_gradient = error_gradient + curvature

    if final_sigmoid:
        slope = output * (1 - output)
        logit_gradient = output_gradient * slope
        error_logit = error_gradient * slope + np.abs(output_gradient) * np.abs(1 - 2 * output) * error_output
        error_logit += u * np.abs(logit_gradient)
    else:
        logit_gradient, error_logit = output_gradient, error_gradient
    g2 = np.abs(logit_gradient)
    hidden_gradient = logit_gradient @ params.W2
    error_hidden_gradient = error_logit @ W2 + u * (g2 @ W2)
    slope_h = h * (1 - h)
    g1 = np.abs(hidden_gradient * slope_h)
    error_z1_gradient = error_hidden_gradient * slope_h + np.abs(hidden_gradient) * np.abs(1 - 2 * h) * error_h + u * g1
    errors = Params(
        W1=error_z1_gradient.T @ x + u * (g1.T @ x),
        b1=error_z1_gradient.sum(axis=0) + u * g1.sum(axis=0),
        W2=error_logit.T @ h + g2.T @ error_h + u * (g2.T @ h),
        b2=error_logit.sum(axis=0) + u * g2.sum(axis=0),
    )
    return error_loss, error_output, errors


def assert_network_matches(
    ours: tuple[float, Params], theirs: tuple[float, Params], errors: tuple[float, Params], label: str
) -> None:
    """Loss and every gradient within twice one implementation's bound (both round)."""
    __tracebackhide__ = True
    (our_loss, our_grads), (their_loss, their_grads), (loss_error, gradient_errors) = ours, theirs, errors
    assert abs(our_loss - their_loss) <= 2 * loss_error, f"{label}: loss {our_loss!r} vs torch {their_loss!r}"
    for name, mine, other, allowed in zip(Params._fields, our_grads, their_grads, gradient_errors, strict=True):
        assert_within(f"xor grad {name}", mine, other, 2 * allowed, label=f"torch ({label})", arguments={})


# --------------------------------------------------------------------------------------------------------------------
# Generated networks: loss and every gradient equal autograd's


@st.composite
def networks(draw: st.DrawFn) -> dict[str, Any]:
    """Parameters of a 2 -> H -> 2 network, inputs, targets, a loss and the final-sigmoid switch."""
    hidden = draw(st.integers(1, 6))
    elements = st.one_of(st.integers(-3, 3).map(float), st.floats(-3.0, 3.0, allow_subnormal=False))
    shapes = {"W1": (hidden, 2), "b1": (hidden,), "W2": (2, hidden), "b2": (2,)}
    params = Params(**{name: draw(hnp.arrays(np.float64, shape, elements=elements)) for name, shape in shapes.items()})
    samples = draw(st.integers(1, 6))
    X = draw(hnp.arrays(np.float64, (samples, 2), elements=st.sampled_from([0.0, 1.0]) | elements))
    loss = draw(st.sampled_from(["cross_entropy", "bce"]))
    if draw(st.booleans()):
        y: Any = draw(hnp.arrays(np.int64, (samples,), elements=st.integers(0, 1)))
    else:  # probabilities for CE, soft binary targets for BCE
        first = draw(hnp.arrays(np.float64, (samples,), elements=st.floats(0.0, 1.0)))
        y = np.stack([first, 1.0 - first], axis=1)
    return {"params": params, "X": X, "y": y, "loss": loss, "final_sigmoid": draw(st.booleans())}


@given(network=networks())
def test_loss_and_every_gradient_match_autograd(network: dict[str, Any]) -> None:
    ours = xor.loss_and_grads(**network)
    theirs = torch_loss_and_grads(**network)
    loss_error, _, gradient_errors = network_error(**network)
    assert_network_matches(
        ours, theirs, (loss_error, gradient_errors), f"{network['loss']}, final_sigmoid={network['final_sigmoid']}"
    )


@given(network=networks())
def test_forward_matches_the_torch_model(network: dict[str, Any]) -> None:
    ours = xor.forward(network["params"], network["X"], network["final_sigmoid"])
    model = xor.to_torch(network["params"], final_sigmoid=network["final_sigmoid"])
    theirs = model(torch.tensor(network["X"])).detach().numpy()
    _, output_error, _ = network_error(**network)
    assert_within("xor.forward", ours, theirs, 2 * output_error, label="torch model", arguments={})


@given(seed=st.integers(0, 2**32 - 1), hidden=st.integers(1, 8))
def test_init_draws_torch_linear_default_distribution_in_torch_layout(seed: int, hidden: int) -> None:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases (kaiming_uniform with a = sqrt 5), shapes as
    ``nn.Linear``'s; ``to_torch`` / ``from_torch`` round-trip exactly."""
    params = xor.init(seed, hidden)
    assert [value.shape for value in params] == [(hidden, 2), (hidden,), (2, hidden), (2,)]
    for value, fan_in in zip(params, (2, 2, hidden, hidden), strict=True):
        assert np.abs(value).max() <= fan_in**-0.5
    model = xor.to_torch(params)
    assert [tuple(parameter.shape) for parameter in model.parameters()] == [value.shape for value in params]
    for ours, back in zip(params, xor.from_torch(model), strict=True):
        np.testing.assert_array_equal(ours, back)


def test_init_matches_torch_linear_init_in_distribution() -> None:
    """Pooled over many draws, numpy's and torch's first-layer weights have the same uniform law (KS distance)."""
    ours = np.concatenate([xor.init(seed).W1.ravel() for seed in range(400)])
    torch.manual_seed(0)
    theirs = np.concatenate([torch.nn.Linear(2, 5).weight.detach().numpy().ravel() for _ in range(400)])
    grid = np.linspace(-(2**-0.5), 2**-0.5, 201)
    distance = np.max(np.abs(np.searchsorted(np.sort(ours), grid) - np.searchsorted(np.sort(theirs), grid))) / ours.size
    # Two samples of 4000: the two-sample KS statistic exceeds 1.95 sqrt(2/4000) = 0.044 with probability 0.1%.
    assert distance < 0.044


def update_error(params: Params, grads: Params, gradient_errors: Params, lr: float) -> Params:
    """How far two SGD steps ``theta - lr g`` may differ: ``lr`` times the gradients' difference (twice one
    implementation's bound) plus each side's rounding of the update, ``eps (|theta_new| + |lr g|)`` (torch may fuse
    the multiply-add, which rounds once instead of twice)."""
    epsilon = MACHINE_EPSILON["float64"]
    return Params(
        *(
            lr * 2 * error + 2 * epsilon * (np.abs(value - lr * gradient) + np.abs(lr * gradient))
            for value, gradient, error in zip(params, grads, gradient_errors, strict=True)
        )
    )


def test_sgd_step_is_torch_sgd() -> None:
    params, lr = xor.init(7), 0.03
    _, grads = xor.loss_and_grads(params, XOR_INPUTS, XOR_TARGETS)
    model = xor.to_torch(params)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    F.cross_entropy(model(torch.tensor(XOR_INPUTS)), torch.tensor(XOR_TARGETS)).backward()
    optimizer.step()
    _, _, gradient_errors = network_error(params, XOR_INPUTS, XOR_TARGETS, "cross_entropy", True)
    allowed = update_error(params, grads, gradient_errors, lr)
    for name, ours, theirs, error in zip(
        Params._fields, xor.sgd_step(params, grads, lr), xor.from_torch(model), allowed, strict=True
    ):
        assert_within(f"sgd_step {name}", ours, theirs, error, label="torch SGD", arguments={})


# --------------------------------------------------------------------------------------------------------------------
# Whole trajectories: 1000 SGD steps, from scratch and in torch


#: (loss, final_sigmoid, lr): the notebook's own setting (CE on sigmoid outputs, lr 0.03), the same model with a rate
#: that learns XOR in 1000 steps, and the correct logits model. Each learns XOR or not in the same way in both.
TRAININGS = {
    "notebook": ("cross_entropy", True, 0.03),
    "notebook-model-lr5": ("cross_entropy", True, 5.0),
    "logits-lr1": ("cross_entropy", False, 1.0),
}
STEPS = 1000


@functools.cache
def trained(setting: str, seed: int) -> tuple[xor.Training, np.ndarray, list[Params]]:
    """Both trainings from ``xor.init(seed)``: ours (with snapshots) and torch's loss history and parameters."""
    loss, final_sigmoid, lr = TRAININGS[setting]
    start = xor.init(seed)
    ours = xor.train(start, XOR_INPUTS, XOR_TARGETS, lr, STEPS, loss, final_sigmoid, snapshots=True)
    model = xor.to_torch(start, final_sigmoid=final_sigmoid)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = torch_criterion(loss, final_sigmoid)
    inputs, target = torch.tensor(XOR_INPUTS), torch_target(XOR_TARGETS, loss)
    losses, snapshots = np.empty(STEPS), [xor.from_torch(model)]
    for step in range(STEPS):
        optimizer.zero_grad()
        value = criterion(model(inputs), target)
        value.backward()
        optimizer.step()
        losses[step] = float(value.detach())
        snapshots.append(xor.from_torch(model))
    return ours, losses, snapshots


@functools.cache
def local_errors(setting: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along our trajectory: the loss Hessians, each step's a-priori local error bound and its measured local error.

    The local error of step k is the two implementations' difference in one step *from the same point* (ours at
    step k): its bound is ``update_error`` (first-order running error analysis, ``network_error``); the measured
    value is ``|sgd_step(theta_k) - torch's SGD step from theta_k|``.
    """
    loss, final_sigmoid, lr = TRAININGS[setting]
    ours, _, _ = trained(setting, seed)
    network = FlatNetwork(ours.snapshots[0], XOR_INPUTS, XOR_TARGETS, loss, final_sigmoid)
    points = torch.tensor(np.stack([flat(snapshot) for snapshot in ours.snapshots[:-1]]))
    # Reverse over reverse: forward mode (torch.func.hessian) goes through deprecated torch.jit decompositions.
    hessians = torch.vmap(jacrev(jacrev(network.loss)))(points).numpy()
    bounded, measured = np.empty(STEPS), np.empty(STEPS)
    criterion, target, inputs = torch_criterion(loss, final_sigmoid), torch_target(XOR_TARGETS, loss), network.inputs
    model = network.model
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step, snapshot in enumerate(ours.snapshots[:-1]):
        _, grads = xor.loss_and_grads(snapshot, XOR_INPUTS, XOR_TARGETS, loss, final_sigmoid)
        _, _, gradient_errors = network_error(snapshot, XOR_INPUTS, XOR_TARGETS, loss, final_sigmoid, with_loss=False)
        bounded[step] = np.linalg.norm(flat(update_error(snapshot, grads, gradient_errors, lr)))
        with torch.no_grad():
            for parameter, value in zip(model.parameters(), snapshot, strict=True):
                parameter.copy_(torch.from_numpy(value))
        optimizer.zero_grad()
        criterion(model(inputs), target).backward()
        optimizer.step()
        measured[step] = np.linalg.norm(flat(ours.snapshots[step + 1]) - flat(xor.from_torch(model)))
    return hessians, bounded, measured


def carried(setting: str, seed: int, local: np.ndarray, steps: int) -> float:
    r"""Local errors carried to step ``steps`` by the training dynamics' tangent map (2-norm over all parameters).

    With :math:`\delta_k = \theta^{np}_k - \theta^{torch}_k` and :math:`r_k` the local error of step k,
    :math:`\delta_{k+1} = r_k + (I - \text{lr}\, H_k)\, \delta_k + O(\delta_k^2)`, :math:`H_k` the loss's Hessian
    (torch.func, float64). So, to first order,

    .. math:: \|\delta_n\| \le \sum_{k<n} \|J_{n-1} \cdots J_{k+1}\|_2\, \|r_k\|_2, \qquad J_k = I - \text{lr}\, H_k:

    contracting directions shrink the local errors, unstable ones grow them, so the bound is as large as the dynamics
    make it, not a fixed number of ULPs. The neglected second-order term, :math:`\tfrac12 \text{lr} \|\nabla^3 L\|
    \|\delta\|^2` per step, is below 1e-20 here (``|delta| < 1e-9``, third derivatives of order 1).
    """
    hessians, _, _ = local_errors(setting, seed)
    lr = TRAININGS[setting][2]
    identity = np.eye(hessians.shape[1])
    product, total = identity, 0.0
    for step in range(steps - 1, -1, -1):
        total += float(np.linalg.norm(product, 2)) * float(local[step])
        product = product @ (identity - lr * hessians[step])
    return total


@pytest.mark.parametrize("setting", list(TRAININGS))
def test_trajectories_agree_after_1000_steps(setting: str) -> None:
    """After 1000 full-batch SGD steps from the same start, parameters and losses agree in float64.

    Three statements, each with its tolerance derived: every step's local error is within its a-priori bound; the
    parameters are within the a-priori local bounds carried by the dynamics (``carried``); and -- sharper -- within
    the *measured* local errors carried the same way, i.e. the trajectories differ by nothing but each step's
    rounding, propagated. Losses (steps 0, 500, 999): ``|grad L| |delta_k|`` plus both evaluations' rounding.
    """
    ours, torch_losses, torch_snapshots = trained(setting, 0)
    _, bounded, measured = local_errors(setting, 0)
    worst = int(np.argmax(measured / bounded))
    assert (measured <= bounded).all(), (
        f"{setting} step {worst}: local error {measured[worst]:.3e} > {bounded[worst]:.3e}"
    )
    apart = float(np.linalg.norm(flat(ours.params) - flat(torch_snapshots[-1])))
    a_priori, propagated = carried(setting, 0, bounded, STEPS), carried(setting, 0, measured, STEPS)
    assert apart <= propagated <= a_priori, (
        f"{setting}: |theta_np - theta_torch| = {apart:.3e} after {STEPS} steps; carried local errors: measured "
        f"{propagated:.3e}, a-priori bound {a_priori:.3e}"
    )
    loss, final_sigmoid, _ = TRAININGS[setting]
    for step in (0, STEPS // 2, STEPS - 1):
        snapshot = ours.snapshots[step]
        loss_error, _, _ = network_error(snapshot, XOR_INPUTS, XOR_TARGETS, loss, final_sigmoid)
        _, grads = xor.loss_and_grads(snapshot, XOR_INPUTS, XOR_TARGETS, loss, final_sigmoid)
        allowed = 2 * loss_error + float(np.linalg.norm(flat(grads))) * carried(setting, 0, bounded, step)
        difference = abs(ours.losses[step] - torch_losses[step])
        assert difference <= allowed, f"{setting} step {step}: loss differs by {difference:.3e} > {allowed:.3e}"


@pytest.mark.parametrize("setting", ["notebook-model-lr5", "logits-lr1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_learns_xor_where_torch_does(setting: str, seed: int) -> None:
    """From the same start, torch and the from-scratch network classify all four XOR inputs after 1000 steps."""
    _, final_sigmoid, _ = TRAININGS[setting]
    ours, _, torch_snapshots = trained(setting, seed)
    theirs = xor.to_torch(torch_snapshots[-1], final_sigmoid=final_sigmoid)
    torch_accuracy = float(
        (theirs(torch.tensor(XOR_INPUTS)).argmax(dim=1) == torch.tensor(XOR_TARGETS)).double().mean()
    )
    assert torch_accuracy == 1.0
    assert xor.accuracy(ours.params, XOR_INPUTS, XOR_TARGETS, final_sigmoid) == 1.0
    assert ours.losses[-1] < ours.losses[0]


# --------------------------------------------------------------------------------------------------------------------
# The seed notebook's printed numbers (../shared/seed, cells In[280] to In[292])
#
# Execution counts give the order the cells ran in: In[281] printed the predictions, In[283] computed the loss,
# In[286] ran loss.backward(), In[288] printed W1's gradient, In[289] the loss, then In[291]/In[292] the parameters.
# In[290] is not in the notebook, and between backward() and the parameters the only thing that changes them is
# optimizer.step() (SGD, lr = 0.03, In[280]): the printed parameters are one step *after* the ones that produced the
# printed predictions, loss and gradient (torch-semantics section 7).

#: In[292]: the parameters, printed to 4 decimals.
PRINTED_PARAMS = Params(
    W1=np.array([[0.6037, -0.0889], [0.6657, 0.2893], [-0.4809, -0.2565], [-0.3140, 0.6397], [0.4835, 0.2135]]),
    b1=np.array([-0.2218, 0.2330, 0.6987, -0.1540, 0.1504]),
    W2=np.array([[-0.2135, -0.2679, 0.2896, -0.0270, 0.0190], [0.0608, 0.2798, -0.4467, -0.3066, 0.3231]]),
    b2=np.array([-0.3147, 0.1126]),
)
#: In[281]: ``model(X_pt)``, 4 decimals.
PRINTED_PREDICTIONS = np.array([[0.4089, 0.5076], [0.4006, 0.5109], [0.3846, 0.5483], [0.3770, 0.5506]])
#: In[289]: ``loss``, 4 decimals.
PRINTED_LOSS = 0.6954
#: In[288]: the first four rows of W1's gradient (the notebook's output stops there), 5 significant digits.
PRINTED_W1_GRADIENT = np.array(
    [[3.5187e-04, 2.5118e-04], [8.1553e-05, -4.9206e-04], [-9.7865e-04, -9.6398e-04], [-4.5266e-04, -3.8973e-04]]
)
SEED_LR = 0.03
#: Half a unit of the 4th decimal: how far a printed parameter, prediction or loss may be from the value.
PRINTED_HALF_UNIT = 5e-5


def half_unit_of_5_significant_digits(values: np.ndarray) -> np.ndarray:
    """How far a number printed as ``d.dddde-XX`` may be from the value: half a unit of its 4th decimal."""
    return 0.5 * 10.0 ** (np.floor(np.log10(np.abs(values))) - 4)


def undo_step(printed: Params, lr: float) -> Params:
    """``theta_used`` with ``theta_printed = theta_used - lr grad L(theta_used)``, by fixed-point iteration.

    The iteration contracts by ``lr |H|`` (about 0.003 here): five rounds reach float64's resolution.
    """
    used = printed
    for _ in range(5):
        _, grads = xor.loss_and_grads(used, XOR_INPUTS, XOR_TARGETS)
        used = Params(*(value + lr * gradient for value, gradient in zip(printed, grads, strict=True)))
    return used


def printing_bound(used: Params) -> dict[str, np.ndarray]:
    r"""How far our float64 values at ``used`` may be from the notebook's printed ones, per printed number.

    The notebook printed ``round(f32(q(theta)))`` for the true parameters ``theta``; we know ``theta`` only to
    +-5e-5 (``used`` comes from the 4-decimal print), so for each printed quantity ``q``:

    .. math:: |q_{64}(\text{used}) - \text{printed}| \le \tfrac12\text{unit} + \sum_j |\partial_j q|\,\delta
              + \tfrac12 \sum_{jk} |\partial_{jk} q|\,\delta^2 + E_{32} + E_{64}, \qquad \delta = 5\times10^{-5},

    the printing's rounding, the parameters' rounding to second order (derivatives by torch.func in float64; the
    third-order term, ``(27 delta)^3 / 6`` times third derivatives of order 1, is below 1e-9 and is left out), and
    the float32 and float64 arithmetic (``network_error``).
    """
    network = FlatNetwork(used, XOR_INPUTS, XOR_TARGETS, "cross_entropy", True)
    theta = torch.tensor(flat(used))
    delta = PRINTED_HALF_UNIT
    first_w1 = slice(0, PRINTED_W1_GRADIENT.size)  # W1 comes first in the flat order, row by row
    gradient_of = jacrev(network.loss)
    derivatives = {
        "predictions": (jacrev(network.outputs)(theta), jacrev(jacrev(network.outputs))(theta)),
        "loss": (gradient_of(theta)[None], jacrev(jacrev(network.loss))(theta)[None]),
        "W1": (jacrev(gradient_of)(theta)[first_w1], jacrev(jacrev(gradient_of))(theta)[first_w1]),
    }
    arithmetic = {}
    for dtype in ("float32", "float64"):
        loss_error, output_error, gradient_errors = network_error(
            used, XOR_INPUTS, XOR_TARGETS, "cross_entropy", True, dtype
        )
        arithmetic[dtype] = {
            "predictions": output_error.ravel(),
            "loss": np.array([loss_error]),
            "W1": gradient_errors.W1.ravel()[first_w1],
        }
    printing = {
        "predictions": np.full(PRINTED_PREDICTIONS.size, PRINTED_HALF_UNIT),
        "loss": np.array([PRINTED_HALF_UNIT]),
        "W1": half_unit_of_5_significant_digits(PRINTED_W1_GRADIENT).ravel(),
    }
    bounds = {}
    for name, (first, second) in derivatives.items():
        first_order = np.abs(first.numpy()).sum(axis=1) * delta
        second_order = 0.5 * np.abs(second.numpy()).sum(axis=(1, 2)) * delta**2
        bounds[name] = (
            printing[name] + first_order + second_order + arithmetic["float32"][name] + arithmetic["float64"][name]
        )
    return bounds


def printed_quantities(params: Params) -> dict[str, np.ndarray]:
    """Our float64 predictions, loss and first four rows of W1's gradient at ``params``."""
    value, grads = xor.loss_and_grads(params, XOR_INPUTS, XOR_TARGETS)
    return {
        "predictions": xor.forward(params, XOR_INPUTS).ravel(),
        "loss": np.array([value]),
        "W1": grads.W1.ravel()[: PRINTED_W1_GRADIENT.size],
    }


PRINTED = {
    "predictions": PRINTED_PREDICTIONS.ravel(),
    "loss": np.array([PRINTED_LOSS]),
    "W1": PRINTED_W1_GRADIENT.ravel(),
}


def test_seed_printed_numbers_follow_from_undoing_one_sgd_step() -> None:
    """theta_used = theta_printed + 0.03 grad: the printed loss 0.6954, the W1 gradient and all 8 predictions follow.

    Within ``printing_bound`` -- and the predictions even within the printing's own rounding: all eight round to
    the printed 4 decimals (largest difference 4.79e-5 < 5e-5), as torch-semantics section 7 found in float32.
    """
    used = undo_step(PRINTED_PARAMS, SEED_LR)
    ours, allowed = printed_quantities(used), printing_bound(used)
    for name, printed in PRINTED.items():
        difference = np.abs(ours[name] - printed)
        assert (difference <= allowed[name]).all(), f"{name}: |ours - printed| {difference} > {allowed[name]}"
    assert (np.abs(ours["predictions"] - PRINTED["predictions"]) <= PRINTED_HALF_UNIT).all()
    assert round(float(ours["loss"][0]), 4) == PRINTED_LOSS


def test_seed_printed_parameters_did_not_produce_the_printed_predictions() -> None:
    """Read as the parameters of In[281], the printed ones miss every one of the 8 printed predictions by more than
    the printing bound, and W1's gradient misses too (by up to 2.2 times the bound) -- evidence that they were
    printed after the step. The loss cannot tell: 0.6953924 rounds to 0.6954 as well."""
    ours, allowed = printed_quantities(PRINTED_PARAMS), printing_bound(PRINTED_PARAMS)
    assert (np.abs(ours["predictions"] - PRINTED["predictions"]) > allowed["predictions"]).all()
    assert (np.abs(ours["W1"] - PRINTED["W1"]) > allowed["W1"]).any()
    assert abs(ours["loss"][0] - PRINTED_LOSS) <= allowed["loss"][0]


@pytest.mark.parametrize(("lr", "consistent"), [(0.0, False), (0.01, False), (0.03, True), (0.06, False)])
def test_seed_learning_rate_is_the_notebooks(lr: float, consistent: bool) -> None:
    """Undoing a step of the notebook's lr (0.03) fits every printed prediction; no step, a third of it or two steps'
    worth do not: the printed numbers pin the rate down (to about 0.021..0.041 with this bound)."""
    used = undo_step(PRINTED_PARAMS, lr)
    fits = (
        np.abs(printed_quantities(used)["predictions"] - PRINTED["predictions"]) <= printing_bound(used)["predictions"]
    )
    assert bool(fits.all()) is consistent
