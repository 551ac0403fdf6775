//! Crash-safe file writes, the one set every crate uses: a file is written beside its target
//! under a temporary name and renamed over it, so a reader (or a run after a kill) sees the old
//! file or the new one, never half of one.
//!
//! - [`write_atomic`]: bytes, safe against a kill (not fsynced: durable once the caller's
//!   barrier, e.g. the engine's per-run `syncfs`, has run).
//! - [`write_durable`]: the same plus fsync of the file and its folder.
//! - [`write_with`]: for writers that take a path (image encoders, archive writers).
//! - [`write_json`] / [`read_json`]: pretty JSON through [`write_atomic`].
//! - [`nan_as_null`]: serde helpers writing non-finite numbers as JSON `null`.
//!
//! Errors are `std::io::Error`s naming the path; each crate wraps them in its own error type.

use serde::{de::DeserializeOwned, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name part unique to this process and call (`PID-N-NANOS`).
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{n}-{t}", std::process::id())
}

/// A temporary sibling of `path`, hidden and unique: `.NAME.tmp-PID-N-NANOS` (with the
/// extension of `path` kept at the end when `keep_ending` is given, for writers that pick the
/// format from the name, e.g. `.x.nii.gz.tmp-…​.nii.gz`).
pub fn temp_sibling(path: &Path, keep_ending: Option<&str>) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    dir.join(format!(".{name}.tmp-{}{}", unique_suffix(), keep_ending.unwrap_or("")))
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => fs::create_dir_all(p).map_err(|e| with_path(p, e)),
        _ => Ok(()),
    }
}

/// fsyncs a file, or a folder (which makes renames and creations in it durable).
pub fn fsync(path: &Path) -> io::Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| with_path(path, e))
}

/// Writes a temporary sibling with `fill(tmp)` and renames it over `path`; the temporary file
/// is removed when `fill` or the rename fails. `keep_ending`: see [`temp_sibling`].
pub fn write_with<E: From<io::Error>>(
    path: &Path,
    keep_ending: Option<&str>,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    create_parent(path)?;
    let tmp = temp_sibling(path, keep_ending);
    let result = fill(&tmp).and_then(|()| fs::rename(&tmp, path).map_err(|e| E::from(with_path(path, e))));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_bytes(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    write_with(path, None, |tmp| {
        let mut f = File::create(tmp).map_err(|e| with_path(tmp, e))?;
        f.write_all(bytes).map_err(|e| with_path(tmp, e))?;
        if sync {
            f.sync_all().map_err(|e| with_path(tmp, e))?;
        }
        Ok::<(), io::Error>(())
    })
}

/// Replaces `path` by `bytes` (temporary file + rename; parent folders are created). Safe
/// against a kill; not fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_bytes(path, bytes, false)
}

/// [`write_atomic`], then fsync of the file and its folder: durable when it returns.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_bytes(path, bytes, true)?;
    fsync(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Writes `value` as pretty JSON through [`write_atomic`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| with_path(path, e.into()))?;
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file; the error names the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
    let bytes = fs::read(path).map_err(|e| with_path(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Serde helpers for numbers that may be NaN or infinite: written as `null` (JSON has no NaN),
/// read back as NaN. Use as `#[serde(with = "nnunet_io::fsio::nan_as_null")]` on an `f64`;
/// [`nan_as_null::pairs`] for `Vec<(String, f64)>`, [`nan_as_null::map`] for
/// `BTreeMap<String, f64>`, [`nan_as_null::value`] for a `serde_json::Value`.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    /// The number as a JSON value (`null` when not finite).
    pub fn value(v: f64) -> serde_json::Value {
        if v.is_finite() {
            serde_json::Value::from(v)
        } else {
            serde_json::Value::Null
        }
    }

    /// `#[serde(with = "nnunet_io::fsio::nan_as_null::pairs")]` on `Vec<(String, f64)>`.
    pub mod pairs {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
            let o: Vec<(&str, Option<f64>)> =
                v.iter().map(|(k, x)| (k.as_str(), x.is_finite().then_some(*x))).collect();
            o.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
            let o = Vec::<(String, Option<f64>)>::deserialize(d)?;
            Ok(o.into_iter().map(|(k, x)| (k, x.unwrap_or(f64::NAN))).collect())
        }
    }

    /// `#[serde(with = "nnunet_io::fsio::nan_as_null::map")]` on `BTreeMap<String, f64>`.
    pub mod map {
        use super::*;
        use std::collections::BTreeMap;

        pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
            let o: BTreeMap<&String, Option<f64>> = m.iter().map(|(k, v)| (k, v.is_finite().then_some(*v))).collect();
            o.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
            let o = BTreeMap::<String, Option<f64>>::deserialize(d)?;
            Ok(o.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn atomic_writes_leave_no_temporary_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x/y.json");
        write_atomic(&f, b"1").unwrap();
        write_durable(&f, b"2").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"2");
        let r: Result<(), io::Error> = write_with(&f, None, |tmp| {
            fs::write(tmp, b"half")?;
            Err(io::Error::other("encoder failed"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&f).unwrap(), b"2", "a failed writer leaves the old file");
        let names: Vec<_> = fs::read_dir(d.path().join("x")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("y.json")]);
        assert!(temp_sibling(&f, Some(".nii.gz")).to_string_lossy().ends_with(".nii.gz"));
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Rec {
        #[serde(with = "nan_as_null")]
        a: f64,
        #[serde(with = "nan_as_null::pairs")]
        b: Vec<(String, f64)>,
    }

    #[test]
    fn json_and_nan_as_null_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        write_json(&p, &Rec { a: f64::NAN, b: vec![("x".into(), 1.5), ("y".into(), f64::INFINITY)] }).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("null") && !text.contains("NaN"), "{text}");
        let back: Rec = read_json(&p).unwrap();
        assert!(back.a.is_nan() && back.b[0] == ("x".into(), 1.5) && back.b[1].1.is_nan());
        assert_eq!(nan_as_null::value(f64::NAN), serde_json::Value::Null);
        let err = read_json::<Rec>(&d.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }
}
