#!/bin/sh
# Reproduces the shipped hypernetwork models/hypernet-tiny/hypernet.safetensors for the shipped
# base models/base-tiny (HyperDreamBooth, SPEC section 3):
#   1. pre-optimisation: LiDB weights for 64 training identities (4 views each, 120 steps),
#      about 20 minutes on 2 cpu cores, in runs/preopt (resumable: run it again);
#   2. the hypernetwork trained to predict them from one view (600 steps of 4 identities, half
#      of them fresh identities with the diffusion term only; the image encoder starts from the
#      shipped attribute classifier's), about 10 minutes, in runs/hypernet (resumable), then
#      copied into models/hypernet-tiny.
# Uses the addon at $REALTUNE_ADDON when set. Extra arguments go to train-hypernet.
set -e
cd "$(dirname "$0")/.."
node --import tsx lib/cli/run.ts personalize preopt --identities 64 --steps 120 --out runs/preopt --quiet
node --import tsx lib/cli/run.ts personalize train-hypernet --preopt runs/preopt --out runs/hypernet --quiet "$@"
mkdir -p models/hypernet-tiny
cp runs/hypernet/hypernet.safetensors models/hypernet-tiny/hypernet.safetensors.tmp
mv models/hypernet-tiny/hypernet.safetensors.tmp models/hypernet-tiny/hypernet.safetensors
ls -l models/hypernet-tiny/hypernet.safetensors
