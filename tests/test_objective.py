import math

import pytest
import torch

from sami import sami_loss, sami_metrics


def test_reference_symmetric_2x2():
    """L = [[-1, -2], [-2, -1]]: every row and column is softmax([-1, -2]) against the first entry,
    CE = log(1 + e^-1) = 0.313262, so row = col = loss = 0.313262."""
    L = torch.tensor([[-1.0, -2.0], [-2.0, -1.0]])
    assert sami_loss(L).item() == pytest.approx(0.313262, abs=1e-6)
    m = sami_metrics(L)
    assert m["row_loss"] == pytest.approx(0.313262, abs=1e-6)
    assert m["col_loss"] == pytest.approx(0.313262, abs=1e-6)


def test_reference_asymmetric_2x2():
    """L = [[-1, -1.5], [-3, -1.2]].
    rows: log(1 + e^-0.5) = 0.474077 and log(1 + e^-1.8) = 0.152977, mean 0.313527;
    cols: log(1 + e^-2) = 0.126928 and log(1 + e^-0.3) = 0.554355, mean 0.340642;
    loss = (0.313527 + 0.340642) / 2 = 0.327084."""
    L = torch.tensor([[-1.0, -1.5], [-3.0, -1.2]])
    m = sami_metrics(L)
    assert m["row_loss"] == pytest.approx(0.313527, abs=1e-6)
    assert m["col_loss"] == pytest.approx(0.340642, abs=1e-6)
    assert sami_loss(L).item() == pytest.approx(0.327084, abs=1e-6)
    assert m["mi_bound"] == pytest.approx(math.log(2) - 0.340642, abs=1e-6)


@pytest.mark.parametrize("c", [2, 3, 8])
def test_all_zero_matrix_gives_log_c(c):
    """A uniform softmax over C entries has CE = log C in every row and column; the MI bound is 0."""
    L = torch.zeros(c, c)
    assert sami_loss(L).item() == pytest.approx(math.log(c), abs=1e-6)
    assert sami_metrics(L)["mi_bound"] == pytest.approx(0.0, abs=1e-6)


def test_permutation_invariance():
    torch.manual_seed(0)
    L = torch.randn(5, 5)
    perm = torch.randperm(5)
    assert sami_loss(L[perm][:, perm]).item() == pytest.approx(sami_loss(L).item(), abs=1e-6)


def test_permuting_only_responses_changes_loss():
    L = torch.tensor([[-1.0, -3.0], [-3.0, -1.0]])
    assert sami_loss(L[:, [1, 0]]).item() > sami_loss(L).item() + 1.0


def test_batch_equals_mean_of_single_queries():
    torch.manual_seed(1)
    batch = torch.randn(4, 3, 3)
    singles = torch.stack([sami_loss(batch[b]) for b in range(4)])
    assert sami_loss(batch).item() == pytest.approx(singles.mean().item(), abs=1e-6)


def test_gradient_raises_the_diagonal():
    L = torch.randn(4, 4, requires_grad=True)
    sami_loss(L).backward()
    assert (L.grad.diagonal() < 0).all()  # descending the loss increases the matched log-probs
    off = L.grad[~torch.eye(4, dtype=torch.bool)]
    assert (off > 0).all()


def test_computes_in_float32():
    L = torch.tensor([[-1.0, -2.0], [-2.0, -1.0]], dtype=torch.bfloat16)
    loss = sami_loss(L)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)


def test_weights_and_temperature():
    torch.manual_seed(2)
    L = torch.randn(3, 3)
    m = sami_metrics(L)
    assert sami_loss(L, col_weight=0.0).item() == pytest.approx(m["row_loss"], abs=1e-6)
    assert sami_loss(L, row_weight=0.0).item() == pytest.approx(m["col_loss"], abs=1e-6)
    assert sami_loss(L, temperature=2.0).item() == pytest.approx(sami_loss(L / 2).item(), abs=1e-6)
    uniform = sami_loss(L, constitution_weights=torch.full((3,), 5.0))
    assert uniform.item() == pytest.approx(sami_loss(L).item(), abs=1e-6)


def test_constitution_weights_select_terms():
    """With weight only on constitution 0, the loss is the mean of row 0's and column 0's CE."""
    L = torch.tensor([[-1.0, -2.0, -4.0], [-2.0, -1.0, -1.5], [-0.5, -3.0, -1.0]])
    row0 = torch.nn.functional.cross_entropy(L[0:1], torch.tensor([0]))
    col0 = torch.nn.functional.cross_entropy(L[:, 0:1].T, torch.tensor([0]))
    got = sami_loss(L, constitution_weights=torch.tensor([1.0, 0.0, 0.0]))
    assert got.item() == pytest.approx(((row0 + col0) / 2).item(), abs=1e-6)


def test_accuracies():
    L = torch.tensor([[-1.0, -2.0, -3.0], [-2.0, -1.0, -3.0], [-0.5, -3.0, -1.0]])
    m = sami_metrics(L)
    assert m["row_accuracy"] == pytest.approx(2 / 3)  # row 2 prefers response 0
    assert m["col_accuracy"] == pytest.approx(2 / 3)  # column 0 prefers constitution 2


@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 1), (2, 2, 2, 2)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError):
        sami_loss(torch.zeros(shape))
