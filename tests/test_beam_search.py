import itertools
import math
from typing import NamedTuple

import pytest
import torch

from rnnkit.decoding import Hypothesis, beam_search, greedy_search
from rnnkit.errors import ConfigError

EOS = 0


# ---- toy models ---------------------------------------------------------------------------------

class ToyState(NamedTuple):
    """Like a seq2seq state: a per-sentence context (the "encoder") and the decoder's h."""

    ctx: torch.Tensor  # (B, H)
    h: torch.Tensor  # (B, H)

    def index_select(self, index: torch.Tensor) -> "ToyState":
        return ToyState(self.ctx.index_select(0, index), self.h.index_select(0, index))


class GRUModel(torch.nn.Module):
    """Embedding + GRUCell + linear with random weights; bos is id V (input only)."""

    def __init__(self, V: int = 7, H: int = 16, seed: int = 0, sharp: float = 3.0):
        super().__init__()
        torch.manual_seed(seed)
        self.V, self.H = V, H
        self.emb = torch.nn.Embedding(V + 1, H)
        self.cell = torch.nn.GRUCell(H, H)
        self.out = torch.nn.Linear(H, V)
        self.sharp = sharp
        self.calls = []

    def start(self, B: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        ctx = torch.randn(B, self.H, generator=g)
        return ToyState(ctx, torch.tanh(ctx)), torch.full((B,), self.V, dtype=torch.long)

    def __call__(self, tokens, state):  # the step protocol
        self.calls.append(tuple(tokens.shape))
        h, logits = state.h, []
        for i in range(tokens.shape[1]):
            h = self.cell(self.emb(tokens[:, i]) + state.ctx, h)
            logits.append(self.sharp * self.out(h))
        return torch.stack(logits, dim=1), ToyState(state.ctx, h)

    def log_prob(self, state: ToyState, bos: int, tokens: list) -> float:
        """log P(tokens + eos) for a one-row state, by teacher forcing."""
        inp = torch.tensor([[bos] + tokens])
        with torch.no_grad():
            logp = self(inp, state)[0][0].log_softmax(-1)  # (t + 1, V)
        return float(logp[torch.arange(len(tokens) + 1), torch.tensor(tokens + [EOS])].sum())


class PosState(NamedTuple):
    pos: torch.Tensor  # (B,) long: tokens read so far

    def index_select(self, index):
        return PosState(self.pos.index_select(0, index))


class TableModel:
    """Logits depend only on (position, previous token): every sequence's log-prob is computable."""

    def __init__(self, V: int = 4, max_pos: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.V = V
        self.table = 2 * torch.randn(max_pos, V + 1, V, generator=g)  # input V is bos

    def __call__(self, tokens, state):
        pos = state.pos.unsqueeze(1) + torch.arange(tokens.shape[1])  # (B, t)
        return self.table[pos, tokens], PosState(state.pos + tokens.shape[1])

    def log_prob(self, tokens: list) -> float:
        logp = self.table.log_softmax(-1)
        prev = [self.V] + tokens
        return sum(float(logp[i, prev[i], tok]) for i, tok in enumerate(tokens + [EOS]))

    def all_outputs(self, max_len: int):
        """Every output of at most max_len tokens (eos excluded) with its log-prob."""
        for n in range(max_len + 1):
            for seq in itertools.product(range(1, self.V), repeat=n):
                yield list(seq), self.log_prob(list(seq))


def lp(n_tokens: int, alpha: float) -> float:
    return ((5 + n_tokens + 1) / 6) ** alpha


def one_row(state: ToyState, b: int) -> ToyState:
    return state.index_select(torch.tensor([b]))


# ---- greedy -------------------------------------------------------------------------------------

def test_greedy_search_matches_step_by_step_argmax():
    model = GRUModel(seed=1, sharp=1.0)
    state, bos = model.start(6, seed=2)
    max_len = torch.tensor([0, 1, 3, 5, 8, 12])
    out = greedy_search(model, state, bos, EOS, max_len)
    for b in range(6):
        s, tok, expect = one_row(state, b), bos[b:b + 1], []
        while len(expect) < int(max_len[b]):
            logits, s = model(tok.unsqueeze(1), s)
            tok = logits[:, -1].argmax(-1)
            if int(tok) == EOS:
                break
            expect.append(int(tok))
        assert out[b] == expect
    assert out[0] == []


def test_greedy_search_one_call_per_step_for_whole_batch():
    model = GRUModel(seed=3)
    state, bos = model.start(4, seed=4)
    out = greedy_search(model, state, bos, EOS, 6)
    assert all(shape == (4, 1) for shape in model.calls)
    assert len(model.calls) <= 6
    assert all(len(o) <= 6 and EOS not in o for o in out)


# ---- beam search --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_size_one_is_greedy(seed, alpha):
    model = GRUModel(seed=seed, sharp=1.0)  # flat logits: eos comes at varied lengths
    state, bos = model.start(7, seed=seed + 100)
    max_len = torch.tensor([0, 1, 2, 4, 6, 9, 15])
    greedy_out = greedy_search(model, state, bos, EOS, max_len)
    beam_out = beam_search(model, state, bos, EOS, beam_size=1, max_len=max_len, length_penalty=alpha)
    assert [hyps[0].tokens for hyps in beam_out] == greedy_out
    assert len({len(g) for g in greedy_out}) > 2  # the test covers varied lengths


@pytest.mark.parametrize("beam_size", [1, 3, 6])
def test_sentence_output_does_not_depend_on_batch(beam_size):
    model = GRUModel(seed=5, sharp=1.5)
    state, bos = model.start(5, seed=6)
    max_len = torch.tensor([3, 10, 7, 1, 12])
    kw = dict(beam_size=beam_size, length_penalty=0.6, n_best=beam_size)
    batch = beam_search(model, state, bos, EOS, max_len=max_len, **kw)
    for b in range(5):
        alone = beam_search(model, one_row(state, b), bos[b:b + 1], EOS, max_len=int(max_len[b]), **kw)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batch[b]]
        for x, y in zip(alone, batch[b]):
            assert x.score == pytest.approx(y.score, abs=1e-5)
            assert x.log_prob == pytest.approx(y.log_prob, abs=1e-5)


def test_step_protocol_rows_and_state_replication():
    model = GRUModel(seed=7)
    state, bos = model.start(3, seed=8)
    beam_search(model, state, bos, EOS, beam_size=4, max_len=5)
    assert model.calls and model.calls[0] == (12, 1)
    rows = [shape[0] for shape in model.calls]
    assert all(shape[1] == 1 and shape[0] % 4 == 0 for shape in model.calls)
    assert rows == sorted(rows, reverse=True)  # sentences only ever leave the batch
    assert len(model.calls) <= 6


def test_done_sentences_leave_the_batch():
    model = GRUModel(seed=7)
    state, bos = model.start(3, seed=8)
    out = beam_search(model, state, bos, EOS, beam_size=4, max_len=torch.tensor([1, 6, 6]))
    rows = [shape[0] for shape in model.calls]
    assert rows[:2] == [12, 12] and 8 in rows  # sentence 0 is done after its limit of one token
    assert len(out[0][0].tokens) <= 1


@pytest.mark.parametrize("alpha", [0.0, 0.7, 2.0])
def test_n_best_sorted_distinct_and_first_is_one_best(alpha):
    model = GRUModel(seed=9, sharp=1.0)
    state, bos = model.start(4, seed=10)
    one = beam_search(model, state, bos, EOS, beam_size=5, max_len=8, length_penalty=alpha)
    many = beam_search(model, state, bos, EOS, beam_size=5, max_len=8, length_penalty=alpha, n_best=5)
    for b in range(4):
        assert len(one[b]) == 1 and len(many[b]) == 5
        assert many[b][0] == one[b][0]
        scores = [h.score for h in many[b]]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in many[b]}) == 5
        assert all(isinstance(h, Hypothesis) and EOS not in h.tokens and len(h.tokens) <= 8 for h in many[b])


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.5])
def test_scores_and_log_probs_recomputed_by_hand(alpha):
    model = GRUModel(seed=11, sharp=1.0)
    state, bos = model.start(3, seed=12)
    out = beam_search(model, state, bos, EOS, beam_size=4, max_len=torch.tensor([2, 6, 10]),
                      length_penalty=alpha, n_best=4)
    for b in range(3):
        for h in out[b]:
            expect = model.log_prob(one_row(state, b), int(bos[b]), h.tokens)
            assert h.log_prob == pytest.approx(expect, abs=1e-5)
            assert h.score == pytest.approx(expect / lp(len(h.tokens), alpha), abs=1e-5)
    assert max(len(h.tokens) for h in out[0]) <= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_large_beam_is_exhaustive_search(seed, alpha):
    V, max_len = 4, 4
    model = TableModel(V, seed=seed)
    everything = sorted(((lp_ / lp(len(seq), alpha), lp_, seq) for seq, lp_ in model.all_outputs(max_len)),
                        key=lambda x: -x[0])
    assert len(everything) == 1 + 3 + 9 + 27 + 81
    K = V ** max_len
    out = beam_search(model, PosState(torch.zeros(1, dtype=torch.long)), torch.tensor([V]), EOS,
                      beam_size=K, max_len=max_len, length_penalty=alpha, n_best=K)[0]
    # Every output with finite probability, and nothing else, in the right order.
    assert len(out) == len(everything)
    best_score, best_lp, best_seq = everything[0]
    assert out[0].tokens == best_seq
    assert out[0].log_prob == pytest.approx(best_lp, abs=1e-5)
    assert out[0].score == pytest.approx(best_score, abs=1e-5)
    for h, (score, lp_, seq) in zip(out, everything):
        assert h.score == pytest.approx(score, abs=1e-5)
        assert h.log_prob == pytest.approx(model.log_prob(h.tokens), abs=1e-5)


def test_max_len_forces_eos_and_zero_length():
    model = TableModel(4, seed=3)
    model.table[:, :, EOS] = -30.0  # eos very unlikely: outputs run to max_len, then eos is forced
    state = PosState(torch.zeros(3, dtype=torch.long))
    bos = torch.full((3,), 4)
    out = beam_search(model, state, bos, EOS, beam_size=3, max_len=torch.tensor([0, 2, 5]), n_best=3)
    assert [h.tokens for h in out[0]] == [[]]  # only one output of length 0
    assert out[0][0].log_prob == pytest.approx(model.log_prob([]), abs=1e-5)
    assert all(len(h.tokens) == 2 for h in out[1]) and len(out[1]) == 3
    assert all(len(h.tokens) == 5 for h in out[2]) and len(out[2]) == 3
    for b in (1, 2):
        for h in out[b]:
            assert h.log_prob == pytest.approx(model.log_prob(h.tokens), abs=1e-4)
    assert greedy_search(model, state, bos, EOS, torch.tensor([0, 2, 5])) == \
        [out[0][0].tokens, out[1][0].tokens, out[2][0].tokens]


def test_sharp_model_reaches_eos_early():
    model = TableModel(4, seed=0)
    model.table.zero_()
    model.table[0, 4, 2] = 20.0  # bos -> 2
    model.table[1, 2, 3] = 20.0  # 2 -> 3
    model.table[2, 3, EOS] = 20.0  # 3 -> eos
    out = beam_search(model, PosState(torch.zeros(2, dtype=torch.long)), torch.tensor([4, 4]), EOS,
                      beam_size=3, max_len=6)
    assert [hyps[0].tokens for hyps in out] == [[2, 3], [2, 3]]
    assert out[0][0].log_prob == pytest.approx(0.0, abs=1e-6)
    assert greedy_search(model, PosState(torch.zeros(2, dtype=torch.long)), torch.tensor([4, 4]), EOS, 6) \
        == [[2, 3], [2, 3]]


def test_done_sentence_is_frozen_while_others_continue():
    # Sentence 0 (from position 0): eos narrowly beats token 1, then 1 -> eos is certain.  With
    # beam_size 1 it is done at once with [] (greedy); [1] would score better under the length
    # penalty, but must not be found because sentence 1 (from position 3, no eos) keeps the batch going.
    model = TableModel(4, seed=0)
    model.table.zero_()
    model.table[0, 4] = torch.tensor([1.0, 0.9, -5.0, -5.0])
    model.table[1, 1] = torch.tensor([10.0, -5.0, -5.0, -5.0])
    model.table[3:, :, EOS] = -5.0
    model.table[3:, :, 2] = 1.0  # no ties: greedy and beam agree on sentence 1 too
    state, bos = PosState(torch.tensor([0, 3])), torch.tensor([4, 4])
    assert model.log_prob([1]) / lp(1, 1.0) > model.log_prob([]) / lp(0, 1.0)
    out = beam_search(model, state, bos, EOS, beam_size=1, max_len=4, length_penalty=1.0)
    assert out[0][0].tokens == [] and len(out[1][0].tokens) == 4
    assert [h[0].tokens for h in out] == greedy_search(model, state, bos, EOS, 4)


def test_fewer_hypotheses_than_n_best_when_model_forbids_the_rest():
    model = TableModel(4, seed=0)
    model.table[:, :, 2:] = -math.inf  # only token 1 and eos are possible
    out = beam_search(model, PosState(torch.zeros(1, dtype=torch.long)), torch.tensor([4]), EOS,
                      beam_size=5, max_len=2, n_best=5)[0]
    assert sorted(h.tokens for h in out) == [[], [1], [1, 1]]
    assert all(math.isfinite(h.score) for h in out)


def test_empty_batch():
    model = GRUModel()
    state, bos = model.start(0, seed=0)
    assert beam_search(model, state, bos, EOS) == []
    assert greedy_search(model, state, bos, EOS, 5) == []


@pytest.mark.parametrize("kwargs", [
    dict(beam_size=0), dict(beam_size=-1), dict(beam_size=2.5), dict(beam_size=True),
    dict(beam_size=3, n_best=4), dict(n_best=0), dict(n_best=1.0),
    dict(length_penalty=-0.1), dict(length_penalty=math.nan), dict(length_penalty=math.inf),
    dict(max_len=-1), dict(max_len=2.0), dict(max_len=torch.tensor([3, 3])),
    dict(max_len=torch.tensor([3.0, 3.0, 3.0])), dict(max_len=torch.tensor([3, -1, 3])),
])
def test_bad_arguments_raise_config_error(kwargs):
    model = GRUModel()
    state, bos = model.start(3, seed=0)
    with pytest.raises(ConfigError):
        beam_search(model, state, bos, EOS, **kwargs)
    if set(kwargs) == {"max_len"}:
        with pytest.raises(ConfigError):
            greedy_search(model, state, bos, EOS, kwargs["max_len"])


def test_bad_eos_and_bos():
    model = GRUModel(V=7)
    state, bos = model.start(2, seed=0)
    for bad in (-1, 7, 1.0):
        with pytest.raises(ConfigError):
            beam_search(model, state, bos, bad)
        with pytest.raises(ConfigError):
            greedy_search(model, state, bos, bad, 3)
    with pytest.raises(ValueError):
        beam_search(model, state, bos.float(), EOS)
    with pytest.raises(ValueError):
        greedy_search(model, state, bos.unsqueeze(1), EOS, 3)
