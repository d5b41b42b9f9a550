# CUDA check: environment, the whole suite with CUDA as the default device, and speed probes for the CMUdict and MR sweeps
# usage: OUT=<folder for the logs> bash .gpudata/check.sh
export PYTHONPATH=$PWD/.gpudata/site PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch,sys;print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
python3 -c "import rnnkit,seqeval;print('rnnkit ok')"
S=".gpudata/cmudict/cmudict.dict --format cmudict --split 0.9,0.05,0.05 --split-seed 0 --embedding-size 128 --hidden 512 --layers 2 --attention luong --label-smoothing 0.1 --batch-size 128 --lr 0.002 --schedule cosine --min-lr-ratio 0.05 --precision bf16 --device cuda --threads 1 --no-progress"
( t0=$SECONDS; timeout 170 python3 -m rnnkit train seq2seq --train $S --dropout 0.2 --max-steps 400 --eval-every 400 --out /tmp/p-cmu > $OUT/probe-cmu.log 2>&1; echo "cmu probe $((SECONDS-t0)) s" >> $OUT/probe-cmu.log; cat /tmp/p-cmu/metrics.csv >> $OUT/probe-cmu.log ) &
M=".gpudata/mr_polarity --encoding latin-1 --min-freq 2 --embedding-size 300 --hidden 150 --bidirectional --pooling attention --dropout 0.5 --batch-size 32 --lr 0.002 --ensemble 5 --device cuda --threads 1 --no-progress"
( t0=$SECONDS; timeout 170 python3 -m rnnkit train classify --train $M --valid-split 0.1 --max-steps 600 --eval-every 300 --out /tmp/p-mr > $OUT/probe-mr.log 2>&1; echo "mr probe $((SECONDS-t0)) s" >> $OUT/probe-mr.log; cat /tmp/p-mr/metrics.csv >> $OUT/probe-mr.log ) &
timeout 220 python3 -m pytest -q -n 8 -p no:cacheprovider tests > $OUT/pytest.log 2>&1; echo "pytest rc $?"
wait
tail -25 $OUT/pytest.log; tail -6 $OUT/probe-cmu.log; tail -6 $OUT/probe-mr.log
