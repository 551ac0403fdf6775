#!/usr/bin/env bash
# Plans parity where nnU-Net plans the cascade: a synthetic CT set whose images are large enough
# that the 3d_fullres patch covers less than a quarter of the median image (§5.5), so nnU-Net's
# planner emits 3d_lowres (next_stage 3d_cascade_fullres) and 3d_cascade_fullres. Both sides
# fingerprint and plan the same raw files (default GPU-memory target, 8 GB); then
# scripts/compare_plans.py compares every configuration field by field, the lowres spacing search
# and the cascade links included. Nothing is preprocessed (planning only).
#
#   bash scripts/parity-lowres.sh      # needs the peer (../shared/peer/setup.sh)
# Environment: LOWRES_CASES (3), LOWRES_SHAPE (224,352,352), LOWRES_SPACING (1.5,0.8,0.8): the
# 3d_fullres patch must cover less than 1/8 of the median image, or the lowres median ends up
# less than 2x smaller and nnU-Net drops 3d_lowres again (§5.5).
# With BENCH_ROWS=FILE it appends its result as a row of bench/RESULTS.md's table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
peer_work="${PEER_WORK:-$HOME/.cache/nnunet-peer}"
out="$here/bench/out/lowres"
threads=$(nproc)
name=Dataset903_SynthLowres
cases=${LOWRES_CASES:-3}
shape=${LOWRES_SHAPE:-224,352,352}
spacing=${LOWRES_SPACING:-1.5,0.8,0.8}
[ -x "$bin" ] || { echo "parity-lowres: build first (make build)" >&2; exit 2; }
[ -f "$peer_work/env.sh" ] || { echo "parity-lowres: the peer is not set up: bash ../shared/peer/setup.sh" >&2; exit 2; }
# shellcheck disable=SC1091
source "$peer_work/env.sh"
mkdir -p "$out"
ds="$out/$name"
stamp="$cases $shape $spacing"
if [ ! -f "$ds/dataset.json" ] || [ "$(cat "$out/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$ds"
  "$bin" synth "$ds" --cases "$cases" --modality CT --channels 1 --labels 2 --spacing "$spacing" \
    --shape "$shape" --spacing-jitter 0.15 --seed 11 --name "$name"
  echo "$stamp" > "$out/stamp"
fi
cat > "$out/lowres.yaml" <<YAML
name: lowres
dataset: $ds
cache: $out/cache
outputs: $out/runs
device: cpu
stages:
  fingerprint: {uses: fingerprint}
  plan: {uses: plan, needs: [fingerprint], with: {num_folds: 2, configurations: [2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres]}}
YAML
echo "parity-lowres: ours (fingerprint + plan)"
rm -rf "$out/cache" "$out/runs"
"$bin" run -f "$out/lowres.yaml" -j "$threads" > "$out/ours-plan.log" 2>&1
echo "parity-lowres: nnU-Net (fingerprint + plan)"
ln -sfn "$ds" "$nnUNet_raw/$name"
rm -rf "${nnUNet_preprocessed:?}/$name"
nnUNetv2_extract_fingerprint -d 903 -np "$threads" > "$out/peer-plan.log" 2>&1
nnUNetv2_plan_experiment -d 903 >> "$out/peer-plan.log" 2>&1
peer="$nnUNet_preprocessed/$name/nnUNetPlans.json"
python3 - "$peer" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["configurations"]
assert "3d_lowres" in c and "3d_cascade_fullres" in c, f"nnU-Net planned no cascade here: {sorted(c)}"
PY
python3 scripts/compare_plans.py "$out/runs/lowres/plan/plans.json" "$peer" | tee "$out/plans.log" && plans=EQUAL || plans=DIFFER
lowres=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["configurations"]["3d_lowres"]; print("spacing", [round(s, 3) for s in c["spacing"]], "patch", c["patch_size"])' "$peer")
echo "parity-lowres: plans $plans (nnU-Net 3d_lowres: $lowres)"
if [ -n "${BENCH_ROWS:-}" ]; then
  printf '%s\t%s\t%s\t%s\n' "synthetic CT $cases x ~$shape at $spacing mm: plans incl. 3d_lowres + 3d_cascade_fullres vs nnU-Net" "$plans" "reference" "3d_lowres $lowres" >> "$BENCH_ROWS"
fi
[ "$plans" = EQUAL ]
