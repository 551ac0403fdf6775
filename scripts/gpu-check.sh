#!/usr/bin/env bash
# The GPU check (issue "Training", device item), in two halves:
#
#   bash scripts/gpu-check.sh prepare   # here: copy the release binary (pipeline-torch) and the data
#                                       # into .device/ (git-ignored, ~45 MB: carry it)
#   bash scripts/gpu-check.sh run       # on the GPU machine (no Rust there), from the repo root
#
# `run` prints: what libtorch sees (pipeline device), then trains Hippocampus 3d_fullres fold 0
# on the GPU for GPU_EPOCHS (default 8) x 250 iterations at the planned batch size, then predicts
# 10 raw cases with mirroring; it prints iterations/s, peak GPU memory (nvidia-smi), the
# pseudo-Dice reached and the validation Dice, and seconds per predicted case.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=.device
case "${1:-}" in
prepare)
  bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
  [ -x "$bin" ] || { echo "gpu-check: build first (make build)" >&2; exit 2; }
  [ -f ../shared/data/Task04_Hippocampus/dataset.json ] || { echo "gpu-check: ../shared/data/Task04_Hippocampus is absent" >&2; exit 2; }
  rm -rf "$dev"; mkdir -p "$dev/data"
  # pipeline-torch runs every command itself (the engine binary would hand over to it anyway),
  # so it alone travels: both binaries and the data would pass the 64 MiB carry limit.
  cp "$bin-torch" "$dev/pipeline-torch"
  cp -r ../shared/data/Task04_Hippocampus "$dev/data/"
  du -sh "$dev"
  echo "gpu-check: carry [\"$dev\"] and run: bash scripts/gpu-check.sh run"
  ;;
run)
  [ -x "$dev/pipeline-torch" ] || { echo "gpu-check: run 'prepare' first and carry $dev" >&2; exit 2; }
  LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  bin="$dev/pipeline-torch"
  echo "== pipeline device"; "$bin" device
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  cat > "$dev/gpu.yaml" <<YAML
name: gpu
dataset: data/Task04_Hippocampus
cache: cache
outputs: runs
device: cuda
params:
  seed: 0
  configurations: [3d_fullres]
  folds: [0]
stages:
  fingerprint: {uses: fingerprint}
  plan: {uses: plan, needs: [fingerprint]}
  normalize: {uses: normalize, needs: [plan]}
  resample: {uses: resample, needs: [normalize]}
  train:
    uses: train-fold
    needs: [resample]
    with:
      epochs: ${GPU_EPOCHS:-8}
      iterations_per_epoch: 250
      save_every: 4
YAML
  rm -rf "$dev/cache" "$dev/runs"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$dev/gpu-mem.log" 2>/dev/null &
  smi=$!
  t0=$(date +%s)
  "$bin" run -f "$dev/gpu.yaml"
  t1=$(date +%s)
  kill "$smi" 2>/dev/null || true
  tr="$dev/runs/gpu/train/configuration=3d_fullres/fold=0"
  python3 - "$tr" "$dev/gpu-mem.log" "$((t1 - t0))" <<'PY'
import json, sys
tr, mem, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = json.load(open(f"{tr}/log.json"))
its = 250 * len(log) / sum(e["epoch_seconds"] for e in log)
wait = 100 * sum(e["data_wait_seconds"] for e in log) / sum(e["epoch_seconds"] for e in log)
peak = max((int(l) for l in open(mem) if l.strip().isdigit()), default=0)
val = json.load(open(f"{tr}/validation/summary.json"))["foreground_mean"]["Dice"]
print(f"gpu-check: {len(log)} epochs x 250 it: {its:.1f} it/s, data wait {wait:.1f}% of epoch time, "
      f"peak GPU memory {peak} MiB (nvidia-smi, whole GPU)")
print(f"gpu-check: last pseudo-Dice {[round(d, 3) for _, d in log[-1]['pseudo_dice']]}, EMA {log[-1]['ema_fg_dice']:.3f}; "
      f"validation Dice (52 cases) {val:.4f}; whole pipeline {secs} s")
PY
  mkdir -p "$dev/in"; for f in $(ls "$dev"/data/Task04_Hippocampus/imagesTr/*.nii.gz | head -10); do cp "$f" "$dev/in/$(basename "$f" .nii.gz)_0000.nii.gz"; done
  t0=$(date +%s.%N)
  "$bin" predict --run "$dev/runs/gpu" -i "$dev/in" -o "$dev/pred" --folds 0 > /dev/null
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'gpu-check: predict with mirroring: {(float(sys.argv[2]) - float(sys.argv[1])) / 10:.3f} s per case (10 cases, incl. start-up)')" "$t0" "$t1"
  ;;
*)
  echo "usage: bash scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
