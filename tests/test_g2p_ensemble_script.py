"""scripts/g2p_ensemble.py: a run averaged with itself scores what the run scored alone."""
import json
import random
import subprocess
import sys
from pathlib import Path

from rnnkit.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "g2p_ensemble.py"


def test_a_run_averaged_with_itself_scores_as_the_run(tmp_path):
    rng = random.Random(0)
    letters = {"a": "AE1", "b": "B", "c": "K", "d": "D", "e": "EH0", "o": "OW1", "t": "T"}
    words = sorted({"".join(rng.choice(list(letters)) for _ in range(rng.randint(2, 5))) for _ in range(300)})
    (tmp_path / "cmudict.dict").write_text("".join(f"{w} {' '.join(letters[c] for c in w)}\n" for w in words),
                                           encoding="utf-8")
    run = tmp_path / "g"
    assert main(["train", "seq2seq", "--train", str(tmp_path / "cmudict.dict"), "--max-steps", "30",
                 "--hidden", "32", "--embedding-size", "16", "--no-progress", "--threads", "1", "--lr", "0.01",
                 "--batch-size", "16", "--dropout", "0", "--beam", "3", "--out", str(run)]) == 0
    alone = json.loads((run / "report.json").read_text())
    assert 0 < alone["wer"] < 1  # partly learnt: a score that two decoders could disagree on
    p = subprocess.run([sys.executable, str(SCRIPT), str(run), str(run), "--split", "test", "--beam", "3"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    together = json.loads(p.stdout)
    assert (together["wer"], together["per"], together["words"]) == (alone["wer"], alone["per"], alone["words"])
