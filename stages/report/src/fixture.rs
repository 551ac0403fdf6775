//! A small but complete fake run for tests (this crate's and the CLI's): a synthetic dataset,
//! a cache with manifests, and `runs/demo/` with every stage view linked into it, written with
//! the same domain functions the stage adapters use (real fingerprint, plans, Dice, summaries,
//! post-processing decision). Predictions are the references shifted by a voxel plus a stray
//! blob, so the numbers are non-trivial and post-processing has something to remove.

use nnunet_eval::classes::{labels as label_classes, LabelOrRegion};
use nnunet_eval::ensemble::{ensemble_name, select_best, Candidate};
use nnunet_eval::folder::evaluate_pair;
use nnunet_eval::postprocess::{determine_postprocessing, CasePair};
use nnunet_eval::summary::{CaseResult, Summary};
use nnunet_io::dataset::{open_dataset, Dataset};
use nnunet_io::image::ImageHeader;
use nnunet_io::rng::Rng;
use nnunet_io::synth::{generate, SynthOptions};
use nnunet_io::table::{Column, Table};
use nnunet_io::Volume;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the fake run is.
#[derive(Clone, Debug)]
pub struct FakeRun {
    pub root: PathBuf,
    /// `root/runs/demo`.
    pub run_dir: PathBuf,
    pub dataset: PathBuf,
    pub cache: PathBuf,
    /// Configurations trained (2 folds each).
    pub configurations: Vec<String>,
}

type R<T> = Result<T, String>;

fn e<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

struct Builder {
    root: PathBuf,
    cache: PathBuf,
    run_dir: PathBuf,
    units: Vec<Value>,
    n: u64,
}

impl Builder {
    /// A new artifact: `cache/artifacts/KIND/KE/KEY/{manifest.json,out/}`; returns `out/`.
    fn artifact(&mut self, kind: &str, stage: &str, unit: &str, cached: bool) -> R<PathBuf> {
        self.n += 1;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in unit.bytes().chain(kind.bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let key = format!("{h:016x}{:016x}{h:016x}{:016x}", self.n, !h);
        let dir = self.cache.join("artifacts").join(kind).join(&key[..2]).join(&key);
        let out = dir.join("out");
        std::fs::create_dir_all(&out).map_err(e("mkdir"))?;
        let duration = 0.5 + self.n as f64 * 0.25;
        let started = format!("2025-01-01T00:{:02}:00Z", self.n % 60);
        let manifest = json!({"key": key, "unit": unit, "started": started, "duration_s": duration});
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).map_err(e("manifest"))?;
        self.units.push(json!({
            "unit": unit, "stage": stage, "kind": kind,
            "outcome": if cached { "cached" } else { "built" },
            "key": key, "seconds": if cached { 0.0 } else { duration },
            "build_seconds": duration, "built_at": started,
        }));
        Ok(out)
    }

    /// `runs/demo/VIEW` -> `out` (relative link, like the engine's).
    fn link(&self, view: &str, out: &Path) -> R<()> {
        let link = self.run_dir.join(view);
        let parent = link.parent().ok_or("view without parent")?;
        std::fs::create_dir_all(parent).map_err(e("mkdir"))?;
        let depth = parent.strip_prefix(&self.root).map_err(e("view"))?.components().count();
        let rel = PathBuf::from("../".repeat(depth)).join(out.strip_prefix(&self.root).map_err(e("out"))?);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&rel, &link).map_err(e("symlink"))?;
        #[cfg(not(unix))]
        return Err(format!("symlinks are needed for {rel:?}"));
        Ok(())
    }
}

fn write_json(p: &Path, v: &impl serde::Serialize) -> R<()> {
    std::fs::write(p, serde_json::to_string_pretty(v).map_err(e("json"))?).map_err(e("write"))
}

/// `reference` shifted by one voxel along `axis`, plus a 2×2×2 blob of label 1 in a corner.
fn perturb(reference: &Volume<i16>, axis: usize, blob: bool) -> Volume<i16> {
    let [d, h, w] = reference.shape;
    let mut out = Volume::filled(reference.shape, 0i16);
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let mut c = [z, y, x];
                if c[axis] == 0 {
                    continue;
                }
                c[axis] -= 1;
                out.set(z, y, x, reference.get(c[0], c[1], c[2]));
            }
        }
    }
    if blob {
        for z in 0..2.min(d) {
            for y in 0..2.min(h) {
                for x in 0..2.min(w) {
                    out.set(z, y, x, 1);
                }
            }
        }
    }
    out
}

fn write_seg(path: &Path, header: &ImageHeader, seg: &Volume<i16>) -> R<()> {
    nnunet_io::image::write_segmentation(path, header, seg, false).map_err(e("image"))
}

fn epoch_log(seed: u64, epochs: usize, nan_at: Option<usize>) -> Table {
    let mut rng = Rng::new(seed);
    let mut cols: [Vec<f64>; 9] = Default::default();
    let mut ema = f64::NAN;
    for ep in 0..epochs {
        let t = ep as f64;
        let dice1 = 0.85 * (1.0 - (-t / 4.0).exp()) + 0.03 * rng.normal();
        let dice2 = if nan_at == Some(ep) { f64::NAN } else { 0.6 * (1.0 - (-t / 6.0).exp()) + 0.03 * rng.normal() };
        let mean = if dice2.is_nan() { dice1 } else { (dice1 + dice2) / 2.0 };
        ema = if ema.is_nan() { mean } else { 0.9 * ema + 0.1 * mean };
        let vals = [
            -0.1 - 0.6 * (1.0 - (-t / 5.0).exp()) + 0.02 * rng.normal(),
            -0.05 - 0.5 * (1.0 - (-t / 5.0).exp()) + 0.03 * rng.normal(),
            mean,
            ema,
            0.01 * (1.0 - t / epochs as f64).powf(0.9),
            1.5 + 0.2 * rng.next_f64(),
            0.05 + 0.05 * rng.next_f64(),
            dice1,
            dice2,
        ];
        for (c, v) in cols.iter_mut().zip(vals) {
            c.push(v);
        }
    }
    let [tl, vl, md, em, lr, es, dw, d1, d2] = cols;
    Table::new()
        .with("epoch", Column::I64((0..epochs as i64).collect()))
        .with("train_loss", Column::F64(tl))
        .with("val_loss", Column::F64(vl))
        .with("mean_fg_dice", Column::F64(md))
        .with("ema_fg_dice", Column::F64(em))
        .with("lr", Column::F64(lr))
        .with("epoch_seconds", Column::F64(es))
        .with("data_wait_seconds", Column::F64(dw))
        .with("dice_1", Column::F64(d1))
        .with("dice_2", Column::F64(d2))
}

/// Writes the fake run under `root` (which should be empty).
///
/// Long (~220 lines) on purpose: a test fixture written as one script, stage by stage, so the
/// fake run reads like the engine's outputs it imitates.
pub fn build(root: &Path) -> R<FakeRun> {
    let root = root.canonicalize().map_err(e("root"))?;
    let data = root.join("data").join("Dataset999_Synth");
    let opts =
        SynthOptions { cases: 6, test_cases: 2, shape: [8, 24, 24], shape_jitter: 0.0, seed: 7, ..Default::default() };
    generate(&data, &opts).map_err(e("synth"))?;
    let ds: Dataset = open_dataset(&data).map_err(e("dataset"))?;
    let mut b = Builder {
        cache: root.join("cache"),
        run_dir: root.join("runs").join("demo"),
        root: root.clone(),
        units: Vec::new(),
        n: 0,
    };
    std::fs::create_dir_all(&b.run_dir).map_err(e("mkdir"))?;

    // Fingerprint: per-case units, then the aggregate.
    let mut fps = Vec::new();
    for c in &ds.cases {
        let out = b.artifact("fingerprint", "fingerprint", &format!("fingerprint[{}]", c.id), false)?;
        let im = c.read_images().map_err(e("images"))?;
        let (lab, _) = c.read_label().map_err(e("label"))?;
        let fp = nnunet_prep::CaseFingerprint::compute(&im.channels, &lab, im.spacing).map_err(e("fingerprint"))?;
        write_json(&out.join("case.json"), &fp)?;
        fps.push(fp);
    }
    let fp = nnunet_prep::fingerprint::aggregate_with_total(&fps, 1234, 1e4).map_err(e("aggregate"))?;
    let out = b.artifact("fingerprint", "fingerprint", "fingerprint", true)?;
    write_json(&out.join("dataset_fingerprint.json"), &fp)?;
    let ids: Vec<String> = ds.cases.iter().map(|c| c.id.clone()).collect();
    nnunet_prep::fingerprint::case_table(&ids, &fps).write_parquet(&out.join("cases.parquet")).map_err(e("parquet"))?;
    b.link("fingerprint", &out)?;

    // Plan.
    let info = nnunet_prep::DatasetInfo {
        name: "Dataset999_Synth".into(),
        channel_names: ds.channel_names.clone(),
        num_labels_in_json: ds.labels.num_labels_in_json(),
        num_training: ds.cases.len(),
    };
    let plans = nnunet_prep::plan_experiment(&fp, &info, &nnunet_prep::PlannerOptions::default()).map_err(e("plan"))?;
    let out = b.artifact("plan", "plan", "plan", true)?;
    write_json(&out.join("plans.json"), &plans)?;
    write_json(&out.join("dataset.json"), &ds.to_v2_dataset_json())?;
    let ids: Vec<String> = ds.cases.iter().map(|c| c.id.clone()).collect();
    let folds: Vec<(Vec<String>, Vec<String>)> = (0..2)
        .map(|f| {
            let val: Vec<String> = ids.iter().enumerate().filter(|(i, _)| i % 2 == f).map(|(_, s)| s.clone()).collect();
            let train = ids.iter().filter(|s| !val.contains(s)).cloned().collect();
            (train, val)
        })
        .collect();
    write_json(
        &out.join("splits_final.json"),
        &folds.iter().map(|(t, v)| json!({"train": t, "val": v})).collect::<Vec<_>>(),
    )?;
    b.link("plan", &out)?;

    // Train: two configurations × two folds, validation predictions and scores.
    let classes = label_classes(&[1, 2]);
    let configurations: Vec<String> =
        ["2d", "3d_fullres"].iter().filter(|c| plans.configurations.contains_key(**c)).map(|c| c.to_string()).collect();
    let mut cv_files: Vec<Vec<(String, PathBuf)>> = Vec::new();
    let mut candidates = Vec::new();
    for (ci, cfg) in configurations.iter().enumerate() {
        let mut results: Vec<CaseResult> = Vec::new();
        let mut files = Vec::new();
        for (f, (_, val)) in folds.iter().enumerate() {
            let out = b.artifact("train-fold", "train", &format!("train[configuration={cfg},fold={f}]"), false)?;
            epoch_log(ci as u64 * 10 + f as u64, 20, (f == 1).then_some(3))
                .write_parquet(&out.join("log.parquet"))
                .map_err(e("log"))?;
            let vdir = out.join("validation");
            std::fs::create_dir_all(&vdir).map_err(e("mkdir"))?;
            let mut fold_results = Vec::new();
            for (k, id) in val.iter().enumerate() {
                let case = ds.case(id).ok_or("case")?;
                let (lab, header) = case.read_label().map_err(e("label"))?;
                let p = vdir.join(format!("{id}.nii.gz"));
                write_seg(&p, &header, &perturb(&lab, 2 - ci, (k + ci) % 2 == 0))?;
                let label_path = case.label.clone().ok_or("label path")?;
                fold_results.push(evaluate_pair(&label_path, &p, &classes, None).map_err(e("evaluate"))?);
                files.push((id.clone(), p));
            }
            let s = Summary::from_cases(classes.clone(), fold_results.clone());
            s.write_json(&vdir.join("summary.json")).map_err(e("summary"))?;
            s.per_case_table().write_parquet(&vdir.join("metrics.parquet")).map_err(e("metrics"))?;
            results.extend(fold_results);
            b.link(&format!("train/configuration={cfg}/fold={f}"), &out)?;
        }
        candidates.push(Candidate {
            name: cfg.clone(),
            members: vec![cfg.clone()],
            summary: Summary::from_cases(classes.clone(), results),
        });
        cv_files.push(files);
    }

    // Select: the configurations and their pair ensemble (voxels where both agree).
    let out = b.artifact("ensemble-select", "select", "select", false)?;
    if configurations.len() == 2 {
        let name = ensemble_name(&configurations[0], &configurations[1], &[0, 1]);
        let dir = out.join("ensembles").join(&name);
        std::fs::create_dir_all(&dir).map_err(e("mkdir"))?;
        let mut results = Vec::new();
        let mut files = Vec::new();
        for ((id, a), (_, bp)) in cv_files[0].iter().zip(&cv_files[1]) {
            let (va, ha) = nnunet_eval::folder::read_segmentation(a).map_err(e("seg"))?;
            let (vb, _) = nnunet_eval::folder::read_segmentation(bp).map_err(e("seg"))?;
            let mut v = va.clone();
            for (x, y) in v.data.iter_mut().zip(&vb.data) {
                if *x != *y {
                    *x = 0;
                }
            }
            let p = dir.join(format!("{id}.nii.gz"));
            write_seg(&p, &ha, &v)?;
            let label_path = ds.case(id).and_then(|c| c.label.clone()).ok_or("label")?;
            results.push(evaluate_pair(&label_path, &p, &classes, None).map_err(e("evaluate"))?);
            files.push((id.clone(), p));
        }
        candidates.push(Candidate {
            name,
            members: configurations.clone(),
            summary: Summary::from_cases(classes.clone(), results),
        });
        cv_files.push(files);
    }
    let sel = select_best(&candidates).map_err(e("select"))?;
    for c in &candidates {
        c.summary.write_json(&out.join(format!("summary_{}.json", c.name))).map_err(e("summary"))?;
    }
    let ranking: Vec<Value> = sel
        .ranking
        .iter()
        .map(|r| {
            json!({"rank": r.rank, "name": r.name, "members": r.members,
                "foreground_dice": nnunet_io::fsio::nan_as_null::value(r.foreground_dice),
                "dice": r.class_dice.iter().map(|(k, v)| (k.clone(), nnunet_io::fsio::nan_as_null::value(*v))).collect::<serde_json::Map<_, _>>()})
        })
        .collect();
    write_json(&out.join("ranking.json"), &ranking)?;
    sel.to_table().write_parquet(&out.join("ranking.parquet")).map_err(e("ranking"))?;
    let best = &candidates[sel.best];
    write_json(
        &out.join("chosen.json"),
        &json!({"name": best.name, "members": best.members, "folds": ["0", "1"], "foreground_dice": nnunet_io::fsio::nan_as_null::value(best.summary.foreground_dice())}),
    )?;
    let cv = out.join("cv_predictions");
    std::fs::create_dir_all(&cv).map_err(e("mkdir"))?;
    for (id, src) in &cv_files[sel.best] {
        std::fs::copy(src, cv.join(format!("{id}.nii.gz"))).map_err(e("copy"))?;
    }
    b.link("select", &out)?;

    // Post-processing on the chosen model's CV predictions.
    let out = b.artifact("postprocess", "postprocess", "postprocess", false)?;
    let mut pairs = Vec::new();
    let mut headers = Vec::new();
    for (id, _) in &cv_files[sel.best] {
        let (p, ph) = nnunet_eval::folder::read_segmentation(&cv.join(format!("{id}.nii.gz"))).map_err(e("seg"))?;
        let (r, _) = ds.case(id).ok_or("case")?.read_label().map_err(e("label"))?;
        pairs.push(CasePair { name: format!("{id}.nii.gz"), prediction: p, reference: r });
        headers.push(ph);
    }
    let fg: Vec<i32> = vec![1, 2];
    let cls: Vec<LabelOrRegion> = classes.clone();
    let outcome = determine_postprocessing(&pairs, &cls, &fg, None, &|_, _| {}).map_err(e("postprocess"))?;
    outcome.decision.write(&out.join("postprocessing.json")).map_err(e("decision"))?;
    outcome.baseline.write_json(&out.join("summary_before.json")).map_err(e("summary"))?;
    outcome.postprocessed.write_json(&out.join("summary_after.json")).map_err(e("summary"))?;
    outcome.postprocessed.per_case_table().write_parquet(&out.join("metrics_after.parquet")).map_err(e("metrics"))?;
    let pdir = out.join("cv_predictions");
    std::fs::create_dir_all(&pdir).map_err(e("mkdir"))?;
    for ((pair, seg), h) in pairs.iter().zip(&outcome.segmentations).zip(&headers) {
        write_seg(&pdir.join(&pair.name), h, seg)?;
    }
    b.link("postprocess", &out)?;

    // Predict and evaluate the test cases.
    let out = b.artifact("predict", "predict", "predict", false)?;
    for c in &ds.test_cases {
        let (lab, h) = c.read_label().map_err(e("test label"))?;
        write_seg(&out.join(format!("{}.nii.gz", c.id)), &h, &perturb(&lab, 0, false))?;
    }
    b.link("predict", &out)?;
    let pred_dir = out.clone();
    let out = b.artifact("evaluate", "evaluate", "evaluate", false)?;
    let s = nnunet_eval::folder::evaluate_folder(&data.join("labelsTs"), &pred_dir, &classes, None, ".nii.gz")
        .map_err(e("evaluate"))?;
    s.write_json(&out.join("summary.json")).map_err(e("summary"))?;
    s.per_case_table().write_parquet(&out.join("metrics.parquet")).map_err(e("metrics"))?;
    b.link("evaluate", &out)?;

    let built = b.units.iter().filter(|u| u["outcome"] == "built").count();
    let cached = b.units.len() - built;
    let seconds: f64 = b.units.iter().filter_map(|u| u["seconds"].as_f64()).sum();
    write_json(
        &b.run_dir.join("run.json"),
        &json!({
            "run": "demo", "pipeline": root.join("pipeline.yaml"), "dataset": data, "cache": b.cache,
            "variant": [], "seconds": seconds, "built": built, "cached": cached, "failed": 0, "skipped": 0,
            "units": b.units,
        }),
    )?;
    Ok(FakeRun { root: root.clone(), run_dir: b.run_dir, dataset: data, cache: b.cache, configurations })
}

/// The rows (header excluded) of the Markdown table preceded by `<!-- table: ID -->`, cells
/// unescaped.
pub fn markdown_table(md: &str, id: &str) -> Option<Vec<Vec<String>>> {
    let marker = format!("<!-- table: {id} -->");
    let start = md.find(&marker)? + marker.len();
    let mut lines = md[start..].lines().skip_while(|l| !l.starts_with('|'));
    let _header = lines.next()?;
    let _align = lines.next()?;
    let split = |l: &str| -> Vec<String> {
        let inner = l.trim().trim_start_matches('|');
        let inner = inner.strip_suffix('|').unwrap_or(inner);
        let mut cells = vec![String::new()];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let (Some(n), Some(cell)) = (chars.next(), cells.last_mut()) {
                        cell.push(n);
                    }
                }
                '|' => cells.push(String::new()),
                c => {
                    if let Some(cell) = cells.last_mut() {
                        cell.push(c);
                    }
                }
            }
        }
        cells.into_iter().map(|s| s.trim().to_string()).collect()
    };
    Some(lines.take_while(|l| l.starts_with('|')).map(split).collect())
}

/// A cell of an HTML table: its text and, for numeric cells, the exact value in `data-v`.
#[derive(Clone, Debug, PartialEq)]
pub struct HtmlCell {
    pub text: String,
    pub value: Option<f64>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The body rows of the HTML table `id="t-ID"` of a page (as written, or as a browser's DOM
/// dump serialises it).
pub fn html_table(html: &str, id: &str) -> Option<Vec<Vec<HtmlCell>>> {
    let start = html.find(&format!("id=\"t-{id}\""))?;
    let rest = &html[start..];
    let end = rest.find("</table>")?;
    let body = &rest[rest.find("<tbody>")? + 7..end];
    let mut rows = Vec::new();
    for tr in body.split("<tr>").skip(1) {
        let mut cells = Vec::new();
        for td in tr.split("<td").skip(1) {
            let (attrs, after) = td.split_once('>')?;
            let text = after.split("</td>").next()?;
            let value = attrs.split("data-v=\"").nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse().ok());
            cells.push(HtmlCell { text: unescape(text), value });
        }
        rows.push(cells);
    }
    Some(rows)
}
