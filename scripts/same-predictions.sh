#!/usr/bin/env bash
# Predictions of this build against a reference build (e.g. the main branch's), voxel for voxel,
# on the demo: the synthetic CT dataset of `make demo` and the default pipeline.yaml (trained here
# with this build at a small budget), then `pipeline predict` of its test images with both builds,
# mirroring on (the default) and off. Any differing voxel fails.
#
#   REFERENCE_BIN=/path/to/reference/release/pipeline bash scripts/same-predictions.sh
# Environment: EPOCHS (3) sets train.epochs for the demo training.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
new="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
old="${REFERENCE_BIN:?set REFERENCE_BIN to the pipeline binary of the reference build}"
out="$here/bench/out/same-predictions"
ds="$out/Dataset900_SynthCT"
[ -x "$new" ] && [ -x "$old" ] || { echo "same-predictions: $new or $old is missing" >&2; exit 2; }
mkdir -p "$out"
if [ ! -f "$ds/dataset.json" ]; then
  # As scripts/demo.sh makes the demo dataset.
  "$new" synth "$ds" --cases 20 --test-cases 4 --modality CT --channels 1 --labels 2 \
    --spacing 2.5,0.9,0.9 --shape 16,48,48 --seed 7 --name Dataset900_SynthCT
fi
sed -e "s|^dataset:.*|dataset: $ds|" -e "s|^cache:.*|cache: $out/cache|" -e "s|^outputs:.*|outputs: $out/runs|" \
  -e "s|^device:.*|device: cpu|" pipeline.yaml > "$out/demo.yaml"
echo "same-predictions: training the demo (train.epochs=${EPOCHS:-3})"
"$new" run -f "$out/demo.yaml" --set "train.epochs=${EPOCHS:-3}" > "$out/run.log" 2>&1 || { tail -20 "$out/run.log" >&2; exit 1; }
for tta in on off; do
  flag=""; [ "$tta" = off ] && flag="--no-tta"
  for side in reference this; do
    b=$new; [ "$side" = reference ] && b=$old
    rm -rf "$out/pred-$side-$tta"
    # shellcheck disable=SC2086
    "$b" predict --run "$out/runs/demo" -i "$ds/imagesTs" -o "$out/pred-$side-$tta" $flag --json > "$out/pred-$side-$tta.json"
  done
done
python3 - "$out" <<'PY'
import gzip, os, struct, sys
out = sys.argv[1]

def voxels(path):
    raw = gzip.open(path).read()
    vox_offset = int(struct.unpack_from("<f", raw, 108)[0])
    return raw[vox_offset:]

bad = 0
for tta in ("on", "off"):
    a, b = f"{out}/pred-reference-{tta}", f"{out}/pred-this-{tta}"
    names = sorted(n for n in os.listdir(a) if n.endswith(".nii.gz"))
    if names != sorted(n for n in os.listdir(b) if n.endswith(".nii.gz")) or not names:
        print(f"mirroring {tta}: the case lists differ or are empty"); bad += 1; continue
    for n in names:
        va, vb = voxels(f"{a}/{n}"), voxels(f"{b}/{n}")
        diff = sum(x != y for x, y in zip(va, vb)) + abs(len(va) - len(vb))
        print(f"mirroring {tta}: {n}: {len(va)} bytes of labels, {diff} differ")
        bad += diff > 0
print("same-predictions:", "EQUAL" if bad == 0 else f"DIFFER ({bad} case(s))")
sys.exit(1 if bad else 0)
PY
