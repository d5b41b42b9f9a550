"""Copy a run trained with ``--ema`` as a run whose model is its raw (last trained) weights.

``model.safetensors`` of an ``--ema`` run holds the moving average; ``last/state.safetensors`` keeps the
weights training ran on. This writes a run folder that rebuilds the model from those, so both can be
scored the same way (docs/runs.md):

    python scripts/raw_weights.py runs/cmudict-std-j runs/cmudict-std-j-raw
    rnnkit evaluate runs/cmudict-std-j-raw --data test.txt --json
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rnnkit import checkpoint as ckpt
from rnnkit.errors import RnnkitError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder with a last/ checkpoint")
    ap.add_argument("out", type=Path, help="the run folder to write (must not exist)")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"raw_weights: {args.out} exists; name a new folder")
    try:
        state = ckpt.load_training_state(args.run)
    except RnnkitError as e:  # no last/ checkpoint, or a damaged one: one line, no traceback
        raise SystemExit(f"raw_weights: {e}") from None
    if "ema" not in state:
        raise SystemExit(f"raw_weights: {args.run} was trained without --ema: its model.safetensors holds its "
                         "weights already")
    args.out.mkdir(parents=True)
    for f in args.run.iterdir():
        if f.is_file() and f.suffix == ".json" and f.name != "report.json":  # the model's, not its scores
            shutil.copy2(f, args.out / f.name)
    ckpt.save_tensors(args.out / ckpt.WEIGHTS, state["model"])
    print(f"{args.out}: the weights of {args.run} at step {state['step']} (not the average)")


if __name__ == "__main__":
    main()
