#!/bin/sh
# Reproduces the shipped base checkpoint models/base-tiny: the tiny preset trained from scratch
# with the realtune CLI on 4000 procedural figures (32x32), bf16 weights. Takes about 30 to 45 minutes
# on 2 cpu cores. The resumable training checkpoint stays in runs/base-tiny/checkpoint
# (add --resume to continue an interrupted run).
# Uses the addon at $REALTUNE_ADDON when set (e.g. build-cpu/Release/realtune.node).
set -e
cd "$(dirname "$0")/.."
exec node --import tsx lib/cli/run.ts train-base \
  --figures 4000 --figures-seed 0 \
  --preset tiny --schedule cosine --vocab 1024 \
  --steps 4000 --batch 16 \
  --lr 5e-4 --lr-schedule cosine --warmup 100 \
  --weight-decay 0.01 --clip-norm 1 --ema 0.999 --cond-dropout 0.1 \
  --seed 0 --ckpt-every 200 \
  --out runs/base-tiny --model-out models/base-tiny --save-dtype bf16 \
  "$@"
