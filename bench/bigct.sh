#!/usr/bin/env bash
# Big CT (issue 15): verify + fingerprint + plan + preprocess at CT size, ours vs nnU-Net v2 (the
# peer), cold caches on both sides, back to back: 10 synthetic CT cases of ~160x320x320 (1.5 x
# 0.8 x 0.8 mm, spacing jittered per case; `pipeline synth`), 2d + 3d_fullres.
#   - wall and peak RSS of the whole process tree (GNU time);
#   - files per case and configuration in the preprocessed stores (ours:
#     runs/.../resample/configuration=C/*.zarr without the root zarr.json; nnU-Net:
#     nnUNetPlans_C/), target <= 4, and every file of the whole output (ours: the cache, its
#     bookkeeping included; nnU-Net: nnUNet_preprocessed/DatasetXXX);
#   - our arrays against nnU-Net's, read with zarr-python 3 (scripts/compare_preprocessed.py).
#
#   bash bench/bigct.sh          # needs the peer (../shared/peer/setup.sh; run by bench/run.sh)
# With BENCH_ROWS=FILE it appends its figures as rows of bench/RESULTS.md's table (bench/run.sh
# does); BENCH_MEMORY=SIZE passes `--memory SIZE` to our run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
peer_work="${PEER_WORK:-$HOME/.cache/nnunet-peer}"
out="$here/bench/out"
big="$out/bigct-pre"
threads=$(nproc)
name=Dataset902_BigCT
[ -x "$bin" ] || { echo "bigct: build first (make build)" >&2; exit 2; }
[ -f "$peer_work/env.sh" ] || { echo "bigct: the peer is not set up: bash ../shared/peer/setup.sh" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "bigct: GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 2; }
# shellcheck disable=SC1091
source "$peer_work/env.sh"
# compare_preprocessed.py reads our stores with zarr-python 3.
python3 -c "import zarr,sys; sys.exit(0 if int(zarr.__version__.split('.')[0]) >= 3 else 1)" 2>/dev/null || python3 -m pip install -q "zarr>=3"
mkdir -p "$big"
rows="${BENCH_ROWS:-$big/rows.tsv}"
[ -n "${BENCH_ROWS:-}" ] || : > "$rows"
me=bigct
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"

if [ ! -f "$big/$name/dataset.json" ]; then
  echo "bigct: synthesizing the dataset (pipeline synth)"
  "$bin" synth "$big/$name" --cases 10 --modality CT --labels 2 --spacing 1.5,0.8,0.8 --shape 160,320,320 \
    --spacing-jitter 0.15 --seed 11 --name "$name" > "$big/synth.log" 2>&1
fi
bash scripts/preprocess-yaml.sh bigct "$big/$name" "$big/cache" "$big/runs" > "$big/bigct.yaml"
memory=()
[ -z "${BENCH_MEMORY:-}" ] || memory=(--memory "$BENCH_MEMORY")
echo "bigct: ours (cold cache)"
rm -rf "$big/cache" "$big/runs"
sync
read -r our_s our_kb < <(timed "$big/ours.log" "$bin" run -f "$big/bigct.yaml" -j "$threads" "${memory[@]}")
echo "bigct: nnU-Net (plan_and_preprocess -np $threads -c 2d 3d_fullres --verify_dataset_integrity)"
ln -sfn "$big/$name" "$nnUNet_raw/$name"
rm -rf "${nnUNet_preprocessed:?}/$name"
sync
read -r peer_s peer_kb < <(timed "$big/peer.log" nnUNetv2_plan_and_preprocess -d 902 -c 2d 3d_fullres -np "$threads" -npfp "$threads" --verify_dataset_integrity)
row "big CT (10 x ~160x320x320, 2d + 3d_fullres): verify + fingerprint + plan + preprocess, wall s" "$our_s" "$peer_s" "$(ratio "$peer_s" "$our_s") faster"
row "big CT preprocess peak RSS, MB" "$((our_kb / 1024))" "$((peer_kb / 1024))" "$(ratio "$peer_kb" "$our_kb") less"
cases=$(find "$big/$name/imagesTr" -name '*_0000.nii.gz' | wc -l)
our_files=$(find "$big"/runs/bigct/resample/configuration=*/ -path '*.zarr/*' -type f ! -path '*.zarr/zarr.json' | wc -l)
peer_files=$(find "$nnUNet_preprocessed/$name"/nnUNetPlans_2d "$nnUNet_preprocessed/$name"/nnUNetPlans_3d_fullres -type f | wc -l)
per() { python3 -c "import sys; print(round(int(sys.argv[1]) / (2 * int(sys.argv[2])), 2))" "$1" "$cases"; }
row "big CT files per case and configuration in the preprocessed store" "$(per "$our_files")" "$(per "$peer_files")" "target <= 4"
row "big CT files in the whole output (ours: the cache incl. manifests, refs, locks)" "$(find -L "$big/cache" -type f | wc -l)" "$(find "$nnUNet_preprocessed/$name" -type f | wc -l)" ""
mkdir -p "$big/ours-pre"
for c in 2d 3d_fullres; do ln -sfn "$big/runs/bigct/resample/configuration=$c/nnUNetPlans_$c.zarr" "$big/ours-pre/nnUNetPlans_$c"; done
if python3 scripts/compare_preprocessed.py "$big/ours-pre" "$nnUNet_preprocessed/$name" > "$big/parity.log" 2>&1; then parity=PASS; else parity="FAIL (see bench/out/bigct-pre/parity.log)"; fi
row "big CT preprocessed arrays vs nnU-Net, read with zarr-python $(python3 -c 'import zarr; print(zarr.__version__)') (data 1e-3, labels 99.9%)" "$parity" "reference" ""
tail -3 "$big/parity.log"
