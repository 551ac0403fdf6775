#!/usr/bin/env bash
# Self-configuration parity on a synthetic anisotropic CT dataset, against nnU-Net v2 (the peer):
# spacing 4.0 x 0.8 x 0.8 mm (5x out of plane, jittered per case), so nnU-Net's anisotropy rules are
# exercised: the 10th-percentile target spacing along z and separate-z resampling (cubic in plane,
# nearest along z). Both sides plan and preprocess the same raw files; then
#   - scripts/compare_plans.py: plans field by field (spacing, patch, batch, network, resampling kwargs)
#   - scripts/compare_preprocessed.py: data within 1e-3, labels >= 99.9% identical, shapes, bboxes
#   - resampling throughput: output voxels per second of the preprocessing step alone (normalize +
#     resample + write; fingerprint and plan done before the clock starts), ours vs nnU-Net's.
#
#   bash scripts/parity-synth.sh            # needs the peer (../shared/peer/setup.sh; run by bench/run.sh)
# With BENCH_ROWS=FILE it appends its figures as rows of bench/RESULTS.md's table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
peer_work="${PEER_WORK:-$HOME/.cache/nnunet-peer}"
out="$here/bench/out/synth"
threads=$(nproc)
name=Dataset901_SynthAniso
[ -x "$bin" ] || { echo "parity-synth: build first (make build)" >&2; exit 2; }
[ -f "$peer_work/env.sh" ] || { echo "parity-synth: the peer is not set up: bash ../shared/peer/setup.sh" >&2; exit 2; }
# shellcheck disable=SC1091
source "$peer_work/env.sh"
# compare_preprocessed.py reads our stores with zarr-python 3.
python3 -c "import zarr,sys; sys.exit(0 if int(zarr.__version__.split('.')[0]) >= 3 else 1)" 2>/dev/null || python3 -m pip install -q "zarr>=3"
mkdir -p "$out"
ds="$out/$name"
if [ ! -f "$ds/dataset.json" ]; then
  "$bin" synth "$ds" --cases 24 --modality CT --channels 1 --labels 2 --spacing 4.0,0.8,0.8 \
    --shape 24,128,128 --spacing-jitter 0.15 --seed 11 --name "$name"
fi
bash scripts/preprocess-yaml.sh synth "$ds" "$out/cache" "$out/runs" > "$out/synth.yaml"
secs() { python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$1" "$2"; }

echo "parity-synth: ours (fingerprint + plan, then the timed preprocessing)"
rm -rf "$out/cache" "$out/runs"
"$bin" run -f "$out/synth.yaml" -j "$threads" --until plan > "$out/ours-plan.log" 2>&1
t0=$(date +%s.%N)
"$bin" run -f "$out/synth.yaml" -j "$threads" > "$out/ours-pre.log" 2>&1
t1=$(date +%s.%N)
ours_s=$(secs "$t0" "$t1")

echo "parity-synth: nnU-Net (fingerprint + plan, then the timed preprocessing)"
ln -sfn "$ds" "$nnUNet_raw/$name"
rm -rf "${nnUNet_preprocessed:?}/$name"
nnUNetv2_extract_fingerprint -d 901 -np "$threads" > "$out/peer-plan.log" 2>&1
nnUNetv2_plan_experiment -d 901 >> "$out/peer-plan.log" 2>&1
t0=$(date +%s.%N)
nnUNetv2_preprocess -d 901 -c 2d 3d_fullres -np "$threads" "$threads" > "$out/peer-pre.log" 2>&1
t1=$(date +%s.%N)
peer_s=$(secs "$t0" "$t1")

mkdir -p "$out/ours-pre"
for c in 2d 3d_fullres; do ln -sfn "$out/runs/synth/resample/configuration=$c/nnUNetPlans_$c.zarr" "$out/ours-pre/nnUNetPlans_$c"; done
pre="$nnUNet_preprocessed/$name"
echo "parity-synth: plans"
python3 scripts/compare_plans.py "$out/runs/synth/plan/plans.json" "$pre/nnUNetPlans.json" | tee "$out/plans.log" && plans=EQUAL || plans=DIFFER
echo "parity-synth: preprocessed arrays"
python3 scripts/compare_preprocessed.py "$out/ours-pre" "$pre" > "$out/parity.log" 2>&1 && arrays=PASS || arrays=FAIL
grep '^\[' "$out/parity.log" | grep -v ': shape' | grep -v '^  ' | grep -v 'vs' || true

# output voxels of both configurations (channels x Z x Y x X per case), from nnU-Net's files
vox=$(python3 - "$pre" <<'PY'
import os, sys, blosc2
pre, n = sys.argv[1], 0
for cfg in ("nnUNetPlans_2d", "nnUNetPlans_3d_fullres"):
    d = os.path.join(pre, cfg)
    for f in os.listdir(d):
        if f.endswith(".b2nd") and not f.endswith("_seg.b2nd"):
            s = blosc2.open(os.path.join(d, f), mode="r").shape
            k = 1
            for x in s:
                k *= x
            n += k
print(n)
PY
)
python3 - "$vox" "$ours_s" "$peer_s" "$plans" "$arrays" "${BENCH_ROWS:-}" <<'PY'
import sys
vox, ours, peer, plans, arrays, rows = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
o, p = vox / ours / 1e6, vox / peer / 1e6
print(f"parity-synth: plans {plans}; preprocessed arrays {arrays}")
print(f"parity-synth: preprocessing (normalize + resample + write, 2d + 3d_fullres, {vox / 1e6:.1f} M output voxels): "
      f"ours {ours:.1f} s = {o:.2f} M voxels/s, nnU-Net {peer:.1f} s = {p:.2f} M voxels/s, {peer / ours:.1f}x")
if rows:
    with open(rows, "a") as f:
        f.write(f"synthetic anisotropic CT (4.0x0.8x0.8 mm): plans / preprocessed arrays vs nnU-Net\t{plans} / {arrays}\treference\t\n")
        f.write(f"synthetic anisotropic CT: preprocessing throughput, M output voxels/s\t{o:.2f}\t{p:.2f}\t{peer / ours:.1f}x faster\n")
PY
[ "$plans" = EQUAL ] && [ "$arrays" = PASS ]
