#!/bin/sh
# Reproduces the shipped evaluators in models/eval: the attribute classifier (whose features are
# the Fréchet distance's), the identity embedder and the caption scorer, each a small ViT trained
# on fresh procedural figures and validated on held-out figures and people (the numbers are in
# each file's metadata and printed at the end). About 40, 15 and 15 minutes on one cpu core.
# Uses the addon at $REALTUNE_ADDON when set.
set -e
cd "$(dirname "$0")/.."
node --import tsx lib/cli/run.ts train-evaluator --kind attributes --steps 4000 --batch 64 --seed 0 --out models/eval/attributes.safetensors "$@"
node --import tsx lib/cli/run.ts train-evaluator --kind identity --steps 1500 --batch 64 --seed 0 --out models/eval/identity.safetensors "$@"
node --import tsx lib/cli/run.ts train-evaluator --kind scorer --steps 1500 --batch 64 --seed 0 --out models/eval/scorer.safetensors "$@"
