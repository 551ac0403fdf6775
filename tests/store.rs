//! End-to-end tests of the preprocessed store through the CLI: integrity of cached chunks
//! (`pipeline fsck`), readability by zarr-python 3, files per case, and the memory budget.

mod common;

use common::{preprocess_only, units_with, Project};
use nnunet_prep::store::CaseStore;
use std::path::{Path, PathBuf};

/// Files (not directories) under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The committed artifact directories of one kind.
fn artifact_dirs(cache: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files(&cache.join("artifacts").join(kind))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    out.sort();
    out
}

/// A byte in the middle of a cached shard flipped in place (same size): the run that reads it
/// fails naming the artifact, `fsck` reports and evicts it, and the next run rebuilds it.
#[test]
fn damaged_chunk_is_an_error_and_fsck_evicts_it() {
    let p = Project::new(3, &preprocess_only());
    p.run(&[]);
    let cache = p.path().join("cache");
    let normalized = artifact_dirs(&cache, "normalize");
    assert_eq!(normalized.len(), 3);
    let victim = &normalized[0];
    let key = victim.file_name().unwrap().to_string_lossy().to_string();
    let shard = files(&victim.join("out"))
        .into_iter()
        .find(|f| {
            f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("c."))
                && !f.to_string_lossy().contains("_seg")
        })
        .expect("a data shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&shard, &bytes).unwrap();

    // The size check of a cache lookup does not see it: a run reading the data does.
    let out = p.cmd(&["run", "--json", "-j", "2", "--force", "resample"]);
    assert!(
        !out.status.success(),
        "a run over a damaged chunk must fail: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&format!("normalize/{key}")), "the message names the artifact: {err}");
    assert!(err.contains("pipeline fsck"), "{err}");

    // fsck --dry-run reports, fsck evicts exactly the damaged artifact.
    let dry = p.cmd(&["fsck", "--json", "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["damaged"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["damaged"][0]["key"], key.as_str());
    assert!(victim.exists(), "a dry run evicts nothing");
    let fsck = p.cmd(&["fsck", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(v["damaged"][0]["kind"], "normalize", "{v}");
    assert_eq!(v["damaged"][0]["evicted"], true);
    assert!(v["damaged"][0]["files"][0]["problem"].as_str().unwrap().contains("blake3"), "{v}");
    assert!(!victim.exists());

    // The next run rebuilds that case (and what reads it) and succeeds; fsck is then clean.
    let r = p.run(&[]);
    let built = units_with(&r[0], "built");
    assert!(built.iter().any(|u| u.starts_with("normalize[")), "{built:?}");
    assert!(built.iter().all(|u| !u.starts_with("fingerprint")), "{built:?}");
    let v: serde_json::Value = serde_json::from_slice(&p.cmd(&["fsck", "--json"]).stdout).unwrap();
    assert_eq!(v["damaged"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["checked"].as_u64().unwrap() > 10);
}

/// The per-configuration store: four files per case (two `zarr.json`, two shards), a root group
/// listing the cases, and the arrays readable through the project's reader.
#[test]
fn preprocessed_store_has_four_files_per_case() {
    let p = Project::new(3, &preprocess_only());
    p.run(&["--memory", "256M"]);
    let store = p.path().join("runs/t/resample/configuration=3d_fullres/nnUNetPlans_3d_fullres.zarr");
    let ids = nnunet_prep::store::open_dataset_store(&store).unwrap();
    assert_eq!(ids.len(), 3);
    let all = files(&store);
    for id in &ids {
        let n = all.iter().filter(|f| {
            f.strip_prefix(&store)
                .unwrap()
                .iter()
                .next()
                .is_some_and(|c| c.to_string_lossy() == *id || c.to_string_lossy() == format!("{id}_seg"))
        });
        assert_eq!(n.count(), 4, "files of case {id}: {all:?}");
        let c = CaseStore::open(&store.join(id)).unwrap();
        assert!(c.class_locations().unwrap().total() > 0);
    }
    assert_eq!(all.len(), 4 * ids.len() + 1, "plus the root zarr.json: {all:?}");
    // A budget below 16M is refused before anything runs.
    let out = p.cmd(&["run", "--memory", "1M"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The Python to check zarr-python with: `PIPELINE_PYTHON`, else the project venv's (which
/// `scripts/setup.sh` gives zarr>=3). None (the test reports SKIP) when it lacks zarr 3.
fn zarr_python() -> Option<PathBuf> {
    let py = std::env::var_os("PIPELINE_PYTHON").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("NNUNET_RS_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nnunet-rs")))?;
        Some(home.join("venv/bin/python"))
    })?;
    let ok = std::process::Command::new(&py)
        .args(["-c", "import zarr,sys; sys.exit(0 if int(zarr.__version__.split('.')[0]) >= 3 else 1)"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

/// zarr-python 3 opens a store written by the project and reads the same arrays, attributes
/// and class locations.
#[test]
fn zarr_python_reads_the_same_arrays() {
    let Some(py) = zarr_python() else {
        eprintln!("SKIP zarr_python_reads_the_same_arrays: no Python with zarr>=3 (run scripts/setup.sh or set PIPELINE_PYTHON)");
        return;
    };
    let p =
        Project::new(2, &preprocess_only().replace("configurations: [3d_fullres]", "configurations: [2d, 3d_fullres]"));
    p.run(&[]);
    for cfg in ["2d", "3d_fullres"] {
        let store = p.path().join(format!("runs/t/resample/configuration={cfg}/nnUNetPlans_{cfg}.zarr"));
        let out = p.path().join(format!("zarr-python-{cfg}"));
        let script = Path::new(&nnunet_io::testing::manifest_dir()).join("scripts/zarr_python_check.py");
        let r = std::process::Command::new(&py).arg(&script).arg(&store).arg(&out).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let cases = report["cases"].as_object().unwrap();
        assert_eq!(cases.len(), 2);
        for (id, c) in cases {
            let ours = CaseStore::open(&store.join(id)).unwrap();
            let data: Vec<u8> =
                ours.read_data().unwrap().iter().flat_map(|v| v.data.iter().flat_map(|x| x.to_le_bytes())).collect();
            assert_eq!(std::fs::read(out.join(format!("{id}.data.bin"))).unwrap(), data, "{cfg} {id} data");
            let seg = ours.read_seg().unwrap();
            let theirs = std::fs::read(out.join(format!("{id}.seg.bin"))).unwrap();
            let theirs: Vec<i16> = match c["seg_dtype"].as_str().unwrap() {
                "int8" => theirs.iter().map(|&b| b as i8 as i16).collect(),
                "int16" => theirs.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
                other => panic!("seg dtype {other}"),
            };
            assert_eq!(theirs, seg.data, "{cfg} {id} seg");
            let shape = ours.shape();
            assert_eq!(c["shape"], serde_json::json!([ours.num_channels(), shape[0], shape[1], shape[2]]));
            assert!(c["shards"].is_array(), "one shard per array: {c}");
            for (key, locs) in ours.class_locations().unwrap().classes {
                let k = serde_json::to_string(&key).unwrap();
                let zyx: Vec<[i64; 3]> = serde_json::from_value(c["locations"][&k].clone()).unwrap();
                let want: Vec<[i64; 3]> = locs.iter().map(|r| [r[1] as i64, r[2] as i64, r[3] as i64]).collect();
                assert_eq!(zyx, want, "{cfg} {id} class {k}");
            }
        }
    }
}
