"""`rnnkit inspect`: traced hidden states equal the model's own, features are what they say, the CLI draws."""
import json

import pytest
import torch

from rnnkit.cli import main
from rnnkit.nn import Recurrent
from rnnkit.tasks.inspect import features, trace, unit_features


@pytest.mark.parametrize("mode,layers", [("lstm", 2), ("gru", 1), ("rnn_tanh", 2)])
def test_traced_hidden_states_equal_the_fused_layer(mode, layers):
    torch.manual_seed(0)
    rnn = Recurrent(mode, 5, 7, num_layers=layers)
    x = torch.randn(9, 5)
    with torch.no_grad():
        out, state = rnn(x.unsqueeze(0))
        traced = trace(rnn, x)
    torch.testing.assert_close(traced[-1]["hidden"], out[0], atol=1e-5, rtol=1e-5)
    if mode == "lstm":
        torch.testing.assert_close(traced[-1]["cell"][-1], state.c[-1, 0], atol=1e-5, rtol=1e-5)
        assert all(0 <= float(traced[0][g].min()) and float(traced[0][g].max()) <= 1
                   for g in ("input gate", "forget gate", "output gate"))


def test_features_of_a_small_text():
    f = features(list('ab "c"\nd'), chars=True)
    assert f["inside quotes"][3:5] == [1.0, 1.0] and f["inside quotes"][0] == 0.0
    assert f["position in line"] == [0, 1, 2, 3, 4, 5, 6, 0]
    assert f["start of line"] == [1, 0, 0, 0, 0, 0, 0, 1]
    assert f["space or newline"] == [0, 0, 1, 0, 0, 0, 1, 0]


def test_unit_features_finds_the_unit_that_counts():
    t = torch.arange(20, dtype=torch.float32)
    hidden = torch.stack([torch.randn(20), t / 20, -t / 20], dim=1)  # unit 1 rises, unit 2 falls
    corr = unit_features(hidden, {"position": t.tolist()}, top=2)
    assert {u for u, _ in corr["position"]} == {1, 2}
    assert all(abs(r) == pytest.approx(1.0, abs=1e-5) for _, r in corr["position"])


def test_inspect_cli_draws_and_lists(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text('a "quoted" line\nand another one\n' * 40, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "lm", "--data", str(text), "--out", str(run), "--max-steps", "10", "--hidden", "12",
                 "--layers", "1", "--seq-len", "16", "--batch-size", "4", "--no-progress", "--sample-length", "0",
                 "--threads", "1"]) == 0
    capsys.readouterr()
    png = tmp_path / "i.png"
    assert main(["inspect", str(run), "--text", 'a "quoted" line\\nand', "--units", "0,3", "--out", str(png),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["units"] == [0, 3] and result["tokens"] == 19 and "position in line" in result["correlations"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["inspect", str(run), "--text", "xyz", "--out", str(png)]) == 2
    assert "vocabulary lacks" in capsys.readouterr().err
