"""Distributed training: torchrun with 2 CPU processes (gloo) against one process with twice the batch.

One ``torchrun --standalone --nproc_per_node=2`` launch (module fixture) runs a small
script that trains tiny language models on separate sequences (including a last batch
with fewer rows than ranks) and on a TBPTT stream, and a cut-and-resumed stream run;
the tests compare it with the same training done here in one process.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rnnkit import distributed
from rnnkit.batching import SequenceBatches, StreamBatches, lm_batch
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.trainer import TrainConfig, Trainer

SCRIPT = textwrap.dedent('''
    import json
    import sys

    import torch

    from rnnkit import checkpoint as ckpt
    from rnnkit import distributed
    from rnnkit.batching import SequenceBatches, StreamBatches, lm_batch
    from rnnkit.models import LanguageModel, LanguageModelConfig
    from rnnkit.trainer import TrainConfig, Trainer

    SEQS = [[3 + (i * j + i) % 9 for j in range(2 + i % 7)] for i in range(37)]
    STREAM = torch.tensor([3 + (i * 7 + i // 5) % 9 for i in range(500)])


    def build(kind, batch, dropout=0.0):
        torch.manual_seed(0)
        model = LanguageModel(LanguageModelConfig(vocab_size=12, hidden_size=16, embedding_size=8,
                                                  num_layers=2 if dropout else 1, dropout=dropout))
        if kind == "seq":  # 37 sequences in global batches of 6: the last batch of an epoch has 1 row
            data = SequenceBatches(SEQS, batch, make_batch=lambda s, l: lm_batch(s, 0, 1, 2), seed=3, pool=2)
        else:
            data = StreamBatches(STREAM, batch, seq_len=6)
        return model, data


    def probe(model):  # a fixed validation number (rank 0 evaluates alone)
        out = model.loss(StreamBatches(STREAM, 4, seq_len=6).batch(0), None)
        return {"loss": float(out.loss) / int(out.num_tokens)}


    def train(kind, batch, steps, run_dir=None, resume=False, dropout=0.0, every=1, evaluate=None):
        model, data = build(kind, batch, dropout)
        config = TrainConfig(max_steps=steps, batch_size=batch, lr=0.02, eval_every=every, seed=0, device="cpu")
        trainer = Trainer(model, config, data, evaluate=evaluate, run_dir=run_dir, progress=False,
                          log=lambda s: None)
        history = trainer.fit(resume=resume)
        return [row["train_loss"] for row in history], model


    def plain(model):
        return {k: v.tolist() for k, v in model.state_dict().items()}


    def main(out, tmp, batch, steps):
        info = distributed.init_from_env("cpu")
        result = {"world_size": info.world_size}
        losses, model = train("seq", batch, steps)
        result["seq"] = {"losses": losses, "weights": plain(model)}
        losses, model = train("stream", batch, steps)
        result["stream"] = {"losses": losses, "weights": plain(model)}
        # uninterrupted vs cut at step 7 and resumed, with dropout (per-rank RNG) and rank-0 evaluation
        _, full = train("stream", batch, steps, f"{tmp}/full", dropout=0.3, every=5, evaluate=probe)
        train("stream", batch, 7, f"{tmp}/cut", dropout=0.3, every=5, evaluate=probe)
        cut_state = ckpt.load_training_state(f"{tmp}/cut") if info.is_main else None
        _, resumed = train("stream", batch, steps, f"{tmp}/cut", resume=True, dropout=0.3, every=5,
                           evaluate=probe)
        a, b = full.state_dict(), resumed.state_dict()
        result["resume"] = {"bitwise_equal": all(torch.equal(a[k], b[k]) for k in a),
                            "max_diff": max(float((a[k] - b[k]).abs().max()) for k in a)}
        if info.is_main:
            result["cut"] = {"step": cut_state["step"], "world_size": cut_state.get("world_size", 1),
                             "rng_ranks": len(cut_state.get("rng_ranks") or []),
                             "carry_shape": list(cut_state["carry"][0].shape)}
        # every rank holds the same weights
        gathered = distributed.all_gather_object(plain(resumed))
        result["ranks_equal"] = all(g == gathered[0] for g in gathered)
        # on_main: rank 0 runs it, every rank gets its result or raises its error
        result["on_main"] = distributed.on_main(lambda: distributed.info().rank + 41)
        try:
            distributed.on_main(lambda: int("rank 0 refuses"))
        except ValueError as e:
            result["on_main_error"] = str(e)
        pair = (result["on_main"], result.get("on_main_error"))
        result["on_main_all"] = distributed.all_gather_object(pair) == [pair] * 2
        if info.is_main:
            with open(out, "w") as f:
                json.dump(result, f)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
''')

B, STEPS = 3, 12  # per-rank batch; the single-process reference uses 2 * B


def _gloo_ok() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.fixture(scope="module")
def torchrun_result(tmp_path_factory):
    if not _gloo_ok():
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    tmp = tmp_path_factory.mktemp("ddp")
    script, out = tmp / "ddp_script.py", tmp / "result.json"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out), str(tmp), str(B), str(STEPS)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert p.returncode == 0, f"torchrun failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    return json.loads(out.read_text())


def _single(kind: str):
    """The same training in this process (one rank) with the global batch 2B."""
    ns: dict = {}
    exec(compile(SCRIPT, "ddp_script", "exec"), ns)
    assert not distributed.info().enabled
    return ns["train"](kind, 2 * B, STEPS)


@pytest.mark.parametrize("kind", ["seq", "stream"])
def test_two_ranks_follow_one_process_with_twice_the_batch(torchrun_result, kind):
    assert torchrun_result["world_size"] == 2
    losses, model = _single(kind)
    got = torchrun_result[kind]
    assert len(got["losses"]) == len(losses) == STEPS
    assert got["losses"] == pytest.approx(losses, rel=1e-4)
    assert losses[-1] < losses[0]  # it learned something
    for k, v in model.state_dict().items():
        torch.testing.assert_close(torch.tensor(got["weights"][k]), v, rtol=1e-4, atol=1e-5, msg=k)


def test_resume_under_torchrun_is_exact(torchrun_result):
    cut = torchrun_result["cut"]
    assert cut["step"] == 7 and cut["world_size"] == 2 and cut["rng_ranks"] == 2
    assert cut["carry_shape"][-2] == 2 * B  # the global carried state: both ranks' lanes
    assert torchrun_result["resume"]["bitwise_equal"], torchrun_result["resume"]
    assert torchrun_result["ranks_equal"]


def test_on_main_hands_rank_0_result_or_error_to_every_rank(torchrun_result):
    assert torchrun_result["on_main"] == 41 and "rank 0 refuses" in torchrun_result["on_main_error"]
    assert torchrun_result["on_main_all"]


# -- sharding, in one process ---------------------------------------------------

def test_sequence_shards_partition_the_global_batches():
    seqs = [[1 + i % 5] * (1 + i % 9) for i in range(37)]
    make = lambda s, l: lm_batch(s, 0, 1, 2)  # noqa: E731
    whole = SequenceBatches(seqs, 6, make_batch=make, seed=4, pool=2)
    shards = [SequenceBatches(seqs, 3, make_batch=make, seed=4, pool=2) for _ in range(2)]
    for r, s in enumerate(shards):
        s.shard(r, 2)
        assert len(s) == len(whole) == 7
    orders = whole._epoch_order(0) + whole._epoch_order(1)
    for s in shards:  # every rank computes the same global order
        assert s._epoch_order(0) + s._epoch_order(1) == orders
    its = [iter(s) for s in shards]
    for idx, batch in zip(orders, iter(whole)):
        parts = [next(it) for it in its]
        rows = sum(int(p.inputs.shape[0]) for p in parts if p.num_tokens > 0)
        assert rows == len(idx) == batch.inputs.shape[0]
        assert sum(p.num_tokens for p in parts) == batch.num_tokens
    assert [s.state_dict() for s in shards] == [whole.state_dict()] * 2


def test_stream_shards_are_the_global_lanes():
    ids = torch.arange(103)
    whole = StreamBatches(ids, 4, seq_len=5)
    parts = [StreamBatches(ids, 2, seq_len=5) for _ in range(2)]
    for r, p in enumerate(parts):
        p.shard(r, 2)
    assert torch.equal(torch.cat([p.lanes for p in parts]), whole.lanes)
    assert all(len(p) == len(whole) and p.dropped_tokens == whole.dropped_tokens for p in parts)
    b = whole.batch(3)
    assert torch.equal(torch.cat([p.batch(3).targets for p in parts]), b.targets)
    with pytest.raises(ValueError, match="too short"):
        StreamBatches(torch.arange(10), 2, seq_len=2).shard(0, 4)


def test_single_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.env_info().enabled and distributed.is_main()
    assert distributed.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    distributed.barrier()
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=5, hidden_size=8, num_layers=1, embedding_size=4))
    trainer = Trainer(model, TrainConfig(max_steps=2, device="cpu"), StreamBatches(torch.arange(50) % 5, 2, 4),
                      progress=False, log=lambda s: None)
    assert trainer.ddp is None and trainer.device == torch.device("cpu")
    trainer.fit()
    assert trainer.step == 2
