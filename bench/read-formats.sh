#!/usr/bin/env bash
# Read throughput per image format (issue 14): `pipeline bench read` (1 thread) beside nnU-Net's
# own reader (SimpleITKIO / NaturalImage2DIO / Tiff3DIO, 1 thread) on the same synthetic files.
# Prints a Markdown table and replaces the "Image formats" section of bench/RESULTS.md.
# Usage: bench/read-formats.sh   (needs the peer venv: ../shared/peer, SimpleITK, tifffile)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/env.sh"
bin=${PIPELINE_BIN:-$CARGO_TARGET_DIR/release/pipeline}
py=${PEER_PYTHON:-$HOME/.cache/nnunet-peer/venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rows="$out/rows.md"
printf '| format | files | MB on disk | ours MB/s (wall) | ours MB per CPU s | nnU-Net reader | nnU-Net MB/s (wall) | nnU-Net MB per CPU s | ratio (CPU) |\n|---|---|---|---|---|---|---|---|---|\n' > "$rows"
for f in nii.gz mha nrrd tif png; do
  if [ "$f" = png ]; then shape=(--cases 300 --shape 8,384,384); else shape=(--cases 16 --shape 64,192,192); fi
  "$bin" synth "$out/$f" "${shape[@]}" --format "$f" --seed 3 >/dev/null 2>&1
  ours=$("$bin" bench read "$out/$f" --json)
  peer=$("$py" "$here/bench/read_peer.py" "$out/$f")
  python3 - "$f" "$ours" "$peer" >> "$rows" <<'PY'
import json, sys
f, o, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ours, ours_cpu = o["single_thread_mb_per_s_on_disk"], o["mb_per_cpu_s_on_disk"]
peer, peer_cpu = p["mb_per_s_on_disk"], p["mb_per_cpu_s_on_disk"]
print(f"| .{f} | {o['files']} | {o['bytes_on_disk']/1e6:.1f} | {ours:.1f} | {ours_cpu:.1f} | {p['reader']} | {peer:.1f} | {peer_cpu:.1f} | {ours_cpu/peer_cpu:.2f}x |")
PY
done
cat "$rows"
python3 - "$rows" "$here/bench/RESULTS.md" <<'PY'
import datetime, re, sys
rows, dst = open(sys.argv[1]).read(), sys.argv[2]
text = open(dst).read() if __import__("os").path.exists(dst) else ""
section = (f"## Image formats (bench/read-formats.sh, {datetime.date.today()})\n\n"
           "Read throughput, one thread, MB on disk per second (headers, data files and sidecars), "
           "decoding to float32 included; nnU-Net's reader is the one it picks for the ending. "
           "Wall figures depend on the machine's load; the ratio is taken on CPU time (ours: the "
           "reading thread's; nnU-Net's: its process's, every thread SimpleITK starts).\n\n" + rows)
text = re.sub(r"## Image formats.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip() + "\n\n" + section
open(dst, "w").write(text)
PY
