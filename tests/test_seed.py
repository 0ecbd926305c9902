"""The seed notebook's printed numbers (``../shared/seed/``) as explicit cases, each citing its cell.

The notebook prints tensors to 4 decimals, so two roundings separate a printed number from what the reference
computes from other printed numbers:

* the printed *inputs* are the true ones rounded to 1e-4 (each off by at most ``H = 5e-5``): the loss may move by up to
  the *rounding bound*, ``H ||grad||_1 + H^2 / 2 sum|Hessian|`` (first-order worst case over the box of unrounded
  inputs, as in torch-semantics section 7, plus the second-order term; the third-order term, ~H^3 * (sum of third
  derivatives ~ 1) ~ 1e-13, is below both float32's resolution and the printing);
* a printed 4-decimal *result* is off by at most 5e-5 itself.

The derivatives for the rounding bound are computed by torch's autograd in float64 (torch as a calculator here: the
values compared are the reference's).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapters import TorchImplementation
from differential import check_against

from xe_verify import functional, information
from xe_verify.tolerances import MACHINE_EPSILON

#: Half a unit in the 4th decimal: how far a printed input or a printed 4-decimal result is from its true value.
PRINTED = 5e-5

# seed In[186]: last_layer; In[188]: truth.
CE_LAST_LAYER = np.array(
    [[-0.7833, -0.6955], [-0.3951, -1.2426], [0.5134, -1.4385], [-0.5044, 0.4975], [-1.4518, -1.5407]]
)
CE_TRUTH = np.array([0, 0, 0, 1, 0])
# seed In[187] and In[191]: predictions = sigmoid(last_layer), printed.
CE_PREDICTIONS = np.array([[0.3136, 0.3328], [0.4025, 0.2240], [0.6256, 0.1918], [0.3765, 0.6219], [0.1897, 0.1764]])

# seed In[90]: last_layer; In[91]: predictions; In[95]: truth.
BCE_LAST_LAYER = np.array(
    [
        [-2.0245, 0.2092, 0.5374],
        [-0.6163, 1.1205, 0.4234],
        [0.7822, 0.8506, 0.2875],
        [1.0529, 1.7423, 0.5177],
        [0.5219, -0.5256, -1.3008],
    ]
)
BCE_PREDICTIONS = np.array(
    [
        [0.1167, 0.5521, 0.6312],
        [0.3506, 0.7541, 0.6043],
        [0.6861, 0.7007, 0.5714],
        [0.7413, 0.8510, 0.6266],
        [0.6276, 0.3715, 0.2140],
    ]
)
BCE_TRUTH = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=np.float64)

# seed In[99]: predictions; In[100]: truth, with values 2 and 4 outside [0, 1].
OUT_OF_RANGE_PREDICTIONS = np.array(
    [
        [0.3793, 0.7710, 0.5964],
        [0.9048, 0.8805, 0.4903],
        [0.2629, 0.6860, 0.6095],
        [0.5221, 0.2022, 0.6634],
        [0.1605, 0.3513, 0.6699],
    ]
)
OUT_OF_RANGE_TRUTH = np.array([[0, 4, 0], [2, 2, 1], [2, 1, 2], [4, 4, 2], [2, 2, 1]], dtype=np.float64)

# seed In[281]: XOR predictions (printed); In[238]/In[282]: truth.
XOR_PREDICTIONS = np.array([[0.4089, 0.5076], [0.4006, 0.5109], [0.3846, 0.5483], [0.3770, 0.5506]])
XOR_TRUTH = np.array([0, 1, 1, 0])


def rounding_bound(loss: Callable[[torch.Tensor], torch.Tensor], printed: np.ndarray) -> float:
    """``H ||grad||_1 + H^2 / 2 sum|Hessian|`` of ``loss`` at the printed inputs: how far the loss of the unrounded
    inputs may be from the loss of the printed ones."""
    point = torch.from_numpy(printed.astype(np.float64))
    gradient = torch.autograd.functional.jacobian(loss, point)
    hessian = torch.autograd.functional.hessian(loss, point)
    return float(PRINTED * gradient.abs().sum() + PRINTED**2 / 2 * hessian.abs().sum())


def ce_of_sigmoid(last_layer: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(torch.sigmoid(last_layer), torch.from_numpy(CE_TRUTH))


def test_seed_cross_entropy_of_sigmoid_outputs() -> None:
    # seed In[189]-In[190]: CrossEntropyLoss()(predictions, truth) = tensor(0.6149), predictions = sigmoid(last_layer).
    printed = 0.6149
    bound = rounding_bound(ce_of_sigmoid, CE_LAST_LAYER)
    assert bound == pytest.approx(9.2e-6, rel=0.01)  # torch-semantics section 7 found the same bound
    value = functional.cross_entropy(functional.sigmoid(CE_LAST_LAYER), CE_TRUTH)
    assert abs(value - printed) <= bound + PRINTED
    # The same through torch, in the notebook's float32: within the same bounds of the printed value, and equal to
    # the reference on torch's own float32 sigmoid outputs within the float32 bound (check_against).
    last_layer = torch.from_numpy(CE_LAST_LAYER).float()
    in_float32 = ce_of_sigmoid(last_layer).item()
    assert abs(in_float32 - printed) <= bound + PRINTED
    sigmoid32 = torch.sigmoid(last_layer).double().numpy()
    check_against(TorchImplementation("float32"), "cross_entropy", input=sigmoid32, target=CE_TRUTH, reduction="mean")
    # CE softmaxes its input again (trap 1): on the raw last_layer it would be 0.43797, nowhere near 0.6149.
    assert abs(functional.cross_entropy(CE_LAST_LAYER, CE_TRUTH) - printed) > 0.1


def test_seed_printed_predictions_are_the_sigmoid_of_the_printed_last_layer() -> None:
    # seed In[187] and In[91]: sigmoid moves by at most sigma' <= 1/4 times the input's rounding, plus the printing.
    for last_layer, predictions in ((CE_LAST_LAYER, CE_PREDICTIONS), (BCE_LAST_LAYER, BCE_PREDICTIONS)):
        assert np.all(np.abs(functional.sigmoid(last_layer) - predictions) <= PRINTED / 4 + PRINTED)


def test_seed_cross_entropy_from_the_printed_predictions() -> None:
    # seed In[189]-In[190] again, from the printed predictions (In[187]) as CE's input: the rounding bound is then
    # taken with respect to the predictions.
    bound = rounding_bound(lambda p: F.cross_entropy(p, torch.from_numpy(CE_TRUTH)), CE_PREDICTIONS)
    value = functional.cross_entropy(CE_PREDICTIONS, CE_TRUTH)
    assert abs(value - 0.6149) <= bound + PRINTED


def bce(truth: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """The unchecked BCE formula in torch (the loss's derivatives for the rounding bound; no range check)."""
    target = torch.from_numpy(truth)
    return lambda p: torch.mean(-(target * torch.log(p) + (1 - target) * torch.log1p(-p)))


def test_seed_binary_cross_entropy() -> None:
    # seed In[96]-In[97]: BCELoss()(predictions, truth) = tensor(0.5796), from the printed predictions (In[91]).
    printed = 0.5796
    bound = rounding_bound(bce(BCE_TRUTH), BCE_PREDICTIONS)
    assert bound == pytest.approx(9.6e-5, rel=0.01)  # torch-semantics section 7: 9.6e-5
    value = functional.binary_cross_entropy(BCE_PREDICTIONS, BCE_TRUTH)
    assert abs(value - printed) <= bound + PRINTED
    through_torch = F.binary_cross_entropy(
        torch.from_numpy(BCE_PREDICTIONS).float(), torch.from_numpy(BCE_TRUTH).float()
    )
    assert abs(through_torch.item() - printed) <= bound + PRINTED
    # From the printed last_layer (In[90]) through the sigmoid: a tighter bound, the same verdict.
    logits_bound = rounding_bound(lambda z: bce(BCE_TRUTH)(torch.sigmoid(z)), BCE_LAST_LAYER)
    from_logits = functional.binary_cross_entropy_with_logits(BCE_LAST_LAYER, BCE_TRUTH)
    assert abs(from_logits - printed) <= logits_bound + PRINTED


def test_seed_binary_cross_entropy_with_targets_outside_the_unit_interval() -> None:
    # seed In[101]-In[102]: BCELoss()(predictions, truth) = tensor(0.5911) with targets 2 and 4 (In[100]). torch
    # 2.13 rejects them (PR #97814), and so does the reference by default.
    predictions, truth = torch.from_numpy(OUT_OF_RANGE_PREDICTIONS), torch.from_numpy(OUT_OF_RANGE_TRUTH)
    with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
        F.binary_cross_entropy(predictions, truth)
    with pytest.raises(ValueError, match=r"target\[0, 1\]"):
        functional.binary_cross_entropy(OUT_OF_RANGE_PREDICTIONS, OUT_OF_RANGE_TRUTH)
    # check_range=False computes what torch computed before the check: 0.59093 from the printed predictions, 1.65e-4
    # from the printed 0.5911, within the rounding bound (4.3e-4: these targets make the loss steep in p).
    printed = 0.5911
    bound = rounding_bound(bce(OUT_OF_RANGE_TRUTH), OUT_OF_RANGE_PREDICTIONS)
    assert bound == pytest.approx(4.3e-4, rel=0.01)  # torch-semantics section 7: 4.3e-4
    value = functional.binary_cross_entropy(OUT_OF_RANGE_PREDICTIONS, OUT_OF_RANGE_TRUTH, check_range=False)
    assert abs(value - printed) <= bound + PRINTED
    # torch's BCE-with-logits still computes that formula for any target: on the logits of the predictions it agrees
    # with the unchecked reference (float64, torch-semantics 8.21: rtol 1e-12 on this benign sum).
    with_logits = F.binary_cross_entropy_with_logits(torch.logit(predictions), truth).item()
    assert value == pytest.approx(with_logits, rel=1e-12)
    # Clipping the targets to [0, 1] is not what the notebook's torch did: 0.7152.
    clipped = functional.binary_cross_entropy(OUT_OF_RANGE_PREDICTIONS, np.clip(OUT_OF_RANGE_TRUTH, 0, 1))
    assert abs(clipped - printed) > 10 * bound


#: seed In[205]: the printed ``[-t * log2(p) for p, t in zip(row_pred, row_truth)]`` lists, row by row.
PRINTED_ROW_ENTROPIES = np.array(
    [
        [1.6729376316070557, 0.0],
        [1.3129408359527588, 0.0],
        [0.676690399646759, 0.0],
        [0.0, 0.6853156685829163],
        [2.3980143070220947, 0.0],
    ]
)


def test_seed_per_element_cross_entropy_in_bits() -> None:
    # seed In[205]: -t * log2(p) per element, t the one-hot truth (In[193]). The printed values are exact float32
    # values of -log2 of the float32 predictions computed from the *unrounded* last_layer: the gap to the reference
    # is input rounding only, which the printed predictions (In[191]) bound, elementwise:
    #   |d(-log2 p)| <= H / (p ln 2) + H^2 / (2 p^2 ln 2)   (first and second order in p's rounding H),
    # plus float32's rounding of p and of its sigmoid (a few ULPs of p, relative: 4 eps32 / ln 2 in -log2 p).
    one_hot = np.eye(2)[CE_TRUTH]
    per_element = information.cross_entropy(one_hot[..., None], CE_PREDICTIONS[..., None], base=2)
    p = CE_PREDICTIONS
    bound = PRINTED / (p * np.log(2)) + PRINTED**2 / (2 * p**2 * np.log(2)) + 4 * MACHINE_EPSILON["float32"] / np.log(2)
    assert np.all(per_element[one_hot == 0] == 0.0)  # 0 log 0 = 0, exactly, as printed
    assert np.all(np.abs(per_element - PRINTED_ROW_ENTROPIES) <= bound * one_hot)
    # From the printed last_layer (In[186]) the bound is tighter: d(-log2 sigmoid(x))/dx = -(1 - p) / ln 2, and the
    # second derivative is p (1 - p) / ln 2 <= 1 / (4 ln 2).
    from_logits = -np.log2(functional.sigmoid(CE_LAST_LAYER)) * one_hot
    sigmoid = functional.sigmoid(CE_LAST_LAYER)
    logits_bound = (
        PRINTED * (1 - sigmoid) / np.log(2) + PRINTED**2 / (8 * np.log(2)) + 4 * MACHINE_EPSILON["float32"] / np.log(2)
    )
    assert np.all(np.abs(from_logits - PRINTED_ROW_ENTROPIES) <= logits_bound * one_hot)


def test_seed_xor_forward_cross_entropy() -> None:
    # seed In[283]-In[289]: CrossEntropyLoss()(predictions, truth) = tensor(0.6954), from the printed predictions
    # (In[281]). Forward only: the XOR network and its gradients belong to the gradients issue.
    bound = rounding_bound(lambda p: F.cross_entropy(p, torch.from_numpy(XOR_TRUTH)), XOR_PREDICTIONS)
    value = functional.cross_entropy(XOR_PREDICTIONS, XOR_TRUTH)
    assert abs(value - 0.6954) <= bound + PRINTED
