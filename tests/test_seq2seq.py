"""Seq2Seq: teacher-forced logits equal step-by-step decoding, pads change nothing, attention masks pads."""
import pytest
import torch

from rnnkit.batching import seq2seq_batch
from rnnkit.models import Seq2Seq, Seq2SeqConfig, build_model
from rnnkit.nn import Attention

VARIANTS = [
    dict(attention="none"),
    dict(attention="luong", score="dot"),
    dict(attention="luong", score="general"),
    dict(attention="luong", score="general", input_feeding=True),
    dict(attention="bahdanau"),
]


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(src_vocab_size=11, tgt_vocab_size=13, embedding_size=8, hidden_size=12, dropout=0.0)
    opts.update(kw)
    return Seq2Seq(Seq2SeqConfig(**opts)).eval()


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(3, 11, (n,), generator=g).tolist() for n in (5, 3, 7, 1)]
    tgt = [torch.randint(3, 13, (n,), generator=g).tolist() for n in (4, 6, 2, 3)]
    return src, tgt, seq2seq_batch(src, tgt, 0, 0, 1, 2)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
@pytest.mark.parametrize("cell,bi,layers", [("lstm", True, 1), ("gru", False, 2), ("lstm", True, 2)])
def test_teacher_forced_logits_equal_step_by_step(variant, cell, bi, layers):
    model = _model(cell=cell, bidirectional=bi, num_layers=layers, **variant)
    _, _, b = _batch()
    with torch.no_grad():
        forced, weights = model(b.inputs, b.lengths, b.decoder_inputs)
        state = model.encode(b.inputs, b.lengths)
        steps = []
        for t in range(b.decoder_inputs.shape[1]):
            logits, state = model.step(b.decoder_inputs[:, t: t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), forced, atol=1e-5, rtol=1e-5)
    if variant["attention"] == "none":
        assert weights is None
    else:
        assert weights.shape == (4, b.decoder_inputs.shape[1], b.inputs.shape[1])


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_padded_batch_equals_each_sentence_alone(variant):
    model = _model(**variant)
    src, tgt, b = _batch()
    with torch.no_grad():
        logits, weights = model(b.inputs, b.lengths, b.decoder_inputs)
        for i, (s, y) in enumerate(zip(src, tgt)):
            one = seq2seq_batch([s], [y], 0, 0, 1, 2)
            alone, w_alone = model(one.inputs, one.lengths, one.decoder_inputs)
            torch.testing.assert_close(logits[i, : len(y) + 1], alone[0], atol=1e-5, rtol=1e-5)
            if weights is not None:
                torch.testing.assert_close(weights[i, : len(y) + 1, : len(s)], w_alone[0], atol=1e-6, rtol=1e-5)
                assert torch.all(weights[i, :, len(s):] == 0)  # exactly zero on source pads


@pytest.mark.parametrize("score", ["bahdanau", "dot", "general"])
def test_attention_weights_zero_on_pads_and_sum_to_one(score):
    torch.manual_seed(0)
    att = Attention(score, 6, 6)
    memory = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ctx, w = att(torch.randn(3, 4, 6), att.keys(memory), memory, mask)
    assert ctx.shape == (3, 4, 6) and w.shape == (3, 4, 5)
    assert torch.all(w[~mask.unsqueeze(1).expand_as(w)] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(w[2, :, 0], torch.ones(4))
    ctx1, w1 = att(torch.randn(3, 6), att.keys(memory), memory, mask)  # one query per row
    assert ctx1.shape == (3, 6) and w1.shape == (3, 5)


def test_luong_general_is_dot_against_mapped_memory():
    torch.manual_seed(0)
    att = Attention("general", 4, 6)
    memory, q = torch.randn(2, 3, 6), torch.randn(2, 4)
    _, w = att(q, att.keys(memory), memory)
    expected = torch.softmax(torch.einsum("bq,qm,bsm->bs", q, att.key_proj.weight, memory), -1)
    torch.testing.assert_close(w, expected)


class _Looped(Seq2Seq):
    fuses_decoder = False  # force the step loop


def test_fused_training_path_has_the_step_loops_loss_and_gradients():
    src, tgt, b = _batch()
    fused = _model(attention="luong", score="general", dropout=0.0).train()
    looped = _Looped(fused.config).train()
    looped.load_state_dict(fused.state_dict())
    out_f, out_l = fused.loss(b), looped.loss(b)
    torch.testing.assert_close(out_f.loss, out_l.loss)
    out_f.loss.backward()
    out_l.loss.backward()
    for (name, p), q in zip(fused.named_parameters(), looped.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bridge_copies_both_directions_final_states():
    model = _model(attention="none", bidirectional=True, num_layers=2)
    _, _, b = _batch()
    with torch.no_grad():
        state = model.encode(b.inputs, b.lengths)
        _, final = model.encoder(model.src_embed(b.inputs), lengths=b.lengths)
    assert state.rnn.h.shape == (2, 4, 12)
    torch.testing.assert_close(state.rnn.h[1, :, :6], final.h[2])  # layer 2 forward
    torch.testing.assert_close(state.rnn.h[1, :, 6:], final.h[3])  # layer 2 backward


def test_index_select_picks_rows_of_everything():
    model = _model(attention="luong", input_feeding=True)
    _, _, b = _batch()
    state = model.encode(b.inputs, b.lengths)
    picked = state.index_select(torch.tensor([2, 2, 0]))
    assert picked.memory.shape[0] == 3 and picked.rnn.h.shape[1] == 3 and picked.feed.shape[0] == 3
    torch.testing.assert_close(picked.mask[0], state.mask[2])


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_beams_sharing_the_memory_decode_as_copies_do(variant):
    """repeat_interleave shares the memory; reordering beams within a sentence keeps it shared,
    dropping sentences picks memory rows, mixing sentences copies it; steps equal the copied state's."""
    model = _model(**variant)
    _, _, b = _batch()
    K = 3
    with torch.no_grad():
        state = model.encode(b.inputs, b.lengths)
        shared = state.repeat_interleave(K)
        copied = state.index_select(torch.arange(4).repeat_interleave(K))
        assert shared.group == K and copied.group == 1
        assert shared.memory.data_ptr() == state.memory.data_ptr()
        within = torch.tensor([2, 0, 0, 3, 5, 4, 6, 6, 8, 11, 9, 10])  # beams reordered inside each sentence
        leave = torch.tensor([0, 1, 2, 9, 9, 10])  # sentences 1 and 2 leave, 0 and 3 stay
        mixed = torch.tensor([0, 4, 5, 1])  # rows of different sentences: no longer grouped
        tokens = torch.tensor([[5], [6], [7], [8], [9], [10], [11], [12], [3], [4], [5], [6]])
        for index, expect_group, expect_rows in ((within, K, 4), (leave, K, 2), (mixed, 1, 4)):
            want_logits, copied = model.step(tokens[: copied.rnn.h.shape[1]], copied)
            got_logits, shared = model.step(tokens[: shared.rnn.h.shape[1]], shared)
            torch.testing.assert_close(got_logits, want_logits)
            copied, shared = copied.index_select(index), shared.index_select(index)
            assert shared.group == expect_group and shared.memory.shape[0] == expect_rows
        torch.testing.assert_close(model.step(tokens[:4], shared)[0], model.step(tokens[:4], copied)[0])
        if variant.get("input_feeding"):
            torch.testing.assert_close(shared.feed, copied.feed)


def test_teacher_forcing_below_one_feeds_own_predictions():
    model = _model(attention="bahdanau", teacher_forcing=0.0).train()
    _, _, b = _batch()
    torch.manual_seed(3)
    free = model.loss(b).loss
    model.config.teacher_forcing = 1.0
    forced = model.loss(b).loss
    assert not torch.allclose(free, forced)


def test_overfits_a_copy_task():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(3, 9, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist() for _ in range(32)]
    b = seq2seq_batch(src, src, 0, 0, 1, 2)
    model = build_model("seq2seq", dict(src_vocab_size=9, tgt_vocab_size=9, embedding_size=16, hidden_size=32,
                                        dropout=0.0, attention="luong"))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        out = model.loss(b)
        opt.zero_grad()
        (out.loss / out.num_tokens).backward()
        opt.step()
    assert float(out.loss.detach() / out.num_tokens) < 0.05


@pytest.mark.parametrize("bad", [dict(attention="luong", score="cosine"), dict(attention="glimpse"),
                                 dict(attention="none", input_feeding=True), dict(hidden_size=7),
                                 dict(tie_embeddings=True), dict(share_embeddings=True), dict(bridge="magic")])
def test_bad_configs_say_what_is_wrong(bad):
    with pytest.raises(ValueError):
        _model(**bad)
