//! Prediction timing per raw case, pre- and post-processing included (read the images,
//! preprocess, sliding window, export, write the NIfTI), without and with mirroring — the
//! figure the peer reports as 3.0 s / 8.4 s per Hippocampus case on 2 CPU threads.

use crate::error::Result;
use crate::export::write_segmentation;
use crate::predictor::{CaseOptions, LabelSpec, Predictor};
use nnunet_io::dataset::{Case, DatasetError};
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use std::path::Path;
use std::time::Instant;

/// Seconds per case.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictBench {
    pub cases: usize,
    pub seconds_per_case_no_mirroring: f64,
    pub seconds_per_case_mirroring: f64,
    /// `(case id, seconds without, seconds with mirroring)`.
    pub per_case: Vec<(String, f64, f64)>,
}

/// Predicts every case twice (mirroring off, then on), writing the segmentations to
/// `out_dir/{no_tta,tta}/CASE.nii.gz`, and reports wall-clock seconds per case.
/// `progress(done, total)` after each prediction.
pub fn bench_predict(
    predictor: &Predictor,
    cases: &[Case],
    plans: &Plans,
    config: &ResolvedConfiguration,
    spec: &LabelSpec,
    out_dir: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<PredictBench> {
    let mut per_case: Vec<(String, f64, f64)> = cases.iter().map(|c| (c.id.clone(), 0.0, 0.0)).collect();
    let total = 2 * cases.len();
    let mut done = 0;
    for tta in [false, true] {
        let dir = out_dir.join(if tta { "tta" } else { "no_tta" });
        std::fs::create_dir_all(&dir).map_err(crate::error::io_err(&dir))?;
        let opts = CaseOptions { tta, ..Default::default() };
        for (i, case) in cases.iter().enumerate() {
            let t = Instant::now();
            let images =
                case.read_images().map_err(|e: DatasetError| crate::error::InferError::Invalid(e.to_string()))?;
            let pred = predictor.predict_raw_case(&images, plans, config, spec, None, &opts)?;
            write_segmentation(
                &dir.join(format!("{}.nii.gz", case.id)),
                &pred.segmentation,
                &pred.header,
                spec.foreground_labels.len(),
            )?;
            let s = t.elapsed().as_secs_f64();
            if tta {
                per_case[i].2 = s;
            } else {
                per_case[i].1 = s;
            }
            done += 1;
            progress(done, total);
        }
    }
    let n = cases.len().max(1) as f64;
    Ok(PredictBench {
        cases: cases.len(),
        seconds_per_case_no_mirroring: per_case.iter().map(|c| c.1).sum::<f64>() / n,
        seconds_per_case_mirroring: per_case.iter().map(|c| c.2).sum::<f64>() / n,
        per_case,
    })
}
