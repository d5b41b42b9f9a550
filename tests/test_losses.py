import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.losses import sequence_nll, token_mean


def _batch(B=3, T=5, V=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.tensor([5, 2, 3])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    return logits, targets, mask


def test_equals_hand_loop_over_real_tokens():
    logits, targets, mask = _batch()
    total, count = sequence_nll(logits, targets, mask)
    expected, n = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if mask[b, t]:
                logp = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
                expected += -logp[targets[b, t]].item()
                n += 1
    assert total.shape == () and count.shape == ()
    assert count.dtype == torch.long and count.item() == n == 10
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_no_mask_is_every_token_and_token_mean_matches_torch_mean():
    logits, targets, _ = _batch()
    total, count = sequence_nll(logits, targets)
    assert count.item() == targets.numel()
    ref = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))
    assert torch.allclose(token_mean(total, count), ref, atol=1e-6)


def test_ignore_index_equals_mask():
    logits, targets, mask = _batch()
    pad = 0
    padded_targets = targets.masked_fill(~mask, pad)
    # Real tokens with id == pad would also be ignored; keep ids of real tokens away from it.
    padded_targets = torch.where(mask & (padded_targets == pad), torch.ones_like(targets), padded_targets)
    by_mask = sequence_nll(logits, padded_targets, mask)
    by_index = sequence_nll(logits, padded_targets, ignore_index=pad)
    both = sequence_nll(logits, padded_targets, mask, ignore_index=pad)
    for other in (by_index, both):
        assert torch.allclose(by_mask[0], other[0]) and by_mask[1] == other[1]
    ref = F.cross_entropy(logits.reshape(-1, 7), padded_targets.reshape(-1), ignore_index=pad)
    assert torch.allclose(token_mean(*by_index), ref, atol=1e-6)


@pytest.mark.parametrize("written", [False, True], ids=["autograd", "written-out"])
@pytest.mark.parametrize("pad_id", [0, 6, 10**6, -5])
def test_pads_change_neither_loss_count_nor_gradient(pad_id, written, monkeypatch):
    if written:
        monkeypatch.setattr("rnnkit.losses.WRITTEN_OUT_MIN", 0)
    logits, targets, mask = _batch()
    logits.requires_grad_(True)
    total, count = sequence_nll(logits, targets, mask)
    total.backward()
    grad = logits.grad.clone()

    # Same batch, three extra pad columns with wild logits and any pad id; and the
    # existing pad positions get new garbage too.
    B, T, V = logits.shape
    extra = 3
    wild = torch.randn(B, T + extra, V, generator=torch.Generator().manual_seed(1)) * 1e3
    real = torch.cat([mask, torch.zeros(B, extra, dtype=torch.bool)], dim=1)  # (B, T+3)
    big = torch.where(real[..., None], F.pad(logits.detach(), (0, 0, 0, extra)), wild)
    big.requires_grad_(True)
    big_targets = torch.where(real, F.pad(targets, (0, extra)), torch.full_like(real, pad_id, dtype=torch.long))
    total2, count2 = sequence_nll(big, big_targets, real)
    total2.backward()

    assert count2.item() == count.item()
    assert torch.isfinite(total2) and torch.allclose(total2, total, atol=1e-5)
    assert torch.isfinite(big.grad).all()
    assert torch.equal(big.grad[~real], torch.zeros_like(big.grad[~real]))  # exactly zero at pads
    assert torch.allclose(big.grad[:, :T][mask], grad[mask], atol=1e-7)
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))


@pytest.mark.parametrize("written", [False, True], ids=["autograd", "written-out"])
def test_all_pads_gives_zero_loss_zero_grad_and_zero_mean(written, monkeypatch):
    if written:
        monkeypatch.setattr("rnnkit.losses.WRITTEN_OUT_MIN", 0)
    logits, targets, _ = _batch()
    logits.requires_grad_(True)
    mask = torch.zeros_like(targets, dtype=torch.bool)
    total, count = sequence_nll(logits, targets.fill_(-1), mask)
    mean = token_mean(total, count)
    mean.backward()
    assert count.item() == 0 and total.item() == 0.0 and mean.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_token_mean_accepts_int_count():
    assert token_mean(torch.tensor(6.0), 4).item() == pytest.approx(1.5)
    assert token_mean(torch.tensor(0.0), 0).item() == 0.0


def test_gradcheck_float64():
    logits, targets, mask = _batch(B=2, T=3, V=4)
    logits = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sequence_nll(x, targets, mask[:, :3])[0], (logits,))


def test_low_precision_logits_sum_in_float32():
    logits, targets, mask = _batch()
    total, _ = sequence_nll(logits.bfloat16(), targets, mask)
    assert total.dtype == torch.float32


@pytest.mark.parametrize(
    "logits_shape, targets_shape, mask_shape, match",
    [
        ((3, 5), (3, 5), None, "logits of shape"),
        ((3, 5, 7), (3, 4), None, "targets of shape"),
        ((3, 5, 7), (3, 5), (3, 4), "mask of shape"),
    ],
)
def test_bad_shapes_raise_value_error(logits_shape, targets_shape, mask_shape, match):
    mask = None if mask_shape is None else torch.ones(mask_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=match):
        sequence_nll(torch.zeros(logits_shape), torch.zeros(targets_shape, dtype=torch.long), mask)


def test_bad_dtypes_raise_value_error():
    with pytest.raises(ValueError, match="integer"):
        sequence_nll(torch.zeros(2, 3, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="bool mask"):
        sequence_nll(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3))


def test_uniform_logits_give_log_v():
    V = 5
    total, count = sequence_nll(torch.zeros(2, 3, V), torch.zeros(2, 3, dtype=torch.long))
    assert token_mean(total, count).item() == pytest.approx(math.log(V))


@pytest.fixture
def written_out(monkeypatch):
    """The written-out gradient at every size (by default small losses take autograd's path)."""
    import rnnkit.losses

    monkeypatch.setattr(rnnkit.losses, "WRITTEN_OUT_MIN", 0)


def _path(total) -> str:
    names, stack = set(), [total.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            stack += [f for f, _ in fn.next_functions]
    return "written" if any("SmoothedCrossEntropy" in n for n in names) else "autograd"


def test_large_losses_take_the_written_out_gradient_and_small_ones_autograd():
    V = 300
    for N, want in ((8, "autograd"), (1024, "written")):
        logits = torch.randn(1, N, V, requires_grad=True)
        assert _path(sequence_nll(logits, torch.randint(0, V, (1, N)))[0]) == want
    with torch.no_grad():
        assert sequence_nll(torch.randn(1, 1024, V), torch.randint(0, V, (1, 1024)))[0].grad_fn is None


def test_a_second_backward_through_the_written_out_loss_is_refused(written_out):
    logits, targets, mask = _batch()
    x = logits.clone().requires_grad_(True)
    total, _ = sequence_nll(x, targets, mask, label_smoothing=0.1)
    total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran already"):
        total.backward()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_the_written_out_gradient_equals_autograd_through_torch_cross_entropy(smoothing, dtype, written_out):
    logits, targets, mask = _batch(B=3, T=6, V=11, seed=3)
    logits = (3 * logits).to(dtype)
    targets[0, 0] = 99  # a pad's id outside the vocabulary
    mask[0, 0] = False
    g = torch.Generator().manual_seed(1)
    upstream = torch.rand((), generator=g) + 0.5

    mine = logits.clone().requires_grad_(True)
    total, count = sequence_nll(mine, targets, mask, label_smoothing=smoothing)
    assert _path(total) == "written"
    (total * upstream).backward()

    ref = logits.clone().requires_grad_(True)
    per_token = F.cross_entropy(ref.to(torch.promote_types(dtype, torch.float32)).reshape(-1, 11), targets.masked_fill(~mask, -100).reshape(-1),
                                ignore_index=-100, reduction="none", label_smoothing=smoothing)
    (per_token.sum() * upstream).backward()
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    assert mine.grad.dtype == dtype and total.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(total.double(), per_token.sum().double(), rtol=tol, atol=tol)
    torch.testing.assert_close(mine.grad.double(), ref.grad.double(), rtol=tol, atol=tol)
    assert mine.grad[0, 0].abs().sum() == 0 and int(count) == int(mask.sum())
