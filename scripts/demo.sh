#!/usr/bin/env bash
# The demo: generate the synthetic CT dataset, run the whole default pipeline.yaml, print a
# report. A second run finishes from the cache in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
ds=data/demo/Dataset900_SynthCT
# Lesions 1.5x the default size: every label is learned within the demo's budget.
synth_args=(--cases 20 --test-cases 4 --modality CT --channels 1 --labels 2 --spacing 2.5,0.9,0.9
  --shape 16,48,48 --lesion-scale 1.5 --seed 7 --name Dataset900_SynthCT)
# Regenerated when the arguments change (the stamp records them).
if [ ! -f "$ds/dataset.json" ] || [ "$(cat "$ds/.synth-args" 2>/dev/null)" != "${synth_args[*]}" ]; then
  rm -rf "$ds"
  "$bin" synth "$ds" "${synth_args[@]}"
  echo "${synth_args[*]}" > "$ds/.synth-args"
fi
t0=$(date +%s)
"$bin" run -f pipeline.yaml
t1=$(date +%s)
"$bin" report runs/demo
echo
echo "demo: pipeline run took $((t1 - t0)) s; report: runs/demo/report/report.html (Markdown: runs/demo/report/report.md)"
