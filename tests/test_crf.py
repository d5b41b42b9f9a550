"""CRF: forward algorithm and Viterbi against brute force over every path; pads change nothing."""
import itertools

import pytest
import torch

from rnnkit.nn import CRF

K = 3


def _crf(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    crf = CRF(K).to(dtype)
    with torch.no_grad():  # scores larger than the init, so paths differ clearly
        for p in crf.parameters():
            p.normal_()
    return crf


def _inputs(lengths, T=None, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    emissions = torch.randn(len(lengths), T, K, generator=g, dtype=dtype)
    tags = torch.randint(0, K, (len(lengths), T), generator=g)
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions, tags, mask


def _score(crf, em, path):
    """Score of one tag path over one row's real emissions ``(n, K)``, written out term by term."""
    s = crf.start[path[0]] + em[0, path[0]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + em[t, path[t]]
    return s + crf.end[path[-1]]


def _all_paths(crf, em):
    paths = list(itertools.product(range(K), repeat=em.size(0)))
    return paths, torch.stack([_score(crf, em, p) for p in paths])


LENGTHS = [[4, 2, 1], [3, 3, 3], [1, 4, 3]]


@pytest.mark.parametrize("lengths", LENGTHS)
def test_log_partition_equals_brute_force(lengths):
    crf = _crf()
    em, _, mask = _inputs(lengths)
    log_z = crf.log_partition(em, mask)
    assert log_z.shape == (3,)
    for b, n in enumerate(lengths):
        _, scores = _all_paths(crf, em[b, :n])
        torch.testing.assert_close(log_z[b], torch.logsumexp(scores, 0))


@pytest.mark.parametrize("lengths", LENGTHS)
def test_log_likelihood_is_score_minus_log_partition(lengths):
    crf = _crf()
    em, tags, mask = _inputs(lengths)
    ll = crf.log_likelihood(em, tags, mask)
    for b, n in enumerate(lengths):
        _, scores = _all_paths(crf, em[b, :n])
        want = _score(crf, em[b, :n], tags[b, :n].tolist()) - torch.logsumexp(scores, 0)
        torch.testing.assert_close(ll[b], want)
    torch.testing.assert_close(crf.nll(em, tags, mask), -ll.sum())
    assert bool((ll < 0).all())


@pytest.mark.parametrize("lengths", LENGTHS)
def test_viterbi_equals_brute_force_argmax(lengths):
    crf = _crf()
    em, _, mask = _inputs(lengths, seed=5)
    decoded = crf.decode(em, mask)
    for b, n in enumerate(lengths):
        paths, scores = _all_paths(crf, em[b, :n])
        assert decoded[b] == list(paths[int(scores.argmax())])


def test_probabilities_of_all_paths_sum_to_one():
    crf = _crf()
    em, _, _ = _inputs([3])
    paths = torch.tensor(list(itertools.product(range(K), repeat=3)))  # (K^3, 3)
    ll = crf.log_likelihood(em.expand(len(paths), -1, -1), paths)
    torch.testing.assert_close(ll.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_padded_batch_equals_each_sentence_alone():
    crf = _crf(dtype=torch.float32)
    lengths = [4, 2, 1]
    em, tags, mask = _inputs(lengths, T=6, dtype=torch.float32)
    # junk at pads, even non-finite scores and out-of-range tags, must not matter
    em = em.masked_fill(~mask.unsqueeze(2), float("nan"))
    tags = tags.masked_fill(~mask, 99)
    em.requires_grad_(True)
    ll = crf.log_likelihood(em, tags, mask)
    ll.sum().backward()
    decoded = crf.decode(em, mask)
    assert [len(p) for p in decoded] == lengths
    for b, n in enumerate(lengths):
        alone = em[b:b + 1, :n].detach().clone().requires_grad_(True)
        ll_alone = crf.log_likelihood(alone, tags[b:b + 1, :n])
        torch.testing.assert_close(ll[b:b + 1], ll_alone)
        ll_alone.sum().backward()
        torch.testing.assert_close(em.grad[b, :n], alone.grad[0])
        assert bool((em.grad[b, n:] == 0).all())  # pads get exactly zero gradient
        assert crf.decode(alone) == [decoded[b]]
    # the nll of the batch is the sum of the sentences alone
    with torch.no_grad():
        total = sum(float(crf.nll(em[b:b + 1, :n], tags[b:b + 1, :n])) for b, n in enumerate(lengths))
        assert float(crf.nll(em, tags, mask)) == pytest.approx(total, rel=1e-6)


class _Wrap(torch.nn.Module):
    """Lets ``functional_call`` swap the CRF's parameters for gradcheck's inputs."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf

    def forward(self, em, tags, mask):
        return self.crf.log_partition(em, mask) if tags is None else self.crf.log_likelihood(em, tags, mask)


def test_gradcheck_float64():
    wrap = _Wrap(_crf())
    em, tags, mask = _inputs([3, 1, 2], seed=7)
    inputs = (em.requires_grad_(True), *(p.detach().clone().requires_grad_(True) for p in wrap.parameters()))
    names = [n for n, _ in wrap.named_parameters()]
    for t in (tags, None):
        def f(em, *params, t=t):
            return torch.func.functional_call(wrap, dict(zip(names, params)), (em, t, mask))

        assert torch.autograd.gradcheck(f, inputs)


def test_low_precision_emissions_run_in_float32():
    crf = _crf(dtype=torch.float32)
    em, tags, mask = _inputs([3, 2], dtype=torch.float32)
    ll16 = crf.log_likelihood(em.to(torch.bfloat16), tags, mask)
    assert ll16.dtype == torch.float32
    torch.testing.assert_close(ll16, crf.log_likelihood(em.to(torch.bfloat16).float(), tags, mask))


def test_bad_inputs_raise():
    crf = CRF(K)
    em, tags, mask = _inputs([3, 2], dtype=torch.float32)
    with pytest.raises(ValueError, match="num_tags"):
        crf.log_partition(torch.zeros(2, 3, K + 1))
    with pytest.raises(ValueError, match="prefix"):
        crf.log_partition(em, torch.tensor([[True, False, True], [True, True, False]]))
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(em, torch.tensor([[False, True, True], [True, True, False]]))
    with pytest.raises(ValueError, match="tags"):
        crf.log_likelihood(em, torch.full_like(tags, K), mask)
    with pytest.raises(ValueError):
        CRF(0)
