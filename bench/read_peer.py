"""Single-threaded read throughput of nnU-Net's own reader (chosen as nnU-Net chooses it) over
a raw dataset: python3 bench/read_peer.py DATASET -> JSON (files, bytes on disk, seconds)."""
import json
import os
import sys
import time

from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

root = sys.argv[1]
dj = json.load(open(os.path.join(root, "dataset.json")))
ds = get_filenames_of_train_images_and_targets(root, dj)
files = []
for v in ds.values():
    files.extend(v["images"])
    files.append(v["label"])
# nnU-Net's readers print warnings on stdout (Tiff3DIO looks for a label's spacing sidecar under
# the wrong name); keep stdout for the JSON line.
_out = sys.stdout
sys.stdout = sys.stderr
rw = determine_reader_writer_from_dataset_json(dj, files[0], verbose=False)()


def size(f):
    n = os.path.getsize(f)
    stem = f[: -len(dj["file_ending"])]
    for side in (stem + ".json", stem[:-5] + ".json"):
        if dj["file_ending"] in (".tif", ".tiff") and os.path.isfile(side):
            n += os.path.getsize(side)
    return n


on_disk = sum(size(f) for f in files)
t0 = time.perf_counter()
c0 = time.process_time()
voxels = 0
for f in files:
    a, _ = rw.read_images((f,))
    voxels += a.size
s = time.perf_counter() - t0
cpu = time.process_time() - c0
# CPU seconds of the process (every thread SimpleITK starts): the figure to compare on a loaded
# machine, beside the wall clock.
sys.stdout = _out
print(json.dumps({"reader": type(rw).__name__, "files": len(files), "bytes_on_disk": on_disk,
                  "voxels": voxels, "seconds": s, "mb_per_s_on_disk": on_disk / 1e6 / s,
                  "cpu_seconds": cpu, "mb_per_cpu_s_on_disk": on_disk / 1e6 / cpu}))
