# The training and precision tests, then the whole suite, with CUDA as the default device
# usage: OUT=<folder for the logs> bash .gpudata/check2.sh
export PYTHONPATH=$PWD/.gpudata/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /dev/null 2>&1
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_trainer.py tests/test_precision.py 2>&1 | tail -4
timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider tests > $OUT/pytest2.log 2>&1; echo "suite rc $?"
grep -E "passed|failed" $OUT/pytest2.log | tail -2; grep FAILED $OUT/pytest2.log
