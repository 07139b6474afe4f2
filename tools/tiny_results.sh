#!/usr/bin/env bash
# Issue 18's results table on the sample (docs/training.md, "Results on the sample"): zero-shot,
# FineCLIPER-tiny and DFER-CLIP-tiny on the shipped tiny-synthetic CLIP, fold 1 and all 5 folds,
# and FineCLIPER-tiny on fold 1 with seeds 1 and 2. Needs shards/sample (make demo, or
# make preprocess DATASET=sample). About 25 min on 2 cores. Writes runs/tiny-results/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=runs/tiny-results
mkdir -p "$OUT"
$PY -m trainer.zero_shot --dataset sample --model tiny --fold all --set runs_dir=$OUT
$PY -m trainer.train --dataset sample --model tiny-dferclip --fold all --shards shards/sample --set runs_dir=$OUT
$PY -m trainer.train --dataset sample --model tiny --fold all --shards shards/sample --set runs_dir=$OUT
for seed in 1 2; do
  $PY -m trainer.train --dataset sample --model tiny --fold 1 --shards shards/sample --set seed=$seed \
    --set runs_dir=$OUT/seed$seed --name sample-tiny
done
python tools/tiny_results_table.py --runs "$OUT"
