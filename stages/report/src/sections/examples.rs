//! Example slices: up to three cross-validation cases (worst, median and best by Dice when
//! scores are known), each on the axial slice (axis 0) with the most reference foreground,
//! with reference (solid) and predicted (dashed) contours.

use super::cv::ConfigCv;
use super::Ctx;
use crate::cases::CaseDice;
use crate::doc::{Block, Figure, FigureContent, Section};
use crate::fmt;
use crate::png::{slice_with_contours, Slice};
use crate::run::segmentations;
use nnunet_io::dataset::open_dataset;
use std::path::{Path, PathBuf};

const COLOUR_NAMES: [&str; 6] = ["red", "blue", "teal", "yellow", "orange", "purple"];

/// Index of the axial slice with the most non-zero voxels of `lab` (first on ties), if any.
pub fn busiest_slice(shape: [usize; 3], lab: &[i16]) -> Option<usize> {
    let n = shape[1] * shape[2];
    if n == 0 || lab.len() != shape[0] * n {
        return None;
    }
    let counts: Vec<usize> = lab.chunks(n).map(|s| s.iter().filter(|&&v| v > 0).count()).collect();
    let (best, &c) = counts.iter().enumerate().rev().max_by_key(|(_, c)| **c)?;
    (c > 0).then_some(best)
}

/// Worst, median and best case by score (distinct), or evenly spaced when no score is known.
pub fn pick_cases(ids: &[String], scores: &[(String, f64)], k: usize) -> Vec<String> {
    let mut scored: Vec<(String, f64)> =
        scores.iter().filter(|(c, s)| s.is_finite() && ids.contains(c)).cloned().collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    scored.dedup_by(|a, b| a.0 == b.0);
    let pool: Vec<String> = if scored.is_empty() { ids.to_vec() } else { scored.into_iter().map(|x| x.0).collect() };
    if pool.len() <= k {
        return pool;
    }
    let mut out: Vec<String> = Vec::new();
    for i in 0..k {
        let idx = if k == 1 { pool.len() / 2 } else { i * (pool.len() - 1) / (k - 1) };
        if !out.contains(&pool[idx]) {
            out.push(pool[idx].clone());
        }
    }
    out
}

fn dataset_root(ctx: &Ctx) -> Option<PathBuf> {
    let d = PathBuf::from(ctx.run.info.dataset.as_deref()?);
    if d.is_absolute() {
        return Some(d);
    }
    [ctx.run.dir.join(&d), d].into_iter().find(|p| p.join("dataset.json").is_file())
}

/// Where example predictions come from: a description, `(case, file)` and `(case, score)`.
struct Sources {
    what: String,
    preds: Vec<(String, PathBuf)>,
    scores: Vec<(String, f64)>,
}

/// Prediction folders to take examples from.
fn sources(ctx: &Ctx, cvs: &[ConfigCv]) -> Sources {
    let pp = ctx.run.stage_dir("postprocess");
    let cv = pp.join("cv_predictions");
    let preds = segmentations(&cv);
    if !preds.is_empty() {
        let scores = ctx
            .run
            .table(&pp.join("metrics_after.parquet"))
            .ok()
            .flatten()
            .and_then(|t| CaseDice::from_metrics(&t, "").ok())
            .map(|cd| cd.rows.iter().map(|r| (r.case.clone(), cd.case_score(r))).collect())
            .unwrap_or_default();
        return Sources { what: "final cross-validation prediction (after post-processing)".into(), preds, scores };
    }
    // Else the validation predictions of the chosen (or first) configuration.
    let chosen = ctx.summary.chosen.as_ref().and_then(|c| c.members.first().cloned());
    let cfg = chosen.and_then(|c| cvs.iter().find(|x| x.name == c)).or_else(|| cvs.first());
    let Some(cfg) = cfg else { return Sources { what: String::new(), preds: Vec::new(), scores: Vec::new() } };
    let train = ctx.run.stage_dir("train-fold").join(format!("configuration={}", cfg.name));
    let mut preds = Vec::new();
    for (_, fdir) in crate::run::axis_dirs(&train, "fold") {
        preds.extend(segmentations(&fdir.join("validation")));
    }
    let scores = cfg.cases.rows.iter().map(|r| (r.case.clone(), cfg.cases.case_score(r))).collect();
    Sources { what: format!("{} validation prediction", cfg.name), preds, scores }
}

fn render(case: &nnunet_io::dataset::Case, pred: &Path) -> Result<(Vec<u8>, String), String> {
    let images = case.read_images().map_err(|e| e.to_string())?;
    let image = images.channels.first().ok_or("no image channel")?;
    let (reference, _) = case.read_label().map_err(|e| e.to_string())?;
    let prediction = nnunet_io::image::read_image(pred).and_then(|i| i.to_label_volume()).map_err(|e| e.to_string())?;
    if reference.shape != image.shape || prediction.shape != image.shape {
        return Err(format!(
            "shapes differ: image {:?}, reference {:?}, prediction {:?}",
            image.shape, reference.shape, prediction.shape
        ));
    }
    let [d, h, w] = image.shape;
    let z = busiest_slice(image.shape, &reference.data)
        .or_else(|| busiest_slice(image.shape, &prediction.data))
        .unwrap_or(d / 2);
    let n = h * w;
    let r = z * n..(z + 1) * n;
    let longest = h.max(w).max(1);
    let scale = if longest >= 1024 { 1 } else { 384usize.div_ceil(longest).clamp(1, 16) };
    let png = slice_with_contours(
        &Slice {
            h,
            w,
            image: &image.data[r.clone()],
            reference: &reference.data[r.clone()],
            prediction: &prediction.data[r],
        },
        scale,
    )
    .map_err(|e| e.to_string())?;
    Ok((png, format!("axial slice {z} of {d}")))
}

pub fn build(ctx: &mut Ctx, cvs: &[ConfigCv]) -> Section {
    let mut sec = Section::new("examples", "Example slices");
    let Sources { what, preds, scores } = sources(ctx, cvs);
    if preds.is_empty() {
        ctx.missing(
            &mut sec,
            "postprocess",
            "cross-validation predictions to show (postprocess/cv_predictions or train/*/fold=*/validation)".into(),
        );
        return sec;
    }
    let Some(root) = dataset_root(ctx) else {
        sec.info(format!(
            "the raw dataset ({}) was not found: example slices need its images and labels",
            ctx.run.info.dataset.as_deref().unwrap_or("run.json names none")
        ));
        return sec;
    };
    let ds = match open_dataset(&root) {
        Ok(ds) => ds,
        Err(e) => {
            sec.info(format!("the raw dataset could not be opened ({e}): no example slices"));
            return sec;
        }
    };
    let ids: Vec<String> =
        preds.iter().map(|p| p.0.clone()).filter(|id| ds.case(id).is_some_and(|c| c.label.is_some())).collect();
    let chosen = pick_cases(&ids, &scores, 3);
    let labels: Vec<String> = ds
        .labels
        .foreground_labels()
        .iter()
        .map(|l| {
            let name = ds.labels.name_of(*l).unwrap_or_default();
            format!("{l} {name} {}", COLOUR_NAMES[(*l as usize).saturating_sub(1) % COLOUR_NAMES.len()])
        })
        .collect();
    sec.push(Block::Para(format!(
        "Each image: the {what} of a case (lowest, median and highest Dice when scores are known) on the axial \
         slice with the most reference foreground. Reference contours solid, predicted contours dashed (the label's \
         colour alternating with black); colours: {}.",
        labels.join(", ")
    )));
    let mut figs = Vec::new();
    for id in &chosen {
        let (Some(case), Some((_, pred))) = (ds.case(id), preds.iter().find(|p| &p.0 == id)) else { continue };
        match render(case, pred) {
            Ok((png, where_)) => {
                let score = scores.iter().find(|s| &s.0 == id).map(|s| format!(", Dice {}", fmt::score(s.1)));
                figs.push(Figure {
                    file: format!("example_{}.png", crate::doc::slug(id)),
                    caption: format!("{id}: {where_}{}", score.unwrap_or_default()),
                    content: FigureContent::Png(png),
                });
            }
            Err(e) => sec.info(format!("case {id}: no example slice ({e})")),
        }
    }
    if !figs.is_empty() {
        sec.push(Block::Figures(figs));
    }
    sec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_slice_and_picks() {
        let mut lab = vec![0i16; 3 * 4];
        lab[4] = 1; // slice 1: one voxel
        lab[8] = 2;
        lab[9] = 1; // slice 2: two voxels
        assert_eq!(busiest_slice([3, 2, 2], &lab), Some(2));
        assert_eq!(busiest_slice([3, 2, 2], &[0; 12]), None);
        assert_eq!(busiest_slice([3, 2, 2], &[0; 5]), None);
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let scores =
            vec![("a".into(), 0.9), ("b".into(), 0.1), ("c".into(), 0.5), ("d".into(), 0.7), ("e".into(), 0.3)];
        assert_eq!(pick_cases(&ids, &scores, 3), ["b", "c", "a"]);
        assert_eq!(pick_cases(&ids, &[], 3), ["a", "c", "e"]);
        assert_eq!(pick_cases(&ids[..2], &[], 3), ["a", "b"]);
    }
}
