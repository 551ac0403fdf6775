#!/usr/bin/env bash
# Prints a pipeline file that preprocesses only (fingerprint, plan, normalize, resample of 2d and
# 3d_fullres) on the CPU; used by bench/run.sh and scripts/parity-synth.sh.
#   bash scripts/preprocess-yaml.sh NAME DATASET CACHE OUTPUTS > FILE
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: preprocess-yaml.sh NAME DATASET CACHE OUTPUTS" >&2; exit 2; }
cat <<YAML
name: $1
dataset: $2
cache: $3
outputs: $4
device: cpu
params:
  configurations: [2d, 3d_fullres]
stages:
  fingerprint: {uses: fingerprint}
  plan: {uses: plan, needs: [fingerprint]}
  normalize: {uses: normalize, needs: [plan]}
  resample: {uses: resample, needs: [normalize]}
YAML
