#!/usr/bin/env bash
# Every benchmark of the project beside the peer (nnU-Net v2 from PyPI, ../shared/peer) on the same
# machine and data (MSD Hippocampus), one row per figure, written to bench/RESULTS.md.
#
#   make bench                    # everything except the equal-budget training (~1 h on 2 cores)
#   BENCH_TRAIN=1 make bench      # also train both at the CPU budget and compare CV Dice (~1 h)
#   bash scripts/parity-synth.sh  # only the synthetic anisotropic CT parity (part of both)
#   bash bench/bigct.sh           # only the big-CT preprocessing rows (part of both; BENCH_BIGCT=0 skips)
#   bash bench/bigct-predict.sh   # only the big-CT predict rows (512x512x100 CT, part of both)
#
# Each row is measured in this run, ours and theirs back to back. Timings are wall clock on an
# otherwise idle machine; RSS is the peak resident set of the whole process tree (GNU time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
data="$(cd "$here/../shared/data" 2>/dev/null && pwd)/Task04_Hippocampus"
peer_dir="$here/../shared/peer"
peer_work="${PEER_WORK:-$HOME/.cache/nnunet-peer}"
out="$here/bench/out"
threads=$(nproc)
[ -f "$data/dataset.json" ] || { echo "bench: $data is absent; the benchmarks need the shared Hippocampus data" >&2; exit 2; }
[ -x "$bin" ] || { echo "bench: build first (make build)" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "bench: GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 2; }
mkdir -p "$out"
rows="$out/rows.tsv"; : > "$rows"
# Old outputs are moved aside and deleted at the end: ext4 slows down creating inodes right
# after thousands were deleted (it skips recently freed ones), which would tax whichever side
# runs next.
discard() { mkdir -p "$out/.trash"; local p; for p in "$@"; do [ -e "$p" ] && mv "$p" "$out/.trash/$(basename "$p").$$.$RANDOM"; done; return 0; }
me=bench
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"

echo "bench: peer setup"
bash "$peer_dir/setup.sh" "$peer_work" > "$out/peer-setup.log" 2>&1
# shellcheck disable=SC1091
source "$peer_work/env.sh"
pre="$nnUNet_preprocessed/Dataset004_Hippocampus"
# compare_preprocessed.py reads our stores with zarr-python 3 (also a check that it can).
python3 -c "import zarr,sys; sys.exit(0 if int(zarr.__version__.split('.')[0]) >= 3 else 1)" 2>/dev/null || python3 -m pip install -q "zarr>=3" > "$out/zarr-install.log" 2>&1

# --- preprocessing (fingerprint, plan, normalize, resample of 2d + 3d_fullres), cold cache ---
bash scripts/preprocess-yaml.sh bench "$data" "$out/cache" "$out/runs" > "$out/hippocampus.yaml"
echo "bench: preprocessing (ours, cold cache)"
discard "$out/cache" "$out/runs"
read -r our_pre_s our_pre_kb < <(timed "$out/ours-preprocess.log" "$bin" run -f "$out/hippocampus.yaml" -j "$threads")
echo "bench: preprocessing (nnU-Net, plan_and_preprocess -np $threads --verify_dataset_integrity)"
rm -rf "$pre"
# Ours always verifies the raw dataset before fingerprinting (all images and labels read in
# full); the peer does the same work with --verify_dataset_integrity (as ../shared/peer/setup.sh).
read -r peer_pre_s peer_pre_kb < <(timed "$out/peer-preprocess.log" nnUNetv2_plan_and_preprocess -d 4 -np "$threads" -npfp "$threads" --verify_dataset_integrity)
row "verify + fingerprint + plan + preprocess Hippocampus (260 cases, 2d + 3d_fullres), wall s" "$our_pre_s" "$peer_pre_s" "$(ratio "$peer_pre_s" "$our_pre_s") faster"
row "preprocess peak RSS, MB" "$((our_pre_kb / 1024))" "$((peer_pre_kb / 1024))" "$(ratio "$peer_pre_kb" "$our_pre_kb") less"
mkdir -p "$out/ours-pre"
for c in 2d 3d_fullres; do ln -sfn "$out/runs/bench/resample/configuration=$c/nnUNetPlans_$c.zarr" "$out/ours-pre/nnUNetPlans_$c"; done
python3 scripts/compare_preprocessed.py "$out/ours-pre" "$pre" > "$out/parity.log" 2>&1 && parity="PASS" || parity="FAIL (see bench/out/parity.log)"
row "preprocessed arrays vs nnU-Net (data 1e-3, labels 99.9%)" "$parity" "reference" ""

# --- synthetic anisotropic CT: plans and arrays vs nnU-Net, resampling throughput ---
echo "bench: synthetic anisotropic CT (scripts/parity-synth.sh)"
BENCH_ROWS="$rows" bash scripts/parity-synth.sh > "$out/parity-synth.log" 2>&1 || echo "bench: synthetic parity FAILED (see bench/out/parity-synth.log)"
tail -2 "$out/parity-synth.log"

# --- big CT: verify + fingerprint + plan + preprocess at CT size (issue 15), cold caches ---
if [ "${BENCH_BIGCT:-1}" = 1 ]; then
  echo "bench: big CT preprocessing (bench/bigct.sh)"
  BENCH_ROWS="$rows" bash bench/bigct.sh > "$out/bigct.log" 2>&1 || echo "bench: big CT FAILED (see bench/out/bigct.log)"
  tail -6 "$out/bigct.log"
fi

# --- cached rerun: nothing to do ---
echo "bench: cached rerun overhead"
ov=$("$bin" bench overhead -f "$out/hippocampus.yaml" --repeat 5 --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["median_s"], 3))')
row "rerun with nothing changed, wall s (nnU-Net reruns preprocessing)" "$ov" "$peer_pre_s" "$(ratio "$peer_pre_s" "$ov") faster"

# --- augmentation, one thread ---
for cfg in 3d_fullres 2d; do
  echo "bench: augmentation $cfg"
  ours=$(RAYON_NUM_THREADS=1 "$bin" bench augment "$out/runs/bench" --configuration "$cfg" --batches 10 --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["seconds_per_batch"],4))')
  theirs=$(nnUNet_n_proc_DA=0 THREADS=1 python3 "$peer_dir/nnunet_da.py" "$pre" "$cfg" 10 2>/dev/null | sed -n 's/.*da_s_per_batch=\([0-9.]*\).*/\1/p' | tail -1)
  row "augmentation $cfg, 1 thread, s per planned batch (ours: cases decoded in RAM as in training)" "$ours" "$theirs" "$(ratio "$theirs" "$ours") faster"
done

# --- training step, 3d_fullres at the planned batch (nnunet_step.py trains on its loader's batch) ---
echo "bench: train step"
"$bin" bench step "$out/runs/bench" --configuration 3d_fullres --steps 5 --json > "$out/ours-step.json"
read -r ours our_bs < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["seconds_per_step"],3), d["batch_size"])' "$out/ours-step.json")
THREADS=$threads python3 "$peer_dir/nnunet_step.py" "$pre" 5 > "$out/peer-step.log" 2>/dev/null
theirs=$(sed -n 's/.*train_step_s=\([0-9.]*\).*/\1/p' "$out/peer-step.log")
peer_bs=$(sed -n 's/^batch (\([0-9]*\),.*/\1/p' "$out/peer-step.log")
[ "$our_bs" = "$peer_bs" ] || { echo "bench: train step batch differs: ours $our_bs, nnU-Net $peer_bs" >&2; exit 1; }
row "3d_fullres train step (fwd, deep-supervised DC+CE, bwd, clip, SGD), batch $our_bs, s" "$ours" "$theirs" "$(ratio "$theirs" "$ours") faster"

# --- prediction, random weights, 5 raw cases ---
echo "bench: predict"
read -r _ our_pred_kb < <(timed "$out/ours-predict.log" "$bin" bench predict "$out/runs/bench" --configuration 3d_fullres --cases 5 --json)
ours_no=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["seconds_per_case_no_mirroring"],3))' "$out/ours-predict.log")
ours_tta=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["seconds_per_case_mirroring"],3))' "$out/ours-predict.log")
read -r _ peer_pred_kb < <(THREADS=$threads timed "$out/peer-predict.log" python3 "$peer_dir/nnunet_predict.py" "$pre" 3d_fullres "$nnUNet_raw/Dataset004_Hippocampus/imagesTr" 5)
peer_no=$(sed -n 's/.*tta=False.*s_per_case=\([0-9.]*\).*/\1/p' "$out/peer-predict.log")
peer_tta=$(sed -n 's/.*tta=True.*s_per_case=\([0-9.]*\).*/\1/p' "$out/peer-predict.log")
row "predict 3d_fullres per case, no mirroring, s" "$ours_no" "$peer_no" "$(ratio "$peer_no" "$ours_no") faster"
row "predict 3d_fullres per case, 8 mirrors, s" "$ours_tta" "$peer_tta" "$(ratio "$peer_tta" "$ours_tta") faster"
row "predict peak RSS, MB" "$((our_pred_kb / 1024))" "$((peer_pred_kb / 1024))" "$(ratio "$peer_pred_kb" "$our_pred_kb") less"

# --- big CT: predicting a 512x512xZ synthetic CT (random weights), ours vs nnU-Net ---
echo "bench: big-CT predict (bench/bigct-predict.sh)"
BENCH_ROWS="$rows" bash bench/bigct-predict.sh > "$out/bigct-predict.log" 2>&1 || echo "bench: big-CT predict FAILED (see bench/out/bigct-predict.log)"
tail -3 "$out/bigct-predict.log"

# --- plans where nnU-Net emits 3d_lowres and the cascade ---
echo "bench: plans with 3d_lowres (scripts/parity-lowres.sh)"
BENCH_ROWS="$rows" bash scripts/parity-lowres.sh > "$out/parity-lowres.log" 2>&1 || echo "bench: lowres plans parity FAILED (see bench/out/parity-lowres.log)"
tail -1 "$out/parity-lowres.log"

# --- predicting with a model folder nnU-Net trained itself (issue 16): same model, same cases ---
echo "bench: nnU-Net model folder"
mf="$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_Tiny__nnUNetPlans__3d_fullres"
[ -f "$mf/fold_0/checkpoint_final.pth" ] || timed "$out/peer-tiny-train.log" nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_Tiny -device cpu > /dev/null
mf_in="$out/modelfolder-cases"; discard "$mf_in" "$out/mf-ours" "$out/mf-peer"; mkdir -p "$mf_in"
ls "$nnUNet_raw/Dataset004_Hippocampus/imagesTr" | tail -5 | while read -r f; do ln -s "$nnUNet_raw/Dataset004_Hippocampus/imagesTr/$f" "$mf_in/$f"; done
read -r our_mf_s our_mf_kb < <(timed "$out/ours-modelfolder.log" "$bin" predict -i "$mf_in" -o "$out/mf-ours" --model "$mf" --folds 0 --save-probabilities --fp16-accumulation --device cpu)
read -r peer_mf_s peer_mf_kb < <(timed "$out/peer-modelfolder.log" nnUNetv2_predict_from_modelfolder -i "$mf_in" -o "$out/mf-peer" -m "$mf" -f 0 -chk checkpoint_final.pth --save_probabilities -device cpu -npp 1 -nps 1)
mf_agree=$( (python3 scripts/compare_nnunet_predictions.py "$out/mf-ours" "$out/mf-peer" --json || true) | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("%.3f%% / %.1e / %s" % (s["min_agreement_pct"], s["max_prob_diff"], "same geometry" if s["all_same_geometry"] else "GEOMETRY DIFFERS"))')
row "predict 5 cases with an nnU-Net 3d_fullres model folder (fold 0, 8 mirrors, probabilities), wall s" "$our_mf_s" "$peer_mf_s" "$(ratio "$peer_mf_s" "$our_mf_s") faster"
row "  same, peak RSS, MB" "$((our_mf_kb / 1024))" "$((peer_mf_kb / 1024))" "$(ratio "$peer_mf_kb" "$our_mf_kb") less"
row "  agreement with nnU-Net: min % voxels / max abs prob difference" "$mf_agree" "" "target >= 99.9% / <= 1e-3"

# --- equal-budget training, 2d fold 0 (CPUBudget: 20 x 50 iterations, batch 32) ---
if [ "${BENCH_TRAIN:-0}" = 1 ]; then
  echo "bench: equal-budget training (ours, cold cache)"
  # The example file with its own cold cache, so the figure covers preprocessing + training.
  sed -e "s|^dataset:.*|dataset: $data|" -e "s|^cache:.*|cache: $out/cache-train|" -e "s|^outputs:.*|outputs: $out/runs|" \
    examples/hippocampus-cpu.yaml > "$out/hippocampus-cpu.yaml"
  discard "$out/cache-train" "$out/runs/hippocampus-cpu"
  read -r our_tr_s our_tr_kb < <(timed "$out/ours-train.log" "$bin" run -f "$out/hippocampus-cpu.yaml" -j "$threads")
  tr="$out/runs/hippocampus-cpu/train/configuration=2d/fold=0"
  ours=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["foreground_mean"]["Dice"],4))' "$tr/validation/summary.json")
  echo "bench: equal-budget training (nnU-Net)"
  rm -rf "$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_CPUBudget__nnUNetPlans__2d"
  read -r peer_tr_s peer_tr_kb < <(timed "$out/peer-train.log" nnUNetv2_train 4 2d 0 -tr nnUNetTrainer_CPUBudget -device cpu)
  theirs=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["foreground_mean"]["Dice"],4))' "$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_CPUBudget__nnUNetPlans__2d/fold_0/validation/summary.json")
  read -r our_pd our_wait < <(python3 - "$tr/log.json" <<'PYX'
import json, sys
l = json.load(open(sys.argv[1]))
pd = "/".join("%.3f" % d for _, d in l[-1]["pseudo_dice"])
wait = 100 * sum(x["data_wait_seconds"] for x in l) / sum(x["epoch_seconds"] for x in l)
print(pd, "%.2f%%" % wait)
PYX
)
  peer_log=$(ls -t "$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_CPUBudget__nnUNetPlans__2d/fold_0"/training_log_*.txt | head -1)
  # last epoch, and the mean of the last 5 epochs (one epoch's 10 validation batches are noisy)
  peer_pd=$(grep "Pseudo dice" "$peer_log" | tail -1 | sed 's/.*Pseudo dice \[\(.*\)\]/\1/' | python3 -c 'import sys,re; print("/".join(f"{float(x):.3f}" for x in re.findall(r"\d+\.\d+", sys.stdin.read())))')
  peer_pd5=$(grep "Pseudo dice" "$peer_log" | tail -5 | sed 's/.*Pseudo dice \[\(.*\)\]/\1/' | python3 -c 'import sys,re
rows = [[float(x) for x in re.findall(r"\d+\.\d+", l)] for l in sys.stdin if l.strip()]
print("/".join(f"{sum(c) / len(c):.3f}" for c in zip(*rows)))')
  our_pd5=$(python3 - "$tr/log.json" <<'PYX'
import json, sys
l = json.load(open(sys.argv[1]))[-5:]
print("/".join("%.3f" % (sum(e["pseudo_dice"][k][1] for e in l) / len(l)) for k in range(len(l[0]["pseudo_dice"]))))
PYX
)
  row "pseudo-Dice anterior / posterior, last epoch, equal budget" "$our_pd" "$peer_pd" ""
  row "pseudo-Dice anterior / posterior, mean of the last 5 epochs, equal budget" "$our_pd5" "$peer_pd5" ""
  row "trainer time waiting for batches (default workers)" "$our_wait" "" "target < 5%"
  row "CV Dice 2d fold 0 at equal budget (20x50 it, batch 32)" "$ours" "$theirs" "difference $(python3 -c "print(f'{$ours-$theirs:+.4f}')")"
  row "equal-budget training, wall s (ours incl. its preprocessing; nnU-Net training only)" "$our_tr_s" "$peer_tr_s" "$(ratio "$peer_tr_s" "$our_tr_s") faster"
  row "equal-budget training peak RSS, MB" "$((our_tr_kb / 1024))" "$((peer_tr_kb / 1024))" "$(ratio "$peer_tr_kb" "$our_tr_kb") less"
fi

rm -rf "$out/.trash"
python3 - "$rows" "$here/bench/RESULTS.md" "$threads" <<'PY'
import sys, platform, subprocess, datetime
rows, dst, threads = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
torch = subprocess.run(["python3", "-c", "import torch;print(torch.__version__)"], capture_output=True, text=True).stdout.strip()
lines = ["# Benchmarks: this project vs nnU-Net v2", "",
         f"Produced by `make bench` (bench/run.sh) on {datetime.date.today()}: {cpu}, {threads} cores, {mem} GiB RAM, "
         f"no GPU; data: MSD Task04_Hippocampus (260 training cases) and a synthetic CT set (`pipeline synth`, 10 cases of ~160x320x320, the `big CT` rows); peer: nnunetv2 2.8.1 (torch {torch} in its venv). "
         "Every row was measured in the same run, ours and the peer's back to back.", "",
         "| what | ours | nnU-Net v2 | ratio |", "|---|---|---|---|"]
for l in open(rows):
    a = l.rstrip("\n").split("\t")
    lines.append("| " + " | ".join(a) + " |")
# The table replaces the head of the file (up to the first "## " section); the sections other
# scripts and hand measurements wrote below it are kept.
rest = ""
try:
    old = open(dst).read()
    i = old.find("\n## ")
    rest = old[i:] if i >= 0 else ""
except FileNotFoundError:
    pass
open(dst, "w").write("\n".join(lines) + "\n" + rest)
print(f"bench: wrote {dst}")
PY

# Image formats: read throughput per format beside nnU-Net's readers (own section of RESULTS.md).
PIPELINE_BIN="$bin" "$here/bench/read-formats.sh"
