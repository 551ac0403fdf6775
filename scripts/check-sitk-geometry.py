"""Checks with SimpleITK (nnU-Net's reader) that predictions open at the same place as the
images they were predicted from: same size, spacing, origin and direction (numpy allclose,
atol 1e-6), an integer pixel type, and that the reference labels agree too.

    python scripts/check-sitk-geometry.py IMAGES_DIR PRED_DIR FILE_ENDING [LABELS_DIR]

IMAGES_DIR holds CASE_0000{FILE_ENDING}, PRED_DIR CASE{FILE_ENDING}. Prints one JSON line;
exits 1 when a prediction is missing or lies elsewhere. Needs SimpleITK (the peer venv has it).
"""
import json
import os
import sys

import numpy as np
import SimpleITK as sitk


def geometry(path):
    img = sitk.ReadImage(path)
    return img, {
        "size": list(img.GetSize()),
        "spacing": list(img.GetSpacing()),
        "origin": list(img.GetOrigin()),
        "direction": list(img.GetDirection()),
    }


def same(a, b):
    return a["size"] == b["size"] and all(
        np.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in ("spacing", "origin", "direction"))


def main():
    images, preds, ending = sys.argv[1:4]
    labels = sys.argv[4] if len(sys.argv) > 4 else None
    problems, checked = [], []
    cases = sorted(f[: -len(ending) - 5] for f in os.listdir(images) if f.endswith("_0000" + ending))
    if not cases:
        problems.append(f"no images *_0000{ending} in {images}")
    for case in cases:
        pred_path = os.path.join(preds, case + ending)
        if not os.path.isfile(pred_path):
            problems.append(f"{case}: no prediction {pred_path}")
            continue
        _, gi = geometry(os.path.join(images, case + "_0000" + ending))
        pred, gp = geometry(pred_path)
        if not same(gi, gp):
            problems.append(f"{case}: prediction at {gp}, image at {gi}")
        pixel = pred.GetPixelIDTypeAsString()
        if "integer" not in pixel:
            problems.append(f"{case}: prediction pixel type {pixel}")
        if labels:
            _, gl = geometry(os.path.join(labels, case + ending))
            if not same(gl, gp):
                problems.append(f"{case}: prediction at {gp}, reference label at {gl}")
        checked.append({"case": case, "pixel": pixel, **gp})
    print(json.dumps({"simpleitk": sitk.Version.VersionString(), "checked": checked, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
