//! Content hashes of raw input files, remembered by (device, inode, size, mtime, ctime) like
//! DVC's state database, so a cached run re-hashes nothing it has seen unchanged.

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    hash: String,
}

pub struct StatCache {
    file: PathBuf,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    dirty: Mutex<bool>,
}

fn stamp(md: &std::fs::Metadata) -> Stamp {
    Stamp {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
    }
}

/// Files up to this size are read rather than memory-mapped: mapping and unmapping a small file
/// costs more than reading it (each `munmap` shoots down TLBs on every core, which in a VM took
/// more time than hashing a 70 KB image).
const READ_LIMIT: u64 = 8 << 20;

/// blake3 of a file's content (memory-mapped for large files).
pub fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let ctx = || format!("cannot read {}", path.display());
    let small = std::fs::metadata(path).map(|m| m.len() <= READ_LIMIT).unwrap_or(false);
    if small {
        h.update(&std::fs::read(path).with_context(ctx)?);
    } else {
        h.update_mmap(path).with_context(ctx)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

impl StatCache {
    /// Loads the cache file; a missing or unreadable one starts empty.
    pub fn load(file: &Path) -> StatCache {
        let entries = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<PathBuf, Entry>>(&b).ok())
            .unwrap_or_default();
        StatCache { file: file.to_path_buf(), entries: Mutex::new(entries), dirty: Mutex::new(false) }
    }

    /// Content hash of `path`, from the cache if its stamp is unchanged.
    pub fn hash(&self, path: &Path) -> Result<String> {
        let abs = std::fs::canonicalize(path).with_context(|| format!("input file {} is missing", path.display()))?;
        let md = std::fs::metadata(&abs).with_context(|| format!("cannot stat {}", abs.display()))?;
        let st = stamp(&md);
        if let Some(e) = self.entries.lock().expect("lock").get(&abs) {
            if e.stamp == st {
                return Ok(e.hash.clone());
            }
        }
        let hash = hash_file(&abs)?;
        // A file modified while being hashed gets a new stamp; record the stamp seen before.
        self.entries.lock().expect("lock").insert(abs, Entry { stamp: st, hash: hash.clone() });
        *self.dirty.lock().expect("lock") = true;
        Ok(hash)
    }

    /// Hashes many files in parallel; results in input order.
    pub fn hash_all(&self, paths: &[PathBuf]) -> Result<Vec<String>> {
        paths.par_iter().map(|p| self.hash(p)).collect()
    }

    /// Writes the cache back (atomically) if anything changed.
    pub fn save(&self) -> Result<()> {
        if !*self.dirty.lock().expect("lock") {
            return Ok(());
        }
        let entries = self.entries.lock().expect("lock");
        let bytes = serde_json::to_vec(&*entries)?;
        crate::fsutil::write_atomic(&self.file, &bytes)?;
        *self.dirty.lock().expect("lock") = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehashes_only_changed_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.txt");
        std::fs::write(&f, b"one").unwrap();
        let sc = StatCache::load(&d.path().join("sc.json"));
        let h1 = sc.hash(&f).unwrap();
        assert_eq!(h1, blake3::hash(b"one").to_hex().to_string());
        sc.save().unwrap();
        let sc2 = StatCache::load(&d.path().join("sc.json"));
        assert_eq!(sc2.hash(&f).unwrap(), h1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"two").unwrap();
        assert_eq!(sc2.hash(&f).unwrap(), blake3::hash(b"two").to_hex().to_string());
        assert!(sc2.hash(&d.path().join("missing")).unwrap_err().to_string().contains("missing"));
    }
}
