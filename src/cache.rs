//! The content-addressed artifact store under `cache/`.
//!
//! ```text
//! cache/
//!   LOCK                         held (flock) by a running `pipeline run` / `gc`
//!   statcache.json               raw-file content hashes by stat stamp
//!   artifacts/KIND/KE/KEY/       a committed artifact: manifest.json + out/
//!   tmp/                         artifacts being built (never taken as complete)
//!   work/KEY/                    persistent work dirs of resumable units (training)
//!   locks/KEY.lock               per-unit build locks
//!   refs/RUN/UNIT.json           last key of each unit of each run (for status --why, gc)
//! ```
//!
//! An artifact is complete iff its directory exists under `artifacts/` and every file its
//! manifest lists is there with the recorded size: it is built in `tmp/` (or `work/`) and
//! published with one rename, so a kill at any moment leaves either nothing or a whole artifact.
//! Durability against power loss is batched: a run makes the cache durable with one `syncfs`
//! before it writes `run.json` (per-artifact fsyncs cost more than preprocessing a small case);
//! an artifact whose files did not reach the disk before a crash fails the size check and is
//! rebuilt.

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::fsutil::{sync_tree, unique_suffix, walk, write_replace};
use crate::key::KeyComponents;
use crate::statcache::hash_file;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    pub hash: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub unit: String,
    pub components: KeyComponents,
    /// Output files relative to `out/`.
    pub files: BTreeMap<String, FileEntry>,
    /// blake3 over the sorted (path, hash) list: what downstream keys see.
    pub digest: String,
    pub started: String,
    pub duration_s: f64,
    pub tool: ToolVersions,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolVersions {
    pub pipeline: String,
    pub libtorch: String,
    pub host: String,
}

impl ToolVersions {
    pub fn current() -> Self {
        ToolVersions {
            pipeline: env!("CARGO_PKG_VERSION").to_string(),
            libtorch: "2.11.0".to_string(),
            host: hostname(),
        }
    }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

impl Manifest {
    /// Content hash of one output file.
    pub fn file_hash(&self, rel: &str) -> Option<&str> {
        self.files.get(rel).map(|f| f.hash.as_str())
    }
}

/// Where a unit is being built.
pub struct Staging {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub kind: String,
    pub key: String,
}

pub struct Cache {
    pub root: PathBuf,
}

/// An exclusive advisory lock (released on drop or process death).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    pub path: PathBuf,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        for d in ["artifacts", "tmp", "work", "locks", "refs"] {
            fs::create_dir_all(root.join(d))
                .with_context(|| format!("cannot create cache dir {}", root.join(d).display()))?;
        }
        let root = fs::canonicalize(root)?;
        Ok(Cache { root })
    }

    pub fn artifact_dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join("artifacts").join(kind).join(&key[..2]).join(key)
    }

    /// The manifest of a complete artifact, or None.
    pub fn lookup(&self, kind: &str, key: &str) -> Option<Manifest> {
        let p = self.artifact_dir(kind, key).join("manifest.json");
        let bytes = fs::read(&p).ok()?;
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.key == key => {
                // Files lost or truncated by a crash before the run's sync: not complete.
                let out = self.artifact_dir(kind, key).join("out");
                let torn =
                    m.files.iter().find(|(rel, e)| fs::metadata(out.join(rel)).map(|md| md.len()).ok() != Some(e.size));
                if let Some((rel, _)) = torn {
                    tracing::warn!("ignoring artifact {}: {rel} is missing or has the wrong size", out.display());
                    return None;
                }
                Some(m)
            }
            _ => {
                tracing::warn!("ignoring unreadable manifest {}", p.display());
                None
            }
        }
    }

    /// Makes everything committed so far durable (one `syncfs` of the cache's filesystem).
    pub fn sync(&self) -> Result<()> {
        sync_tree(&self.root)
    }

    /// Takes the run lock, waiting (with a message) while another process holds it.
    pub fn lock_run(&self, wait: bool) -> Result<FileLock> {
        let path = self.root.join("LOCK");
        let file = fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(self.root.join("LOCK.owner")).unwrap_or_default();
                if !wait {
                    bail!(
                        "another pipeline process holds the cache lock {} ({}); rerun when it finishes, or without --no-wait to wait for it",
                        path.display(),
                        holder.trim()
                    );
                }
                eprintln!("waiting for another pipeline process to release {} ({})", path.display(), holder.trim());
                file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        let _ = fs::write(self.root.join("LOCK.owner"), format!("pid {} on {}", std::process::id(), hostname()));
        Ok(FileLock { _file: file, path })
    }

    /// Lock for building one unit (between concurrent runs and cluster jobs).
    pub fn lock_unit(&self, key: &str) -> Result<FileLock> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(FileLock { _file: file, path })
    }

    /// Removes leftovers of killed builds. Only safe while holding the run lock.
    pub fn clean_tmp(&self) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(self.root.join("tmp"))? {
            let p = e?.path();
            fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p)).ok();
            n += 1;
        }
        Ok(n)
    }

    /// A fresh build directory; resumable units keep theirs across kills in `work/KEY`.
    pub fn begin(&self, kind: &str, key: &str, resumable: bool) -> Result<Staging> {
        let dir = if resumable {
            self.root.join("work").join(key)
        } else {
            self.root.join("tmp").join(format!("{key}.{}", unique_suffix()))
        };
        let out = dir.join("out");
        fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        Ok(Staging { dir, out, kind: kind.to_string(), key: key.to_string() })
    }

    /// Hashes the outputs, writes the manifest, fsyncs and publishes the artifact atomically.
    /// With `replace`, an existing artifact of the same key is swapped out (`--force`).
    pub fn commit(
        &self,
        st: Staging,
        unit: &str,
        components: KeyComponents,
        started: String,
        duration_s: f64,
        replace: bool,
    ) -> Result<Manifest> {
        let files = hash_tree(&st.out)?;
        let digest = digest_of(&files);
        let m = Manifest {
            key: st.key.clone(),
            unit: unit.to_string(),
            components,
            files,
            digest,
            started,
            duration_s,
            tool: ToolVersions::current(),
        };
        // Unpublished staging: a plain write; durability comes with the run's `sync`.
        let mp = st.dir.join("manifest.json");
        fs::write(&mp, serde_json::to_vec_pretty(&m)?).with_context(|| format!("cannot write {}", mp.display()))?;
        let dst = self.artifact_dir(&st.kind, &st.key);
        let parent = dst.parent().expect("artifact parent");
        fs::create_dir_all(parent)?;
        if dst.exists() {
            if !replace {
                // Someone else committed the same key meanwhile: keep theirs.
                fs::remove_dir_all(&st.dir).ok();
                return self.lookup(&st.kind, &st.key).ok_or_else(|| anyhow!("artifact {} vanished", dst.display()));
            }
            let trash = self.root.join("tmp").join(format!("replaced-{}-{}", st.key, unique_suffix()));
            fs::rename(&dst, &trash)?;
            fs::rename(&st.dir, &dst)?;
            fs::remove_dir_all(&trash).ok();
        } else {
            fs::rename(&st.dir, &dst).with_context(|| format!("cannot publish {}", dst.display()))?;
        }
        Ok(m)
    }

    /// Discards a failed build (resumable work dirs are kept for the next attempt).
    pub fn abort(&self, st: Staging, resumable: bool) {
        if !resumable {
            fs::remove_dir_all(&st.dir).ok();
        }
    }

    pub fn refs_dir(&self, run: &str) -> PathBuf {
        self.root.join("refs").join(run)
    }

    /// Records the key a unit of a run resolved to.
    pub fn write_ref(&self, run: &str, unit: &str, components: &KeyComponents, key: &str) -> Result<()> {
        let p = self.refs_dir(run).join(format!("{}.json", blake3::hash(unit.as_bytes()).to_hex()));
        let v = serde_json::json!({"unit": unit, "key": key, "kind": components.kind, "components": components});
        if let Ok(old) = fs::read(&p) {
            if serde_json::from_slice::<serde_json::Value>(&old).ok().as_ref() == Some(&v) {
                return Ok(());
            }
        }
        write_replace(&p, &serde_json::to_vec(&v)?)
    }

    pub fn read_ref(&self, run: &str, unit: &str) -> Option<(String, KeyComponents)> {
        let p = self.refs_dir(run).join(format!("{}.json", blake3::hash(unit.as_bytes()).to_hex()));
        let v: serde_json::Value = serde_json::from_slice(&fs::read(p).ok()?).ok()?;
        let key = v.get("key")?.as_str()?.to_string();
        let comps = serde_json::from_value(v.get("components")?.clone()).ok()?;
        Some((key, comps))
    }

    /// Keys referenced by any run's refs: the live set for `gc`.
    pub fn referenced_keys(&self) -> Result<std::collections::HashSet<String>> {
        let mut keys = std::collections::HashSet::new();
        for p in walk(&self.root.join("refs"))? {
            if p.extension().and_then(|e| e.to_str()) == Some("json") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&fs::read(&p)?) {
                    if let Some(k) = v.get("key").and_then(|k| k.as_str()) {
                        keys.insert(k.to_string());
                    }
                }
            }
        }
        Ok(keys)
    }

    /// Every committed artifact: (kind, key, dir).
    pub fn all_artifacts(&self) -> Result<Vec<(String, String, PathBuf)>> {
        let mut out = Vec::new();
        for kind in fs::read_dir(self.root.join("artifacts"))? {
            let kind = kind?;
            let kname = kind.file_name().to_string_lossy().to_string();
            for pre in fs::read_dir(kind.path())? {
                for a in fs::read_dir(pre?.path())? {
                    let a = a?;
                    out.push((kname.clone(), a.file_name().to_string_lossy().to_string(), a.path()));
                }
            }
        }
        Ok(out)
    }
}

/// What is wrong with a committed artifact ([`Cache::verify`]).
#[derive(Clone, Debug, Serialize)]
pub struct Damage {
    /// The file, relative to the artifact's `out/` (`manifest.json` for the manifest itself).
    pub file: String,
    pub problem: String,
}

impl Cache {
    /// Re-reads every file of the artifact in `dir` and checks it against the manifest: present,
    /// the recorded size and the recorded blake3. Files of the artifact no manifest lists are
    /// damage too (an artifact is exactly what was committed).
    pub fn verify(&self, dir: &Path) -> Vec<Damage> {
        let mp = dir.join("manifest.json");
        let m = match fs::read(&mp)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return vec![Damage { file: "manifest.json".into(), problem: format!("unreadable: {e}") }],
        };
        let out = dir.join("out");
        let mut damage: Vec<Damage> = m
            .files
            .par_iter()
            .filter_map(|(rel, e)| {
                let p = out.join(rel);
                let problem = match fs::metadata(&p) {
                    Err(err) => format!("missing: {err}"),
                    Ok(md) if md.len() != e.size => format!("size {} bytes, the manifest says {}", md.len(), e.size),
                    Ok(_) => match hash_file(&p) {
                        Err(err) => format!("unreadable: {err:#}"),
                        Ok(h) if h != e.hash => "content differs from the manifest (blake3 mismatch)".to_string(),
                        Ok(_) => return None,
                    },
                };
                Some(Damage { file: rel.clone(), problem })
            })
            .collect();
        if let Ok(files) = walk(&out) {
            for p in files.into_iter().filter(|p| p.is_file()) {
                let rel = p.strip_prefix(&out).expect("under out").to_string_lossy().replace('\\', "/");
                if !m.files.contains_key(&rel) {
                    damage.push(Damage { file: rel, problem: "not in the manifest".into() });
                }
            }
        }
        damage.sort_by(|a, b| a.file.cmp(&b.file));
        damage
    }

    /// Removes a committed artifact: renamed into `tmp/` first (one atomic step, so no lookup
    /// sees half of it), then deleted. The next run rebuilds it.
    pub fn evict(&self, dir: &Path) -> Result<()> {
        let trash = self.root.join("tmp").join(format!("evicted-{}", unique_suffix()));
        fs::rename(dir, &trash).with_context(|| format!("cannot evict {}", dir.display()))?;
        fs::remove_dir_all(&trash).with_context(|| format!("cannot remove {}", trash.display()))
    }
}

/// blake3 of every file under `root`, keyed by relative path ('/' separated).
pub fn hash_tree(root: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let files: Vec<PathBuf> = walk(root)?.into_iter().filter(|p| p.is_file()).collect();
    let entries: Vec<(String, FileEntry)> = files
        .par_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            let size = fs::metadata(p)?.len();
            Ok((rel, FileEntry { hash: hash_file(p)?, size }))
        })
        .collect::<Result<_>>()?;
    Ok(entries.into_iter().collect())
}

pub fn digest_of(files: &BTreeMap<String, FileEntry>) -> String {
    let mut h = blake3::Hasher::new();
    for (p, e) in files {
        h.update(p.as_bytes());
        h.update(&[0]);
        h.update(e.hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Current UTC time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps() -> KeyComponents {
        KeyComponents {
            kind: "k".into(),
            version: 1,
            params: serde_json::json!({}),
            coords: BTreeMap::new(),
            case: None,
            aggregate: false,
            inputs: BTreeMap::new(),
            raw: BTreeMap::new(),
        }
    }

    #[test]
    fn commit_is_atomic_and_lookup_finds_it() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let key = comps().key();
        assert!(c.lookup("k", &key).is_none());
        let st = c.begin("k", &key, false).unwrap();
        fs::write(st.out.join("a.txt"), b"hello").unwrap();
        fs::create_dir_all(st.out.join("sub")).unwrap();
        fs::write(st.out.join("sub/b.txt"), b"x").unwrap();
        // Not visible before commit.
        assert!(c.lookup("k", &key).is_none());
        let m = c.commit(st, "u", comps(), now_rfc3339(), 0.1, false).unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(m.file_hash("sub/b.txt").is_some());
        let m2 = c.lookup("k", &key).unwrap();
        assert_eq!(m2.digest, m.digest);
        assert_eq!(fs::read_dir(c.root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn second_lock_refuses_without_wait() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let _l = c.lock_run(false).unwrap();
        // flock locks are per open file description: a second open in the same process conflicts.
        let e = c.lock_run(false).unwrap_err().to_string();
        assert!(e.contains("holds the cache lock"), "{e}");
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20);
        assert!(s.starts_with("20"));
    }
}
