#!/bin/sh
# Reproduces the shipped evaluators in models/eval: the attribute classifier (whose features are
# the Fréchet distance's), the identity embedder and the caption scorer, each a small ViT trained
# on fresh procedural figures and validated on held-out figures and people (the numbers are in
# each file's metadata and printed at the end). About 10 minutes each on 2 cpu cores.
# Uses the addon at $REALTUNE_ADDON when set.
set -e
cd "$(dirname "$0")/.."
for kind in attributes identity scorer; do
  node --import tsx lib/cli/run.ts train-evaluator --kind "$kind" --steps 1500 --batch 64 --seed 0 --out "models/eval/$kind.safetensors" "$@"
done
