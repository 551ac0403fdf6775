//! Self-contained model bundles: one `.tar` holding `manifest.json` (first), `plans.json`,
//! `dataset.json`, the postprocessing decision, and per chosen configuration and fold the
//! checkpoint files (`configurations/<config>/fold_<f>/{model.safetensors, meta.json}`).
//!
//! The manifest lists every file with its size and blake3 hash. [`load_bundle`] refuses an
//! unknown format version, a declared fold without its files, any file whose hash differs
//! (naming it), unlisted files, and entries that would land outside the target (`..`,
//! absolute paths, links). It extracts into a temporary sibling folder and renames it into
//! place only when everything checked out, so a failed load leaves nothing behind.

use crate::error::{io_err, InferError, Result};
use crate::network::{CHECKPOINT_META, CHECKPOINT_WEIGHTS};
use crate::tar::{EntryKind, TarReader, TarWriter};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const BUNDLE_FORMAT: &str = "nnunet-rs-model-bundle";
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const PLANS: &str = "plans.json";
pub const DATASET: &str = "dataset.json";
pub const POSTPROCESSING: &str = "postprocessing.json";

/// One chosen configuration and its folds' checkpoint folders.
#[derive(Clone, Debug)]
pub struct BundleConfiguration {
    pub name: String,
    /// `(fold name, checkpoint folder)`, e.g. `("0", .../fold_0)` or `("all", ...)`.
    pub folds: Vec<(String, PathBuf)>,
}

/// What goes into a bundle.
#[derive(Clone, Debug, Default)]
pub struct BundleParts {
    pub plans_json: PathBuf,
    pub dataset_json: PathBuf,
    /// One configuration, or two for an ensemble.
    pub configurations: Vec<BundleConfiguration>,
    pub postprocessing_json: Option<PathBuf>,
    /// Tool versions (pipeline, torch, ...) recorded in the manifest.
    pub versions: BTreeMap<String, String>,
    /// Free-form information stored in the manifest (e.g. the selection result).
    pub info: serde_json::Value,
}

/// A file listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// A configuration listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestConfiguration {
    pub name: String,
    pub folds: Vec<String>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: String,
    pub format_version: u32,
    pub versions: BTreeMap<String, String>,
    pub configurations: Vec<ManifestConfiguration>,
    pub postprocessing: Option<String>,
    #[serde(default)]
    pub info: serde_json::Value,
    pub files: Vec<ManifestFile>,
}

/// Path of a fold's checkpoint folder inside a bundle.
pub fn fold_path(config: &str, fold: &str) -> String {
    format!("configurations/{config}/fold_{fold}")
}

fn bundle_err(path: &Path, msg: impl Into<String>) -> InferError {
    InferError::Bundle { path: path.to_path_buf(), msg: msg.into() }
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap(path).map_err(io_err(path))?;
    let size = std::fs::metadata(path).map_err(io_err(path))?.len();
    Ok((size, h.finalize().to_hex().to_string()))
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s != "."
        && s != ".."
}

/// Writes a bundle `.tar` at `out` (through a temporary file renamed into place) and returns
/// its manifest.
pub fn export_bundle(out: &Path, parts: &BundleParts) -> Result<BundleManifest> {
    if parts.configurations.is_empty() {
        return Err(bundle_err(out, "no configuration to export"));
    }
    // (path in archive, source file)
    let mut sources: Vec<(String, PathBuf)> =
        vec![(PLANS.into(), parts.plans_json.clone()), (DATASET.into(), parts.dataset_json.clone())];
    if let Some(pp) = &parts.postprocessing_json {
        sources.push((POSTPROCESSING.into(), pp.clone()));
    }
    let mut configurations = Vec::new();
    for c in &parts.configurations {
        if !safe_name(&c.name) {
            return Err(bundle_err(out, format!("configuration name \"{}\" is not a plain name", c.name)));
        }
        if c.folds.is_empty() {
            return Err(bundle_err(out, format!("configuration {} has no folds", c.name)));
        }
        let mut folds = Vec::new();
        for (f, dir) in &c.folds {
            if !safe_name(f) {
                return Err(bundle_err(out, format!("fold name \"{f}\" is not a plain name")));
            }
            for file in [CHECKPOINT_WEIGHTS, CHECKPOINT_META] {
                let src = dir.join(file);
                if !src.is_file() {
                    return Err(InferError::Checkpoint { path: dir.clone(), msg: format!("{file} is missing") });
                }
                sources.push((format!("{}/{file}", fold_path(&c.name, f)), src));
            }
            folds.push(f.clone());
        }
        configurations.push(ManifestConfiguration { name: c.name.clone(), folds });
    }
    let mut seen = BTreeSet::new();
    if let Some((p, _)) = sources.iter().find(|(p, _)| !seen.insert(p.clone())) {
        return Err(bundle_err(out, format!("{p} would be stored twice (duplicate configuration or fold)")));
    }
    let mut files = Vec::with_capacity(sources.len());
    for (p, src) in &sources {
        let (size, blake3) = hash_file(src)?;
        files.push(ManifestFile { path: p.clone(), size, blake3 });
    }
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        format_version: BUNDLE_FORMAT_VERSION,
        versions: parts.versions.clone(),
        configurations,
        postprocessing: parts.postprocessing_json.as_ref().map(|_| POSTPROCESSING.to_string()),
        info: parts.info.clone(),
        files,
    };
    let mtext = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    nnunet_io::fsio::write_with(out, None, |tmp| -> Result<()> {
        let f = File::create(tmp).map_err(io_err(tmp))?;
        let mut w = TarWriter::new(BufWriter::new(f));
        w.append(MANIFEST, mtext.len() as u64, &mut &mtext[..]).map_err(io_err(out))?;
        for ((p, src), mf) in sources.iter().zip(&manifest.files) {
            let mut r = BufReader::new(File::open(src).map_err(io_err(src))?);
            w.append(p, mf.size, &mut r).map_err(|e| bundle_err(src, format!("while archiving: {e}")))?;
        }
        let mut bw = w.finish().map_err(io_err(tmp))?;
        bw.flush().map_err(io_err(tmp))?;
        bw.into_inner().map_err(|e| bundle_err(tmp, e.to_string()))?.sync_all().map_err(io_err(tmp))
    })?;
    Ok(manifest)
}

/// A bundle extracted and verified.
#[derive(Clone, Debug)]
pub struct LoadedBundle {
    pub root: PathBuf,
    pub manifest: BundleManifest,
}

impl LoadedBundle {
    pub fn plans_json(&self) -> PathBuf {
        self.root.join(PLANS)
    }
    pub fn dataset_json(&self) -> PathBuf {
        self.root.join(DATASET)
    }
    pub fn postprocessing_json(&self) -> Option<PathBuf> {
        self.manifest.postprocessing.as_ref().map(|p| self.root.join(p))
    }
    /// Checkpoint folders of a configuration, in manifest fold order.
    pub fn fold_dirs(&self, config: &str) -> Option<Vec<PathBuf>> {
        let c = self.manifest.configurations.iter().find(|c| c.name == config)?;
        Some(c.folds.iter().map(|f| self.root.join(fold_path(config, f))).collect())
    }
}

/// Checks a manifest against the files extracted into `dir`.
fn verify(dir: &Path, bundle: &Path, extracted: &BTreeSet<String>) -> Result<BundleManifest> {
    let mpath = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&mpath).map_err(|_| bundle_err(bundle, "has no manifest.json"))?;
    let m: BundleManifest =
        serde_json::from_str(&text).map_err(|e| bundle_err(bundle, format!("manifest.json: {e}")))?;
    if m.format != BUNDLE_FORMAT {
        return Err(bundle_err(bundle, format!("unknown format \"{}\"", m.format)));
    }
    if m.format_version != BUNDLE_FORMAT_VERSION {
        return Err(bundle_err(
            bundle,
            format!("format version {} is not supported (this build reads {BUNDLE_FORMAT_VERSION})", m.format_version),
        ));
    }
    let listed: BTreeSet<String> = m.files.iter().map(|f| f.path.clone()).collect();
    if listed.len() != m.files.len() {
        return Err(bundle_err(bundle, "manifest lists a file twice"));
    }
    let mut required = vec![PLANS.to_string(), DATASET.to_string()];
    if let Some(pp) = &m.postprocessing {
        required.push(pp.clone());
    }
    if m.configurations.is_empty() {
        return Err(bundle_err(bundle, "manifest declares no configuration"));
    }
    for c in &m.configurations {
        if c.folds.is_empty() {
            return Err(bundle_err(bundle, format!("configuration {} declares no folds", c.name)));
        }
        for f in &c.folds {
            for file in [CHECKPOINT_WEIGHTS, CHECKPOINT_META] {
                let p = format!("{}/{file}", fold_path(&c.name, f));
                if !listed.contains(&p) || !extracted.contains(&p) {
                    return Err(bundle_err(bundle, format!("declared fold {f} of {} is missing {p}", c.name)));
                }
            }
        }
    }
    for r in &required {
        if !listed.contains(r) {
            return Err(bundle_err(bundle, format!("manifest does not list {r}")));
        }
    }
    for f in &m.files {
        if !extracted.contains(&f.path) {
            return Err(bundle_err(bundle, format!("{} is listed in the manifest but not in the archive", f.path)));
        }
        let (size, hash) = hash_file(&dir.join(&f.path))?;
        if size != f.size || hash != f.blake3 {
            return Err(bundle_err(
                bundle,
                format!("{} does not match its manifest hash (tampered or corrupt)", f.path),
            ));
        }
    }
    if let Some(extra) = extracted.iter().find(|p| p.as_str() != MANIFEST && !listed.contains(*p)) {
        return Err(bundle_err(bundle, format!("{extra} is in the archive but not in the manifest")));
    }
    Ok(m)
}

/// Extracts and verifies a bundle into `target_dir` (which must not exist, or be empty).
/// Nothing is left at `target_dir` unless every check passed.
pub fn load_bundle(path: &Path, target_dir: &Path) -> Result<LoadedBundle> {
    if target_dir.exists() {
        let empty = std::fs::read_dir(target_dir).map_err(io_err(target_dir))?.next().is_none();
        if !empty {
            return Err(bundle_err(path, format!("target folder {} exists and is not empty", target_dir.display())));
        }
    }
    if let Some(parent) = target_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = nnunet_io::fsio::temp_sibling(target_dir, None);
    let result = (|| -> Result<BundleManifest> {
        std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let f = File::open(path).map_err(io_err(path))?;
        let mut r = TarReader::new(BufReader::new(f));
        let mut extracted = BTreeSet::new();
        while let Some(e) = r.next_entry().map_err(|m| bundle_err(path, m))? {
            let dest = tmp.join(&e.path);
            match e.kind {
                EntryKind::Dir => std::fs::create_dir_all(&dest).map_err(io_err(&dest))?,
                EntryKind::File => {
                    let norm: String =
                        e.path.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/");
                    if !extracted.insert(norm.clone()) {
                        return Err(bundle_err(path, format!("{norm} appears twice in the archive")));
                    }
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                    }
                    // create_new: never follow or overwrite something already there.
                    let out =
                        std::fs::OpenOptions::new().write(true).create_new(true).open(&dest).map_err(io_err(&dest))?;
                    let mut w = BufWriter::new(out);
                    r.copy_data(e.size, &mut w).map_err(|err| bundle_err(path, format!("{}: {err}", e.path)))?;
                    w.flush().map_err(io_err(&dest))?;
                }
            }
        }
        verify(&tmp, path, &extracted)
    })();
    match result {
        Ok(manifest) => {
            if target_dir.exists() {
                std::fs::remove_dir(target_dir).map_err(io_err(target_dir))?;
            }
            if let Err(e) = std::fs::rename(&tmp, target_dir) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(io_err(target_dir)(e));
            }
            Ok(LoadedBundle { root: target_dir.to_path_buf(), manifest })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Reads only the manifest of a bundle (first entry), without extracting.
pub fn read_manifest(path: &Path) -> Result<BundleManifest> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = TarReader::new(BufReader::new(f));
    let e = r.next_entry().map_err(|m| bundle_err(path, m))?.ok_or_else(|| bundle_err(path, "empty archive"))?;
    if e.path != MANIFEST || e.kind != EntryKind::File {
        return Err(bundle_err(path, "the first entry is not manifest.json"));
    }
    let mut buf = Vec::new();
    r.copy_data(e.size, &mut buf).map_err(|err| bundle_err(path, err.to_string()))?;
    serde_json::from_slice(&buf).map_err(|err| bundle_err(path, format!("manifest.json: {err}")))
}
