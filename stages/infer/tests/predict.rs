//! Raw-case prediction: geometry of written masks (non-identity affine, anisotropic spacing,
//! transposed axes, cropping, resampling), probabilities, 2d configurations, the cascade.

mod common;

use common::*;
use nnunet_eval::segmentation::SegmentationMode;
use nnunet_infer::export::{read_probabilities, write_probabilities};
use nnunet_infer::predictor::{CaseOptions, LabelSpec, Predictor};
use nnunet_infer::{write_segmentation, SegNetwork, SlidingWindowOptions};
use nnunet_io::dataset::{nnunet_spacing, CaseImages};
use nnunet_io::nifti::{read_nifti, write_nifti, DataType, NiftiHeader};
use nnunet_io::Volume;

const SHAPE: [usize; 3] = [7, 12, 10];
const SPACING: [f64; 3] = [1.0, 3.2, 0.7]; // y is the coarse axis -> transpose_forward [1, 0, 2]
const BOX_LO: [usize; 3] = [1, 2, 3];
const BOX_HI: [usize; 3] = [6, 9, 8];

fn inside(z: usize, y: usize, x: usize) -> bool {
    (BOX_LO[0]..BOX_HI[0]).contains(&z) && (BOX_LO[1]..BOX_HI[1]).contains(&y) && (BOX_LO[2]..BOX_HI[2]).contains(&x)
}

/// An image that is non-zero in a box only, with a rotated, shifted affine; written and read
/// back through NIfTI like a real input.
fn input_image(dir: &std::path::Path) -> (CaseImages, NiftiHeader) {
    let mut h = NiftiHeader::new(SHAPE, SPACING, DataType::F32);
    h.set_rotation_origin([0.2, -0.1, 0.3], [-12.5, 40.0, 7.25]);
    let mut v = Volume::filled(SHAPE, 0.0f32);
    for z in 0..SHAPE[0] {
        for y in 0..SHAPE[1] {
            for x in 0..SHAPE[2] {
                if inside(z, y, x) {
                    v.set(z, y, x, 1.0 + ((z * 7 + y * 3 + x) % 5) as f32);
                }
            }
        }
    }
    let p = dir.join("case_0000.nii.gz");
    write_nifti(&p, &h, &v).unwrap();
    let img = read_nifti(&p).unwrap();
    let header = img.header.to_3d();
    let images = CaseImages {
        channels: img.to_f32_channels().unwrap(),
        spacing: nnunet_spacing(&img.header),
        header: nnunet_io::image::ImageHeader::of_nifti(&img.header),
        non_finite: 0,
    };
    (images, header)
}

fn class1_everywhere(cin: usize) -> Box<dyn SegNetwork> {
    // logits (0, 5, 0): label 1 wins wherever the network looks.
    Box::new(Pointwise::new(&[vec![0.0; cin], vec![0.0; cin], vec![0.0; cin]], &[0.0, 5.0, 0.0]))
}

#[test]
fn written_mask_has_the_input_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, header) = input_image(tmp.path());
    // transposed spacing (3.2, 1.0, 0.7); the configuration resamples to (2.0, 1.3, 1.1).
    let plans = plans([1, 0, 2], [2.0, 1.3, 1.1], [4, 6, 4], [6, 4]);
    for cfg_name in ["3d_fullres", "2d"] {
        let config = plans.configuration(cfg_name).unwrap();
        let nd = config.patch_size.len();
        let pred = Predictor::new(
            vec![class1_everywhere(1)],
            config.patch_size.clone(),
            1,
            3,
            (0..nd).collect(),
            SlidingWindowOptions::default(),
        )
        .unwrap();
        let opts = CaseOptions { tta: true, save_probabilities: true, postprocessing: None };
        let out = pred.predict_raw_case(&images, &plans, &config, &LabelSpec::plain(2), None, &opts).unwrap();
        assert_eq!(out.segmentation.shape, SHAPE, "{cfg_name}");
        // Label 1 exactly inside the non-zero box, background outside: crop, resampling,
        // un-crop and transpose_backward line up.
        for z in 0..SHAPE[0] {
            for y in 0..SHAPE[1] {
                for x in 0..SHAPE[2] {
                    assert_eq!(out.segmentation.get(z, y, x), inside(z, y, x) as i16, "{cfg_name} at {z},{y},{x}");
                }
            }
        }
        let probs = out.probabilities.as_ref().unwrap();
        assert_eq!((probs.num_channels, probs.shape), (3, SHAPE));
        let n = SHAPE.iter().product::<usize>();
        assert_eq!(probs.data[0], 1.0, "background probability 1 outside the crop box");
        for i in 0..n {
            let s: f32 = (0..3).map(|c| probs.data[c * n + i]).sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        // Write and read back: same shape, spacing, affine, orientation.
        let path = tmp.path().join(format!("pred_{cfg_name}.nii.gz"));
        write_segmentation(&path, &out.segmentation, &out.header, 2).unwrap();
        let back = read_nifti(&path).unwrap();
        assert_eq!(back.header.datatype, DataType::U8);
        assert_eq!(back.header.shape_zyx(), header.shape_zyx());
        assert_eq!(back.header.spacing_zyx(), header.spacing_zyx());
        assert_eq!(back.header.affine(), header.affine());
        assert_eq!(back.header.qform_affine(), header.qform_affine());
        assert_eq!((back.header.qform_code, back.header.sform_code), (header.qform_code, header.sform_code));
        assert_eq!(back.to_label_volume().unwrap(), out.segmentation);
        // Probabilities round-trip through Zarr.
        let zdir = tmp.path().join(format!("probs_{cfg_name}.zarr"));
        write_probabilities(&zdir, probs, serde_json::json!({"case": "case"})).unwrap();
        assert_eq!(&read_probabilities(&zdir).unwrap(), probs);
    }
}

#[test]
fn random_network_on_image_smaller_than_patch() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = input_image(tmp.path());
    let plans = plans([1, 0, 2], [3.2, 1.0, 0.7], [16, 16, 16], [16, 16]);
    let config = plans.configuration("3d_fullres").unwrap();
    let pred = Predictor::new(
        vec![random_convnet(11, 1, 3, 3), random_convnet(12, 1, 3, 3)],
        vec![16, 16, 16],
        1,
        3,
        vec![0, 1, 2],
        SlidingWindowOptions::default(),
    )
    .unwrap();
    let out =
        pred.predict_raw_case(&images, &plans, &config, &LabelSpec::plain(2), None, &CaseOptions::default()).unwrap();
    assert_eq!(out.segmentation.shape, SHAPE);
    assert!(out.segmentation.data.iter().all(|&v| (0..=2).contains(&v)));
    // outside the crop box nothing is predicted
    assert_eq!(out.segmentation.get(0, 0, 0), 0);
    // wrong label spec for this network
    assert!(pred
        .predict_raw_case(&images, &plans, &config, &LabelSpec::plain(3), None, &CaseOptions::default())
        .is_err());
}

#[test]
fn cascade_appends_previous_stage_one_hot() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = input_image(tmp.path());
    // No resampling (configuration spacing = image spacing, transposed).
    let plans = plans([1, 0, 2], [3.2, 1.0, 0.7], [4, 6, 4], [6, 4]);
    let config = plans.configuration("3d_cascade_fullres").unwrap();
    assert!(config.previous_stage.is_some());
    let mut prev = Volume::filled(SHAPE, 0i16);
    for z in BOX_LO[0]..BOX_HI[0] {
        for y in BOX_LO[1]..BOX_HI[1] {
            for x in BOX_LO[2]..BOX_HI[2] {
                prev.set(
                    z,
                    y,
                    x,
                    if x < 5 {
                        1
                    } else if y > 6 {
                        2
                    } else {
                        0
                    },
                );
            }
        }
    }
    // channels: image, onehot(1), onehot(2) -> logits (0.5, 10·oh1, 10·oh2)
    let net: Box<dyn SegNetwork> =
        Box::new(Pointwise::new(&[vec![0.0, 0.0, 0.0], vec![0.0, 10.0, 0.0], vec![0.0, 0.0, 10.0]], &[0.5, 0.0, 0.0]));
    let pred = Predictor::new(vec![net], vec![4, 6, 4], 3, 3, vec![0, 1, 2], SlidingWindowOptions::default()).unwrap();
    assert!(pred
        .predict_raw_case(&images, &plans, &config, &LabelSpec::plain(2), None, &CaseOptions::default())
        .is_err());
    let out = pred
        .predict_raw_case(&images, &plans, &config, &LabelSpec::plain(2), Some(&prev), &CaseOptions::default())
        .unwrap();
    assert_eq!(out.segmentation, prev);
}

#[test]
fn regions_are_painted_in_class_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = input_image(tmp.path());
    let plans = plans([1, 0, 2], [3.2, 1.0, 0.7], [4, 6, 4], [6, 4]);
    let config = plans.configuration("3d_fullres").unwrap();
    // two regions, both logits positive -> the later one (label 2) is painted last
    let net: Box<dyn SegNetwork> = Box::new(Pointwise::new(&[vec![0.0], vec![0.0]], &[1.0, 2.0]));
    let spec = LabelSpec {
        mode: SegmentationMode::Regions { regions_class_order: vec![1, 2] },
        foreground_labels: vec![1, 2],
    };
    let pred = Predictor::new(vec![net], vec![4, 6, 4], 1, 2, vec![0, 1, 2], SlidingWindowOptions::default()).unwrap();
    let out = pred
        .predict_raw_case(
            &images,
            &plans,
            &config,
            &spec,
            None,
            &CaseOptions { save_probabilities: true, ..Default::default() },
        )
        .unwrap();
    assert_eq!(out.segmentation.get(2, 3, 4), 2);
    assert_eq!(out.segmentation.get(0, 0, 0), 0);
    assert_eq!(out.probabilities.unwrap().data[0], 0.0, "regions: probability 0 outside the crop box");
}

/// Deterministic pseudo-random logits with near-ties (quantized values), `[K, shape]`.
fn logits(k: usize, shape: [usize; 3], seed: u64) -> nnunet_infer::Logits {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let data = (0..k * n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) % 41) as f32 * 0.25 - 5.0
        })
        .collect();
    nnunet_infer::Logits::new(k, shape, data).unwrap()
}

#[test]
fn streamed_export_equals_the_whole_volume_export() {
    use nnunet_infer::export::{export_prediction, export_segmentation, resample_logits_to_segmentation};
    use nnunet_prep::crop::BBox;
    use nnunet_prep::preprocess::CaseProperties;
    // (transpose_forward, configuration spacing (3d), case spacing (transposed), logits shape,
    // cropped shape, crop box lo, shape before cropping)
    let cases: Vec<([usize; 3], [f64; 3], [f64; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3])> = vec![
        // isotropic: trilinear, with crop and transpose
        ([1, 0, 2], [1.3, 1.1, 0.9], [1.0, 1.0, 1.0], [9, 11, 13], [12, 14, 11], [1, 2, 0], [15, 17, 12]),
        // anisotropic case spacing (separate-z along axis 0, nearest along z)
        ([0, 1, 2], [2.0, 0.8, 0.8], [5.0, 0.7, 0.7], [10, 14, 12], [4, 16, 14], [0, 1, 1], [6, 18, 16]),
        // no resampling at all
        ([2, 0, 1], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [6, 7, 8], [6, 7, 8], [1, 0, 2], [8, 9, 10]),
    ];
    for (i, (tf, cfg_sp, case_sp, lshape, cropped, lo, before)) in cases.into_iter().enumerate() {
        let plans = plans(tf, cfg_sp, [4, 6, 4], [6, 4]);
        let mut tb = [0usize; 3];
        for (a, &p) in tf.iter().enumerate() {
            tb[p] = a;
        }
        let props = CaseProperties {
            spacing: [case_sp[tb[0]], case_sp[tb[1]], case_sp[tb[2]]],
            spacing_transposed: case_sp,
            shape_before_cropping: before,
            bbox_used_for_cropping: BBox([
                [lo[0], lo[0] + cropped[0]],
                [lo[1], lo[1] + cropped[1]],
                [lo[2], lo[2] + cropped[2]],
            ]),
            shape_after_cropping_and_before_resampling: cropped,
        };
        let regions = SegmentationMode::Regions { regions_class_order: vec![1, 2, 3] };
        for (cfg_name, mode) in
            [("3d_fullres", SegmentationMode::Labels), ("3d_fullres", regions), ("2d", SegmentationMode::Labels)]
        {
            let config = plans.configuration(cfg_name).unwrap();
            // 2d keeps the case's slice spacing, so the logits have the cropped number of slices.
            let ls = if cfg_name == "2d" { [cropped[0], lshape[1], lshape[2]] } else { lshape };
            let l = logits(3, ls, 17 + i as u64);
            let whole = export_prediction(&l, &props, &plans, &config, &mode, false).unwrap().segmentation;
            let streamed = export_segmentation(&l, &props, &plans, &config, &mode).unwrap();
            assert_eq!(streamed, whole, "case {i} {cfg_name} {mode:?}");
            assert_eq!(streamed.shape, [before[tb[0]], before[tb[1]], before[tb[2]]]);
        }
        // The cascade's next-stage segmentation: slabs equal the whole-volume resampling.
        let config = plans.configuration("3d_fullres").unwrap();
        let l = logits(3, lshape, 5 + i as u64);
        let target = [lshape[0] + 3, lshape[1] - 2, lshape[2] + 5];
        let got = resample_logits_to_segmentation(
            &l,
            target,
            cfg_sp,
            cfg_sp,
            &config.resampling_probabilities,
            &SegmentationMode::Labels,
        )
        .unwrap();
        let data = nnunet_prep::resample::resample_probabilities(
            &l.data,
            3,
            lshape,
            target,
            cfg_sp,
            cfg_sp,
            &config.resampling_probabilities,
        )
        .unwrap();
        let want = nnunet_eval::segmentation::scores_to_segmentation(
            &data,
            3,
            target,
            &SegmentationMode::Labels,
            nnunet_eval::segmentation::ScoreKind::Logits,
        )
        .unwrap();
        assert_eq!(got, want, "case {i}: next-stage segmentation");
    }
}
