#!/bin/sh
# The curriculum's result table in the README (HG-DPO's Table 2 on our data): pools, SDRecon, the
# three stages and the ablations from the shipped base, evaluated on 256 held-out prompts.
# About 75 minutes on 2 cores from nothing; resumable (run it again). Extra flags go to the
# command; OUT names the run directory, e.g. the README's second table:
#   OUT=runs/curriculum-lr1e-3 sh scripts/curriculum-table.sh --lr 1e-3
# The sweep behind beta: node --import tsx scripts/dpo-sweep.ts runs/curriculum-table
set -e
node bin/realtune.js curriculum --real-figures 128 --pool-size 12 --sampling-steps 20 --table \
  --eval-prompts 256 --eval-steps 20 --out "${OUT:-runs/curriculum-table}" "$@"
