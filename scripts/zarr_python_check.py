#!/usr/bin/env python3
"""Reads a preprocessed store written by the project with zarr-python 3, as a user would.

    python scripts/zarr_python_check.py STORE OUT_DIR

STORE is a per-configuration store (runs/NAME/resample/configuration=C/<data_identifier>.zarr).
For every case listed in the root group's attributes it opens the group member <case> (data,
[C, Z, Y, X]) and <case>_seg, and writes to OUT_DIR:
  <case>.data.bin, <case>.seg.bin   the arrays as read, C order, little endian
  report.json                       zarr version; per case shape, dtype, chunks (inner), shards,
                                    and the class locations decoded from the attributes
                                    (numpy.unravel_index(numpy.cumsum(linear_deltas), shape)).
The project's tests compare these bytes with its own reader (tests/store.rs). Exit status 2 when
zarr-python 3 is not installed.
"""
import json
import os
import sys

import numpy as np

try:
    import zarr
except ImportError:
    print("zarr is not installed (pip install 'zarr>=3')", file=sys.stderr)
    sys.exit(2)
if int(zarr.__version__.split(".")[0]) < 3:
    print(f"zarr {zarr.__version__} is too old: zarr-python 3 is needed", file=sys.stderr)
    sys.exit(2)


def main():
    store, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    root = zarr.open_group(store, mode="r")
    report = {"zarr": zarr.__version__, "attributes": dict(root.attrs), "cases": {}}
    for case in root.attrs["cases"]:
        data = root[case]
        seg = root[case + "_seg"]
        d = data[...]
        s = seg[...]
        d.astype("<f4").tofile(os.path.join(out, case + ".data.bin"))
        s.astype(s.dtype.newbyteorder("<")).tofile(os.path.join(out, case + ".seg.bin"))
        spatial = d.shape[1:]
        locations = {}
        for e in data.attrs.get("class_locations", []):
            lin = np.cumsum(np.asarray(e["linear_deltas"], dtype=np.int64))
            zyx = np.stack(np.unravel_index(lin, spatial), axis=1) if len(lin) else np.zeros((0, 3), np.int64)
            locations[json.dumps(e["key"])] = zyx.tolist()
        report["cases"][case] = {
            "shape": list(d.shape),
            "dtype": str(d.dtype),
            "seg_shape": list(s.shape),
            "seg_dtype": str(s.dtype),
            "chunks": list(data.chunks),
            "shards": list(data.shards) if data.shards is not None else None,
            "locations": locations,
            "properties": {k: data.attrs[k] for k in ("spacing", "bbox_used_for_cropping", "has_label")},
        }
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f)
    print(f"zarr {zarr.__version__}: read {len(report['cases'])} case(s) from {store}")


if __name__ == "__main__":
    main()
