"""Compares `pipeline predict --model DIR` with nnU-Net's own prediction of the same model (issue 16).

    python scripts/compare_nnunet_predictions.py OURS_DIR PEER_DIR [--min-agreement 99.9] [--max-prob-diff 1e-3]

OURS_DIR: segmentations (CASE.nii.gz) and, with --save-probabilities, CASE.probs.zarr ([C, Z, Y, X] f32 Zarr v3).
PEER_DIR: nnUNetv2_predict(_from_modelfolder) output (CASE.nii.gz, with --save_probabilities CASE.npz).
Per case: the share of voxels with the same label, max |probability difference| and whether the geometry (size,
spacing, origin, direction) is the same. Exits 1 when a case is below the thresholds. Needs the peer's venv
(SimpleITK, numpy, imagecodecs).
"""
import argparse
import json
import os
import sys

import numpy as np
import SimpleITK as sitk

import zarr  # zarr-python 3 (installed into the peer venv by scripts/setup.sh / bench)


def read_zarr_array(path):
    """Our CASE.probs.zarr (a Zarr v3 array) through zarr-python."""
    return np.asarray(zarr.open_array(path, mode="r")[...])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--min-agreement", type=float, default=99.9)
    ap.add_argument("--max-prob-diff", type=float, default=1e-3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--subset", action="store_true", help="only the cases OURS_DIR has (the peer predicted more)")
    a = ap.parse_args()
    cases = sorted(f[:-7] for f in os.listdir(a.ours if a.subset else a.peer) if f.endswith(".nii.gz"))
    if not cases:
        sys.exit(f"no predictions in {a.peer}")
    rows, ok = [], True
    for c in cases:
        po, pp = os.path.join(a.ours, c + ".nii.gz"), os.path.join(a.peer, c + ".nii.gz")
        if not os.path.isfile(po):
            rows.append({"case": c, "missing": True})
            ok = False
            continue
        io, ip = sitk.ReadImage(po), sitk.ReadImage(pp)
        geom = (io.GetSize() == ip.GetSize() and np.allclose(io.GetSpacing(), ip.GetSpacing())
                and np.allclose(io.GetOrigin(), ip.GetOrigin()) and np.allclose(io.GetDirection(), ip.GetDirection()))
        so, sp = sitk.GetArrayFromImage(io), sitk.GetArrayFromImage(ip)
        agree = float(np.mean(so == sp) * 100.0) if so.shape == sp.shape else 0.0
        row = {"case": c, "agreement_pct": agree, "same_geometry": bool(geom), "voxels": int(sp.size)}
        npz = os.path.join(a.peer, c + ".npz")
        zarr_dir = os.path.join(a.ours, c + ".probs.zarr")
        if os.path.isfile(npz) and os.path.isdir(zarr_dir):
            p_peer = np.load(npz)["probabilities"].astype(np.float64)
            p_ours = read_zarr_array(zarr_dir).astype(np.float64)
            row["max_prob_diff"] = float(np.max(np.abs(p_ours - p_peer))) if p_ours.shape == p_peer.shape else float("inf")
            row["prob_shapes"] = [list(p_ours.shape), list(p_peer.shape)]
            ok &= row["max_prob_diff"] <= a.max_prob_diff
        ok &= geom and agree >= a.min_agreement
        rows.append(row)
    agreements = [r["agreement_pct"] for r in rows if "agreement_pct" in r]
    diffs = [r["max_prob_diff"] for r in rows if "max_prob_diff" in r]
    summary = {"cases": len(rows), "min_agreement_pct": min(agreements, default=0.0),
               "mean_agreement_pct": float(np.mean(agreements)) if agreements else 0.0,
               "max_prob_diff": max(diffs) if diffs else None,
               "all_same_geometry": all(r.get("same_geometry", False) for r in rows), "ok": bool(ok)}
    if a.json:
        print(json.dumps({"summary": summary, "cases": rows}, indent=1))
    else:
        for r in rows:
            print(r)
        print(summary)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
