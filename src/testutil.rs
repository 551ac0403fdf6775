//! Helpers for the engine's unit tests: a dataset folder with named (empty) case files, and a
//! pipeline parsed from YAML text. Only names matter to the DAG, keys of raw files hash their
//! (empty) content.

use std::path::Path;

use crate::config::{parse, PipelineSpec};
use nnunet_io::dataset::{open_dataset, Dataset};

/// An nnU-Net v2 raw dataset under `dir/ds` with `cases` training cases `case_000`, … (one
/// channel, labels background/fg; the image files are empty).
pub fn dataset(dir: &Path, cases: usize) -> Dataset {
    let root = dir.join("ds");
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    std::fs::write(
        root.join("dataset.json"),
        format!(
            r#"{{"channel_names": {{"0": "CT"}}, "labels": {{"background": 0, "fg": 1}}, "numTraining": {cases}, "file_ending": ".nii.gz"}}"#
        ),
    )
    .unwrap();
    for i in 0..cases {
        std::fs::write(root.join(format!("imagesTr/case_{i:03}_0000.nii.gz")), b"").unwrap();
        std::fs::write(root.join(format!("labelsTr/case_{i:03}.nii.gz")), b"").unwrap();
    }
    open_dataset(&root).unwrap()
}

/// A pipeline file `dir/pipeline.yaml` with the dataset `ds` and the given `params:` and
/// `stages:` blocks (YAML, indented by two spaces under their key).
pub fn pipeline(dir: &Path, params: &str, stages: &str) -> PipelineSpec {
    let params = if params.trim().is_empty() { String::new() } else { format!("params:\n{params}\n") };
    let text = format!("name: t\ndataset: ds\n{params}stages:\n{stages}");
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, &text).unwrap();
    parse(&text, &file).unwrap()
}
