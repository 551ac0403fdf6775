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
voxels = 0
for f in files:
    a, _ = rw.read_images((f,))
    voxels += a.size
s = time.perf_counter() - t0
print(json.dumps({"reader": type(rw).__name__, "files": len(files), "bytes_on_disk": on_disk,
                  "voxels": voxels, "seconds": s, "mb_per_s_on_disk": on_disk / 1e6 / s}))
