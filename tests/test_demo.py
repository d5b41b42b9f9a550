"""`rnnkit demo --quick`: every shape trains on the bundled data and leaves its runs, plots and table."""
import json

from rnnkit.cli import main
from rnnkit.tasks.demo import _speakers


def test_speakers_are_read_from_play_text():
    text = "ROMEO:\nBut soft!\nWhat light?\n\nJULIET:\nAy me.\n\nROMEO:\nShe speaks.\n"
    assert _speakers(text, 1) == {"Romeo": ["But soft!", "What light?", "She speaks."]}
    assert set(_speakers(text, 2)) == {"Romeo", "Juliet"}


def test_quick_demo_trains_every_shape(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress", "--threads", "2"]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["shape"] for r in rows] == ["one-to-one per step", "one-to-one per step", "one-to-many",
                                          "many-to-one", "many-to-many", "seq2seq", "seq2seq + attention"]
    assert rows[0]["result"] == "predicts 'hello'"
    for run in ("char-lm", "speaker-lm", "classifier", "tagger", "seq2seq-none", "seq2seq-luong"):
        assert (tmp_path / run / "model.safetensors").is_file() and (tmp_path / run / "loss.png").is_file()
    assert (tmp_path / "classifier" / "confusion.png").is_file()
    assert len(list((tmp_path / "attention").glob("*.png"))) == 4
    out = capsys.readouterr().out
    assert "seq2seq + attention" in out and "reached" in out
