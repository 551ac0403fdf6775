#!/usr/bin/env bash
# Real-data integration test (`make test-real`, not in CI's default path: about an hour on 2 cores):
# the CPU-budget Hippocampus pipeline (examples/hippocampus-cpu.yaml: 2d fold 0, 20 epochs x 50
# iterations, batch 32, the budget of the peer's nnUNetTrainer_CPUBudget) must reach a validation
# foreground Dice >= the peer's - 0.01. The peer's figure is read from its own run when one exists
# (bench/run.sh with BENCH_TRAIN=1 trains it), else taken from ../shared/peer/README.md (0.8388).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
data=../shared/data/Task04_Hippocampus
if [ ! -f "$data/dataset.json" ]; then
  msg="$data is absent; the real-data test needs the shared MSD Hippocampus dataset"
  if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then echo "error: $msg (CI=true: this test must run)" >&2; exit 1; fi
  echo "SKIP: $msg"
  exit 0
fi
"$bin" verify "$data"
t0=$(date +%s)
"$bin" run -f examples/hippocampus-cpu.yaml
t1=$(date +%s)
summary=runs/hippocampus-cpu/train/configuration=2d/fold=0/validation/summary.json
peer_summary="${PEER_WORK:-$HOME/.cache/nnunet-peer}/res/Dataset004_Hippocampus/nnUNetTrainer_CPUBudget__nnUNetPlans__2d/fold_0/validation/summary.json"
python3 - "$summary" "$peer_summary" "$((t1 - t0))" <<'PY'
import json, os, sys
ours_path, peer_path, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ours = json.load(open(ours_path))
d = ours["foreground_mean"]["Dice"]
if os.path.isfile(peer_path):
    peer, src = json.load(open(peer_path))["foreground_mean"]["Dice"], peer_path
else:
    peer, src = 0.8388, "../shared/peer/README.md (no local peer run)"
per = {k: round(v["Dice"], 4) for k, v in ours["mean"].items()}
print(f"hippocampus-cpu: validation Dice {d:.4f} per label {per}; peer {peer:.4f} ({src}); pipeline {secs} s")
if d < peer - 0.01:
    print(f"FAIL: ours {d:.4f} < peer {peer:.4f} - 0.01")
    sys.exit(1)
print("PASS: ours >= peer - 0.01")
PY
