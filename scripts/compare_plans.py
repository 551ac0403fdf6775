#!/usr/bin/env python3
"""Compares our plans.json with nnU-Net's nnUNetPlans.json, field by field, for every configuration.

Usage:
    python3 scripts/compare_plans.py OUR_PLANS_JSON PEER_PLANS_JSON [--configs 2d,3d_fullres]

Compared per configuration: spacing (1e-5 relative), patch size, batch size, median image size,
normalization schemes, use_mask_for_norm, the network's stages, features, kernel sizes and strides,
batch_dice, the resampling kwargs (separate-z settings) and next_stage; configurations that only
inherit (3d_cascade_fullres) by inherits_from and previous_stage. Exit status 1 on any difference.
"""
import argparse
import json
import sys


def arch(c):
    a = c.get("architecture", {}).get("arch_kwargs", {})
    return {k: a.get(k) for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides",
                                  "n_conv_per_stage", "n_conv_per_stage_decoder")}


FIELDS = {
    "spacing": lambda c: c.get("spacing"),
    "patch_size": lambda c: c.get("patch_size"),
    "batch_size": lambda c: c.get("batch_size"),
    "median_image_size_in_voxels": lambda c: c.get("median_image_size_in_voxels"),
    "normalization_schemes": lambda c: c.get("normalization_schemes"),
    "use_mask_for_norm": lambda c: c.get("use_mask_for_norm"),
    "batch_dice": lambda c: c.get("batch_dice"),
    "architecture": arch,
    "resampling_fn_data_kwargs": lambda c: c.get("resampling_fn_data_kwargs"),
    "resampling_fn_seg_kwargs": lambda c: c.get("resampling_fn_seg_kwargs"),
    "next_stage": lambda c: c.get("next_stage"),
}


def close(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return a == b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--configs", default=None, help="default: every configuration in the peer's plans")
    args = ap.parse_args()
    ours, peer = json.load(open(args.ours)), json.load(open(args.peer))
    cfgs = args.configs.split(",") if args.configs else [
        k for k, v in peer["configurations"].items() if "data_identifier" in v]
    ok = True
    for top in ("original_median_spacing_after_transp", "original_median_shape_after_transp", "transpose_forward"):
        same = close(ours.get(top), peer.get(top))
        ok &= same
        print(f"{top}: ours {ours.get(top)} peer {peer.get(top)} {'ok' if same else 'DIFF'}")
    for cfg in cfgs:
        o, p = ours["configurations"].get(cfg), peer["configurations"][cfg]
        if o is None:
            print(f"[{cfg}] missing in ours: DIFF")
            ok = False
            continue
        for name, get in FIELDS.items():
            a, b = get(o), get(p)
            same = close(a, b)
            ok &= same
            print(f"[{cfg}] {name}: {'ok' if same else 'DIFF'} ours {json.dumps(a)}" + ("" if same else f" peer {json.dumps(b)}"))
    # Configurations that only inherit (3d_cascade_fullres): their links must match.
    for cfg, p in peer["configurations"].items():
        if "data_identifier" in p or (args.configs and cfg not in cfgs):
            continue
        o = ours["configurations"].get(cfg, {})
        for key in ("inherits_from", "previous_stage"):
            same = o.get(key) == p.get(key)
            ok &= same
            print(f"[{cfg}] {key}: {'ok' if same else 'DIFF'} ours {json.dumps(o.get(key))}" + ("" if same else f" peer {json.dumps(p.get(key))}"))
    extra = sorted(set(k for k, v in ours["configurations"].items() if "data_identifier" in v) - set(cfgs))
    if extra and not args.configs:
        print(f"configurations only in ours: {extra}: DIFF")
        ok = False
    print("PLANS", "EQUAL" if ok else "DIFFER")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
