use super::*;
use crate::dataset::open_dataset;
use crate::nifti::read_nifti;
use crate::verify::verify_dataset;

fn small(o: SynthOptions) -> SynthOptions {
    SynthOptions { cases: 4, test_cases: 1, shape: [12, 32, 32], ..o }
}

#[test]
fn default_dataset_opens_and_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset999_Synth");
    let o = SynthOptions::default();
    generate(&root, &o).unwrap();
    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.cases.len(), 12);
    assert_eq!(ds.test_cases.len(), 2);
    assert!(ds.test_cases.iter().all(|c| c.label.is_some()));
    assert_eq!(ds.cases[0].id, "synth_000");
    assert_eq!(ds.channel_names, vec!["CT"]);
    assert_eq!(ds.labels.foreground_labels(), vec![1, 2]);
    let report = verify_dataset(&ds, &|_, _| {});
    assert!(report.is_ok() && report.warnings.is_empty(), "{report}");

    // Content: CT air, distinct label intensities, every label in every case, varying shapes,
    // rotated affines with consistent qform/sform.
    let mut shapes = std::collections::BTreeSet::new();
    for case in ds.cases.iter().chain(&ds.test_cases) {
        let imgs = case.read_images().unwrap();
        let (lab, _) = case.read_label().unwrap();
        let img = &imgs.channels[0];
        shapes.insert(img.shape);
        assert!(img.data.iter().all(|v| v.fract() == 0.0), "CT is stored as int16");
        assert!((imgs.spacing[0] - 3.0).abs() < 0.2 && (imgs.spacing[1] - 0.8).abs() < 0.05);
        let mut sum = [0f64; 3];
        let mut cnt = [0usize; 3];
        for (&v, &l) in img.data.iter().zip(&lab.data) {
            sum[l as usize] += v as f64;
            cnt[l as usize] += 1;
        }
        assert!(cnt.iter().all(|&c| c > 0), "{}: label counts {cnt:?}", case.id);
        let mean: Vec<f64> = (0..3).map(|i| sum[i] / cnt[i] as f64).collect();
        assert!(img.get(0, 0, 0) < -900.0, "corner is air: {}", img.get(0, 0, 0));
        assert!((mean[1] - mean[2]).abs() > 30.0, "{}: label means {mean:?}", case.id);
        let h = read_nifti(&case.images[0].path).unwrap().header;
        let (q, s) = (h.qform_affine(), h.sform_affine());
        for i in 0..3 {
            for j in 0..4 {
                assert!((q[i][j] - s[i][j]).abs() < 1e-3, "qform {q:?} vs sform {s:?}");
            }
        }
        assert!(s[0][3].abs() + s[1][3].abs() + s[2][3].abs() > 1.0, "origin is non-zero");
        assert!(s[0][1] != 0.0 || s[0][2] != 0.0 || s[1][2] != 0.0, "rotated");
    }
    assert!(shapes.len() > 5, "shapes vary: {shapes:?}");
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = small(SynthOptions { channels: 2, labels: 3, ..SynthOptions::default() });
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    generate(&a, &o).unwrap();
    generate(&b, &o).unwrap();
    generate(&c, &SynthOptions { seed: 1, ..o.clone() }).unwrap();
    let mut files = Vec::new();
    for sub in ["imagesTr", "labelsTr", "imagesTs", "labelsTs"] {
        for e in std::fs::read_dir(a.join(sub)).unwrap() {
            files.push(PathBuf::from(sub).join(e.unwrap().file_name()));
        }
    }
    files.push(PathBuf::from("dataset.json"));
    assert_eq!(files.len(), 4 * 2 + 4 + 2 + 1 + 1);
    let mut differ = 0;
    for f in &files {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.join(f)).unwrap(), "{f:?} differs between runs");
        if f.extension().is_some_and(|e| e == "gz") && x != std::fs::read(c.join(f)).unwrap() {
            differ += 1;
        }
    }
    assert!(differ >= 12, "another seed gives other images ({differ})");
}

#[test]
fn mr_multichannel_has_zero_background_and_bias() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset998_SynthMR");
    let o = small(SynthOptions {
        modality: Modality::Mr,
        channels: 2,
        labels: 4,
        name: "Dataset998_SynthMR".into(),
        ..SynthOptions::default()
    });
    generate(&root, &o).unwrap();
    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.channel_names, vec!["T2", "ADC"]);
    assert_eq!(ds.cases[0].id, "synthmr_000");
    assert_eq!(ds.labels.num_segmentation_heads(), 5);
    let report = verify_dataset(&ds, &|_, _| {});
    assert!(report.is_ok(), "{report}");
    for case in &ds.cases {
        let imgs = case.read_images().unwrap();
        let (lab, _) = case.read_label().unwrap();
        for ch in &imgs.channels {
            assert!(ch.data.iter().all(|&v| v >= 0.0));
            // Corners are background (exactly 0): cropping to non-zero shrinks the volume.
            assert_eq!(ch.get(0, 0, 0), 0.0);
            let [z, y, x] = ch.shape;
            assert_eq!(ch.get(z - 1, y - 1, x - 1), 0.0);
            let nonzero = ch.data.iter().filter(|&&v| v > 0.0).count();
            assert!(nonzero > ch.len() / 5 && nonzero < ch.len() * 9 / 10, "{nonzero} of {}", ch.len());
        }
        // The two channels are different contrasts: label 1 is bright in one and dark in the other
        // relative to tissue (label 0 inside the head).
        let mean = |c: usize, l: i16| {
            let v: Vec<f32> = imgs.channels[c]
                .data
                .iter()
                .zip(&lab.data)
                .filter(|(&v, &x)| x == l && v > 0.0)
                .map(|(&v, _)| v)
                .collect();
            v.iter().sum::<f32>() / v.len().max(1) as f32
        };
        let d0 = mean(0, 1) - mean(0, 0);
        let d1 = mean(1, 1) - mean(1, 0);
        assert!(d0 * d1 < 0.0, "{}: contrast {d0} vs {d1}", case.id);
        let mut present: Vec<i16> = lab.data.clone();
        present.sort_unstable();
        present.dedup();
        assert_eq!(present, vec![0, 1, 2, 3, 4], "{}", case.id);
    }
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for o in [
        SynthOptions { channels: 0, ..SynthOptions::default() },
        SynthOptions { labels: 0, ..SynthOptions::default() },
        SynthOptions { labels: 255, ..SynthOptions::default() },
        SynthOptions { shape: [2, 64, 64], ..SynthOptions::default() },
        SynthOptions { spacing: [0.0, 1.0, 1.0], ..SynthOptions::default() },
        SynthOptions { shape_jitter: 0.7, ..SynthOptions::default() },
    ] {
        let e = generate(dir.path(), &o).unwrap_err();
        assert!(matches!(e, SynthError::Options(_)), "{e}");
    }
    assert_eq!(SynthOptions { name: "plain".into(), ..SynthOptions::default() }.case_prefix(), "plain");
    assert_eq!(SynthOptions::default().label_names(), vec!["organ_1", "lesion_1"]);
}

#[test]
fn every_format_generates_a_dataset_that_verifies() {
    // `pipeline synth --format F` (issue 14): each format opens, verifies and reads back.
    let dir = tempfile::tempdir().unwrap();
    for (ending, channels) in [
        (".mha", 1),
        (".mhd", 2),
        (".nrrd", 1),
        (".nhdr", 1),
        (".png", 3),
        (".png", 1),
        (".bmp", 1),
        (".tif", 1),
        (".nii", 1),
    ] {
        let out = dir.path().join(format!("ds{}{channels}", ending.replace('.', "_")));
        let o = SynthOptions {
            cases: 2,
            test_cases: 1,
            shape: [6, 16, 16],
            channels,
            modality: if channels == 3 { Modality::Mr } else { Modality::Ct },
            file_ending: ending.into(),
            ..SynthOptions::default()
        };
        generate(&out, &o).unwrap_or_else(|e| panic!("{ending}: {e}"));
        let ds = crate::dataset::open_dataset(&out).unwrap();
        assert_eq!(ds.file_ending, ending);
        let report = crate::verify::verify_dataset(&ds, &|_, _| {});
        assert!(report.is_ok(), "{ending}: {report}");
        let images = ds.cases[0].read_images().unwrap();
        assert_eq!(images.channels.len(), channels, "{ending}");
        let two_d = matches!(ending, ".png" | ".bmp");
        assert_eq!(images.header.ndim(), if two_d { 2 } else { 3 }, "{ending}");
        let (label, _) = ds.cases[0].read_label().unwrap();
        assert!(label.data.iter().any(|&l| l > 0), "{ending}: empty label");
    }
    let bad = SynthOptions { file_ending: ".jpg".into(), ..SynthOptions::default() };
    assert!(generate(&dir.path().join("bad"), &bad).unwrap_err().to_string().contains(".jpg"));
}
