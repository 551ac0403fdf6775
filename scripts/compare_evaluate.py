#!/usr/bin/env python3
"""Compare `pipeline evaluate` with nnU-Net v2's own evaluation, number by number.

Runs the peer's `nnUNetv2_evaluate_simple REF PRED -l ... --chill` and our
`pipeline evaluate REF PRED --labels ... --json` on the same folders and checks every
number of summary.json (mean, foreground_mean, and every case's metrics, matched by
prediction file name) to an absolute tolerance (default 1e-6; NaN must match NaN).

Usage (peer env active: `source ~/.cache/nnunet-peer/env.sh`):
  python scripts/compare_evaluate.py REF_DIR PRED_DIR --labels 1,2 [--ignore K]
  python scripts/compare_evaluate.py --demo [LABELS_DIR]   # Hippocampus labels vs a perturbed copy

Options:
  --pipeline BIN    our binary (default: $CARGO_TARGET_DIR or ~/.cache/nnunet-rs/target, release/pipeline)
  --peer BIN        nnUNetv2_evaluate_simple (default: from PATH, else the peer venv)
  --tol X           absolute tolerance (default 1e-6)
  --cases N         --demo: number of cases (default 40)
Exit status 0 when everything matches, 1 otherwise.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

HOME = os.path.expanduser("~")


def default_pipeline():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HOME, ".cache", "nnunet-rs", "target"))
    return os.path.join(target, "release", "pipeline")


def default_peer():
    p = shutil.which("nnUNetv2_evaluate_simple")
    return p or os.path.join(HOME, ".cache", "nnunet-peer", "venv", "bin", "nnUNetv2_evaluate_simple")


def run_peer(peer, ref, pred, labels, ignore, out):
    cmd = [peer, ref, pred, "-l", *[str(l) for l in labels], "-o", out, "-np", "2", "--chill"]
    if ignore is not None:
        cmd += ["-il", str(ignore)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)  # Python's json reads NaN


def run_ours(binary, ref, pred, labels, ignore, out):
    cmd = [binary, "evaluate", ref, pred, "--labels", ",".join(str(l) for l in labels), "--json", "--output", out]
    if ignore is not None:
        cmd += ["--ignore", str(ignore)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    text = res.stdout.strip()
    start = text.find("{")
    if start < 0:
        with open(out) as f:
            return json.load(f)
    return json.loads(text[start:])


def same(a, b, tol):
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return abs(float(a) - float(b)) <= tol


def compare(peer, ours, tol):
    problems = []
    checked = 0

    def cmp_metrics(where, a, b):
        nonlocal checked
        if set(a) != set(b):
            problems.append(f"{where}: metric names differ: {sorted(a)} vs {sorted(b)}")
        for m in sorted(set(a) & set(b)):
            checked += 1
            if not same(a[m], b[m], tol):
                problems.append(f"{where}.{m}: peer {a[m]!r} ours {b[m]!r}")

    cmp_metrics("foreground_mean", peer["foreground_mean"], ours["foreground_mean"])
    if set(peer["mean"]) != set(ours["mean"]):
        problems.append(f"mean: class keys differ: {sorted(peer['mean'])} vs {sorted(ours['mean'])}")
    for k in sorted(set(peer["mean"]) & set(ours["mean"])):
        cmp_metrics(f"mean[{k}]", peer["mean"][k], ours["mean"][k])
    by_name = lambda s: {os.path.basename(c["prediction_file"]): c for c in s["metric_per_case"]}
    pc, oc = by_name(peer), by_name(ours)
    if set(pc) != set(oc):
        problems.append(f"cases differ: only peer {sorted(set(pc) - set(oc))}, only ours {sorted(set(oc) - set(pc))}")
    for name in sorted(set(pc) & set(oc)):
        if os.path.basename(pc[name]["reference_file"]) != os.path.basename(oc[name]["reference_file"]):
            problems.append(f"{name}: reference files differ")
        pm, om = pc[name]["metrics"], oc[name]["metrics"]
        if set(pm) != set(om):
            problems.append(f"{name}: class keys differ")
        for k in sorted(set(pm) & set(om)):
            cmp_metrics(f"{name}[{k}]", pm[k], om[k])
    return problems, checked


def make_demo(labels_dir, out_root, n_cases):
    """Copies n label files as references and writes perturbed predictions (SimpleITK)."""
    import SimpleITK as sitk
    import numpy as np
    ref, pred = os.path.join(out_root, "ref"), os.path.join(out_root, "pred")
    os.makedirs(ref), os.makedirs(pred)
    names = sorted(n for n in os.listdir(labels_dir) if n.endswith(".nii.gz") and not n.startswith("."))[:n_cases]
    rng = np.random.RandomState(1234)
    for i, n in enumerate(names):
        img = sitk.ReadImage(os.path.join(labels_dir, n))
        a = sitk.GetArrayFromImage(img).astype(np.uint8)
        p = a.copy()
        if i % 10 == 3:
            p[:] = 0  # a case with an empty prediction
        elif i % 10 == 7:
            p[p == 2] = 1  # label 2 missing entirely
        else:
            flip = rng.rand(*a.shape) < 0.08
            p[flip & (a > 0)] = 3 - p[flip & (a > 0)]  # swap 1 <-> 2
            p[(rng.rand(*a.shape) < 0.01) & (a == 0)] = 1  # spurious foreground
        if i % 10 == 5:
            a[:] = 0  # empty reference (NaN Dice where the prediction is empty too)
            p[:] = 0
        r = sitk.GetImageFromArray(a)
        r.CopyInformation(img)
        sitk.WriteImage(r, os.path.join(ref, n))
        o = sitk.GetImageFromArray(p)
        o.CopyInformation(img)
        sitk.WriteImage(o, os.path.join(pred, n))
    return ref, pred


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", nargs="?")
    ap.add_argument("pred", nargs="?")
    ap.add_argument("--labels", default="1,2")
    ap.add_argument("--ignore", type=int, default=None)
    ap.add_argument("--pipeline", default=default_pipeline())
    ap.add_argument("--peer", default=default_peer())
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--demo", nargs="?", const="", default=None, metavar="LABELS_DIR")
    ap.add_argument("--cases", type=int, default=40)
    a = ap.parse_args()
    labels = [int(x) for x in a.labels.split(",") if x.strip()]
    work = tempfile.mkdtemp(prefix="compare_evaluate_")
    try:
        if a.demo is not None:
            src = a.demo or next(
                (p for p in [os.path.join(HOME, ".cache/nnunet-peer/raw/Dataset004_Hippocampus/labelsTr"),
                             "/work/shared/data/Task04_Hippocampus/labelsTr"] if os.path.isdir(p)), None)
            if not src:
                sys.exit("no labels folder for --demo")
            ref, pred = make_demo(src, work, a.cases)
        else:
            if not (a.ref and a.pred):
                ap.error("REF_DIR and PRED_DIR are required without --demo")
            ref, pred = a.ref, a.pred
        peer = run_peer(a.peer, ref, pred, labels, a.ignore, os.path.join(work, "peer_summary.json"))
        ours = run_ours(a.pipeline, ref, pred, labels, a.ignore, os.path.join(work, "ours_summary.json"))
        problems, checked = compare(peer, ours, a.tol)
        print(f"compared {checked} numbers over {len(peer['metric_per_case'])} cases, tolerance {a.tol}")
        for p in problems[:50]:
            print("MISMATCH", p)
        if problems:
            print(f"{len(problems)} mismatch(es)")
            sys.exit(1)
        print("all numbers match")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
