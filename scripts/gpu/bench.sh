# The prepared GPU benchmark, benchmarks/gpu.py: training vs cuDNN, beam search, sampling, every cell, exact resume
# usage: OUT=<folder for gpu.json and gpu.log> bash scripts/gpu/bench.sh [options of benchmarks/gpu.py]
# (from the repository root; or from the copy in .gpudata/, as the other scripts here)
export PYTHONPATH=$PWD/.gpudata/site PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}; mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /dev/null 2>&1 || export PYTHONPATH=$PWD/src:$PYTHONPATH
nvidia-smi -L
timeout 570 python3 benchmarks/gpu.py --out "$OUT/gpu.json" "$@" > "$OUT/gpu.log" 2>&1; echo "gpu.py rc $?"
tail -60 "$OUT/gpu.log"
