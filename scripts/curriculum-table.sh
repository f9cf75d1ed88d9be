#!/bin/sh
# The curriculum's result table in the README (HG-DPO's Table 2 on our data): pools, SDRecon, the
# three stages and the ablations from the shipped base, evaluated on 256 held-out prompts.
# About 75 minutes on 2 cores; resumable (run it again). The sweep that chose lr and beta:
#   node --import tsx scripts/dpo-sweep.ts runs/curriculum-table
set -e
node bin/realtune.js curriculum --real-figures 128 --pool-size 12 --sampling-steps 20 --table \
  --eval-prompts 256 --eval-steps 20 --out runs/curriculum-table "$@"
