#!/bin/sh
# Reproduces the shipped base checkpoint models/base-tiny: the tiny preset (5.6M parameters,
# bidirectional text encoder) predicting v, trained from scratch with the realtune CLI on fresh
# procedural figures (a new 32x32 figure for every one of the 224k examples drawn, rendered ahead
# in a worker thread), bf16 weights. Takes about 50 minutes on 2 cpu cores. The resumable
# training checkpoint stays in runs/base-tiny/checkpoint: add --resume to continue an
# interrupted run (the resumed run computes the same numbers as an uninterrupted one).
# Uses the addon at $REALTUNE_ADDON when set (e.g. build-cpu/Release/realtune.node).
set -e
cd "$(dirname "$0")/.."
exec node --import tsx lib/cli/run.ts train-base \
  --fresh --figures-seed 0 \
  --preset tiny --schedule cosine --prediction v --vocab 1024 \
  --steps 7000 --batch 32 \
  --lr 5e-4 --lr-schedule cosine --warmup 200 \
  --weight-decay 0.01 --clip-norm 1 --ema 0.999 --cond-dropout 0.1 \
  --seed 0 --ckpt-every 250 --sample-every 1000 --sample-steps 25 \
  --sample-prompts "a person with tan skin and short black hair wearing a red shirt and blue trousers, standing, in front of a green park, lit from the left|a person with tan skin and short black hair wearing a yellow shirt and blue trousers, standing, in front of a green park, lit from the left|a person with pale skin and long blonde hair wearing a blue shirt and a black skirt, sitting, in front of a pink wall, lit from the front|a bald person with dark skin wearing a green shirt and white shorts, running, on a plain grey background, lit from above" \
  --out runs/base-tiny --model-out models/base-tiny --save-dtype bf16 \
  "$@"
