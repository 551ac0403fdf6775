#!/usr/bin/env bash
# Big CT (issue 15): predicting one 512x512xZ synthetic CT (0.8x0.8x2 mm, `pipeline synth`) with
# random weights, ours (`pipeline bench predict`) vs nnU-Net v2 (../shared/peer/nnunet_predict.py),
# back to back, without and with mirroring (8 passes), and the peak RSS of each whole process.
#
#   bash bench/bigct-predict.sh      # needs the peer (../shared/peer/setup.sh; run by bench/run.sh)
# BIGCT_Z (default 100) sets the slices. With BENCH_ROWS=FILE it appends its figures as rows of
# bench/RESULTS.md's table (bench/run.sh does); alone it prints them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
peer_dir="$here/../shared/peer"
peer_work="${PEER_WORK:-$HOME/.cache/nnunet-peer}"
out="$here/bench/out"
threads=$(nproc)
[ -x "$bin" ] || { echo "bigct-predict: build first (make build)" >&2; exit 2; }
[ -f "$peer_work/env.sh" ] || { echo "bigct-predict: the peer is not set up: bash ../shared/peer/setup.sh" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "bigct-predict: GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 2; }
# shellcheck disable=SC1091
source "$peer_work/env.sh"
mkdir -p "$out"
rows="${BENCH_ROWS:-$out/bigct-predict-rows.tsv}"
[ -n "${BENCH_ROWS:-}" ] || : > "$rows"
me=bigct-predict
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"

# The plans come from a synthetic training set (planned by ours; the peer predicts with the same
# plans.json, copied); the image is one 512x512xZ CT at 0.8x0.8x2 mm. Both sides read the raw
# image, preprocess (resample to the plans' spacing), slide the planned network over it and export
# the segmentation back to 512x512xZ. Peak RSS is the whole process's, both modes in one process.
bigct_z=${BIGCT_Z:-100}
bigct_plan_spacing=${BIGCT_PLAN_SPACING:-4.0,2.0,2.0}
bigct_plan_shape=${BIGCT_PLAN_SHAPE:-40,128,128}
echo "bigct-predict: 512x512x$bigct_z (plans from ~$bigct_plan_shape at $bigct_plan_spacing mm)"
bct="$out/bigct"
mkdir -p "$bct"
[ -f "$bct/train/dataset.json" ] || "$bin" synth "$bct/train" --cases 4 --modality CT --labels 2 \
  --spacing "$bigct_plan_spacing" --shape "$bigct_plan_shape" --spacing-jitter 0.1 --seed 3 --name Dataset950_BigCTPlans > /dev/null
[ -f "$bct/image/dataset.json" ] || "$bin" synth "$bct/image" --cases 1 --modality CT --labels 2 \
  --spacing 2.0,0.8,0.8 --shape "$bigct_z,512,512" --spacing-jitter 0 --seed 5 --name Dataset951_BigCT > /dev/null
cat > "$bct/plan.yaml" <<YAML
name: bigct
dataset: $bct/train
cache: $bct/cache
outputs: $bct/runs
device: cpu
stages:
  fingerprint: {uses: fingerprint}
  plan: {uses: plan, needs: [fingerprint], with: {num_folds: 2, configurations: [3d_fullres]}}
YAML
"$bin" run -f "$bct/plan.yaml" -j "$threads" > "$bct/plan.log" 2>&1
read -r bct_patch bct_spacing < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["configurations"]["3d_fullres"]; print("x".join(map(str, c["patch_size"])), "x".join(f"{s:.2f}" for s in c["spacing"]))' "$bct/runs/bigct/plan/plans.json")
read -r _ our_bct_kb < <(timed "$out/ours-bigct-predict.log" "$bin" bench predict "$bct/runs/bigct" --configuration 3d_fullres --images "$bct/image/imagesTr" --cases 1 --json)
ours_bct_no=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["seconds_per_case_no_mirroring"],2))' "$out/ours-bigct-predict.log")
ours_bct_tta=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["seconds_per_case_mirroring"],2))' "$out/ours-bigct-predict.log")
# The peer: the same plans.json as its "preprocessed" folder (its trainer wants the dataset folder
# to exist; nothing in it is read for prediction).
mkdir -p "$bct/peer-pre"
cp "$bct/runs/bigct/plan/plans.json" "$bct/peer-pre/nnUNetPlans.json"
cp "$bct/runs/bigct/plan/dataset.json" "$bct/peer-pre/dataset.json"
bct_name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dataset_name"])' "$bct/peer-pre/nnUNetPlans.json")
mkdir -p "$nnUNet_preprocessed/$bct_name/nnUNetPlans_3d_fullres" && touch "$nnUNet_preprocessed/$bct_name/nnUNetPlans_3d_fullres/.placeholder.b2nd"
read -r _ peer_bct_kb < <(THREADS=$threads timed "$out/peer-bigct-predict.log" python3 "$peer_dir/nnunet_predict.py" "$bct/peer-pre" 3d_fullres "$bct/image/imagesTr" 1)
peer_bct_no=$(sed -n 's/.*tta=False.*s_per_case=\([0-9.]*\).*/\1/p' "$out/peer-bigct-predict.log")
peer_bct_tta=$(sed -n 's/.*tta=True.*s_per_case=\([0-9.]*\).*/\1/p' "$out/peer-bigct-predict.log")
what="predict 512x512x$bigct_z CT (3d_fullres at ${bct_spacing} mm, patch $bct_patch)"
row "$what, no mirroring, s" "$ours_bct_no" "$peer_bct_no" "$(ratio "$peer_bct_no" "$ours_bct_no") faster"
row "$what, 8 mirrors, s" "$ours_bct_tta" "$peer_bct_tta" "$(ratio "$peer_bct_tta" "$ours_bct_tta") faster"
row "big-CT predict peak RSS, MB" "$((our_bct_kb / 1024))" "$((peer_bct_kb / 1024))" "$(ratio "$peer_bct_kb" "$our_bct_kb") less"

