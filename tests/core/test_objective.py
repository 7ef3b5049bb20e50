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


ASYM = [[-1.0, -1.5], [-3.0, -1.2]]  # the matrix of test_reference_asymmetric_2x2: SAMI loss 0.327084


def test_diagonal_nll_and_reference_penalty_by_hand():
    """L = ASYM, diagonal (-1, -1.2): diagonal NLL = (1 + 1.2) / 2 = 1.1.
    Reference diagonal (-0.8, -1.6): log-ratios r = (-0.2, 0.4), penalty = mean(r^2) / 2 = (0.04 + 0.16) / 4 = 0.05.
    nll_weight 0.5, ref_weight 2: loss = 0.327084 + 0.5 * 1.1 + 2 * 0.05 = 0.977084."""
    from sami.core.objective import diagonal_nll, reference_penalty

    L, ref = torch.tensor(ASYM), torch.tensor([-0.8, -1.6])
    assert diagonal_nll(L).item() == pytest.approx(1.1, abs=1e-6)
    assert reference_penalty(L, ref).item() == pytest.approx(0.05, abs=1e-6)
    assert sami_loss(L, nll_weight=0.5).item() == pytest.approx(0.877084, abs=1e-6)
    assert sami_loss(L, ref_weight=2.0, ref_logprobs=ref).item() == pytest.approx(0.427084, abs=1e-6)
    both = sami_loss(L, nll_weight=0.5, ref_weight=2.0, ref_logprobs=ref)
    assert both.item() == pytest.approx(0.977084, abs=1e-6)
    m = sami_metrics(L, ref)
    assert m["diag_logprob"] == pytest.approx(-1.1, abs=1e-6)
    assert m["ref_log_ratio"] == pytest.approx(0.1, abs=1e-6)
    assert m["ref_penalty"] == pytest.approx(0.05, abs=1e-6)
    assert "ref_penalty" not in sami_metrics(L)


def test_anchor_gradients_by_hand():
    """d(nll_weight * NLL)/dL[i, i] = -nll_weight / C = -0.25 and d(ref_weight * penalty)/dL[i, i] =
    ref_weight * r_i / C = r_i = (-0.2, 0.4), so the anchored gradient exceeds plain SAMI's by (-0.45, 0.15) on
    the diagonal and by nothing elsewhere."""
    ref = torch.tensor([-0.8, -1.6], requires_grad=True)
    plain = torch.tensor(ASYM, requires_grad=True)
    sami_loss(plain).backward()
    anchored = torch.tensor(ASYM, requires_grad=True)
    sami_loss(anchored, nll_weight=0.5, ref_weight=2.0, ref_logprobs=ref).backward()
    expected = torch.tensor([[-0.45, 0.0], [0.0, 0.15]])
    torch.testing.assert_close(anchored.grad - plain.grad, expected, atol=1e-6, rtol=0)
    assert ref.grad is None  # the reference is a constant


def test_zero_anchor_weights_are_plain_sami_bit_for_bit():
    torch.manual_seed(3)
    base = torch.randn(3, 4, 4) - 2.0
    ref = torch.randn(3, 4) - 2.0
    kw = dict(row_weight=0.7, temperature=1.3, constitution_weights=torch.tensor([1.0, 2.0, 0.5, 1.0]))
    plain = base.clone().requires_grad_()
    loss_plain = sami_loss(plain, **kw)
    loss_plain.backward()
    zero = base.clone().requires_grad_()
    loss_zero = sami_loss(zero, nll_weight=0.0, ref_weight=0.0, ref_logprobs=ref, **kw)
    loss_zero.backward()
    assert torch.equal(loss_plain, loss_zero)
    assert torch.equal(plain.grad, zero.grad)


def test_infonce_ignores_a_uniform_fall_and_the_nll_does_not():
    """Adding a constant to every entry leaves every softmax, hence the SAMI loss, unchanged: InfoNCE
    cannot see likelihoods collapsing together. The diagonal NLL rises by exactly that constant."""
    from sami.core.objective import diagonal_nll

    torch.manual_seed(4)
    L = torch.randn(2, 3, 3) - 1.0
    assert sami_loss(L - 5.0).item() == pytest.approx(sami_loss(L).item(), abs=1e-5)
    assert diagonal_nll(L - 5.0).item() == pytest.approx(diagonal_nll(L).item() + 5.0, abs=1e-5)
    assert sami_metrics(L - 5.0)["diag_logprob"] == pytest.approx(sami_metrics(L)["diag_logprob"] - 5.0, abs=1e-5)


def test_batched_reference_and_bad_anchor_arguments():
    """Two queries: the penalty is the mean over all B * C diagonal entries. Query 0 matches its reference
    (r = 0, 0), query 1 is off by r = (1, -1): penalty = (0 + 0 + 1 + 1) / 4 / 2 = 0.25."""
    from sami.core.objective import reference_penalty

    L = torch.stack([torch.tensor(ASYM), torch.tensor(ASYM)])
    ref = torch.tensor([[-1.0, -1.2], [-2.0, -0.2]])
    assert reference_penalty(L, ref).item() == pytest.approx(0.25, abs=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        sami_loss(L, nll_weight=-0.1)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        sami_loss(L, ref_weight=0.1)
    with pytest.raises(ValueError, match=r"\(C,\) or \(B, C\)"):
        sami_loss(L, ref_weight=0.1, ref_logprobs=torch.zeros(3))
