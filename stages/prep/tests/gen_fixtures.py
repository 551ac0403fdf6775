#!/usr/bin/env python3
"""Generates the reference fixtures of nnunet-prep's tests from the peer (nnU-Net v2.8.1 with its
scipy / scikit-image / batchgenerators).

Run with the peer venv:  source ~/.cache/nnunet-peer/env.sh && python stages/prep/tests/gen_fixtures.py

Writes (small, committed):
  fixtures/resample.json  -- skimage resize / nnU-Net resample_data_or_seg_to_shape outputs
  fixtures/fill_holes.json -- scipy binary_fill_holes on a random mask
  fixtures/peer_plans.json -- nnU-Net's planners run on synthetic fingerprints
"""
import contextlib
import io
import json
import os

import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.transform import resize

from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def flat(a):
    return [float(x) for x in np.asarray(a, dtype=np.float64).ravel()]


def resize_seg_threshold(seg, new_shape, order):
    """The reference rule (nnU-Net reference doc section 4.3 / batchgenerators < 0.25.5): per label,
    ascending incl. -1, linear resize of the one-hot mask, label written where >= 0.5, later labels
    overwrite, untouched voxels stay 0."""
    out = np.zeros(new_shape, dtype=seg.dtype)
    for c in np.unique(seg):
        m = resize((seg == c).astype(float), new_shape, order, mode="edge", clip=True, anti_aliasing=False)
        out[m >= 0.5] = c
    return out


def resample_seg_threshold(seg, new_shape, cur, new):
    """nnU-Net's resample_data_or_seg with resize_segmentation replaced by the threshold rule."""
    import batchgenerators.augmentations.utils as bgu
    import nnunetv2.preprocessing.resampling.default_resampling as dr
    orig = dr.resize_segmentation
    dr.resize_segmentation = lambda s, ns, order=3: resize_seg_threshold(s, ns, order)
    try:
        return resample_data_or_seg_to_shape(seg[None], new_shape, cur, new, is_seg=True, order=1, order_z=0,
                                             force_separate_z=None)[0]
    finally:
        dr.resize_segmentation = orig


def resample_fixtures():
    rs = np.random.RandomState(20240607)
    cases = {}

    def data_case(name, shape, new_shape, cur, new, order, scale=1.0):
        x = (rs.standard_normal(shape) * scale).astype(np.float32)
        y = resample_data_or_seg_to_shape(x[None], new_shape, cur, new, is_seg=False, order=order, order_z=0,
                                          force_separate_z=None)[0]
        cases[name] = {"kind": "data", "in_shape": list(shape), "out_shape": list(new_shape),
                       "current_spacing": list(cur), "new_spacing": list(new), "order": order,
                       "input": flat(x), "output": flat(y)}

    def plain_resize(name, shape, new_shape, order):
        x = rs.standard_normal(shape).astype(np.float64)
        y = resize(x, new_shape, order, mode="edge", anti_aliasing=False)
        cases[name] = {"kind": "resize", "in_shape": list(shape), "out_shape": list(new_shape), "order": order,
                       "input": flat(x), "output": flat(y)}

    plain_resize("order3_up", (5, 6, 7), (8, 9, 11), 3)
    plain_resize("order3_down", (11, 10, 12), (6, 7, 5), 3)
    plain_resize("order3_mixed", (9, 4, 16), (5, 9, 16), 3)
    plain_resize("order1_mixed", (7, 6, 9), (10, 4, 9), 1)
    plain_resize("order0_mixed", (7, 6, 9), (10, 4, 13), 0)
    # nnU-Net's full path, isotropic (no separate z) and anisotropic (separate z along 0 and 2).
    data_case("nnunet_iso", (6, 8, 7), (9, 5, 10), (1.0, 1.0, 1.0), (0.7, 1.6, 0.7), 3)
    data_case("nnunet_sepz_axis0", (4, 10, 12), (7, 14, 9), (3.6, 0.8, 0.8), (2.0, 0.57, 1.07), 3)
    data_case("nnunet_sepz_axis2_target", (9, 10, 5), (12, 8, 3), (1.0, 1.0, 2.0), (0.75, 1.25, 3.4), 3)
    data_case("nnunet_probabilities", (5, 6, 7), (8, 4, 9), (1.0, 1.0, 1.0), (0.6, 1.5, 0.8), 1)

    def seg_case(name, shape, new_shape, cur, new, labels):
        s = rs.choice(labels, size=shape).astype(np.int16)
        # Smooth-ish blobs so that both interiors and junctions occur.
        s[:, : shape[1] // 2, :] = labels[1]
        peer = resample_data_or_seg_to_shape(s[None], new_shape, cur, new, is_seg=True, order=1, order_z=0,
                                             force_separate_z=None)[0]
        thr = resample_seg_threshold(s, new_shape, cur, new)
        cases[name] = {"kind": "seg", "in_shape": list(shape), "out_shape": list(new_shape),
                       "current_spacing": list(cur), "new_spacing": list(new),
                       "input": [int(v) for v in s.ravel()],
                       "output_argmax_nearest": [int(v) for v in peer.ravel()],
                       "output_threshold": [int(v) for v in thr.ravel()]}

    seg_case("seg_iso_up", (6, 7, 8), (9, 12, 11), (1.0, 1.0, 1.0), (0.66, 0.6, 0.72), [-1, 0, 1, 2, 3])
    seg_case("seg_iso_down", (10, 9, 12), (5, 6, 7), (1.0, 1.0, 1.0), (2.0, 1.5, 1.7), [-1, 0, 1, 2])
    seg_case("seg_even_factor", (5, 6, 4), (10, 12, 8), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5), [0, 1, 2])
    seg_case("seg_sepz", (4, 9, 10), (7, 13, 6), (3.5, 0.9, 0.9), (2.0, 0.62, 1.5), [-1, 0, 1, 2])
    return cases


def fill_holes_fixture():
    rs = np.random.RandomState(7)
    m = rs.random_sample((12, 13, 14)) < 0.62
    return {"shape": [12, 13, 14], "input": [int(v) for v in m.ravel()],
            "output": [int(v) for v in binary_fill_holes(m).ravel()]}


def planner_fixtures():
    """Runs nnU-Net's planners on synthetic fingerprints without touching the filesystem."""
    import nnunetv2.experiment_planning.experiment_planners.default_experiment_planner as dep
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
        nnUNetPlannerResEncM, nnUNetPlannerResEncL, nnUNetPlannerResEncXL)
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    def fp(sp, sh, n, ch):
        props = {'max': 1., 'mean': 0., 'median': 0., 'min': -1., 'percentile_00_5': -1., 'percentile_99_5': 1.,
                 'std': 1.}
        return {'spacings': [list(sp)] * n, 'shapes_after_crop': [list(sh)] * n,
                'foreground_intensity_properties_per_channel': {str(c): props for c in range(ch)},
                'median_relative_size_after_cropping': 1.0}

    def dsj(channels, nlabels, n):
        return {'channel_names': {str(i): c for i, c in enumerate(channels)},
                'labels': {f'l{i}': i for i in range(nlabels)}, 'numTraining': n, 'file_ending': '.nii.gz'}

    cases = {
        'A': (fp([1., 1., 1.], [36, 50, 35], 260, 1), dsj(['MRI'], 3, 260)),
        'B': (fp([3.6, 0.625, 0.625], [20, 320, 319], 32, 2), dsj(['T2', 'ADC'], 3, 32)),
        'C': (fp([2.5, 0.8, 0.8], [180, 512, 512], 100, 1), dsj(['CT'], 14, 100)),
        'D': (fp([0.7, 0.7, 5.0], [300, 300, 20], 10, 1), dsj(['T1'], 2, 10)),
        'E': (fp([1.2, 0.9, 0.9], [150, 190, 170], 40, 1), dsj(['CT'], 4, 40)),
    }
    # A varied fingerprint (10th-percentile rule, fractional medians).
    e = fp([5.0, 0.7, 0.7], [20, 300, 300], 12, 1)
    e['spacings'] = [[3.0 + 0.5 * i, 0.7, 0.7 + 0.01 * i] for i in range(12)]
    e['shapes_after_crop'] = [[18 + i, 290 + 3 * i, 301 - i] for i in range(12)]
    e['median_relative_size_after_cropping'] = 0.5
    cases['F'] = (e, dsj(['FLAIR'], 3, 12))

    out = {}
    for name, (f, d) in cases.items():
        for pl, cls in [('Default', ExperimentPlanner), ('ResEncM', nnUNetPlannerResEncM),
                        ('ResEncL', nnUNetPlannerResEncL), ('ResEncXL', nnUNetPlannerResEncXL)]:
            p = cls.__new__(cls)
            dep.load_json = lambda fn, f=f, d=d: d if fn.endswith('dataset.json') else f
            dep.isfile = lambda fn: fn.endswith('dataset_fingerprint.json')
            dep.get_filenames_of_train_images_and_targets = lambda a, b: {'x': {'images': ['a.nii.gz'], 'label': 'a'}}
            dep.maybe_convert_to_dataset_name = lambda x: 'DatasetX'
            dep.shutil.copy = lambda a, b: None
            cls.__init__(p, 1)
            p.determine_reader_writer = lambda: SimpleITKIO
            p.save_plans = lambda plans: None
            with contextlib.redirect_stdout(io.StringIO()):
                plans = p.plan_experiment()
            recursive_fix_for_json_export(plans)
            out[f'{name}_{pl}'] = {'fingerprint': f, 'dataset_json': d, 'plans': plans}
    return out


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'resample.json'), 'w') as fh:
        json.dump(resample_fixtures(), fh)
    with open(os.path.join(OUT, 'fill_holes.json'), 'w') as fh:
        json.dump(fill_holes_fixture(), fh)
    with open(os.path.join(OUT, 'peer_plans.json'), 'w') as fh:
        json.dump(planner_fixtures(), fh)
    print('fixtures written to', OUT)
