#!/usr/bin/env bash
# Checks `pipeline export RUN --format nnunet` in nnU-Net itself (issue 16): the checkpoint loads with
# torch.load(weights_only=True), nnUNetv2_predict_from_modelfolder predicts with the folder, and its
# predictions agree with ours (scripts/compare_nnunet_predictions.py).
#   bash scripts/nnunet-export-check.sh RUN_DIR IMAGES_DIR [WORK_DIR]
# Needs the peer (../shared/peer, ~/.cache/nnunet-peer) and a release build.
set -euo pipefail
run=$1; images=$2; work=${3:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-rs/target}/release/pipeline"
# shellcheck disable=SC1091
source "${PEER_WORK:-$HOME/.cache/nnunet-peer}/env.sh"
rm -rf "$work/exported" "$work/peer" "$work/ours"
"$bin" export "$run" --format nnunet -o "$work/exported"
python3 -c "
import sys, torch
c = torch.load(sys.argv[1], weights_only=True)
print('torch.load(weights_only=True):', len(c['network_weights']), 'tensors,', c['trainer_name'], c['inference_allowed_mirroring_axes'])
" "$work/exported/fold_0/checkpoint_final.pth"
nnUNetv2_predict_from_modelfolder -i "$images" -o "$work/peer" -m "$work/exported" -f 0 -chk checkpoint_final.pth \
  --save_probabilities -device cpu -npp 1 -nps 1 > "$work/peer.log" 2>&1
"$bin" predict -i "$images" -o "$work/ours" --model "$work/exported" --folds 0 --save-probabilities --fp16-accumulation \
  --no-postprocessing --device cpu
python3 "$here/scripts/compare_nnunet_predictions.py" "$work/ours" "$work/peer"
