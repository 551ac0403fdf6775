//! Prediction timing per raw case, pre- and post-processing included (read the images,
//! preprocess, sliding window, export, write the NIfTI), without and/or with mirroring — the
//! figure the peer reports as 3.0 s / 8.4 s per Hippocampus case on 2 CPU threads.

use crate::error::Result;
use crate::export::write_segmentation;
use crate::predictor::{CaseOptions, CaseTimings, LabelSpec, Predictor};
use nnunet_io::dataset::{Case, CaseImages, DatasetError};
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use std::path::Path;
use std::time::Instant;

/// Seconds per case.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictBench {
    pub cases: usize,
    /// Mean seconds per case without mirroring (`None`: not timed).
    pub seconds_per_case_no_mirroring: Option<f64>,
    pub seconds_per_case_mirroring: Option<f64>,
    /// `(case id, mirroring, timings of the parts, seconds in all)`.
    pub per_case: Vec<(String, bool, CaseTimings, f64)>,
}

/// Predicts every case once per entry of `modes` (`false`: mirroring off, `true`: on), writing
/// the segmentations to `out_dir/{no_tta,tta}/CASE.nii.gz`, and reports wall-clock seconds per
/// case. `tiles_per_batch(case)` may set the sliding-window batch per case (a memory budget).
/// `progress(done, total)` after each prediction.
#[allow(clippy::too_many_arguments)]
pub fn bench_predict(
    predictor: &mut Predictor,
    cases: &[Case],
    plans: &Plans,
    config: &ResolvedConfiguration,
    spec: &LabelSpec,
    out_dir: &Path,
    modes: &[bool],
    tiles_per_batch: &dyn Fn(&str, &CaseImages) -> Result<Option<usize>>,
    progress: &dyn Fn(usize, usize),
) -> Result<PredictBench> {
    let mut per_case = Vec::new();
    let total = modes.len() * cases.len();
    let mut done = 0;
    for &tta in modes {
        let dir = out_dir.join(if tta { "tta" } else { "no_tta" });
        std::fs::create_dir_all(&dir).map_err(crate::error::io_err(&dir))?;
        let opts = CaseOptions { tta, ..Default::default() };
        for case in cases {
            let t = Instant::now();
            crate::memory::trace_rss("before case");
            let images =
                case.read_images().map_err(|e: DatasetError| crate::error::InferError::Invalid(e.to_string()))?;
            if let Some(b) = tiles_per_batch(&case.id, &images)? {
                predictor.options.tiles_per_batch = b;
            }
            let pred = predictor.predict_case(images, plans, config, spec, None, &opts)?;
            write_segmentation(
                &dir.join(format!("{}.nii.gz", case.id)),
                &pred.segmentation,
                &pred.header,
                spec.foreground_labels.len(),
            )?;
            per_case.push((case.id.clone(), tta, pred.timings, t.elapsed().as_secs_f64()));
            done += 1;
            progress(done, total);
        }
    }
    let mean = |tta: bool| -> Option<f64> {
        let v: Vec<f64> = per_case.iter().filter(|c| c.1 == tta).map(|c| c.3).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Ok(PredictBench {
        cases: cases.len(),
        seconds_per_case_no_mirroring: mean(false),
        seconds_per_case_mirroring: mean(true),
        per_case,
    })
}
