#!/bin/sh
# Reproduces the shipped DSD adapter, models/dsd-tiny/dsd.safetensors (Diffusion Self-Distillation
# for models/base-tiny), and the two ablation adapters `npm run bench -- dsd` compares it with.
# Every step resumes when run again. About 60 min on 2 cores.
set -e
cd "$(dirname "$0")/.."
export REALTUNE_NUM_THREADS="${REALTUNE_NUM_THREADS:-2}"
realtune() { node --import tsx lib/cli/run.ts "$@"; }

# 192 people x 6 contexts drawn by the base from words, curated by the identity embedder.
realtune dsd pairs --out runs/dsd/pairs --identities 192 --views 6 --threshold 0.85 --quiet
# The same images, every pair kept (the ablation without curation).
realtune dsd pairs --out runs/dsd/pairs-uncurated --pool runs/dsd/pairs/pool --no-curation --quiet

realtune dsd train --pairs runs/dsd/pairs --out runs/dsd/self --quiet
realtune dsd train --real-pairs 256 --out runs/dsd/real --quiet
realtune dsd train --pairs runs/dsd/pairs-uncurated --out runs/dsd/uncurated --quiet

mkdir -p models/dsd-tiny
cp runs/dsd/self/dsd.safetensors models/dsd-tiny/dsd.safetensors
echo "models/dsd-tiny/dsd.safetensors updated; npm run bench -- dsd measures it"
