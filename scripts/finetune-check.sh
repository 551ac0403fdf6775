#!/usr/bin/env bash
# Fine-tuning from an nnU-Net checkpoint (issue 16): trains one epoch of Hippocampus 2d fold 0
# twice with the same seed, from scratch and from `pretrained: CHECKPOINT`, and prints both
# first-epoch pseudo-Dice values. A checkpoint that was loaded starts far above a fresh start.
#
#   scripts/finetune-check.sh CHECKPOINT.pth            # an nnU-Net checkpoint_final.pth
#   scripts/finetune-check.sh --export RUN              # export RUN with --format nnunet first
#
# Environment: DATASET (default ../shared/data/Task04_Hippocampus), OUT (default
# bench/out/finetune), CACHE (default cache/, shared with examples/ablation.yaml, so the
# preprocessing is reused), CONFIGURATION (default 2d). Prints one Markdown table row per start.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bin="${PIPELINE_BIN:-$CARGO_TARGET_DIR/release/pipeline}"
ds="$(realpath "${DATASET:-../shared/data/Task04_Hippocampus}")"
out="$(realpath -m "${OUT:-bench/out/finetune}")"
cache="$(realpath -m "${CACHE:-cache}")"
cfg="${CONFIGURATION:-2d}"
mkdir -p "$out"

if [ "${1:-}" = "--export" ]; then
  run="${2:?usage: scripts/finetune-check.sh --export RUN}"
  rm -rf "$out/exported"
  "$bin" export "$run" --format nnunet -o "$out/exported"
  ck="$out/exported/fold_0/checkpoint_final.pth"
else
  ck="$(realpath "${1:?usage: scripts/finetune-check.sh CHECKPOINT.pth | --export RUN}")"
fi
[ -f "$ck" ] || { echo "error: no checkpoint at $ck" >&2; exit 1; }

cat > "$out/finetune.yaml" <<YAML
name: finetune
dataset: $ds
cache: $cache
outputs: $out/runs
executor: local
device: cpu
params:
  seed: 0
  configurations: [$cfg]
  folds: [0]
stages:
  fingerprint: {uses: fingerprint}
  plan: {uses: plan, needs: [fingerprint]}
  normalize: {uses: normalize, needs: [plan]}
  resample: {uses: resample, needs: [normalize]}
  train:
    uses: train-fold
    needs: [resample]
    with: {epochs: 1, iterations_per_epoch: 50, val_iterations: 10, batch_size: 32, validate: false}
variants:
  fresh: {}
  pretrained: {train.pretrained: "$ck"}
YAML
"$bin" run -f "$out/finetune.yaml"
echo
echo "| start (same seed, 1 epoch x 50 iterations, $cfg fold 0) | first-epoch pseudo-Dice (mean fg) | per label | weights loaded / fresh |"
echo "|---|---|---|---|"
for v in fresh pretrained; do
  python3 - "$out/runs/finetune/$v/train/configuration=$cfg/fold=0" "$v" <<'PY'
import json, os, sys
d, v = sys.argv[1], sys.argv[2]
t = json.load(open(os.path.join(d, "training.json")))
last = t["last"]
per = ", ".join(f"{k} {x:.3f}" for k, x in last["pseudo_dice"])
p = os.path.join(d, "pretrained.json")
w = "-"
if os.path.exists(p):
    info = json.load(open(p))
    w = f"{info['loaded']} / {len(info['fresh'])}"
print(f"| {v} | {last['mean_fg_dice']:.3f} | {per} | {w} |")
PY
done
