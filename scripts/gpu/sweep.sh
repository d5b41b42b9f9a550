# CMUdict and MR configuration sweep, all jobs side by side on the one GPU
# usage: LIM=<seconds per job> CE=<CMU epochs> bash .gpudata/sweep.sh
export PYTHONPATH=$PWD/.gpudata/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /dev/null 2>&1
mkdir -p /tmp/sw
S="--train .gpudata/cmudict/cmudict.dict --format cmudict --split 0.9,0.05,0.05 --split-seed 0 --embedding-size 128 --layers 2 --attention luong --label-smoothing 0.1 --batch-size 128 --lr 0.002 --schedule cosine --min-lr-ratio 0.05 --precision bf16 --device cuda --threads 1 --no-progress --beam 5"
M="--train .gpudata/mr_polarity --encoding latin-1 --folds 10 --min-freq 2 --embedding-size 300 --hidden 150 --bidirectional --dropout 0.5 --batch-size 32 --lr 0.002 --ensemble 5 --device cuda --threads 1 --no-progress"
job() { name=$1; shift; ( timeout $LIM python3 -m rnnkit train "$@" --out /tmp/sw/$name > /tmp/sw/$name.log 2>&1 ) & }
job c1-d2      seq2seq $S --hidden 512 --dropout 0.2 --epochs $CE
job c2-d3      seq2seq $S --hidden 512 --dropout 0.3 --epochs $CE
job c3-d3-if   seq2seq $S --hidden 512 --dropout 0.3 --epochs $CE --input-feeding
job c4-h384-d2 seq2seq $S --hidden 384 --dropout 0.2 --epochs $((CE*16/10))
job c5-d3-bah  seq2seq $S --hidden 512 --dropout 0.3 --epochs $CE --attention bahdanau
job m1-ctrl  classify $M --pooling attention --valid-split 0.1 --epochs 15 --patience 3
job m2-vs0-e7 classify $M --pooling attention --valid-split 0 --epochs 7
job m3-vs0-e8cos classify $M --pooling attention --valid-split 0 --epochs 8 --schedule cosine --min-lr-ratio 0.05
job m4-vs0-e6 classify $M --pooling attention --valid-split 0 --epochs 6
sleep 5; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait
cd /tmp/sw && tar czf $OUT/sweep.tgz $(ls -d *.log */metrics.csv */report.json */cv.json */fold-*/report.json 2>/dev/null)
for f in /tmp/sw/c*; do [ -d $f ] && echo "$f $(tail -1 $f/metrics.csv | cut -c1-200)"; done
for f in /tmp/sw/m*.log; do echo "$f"; grep -E "cross-validation|^fold" $f | tail -2; done
grep -h "test:" /tmp/sw/c*.log
