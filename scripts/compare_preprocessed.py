#!/usr/bin/env python3
"""Compares our preprocessed case stores with nnU-Net's preprocessed output.

Usage (with the peer venv, which has numpy and blosc2; zarr>=3 is installed into it by
bench/run.sh and scripts/parity-synth.sh):
    source ~/.cache/nnunet-peer/env.sh
    python scripts/compare_preprocessed.py OUR_DIR PEER_PRE_DIR [--configs 2d,3d_fullres]

OUR_DIR holds one folder per data identifier, e.g. links to a run's
resample/configuration=C/<data_identifier>.zarr stores: Zarr v3 groups with arrays <case> (data,
[C, Z, Y, X], case properties in its attributes) and <case>_seg, one shard file each, read here
with zarr-python 3 (so this comparison also checks that zarr-python reads what we write);
PEER_PRE_DIR is nnU-Net's nnUNet_preprocessed/DatasetXXX folder (<data_identifier>/<case>.b2nd,
<case>_seg.b2nd, <case>.pkl).

Per case it prints the max abs difference of the data, the percentage of identical seg voxels and
whether shapes, bboxes and crop shapes agree; then a summary against the parity criteria:
data within 1e-3 abs, seg >= 99.9% identical, identical shapes and bboxes. Exit status 1 on fail.
"""
import argparse
import json
import os
import pickle
import sys

import numpy as np
import blosc2
import zarr

DATA_TOL = 1e-3
SEG_MIN_IDENTICAL = 99.9


def read_ours(case_path):
    """The case array <case> and its segmentation <case>_seg, through zarr-python."""
    data = zarr.open_array(case_path, mode="r")
    seg = zarr.open_array(case_path + "_seg", mode="r")
    attrs = dict(data.attrs)
    counts = {json.dumps(e["key"]): e["count"] for e in attrs.get("class_locations", [])}
    return data[...], seg[...].astype(np.int16), attrs, counts


def read_peer(cfg_dir, case):
    data = blosc2.open(os.path.join(cfg_dir, case + ".b2nd"), mode="r")[:]
    seg = blosc2.open(os.path.join(cfg_dir, case + "_seg.b2nd"), mode="r")[:].astype(np.int16)
    with open(os.path.join(cfg_dir, case + ".pkl"), "rb") as f:
        props = pickle.load(f)
    counts = {json.dumps(k if isinstance(k, int) else list(k)): len(v)
              for k, v in props.get("class_locations", {}).items()}
    return data, seg, props, counts


def as_list(x):
    return [as_list(i) for i in x] if isinstance(x, (list, tuple, np.ndarray)) else int(x)


def compare_config(ours_dir, peer_dir, verbose):
    cases = sorted(c[:-4] for c in os.listdir(peer_dir) if c.endswith(".pkl"))
    rows, missing = [], []
    for case in cases:
        od = os.path.join(ours_dir, case)
        if not os.path.isfile(os.path.join(od, "zarr.json")):
            missing.append(case)
            continue
        d_o, s_o, a_o, c_o = read_ours(od)
        d_p, s_p, a_p, c_p = read_peer(peer_dir, case)
        same_shape = d_o.shape == d_p.shape and s_o.shape == s_p.shape
        max_diff = float(np.max(np.abs(d_o.astype(np.float64) - d_p.astype(np.float64)))) if same_shape else float("inf")
        seg_pct = float(np.mean(s_o == s_p) * 100.0) if same_shape else 0.0
        bbox_ok = as_list(a_o["bbox_used_for_cropping"]) == as_list(a_p["bbox_used_for_cropping"])
        crop_ok = (as_list(a_o["shape_before_cropping"]) == as_list(a_p["shape_before_cropping"]) and
                   as_list(a_o["shape_after_cropping_and_before_resampling"]) ==
                   as_list(a_p["shape_after_cropping_and_before_resampling"]))
        loc_ok = c_o == c_p
        rows.append((case, same_shape, max_diff, seg_pct, bbox_ok, crop_ok, loc_ok, d_o.shape, d_p.shape))
        if verbose:
            print(f"  {case}: shape ours {d_o.shape} peer {d_p.shape} | data max|diff| {max_diff:.3e} | "
                  f"seg identical {seg_pct:.3f}% | bbox {'ok' if bbox_ok else 'DIFF'} | "
                  f"crop shapes {'ok' if crop_ok else 'DIFF'} | class-location counts "
                  f"{'ok' if loc_ok else f'ours {c_o} peer {c_p}'}")
    return rows, missing


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--configs", default="2d,3d_fullres")
    ap.add_argument("--plans", default="nnUNetPlans")
    ap.add_argument("-q", "--quiet", action="store_true", help="summary only")
    args = ap.parse_args()
    ok_all = True
    for cfg in args.configs.split(","):
        ident = f"{args.plans}_{cfg}"
        od, pd = os.path.join(args.ours, ident), os.path.join(args.peer, ident)
        if not os.path.isdir(pd):
            print(f"[{cfg}] peer folder {pd} missing, skipped")
            continue
        if not os.path.isdir(od):
            print(f"[{cfg}] our folder {od} missing: FAIL")
            ok_all = False
            continue
        print(f"[{cfg}] {od}  vs  {pd}")
        rows, missing = compare_config(od, pd, not args.quiet)
        n = len(rows)
        worst_data = max((r[2] for r in rows), default=float("nan"))
        worst_seg = min((r[3] for r in rows), default=float("nan"))
        mean_seg = float(np.mean([r[3] for r in rows])) if rows else float("nan")
        shapes = sum(r[1] for r in rows)
        bboxes = sum(r[4] for r in rows)
        crops = sum(r[5] for r in rows)
        locs = sum(r[6] for r in rows)
        ok = (not missing and n > 0 and worst_data <= DATA_TOL and worst_seg >= SEG_MIN_IDENTICAL
              and shapes == n and bboxes == n and crops == n)
        ok_all &= ok
        print(f"[{cfg}] cases compared {n}, missing in ours {len(missing)}")
        print(f"[{cfg}] data max|diff| worst {worst_data:.3e} (tol {DATA_TOL})")
        print(f"[{cfg}] seg identical: worst case {worst_seg:.4f}%, mean {mean_seg:.4f}% (min {SEG_MIN_IDENTICAL}%)")
        print(f"[{cfg}] shapes equal {shapes}/{n}, bboxes equal {bboxes}/{n}, crop shapes equal {crops}/{n}, "
              f"class-location counts equal {locs}/{n} (informative)")
        print(f"[{cfg}] {'PASS' if ok else 'FAIL'}")
    print("OVERALL", "PASS" if ok_all else "FAIL")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
