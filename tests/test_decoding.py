import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.decoding import filter_logits, generate, greedy, sample, validate_sampling
from rnnkit.errors import ConfigError

PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])


def kept(logits: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(logits)


# ---- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(0.0, None, None), (-1.0, None, None), (math.nan, None, None), (math.inf, None, None),
     (1.0, 0, None), (1.0, -3, None), (1.0, 2.5, None),
     (1.0, None, 0.0), (1.0, None, 1.01), (1.0, None, -0.5), (1.0, None, math.nan)],
)
def test_invalid_sampling_values_raise_config_error(temperature, top_k, top_p):
    with pytest.raises(ConfigError):
        validate_sampling(temperature, top_k, top_p)
    with pytest.raises(ConfigError):
        filter_logits(torch.zeros(1, 4), temperature, top_k, top_p)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        generate(SuccessorStep(4), None, torch.zeros(1, 1, dtype=torch.long), 2,
                 temperature=temperature, top_k=top_k, top_p=top_p)


def test_valid_sampling_values_pass():
    validate_sampling(0.01, 1, 1.0)
    validate_sampling(2, None, 0.9)


# ---- filtering ---------------------------------------------------------------------------------

def test_temperature_scales_logits():
    logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2.0)
    assert torch.equal(filter_logits(logits), logits)
    # Lower temperature sharpens: the top token gets more probability.
    p_cold = filter_logits(logits, 0.5).softmax(-1).max(-1).values
    p_hot = filter_logits(logits, 2.0).softmax(-1).max(-1).values
    assert (p_cold > p_hot).all()


@pytest.mark.parametrize("k", [1, 2, 5, 8, 20])
def test_top_k_keeps_exactly_k_highest(k):
    logits = torch.randn(4, 8, generator=torch.Generator().manual_seed(k))
    out = filter_logits(logits, top_k=k)
    assert (kept(out).sum(-1) == min(k, 8)).all()
    top = logits.topk(min(k, 8), dim=-1).indices
    assert kept(out).gather(-1, top).all()
    assert torch.equal(out[kept(out)], logits[kept(out)])


def test_top_k_keeps_exactly_k_with_ties():
    out = filter_logits(torch.zeros(2, 6), top_k=3)
    assert (kept(out).sum(-1) == 3).all()


@pytest.mark.parametrize("top_p, expected", [
    (0.8, [True, True, False, False]),
    (0.81, [True, True, True, False]),
    (0.5, [True, False, False, False]),
    (0.3, [True, False, False, False]),  # the top token always stays
    (0.96, [True, True, True, True]),
    (1.0, [True, True, True, True]),
])
def test_top_p_on_hand_made_distribution(top_p, expected):
    logits = PROBS.log()
    assert kept(filter_logits(logits, top_p=top_p)).tolist() == [expected]
    # Same answer whatever the order of the vocabulary, row by row in one batch.
    perm = torch.tensor([2, 0, 3, 1])
    batch = torch.cat([logits, logits[:, perm]])
    out = kept(filter_logits(batch, top_p=top_p))
    assert out[0].tolist() == expected
    assert out[1].tolist() == torch.tensor(expected)[perm].tolist()


@pytest.mark.parametrize("V", [3, 7, 10, 25, 100])
def test_top_p_exact_boundary_survives_float_rounding(V):
    # Uniform over V: top_p = k / V needs exactly k tokens, though float32 cumsums of 1/V
    # land on either side of k / V.
    ks = torch.arange(1, V)
    out = torch.stack([kept(filter_logits(torch.zeros(1, V), top_p=k / V))[0] for k in ks.tolist()])
    assert out.sum(-1).tolist() == ks.tolist()


def test_top_k_then_top_p_renormalises():
    # After top-2, probabilities are 0.625 / 0.375: top_p 0.6 keeps one token.
    out = filter_logits(PROBS.log(), top_k=2, top_p=0.6)
    assert kept(out).tolist() == [[True, False, False, False]]


# ---- sample / greedy ---------------------------------------------------------------------------

def test_sample_frequencies_follow_filtered_distribution():
    n = 20000
    logits = PROBS.log().expand(n, 4)  # many samples = many rows of one batch
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(sample(logits, g), minlength=4).float() / n
    assert torch.allclose(counts, PROBS[0], atol=0.015)
    counts = torch.bincount(sample(logits, g, top_p=0.8), minlength=4).float() / n
    assert counts[2:].sum() == 0
    assert torch.allclose(counts[:2], torch.tensor([0.625, 0.375]), atol=0.015)


def test_greedy_equals_sampling_at_very_low_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g) * 3
    assert greedy(logits).dtype == torch.long
    assert torch.equal(sample(logits, g, temperature=1e-4), greedy(logits))
    assert torch.equal(sample(logits, g, top_k=1), greedy(logits))


def test_sample_is_reproducible_for_a_seed():
    logits = torch.zeros(32, 50)
    a = sample(logits, torch.Generator().manual_seed(7))
    b = sample(logits, torch.Generator().manual_seed(7))
    c = sample(logits, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- generate ----------------------------------------------------------------------------------

class RowState:
    """Duck-typed state: one counter per row, with index_select like rnnkit.nn.state.State."""

    def __init__(self, steps: torch.Tensor):
        self.steps = steps  # (B,)

    def index_select(self, index: torch.Tensor) -> "RowState":
        return RowState(self.steps.index_select(0, index))


class SuccessorStep:
    """Puts (almost) all mass on (last token + 1) mod V; records every call."""

    def __init__(self, V: int, sharp: float = 50.0):
        self.V, self.sharp, self.calls = V, sharp, []

    def __call__(self, tokens, state):
        assert torch.is_inference_mode_enabled()
        self.calls.append(tuple(tokens.shape))
        B, t = tokens.shape
        if state is None:
            state = RowState(torch.zeros(B, dtype=torch.long))
        logits = F.one_hot((tokens + 1) % self.V, self.V).float() * self.sharp  # (B, t, V)
        return logits, RowState(state.steps + t)


class RandomStep:
    """Logits depend on the last token through a fixed random table."""

    def __init__(self, V: int):
        self.table = torch.randn(V, V, generator=torch.Generator().manual_seed(123))

    def __call__(self, tokens, state):
        return self.table[tokens], state  # (B, t, V)


def test_generate_successor_exact_sequence_and_step_protocol():
    V = 5
    step = SuccessorStep(V)
    prime = torch.tensor([[0, 1, 2], [4, 4, 3]])
    out = generate(step, None, prime, 6, greedy=True)
    assert out.dtype == torch.long and out.shape == (2, 6)
    assert not out.is_inference()
    assert out.tolist() == [[3, 4, 0, 1, 2, 3], [4, 0, 1, 2, 3, 4]]
    # The prime goes in one call, then one token per call; no call after the last token.
    assert step.calls == [(2, 3)] + [(2, 1)] * 5


def test_generate_sampling_successor_is_exact_too():
    out = generate(SuccessorStep(7), None, torch.tensor([[5]]), 4,
                   generator=torch.Generator().manual_seed(0), top_p=0.9)
    assert out.tolist() == [[6, 0, 1, 2]]


def test_generate_threads_state_through():
    seen = []

    def step(tokens, state):
        seen.append(state.steps.clone())
        return SuccessorStep(4)(tokens, state)

    generate(step, RowState(torch.tensor([10, 20])), torch.zeros(2, 2, dtype=torch.long), 3)
    assert [s.tolist() for s in seen] == [[10, 20], [12, 22], [13, 23]]


def test_generate_reproducible_for_a_seed_and_batch_rows_differ():
    step, prime = RandomStep(11), torch.zeros(8, 1, dtype=torch.long)
    kw = dict(temperature=1.5, top_k=6)
    a = generate(step, None, prime, 20, generator=torch.Generator().manual_seed(3), **kw)
    b = generate(step, None, prime, 20, generator=torch.Generator().manual_seed(3), **kw)
    c = generate(step, None, prime, 20, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row) for row in a.tolist()}) > 1  # B samples at once, not one copied


def test_generate_greedy_equals_low_temperature_sampling():
    step, prime = RandomStep(13), torch.arange(6).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(
        generate(step, None, prime, 15, greedy=True),
        generate(step, None, prime, 15, temperature=1e-4, generator=g),
    )


def test_generate_eos_rows_stay_finished_and_loop_stops_early():
    V, eos = 5, 3
    step = SuccessorStep(V)
    out = generate(step, None, torch.tensor([[0], [2]]), 8, greedy=True, eos_id=eos)
    # Row 1 hits eos at once; the model would go on with 4, 0, ... but the row stays finished.
    assert out.tolist() == [[1, 2, 3, 3, 3, 3, 3, 3], [3, 3, 3, 3, 3, 3, 3, 3]]
    assert len(step.calls) == 3  # prime call + 2 steps: stopped when every row finished


def test_generate_eos_never_reached_runs_full_length():
    step = SuccessorStep(6)
    out = generate(step, None, torch.tensor([[0]]), 4, greedy=True, eos_id=5)
    assert out.tolist() == [[1, 2, 3, 4]]
    assert len(step.calls) == 4


def test_generate_zero_length_and_bad_inputs():
    prime = torch.zeros(3, 2, dtype=torch.long)
    assert generate(SuccessorStep(4), None, prime, 0).shape == (3, 0)
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        generate(SuccessorStep(4), None, torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        generate(SuccessorStep(4), None, torch.zeros(3, 0, dtype=torch.long), 2)
    with pytest.raises(ConfigError):
        generate(SuccessorStep(4), None, prime, -1)
    with pytest.raises(ValueError, match="step must return"):
        generate(lambda tok, s: (torch.zeros(3, 4), s), None, prime, 2)


# ---- the draw is torch.multinomial's ------------------------------------------------------------------------

@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.7, 5, None), (1.3, None, 0.8)])
def test_sample_draws_what_multinomial_draws(temperature, top_k, top_p):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * 3
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    for _ in range(50):
        got = sample(logits, ours, temperature, top_k, top_p)
        assert torch.equal(got, torch.multinomial(probs, 1, generator=theirs)[:, 0])
    assert torch.equal(ours.get_state(), theirs.get_state())  # and used the same random numbers


def test_generate_samples_what_multinomial_draws_step_by_step():
    V, step = 9, RandomStep(9)
    prime = torch.randint(0, V, (4, 3), generator=torch.Generator().manual_seed(0))
    got = generate(step, None, prime, 30, generator=torch.Generator().manual_seed(5))
    g, token, want = torch.Generator().manual_seed(5), prime[:, -1:], []
    for _ in range(30):
        token = torch.multinomial(step(token, None)[0][:, -1].softmax(-1), 1, generator=g)  # (B, 1)
        want.append(token)
    assert torch.equal(got, torch.cat(want, 1))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_sampling_invalid_logits_raises_as_multinomial_does(bad):
    logits = torch.zeros(2, 5)
    logits[1, 3] = bad
    with pytest.raises(RuntimeError, match="probability tensor contains"):
        sample(logits)

    def step(tokens, state):
        out = torch.zeros(tokens.shape[0], tokens.shape[1], 5)
        out[1, :, 3] = bad
        return out, state

    with pytest.raises(RuntimeError, match="probability tensor contains"):
        generate(step, None, torch.zeros(2, 1, dtype=torch.long), 4)
