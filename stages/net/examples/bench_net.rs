//! Augmentation and train-step timings on exported preprocessed cases.
//!
//! `cargo run --release -p nnunet-net --example bench_net -- RAW_DIR PLANS_JSON [threads]`
//!
//! `RAW_DIR` holds `meta.json` (`[{"id", "shape": [C, Z, Y, X]}]`) plus `<id>.f32` / `<id>.i16`
//! raw arrays (e.g. exported from nnU-Net's preprocessed `.b2nd` files); `PLANS_JSON` is an
//! nnU-Net plans file. Cases are read both from memory and from our Zarr case store.

use nnunet_io::Volume;
use nnunet_net::bench::{time_augmentation, time_train_step};
use nnunet_net::sampler::{CaseCache, MemoryCase, PatchSource, StoreCase, DEFAULT_CASE_CACHE_BYTES};
use nnunet_net::trainer::TrainOptions;
use nnunet_prep::class_locations::ClassLocations;
use nnunet_prep::crop::BBox;
use nnunet_prep::plans::Plans;
use nnunet_prep::preprocess::{CaseProperties, PreprocessedCase};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let raw = std::path::PathBuf::from(&args[1]);
    let plans: Plans = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let threads: usize = args.get(3).map_or(2, |t| t.parse().unwrap_or(2));
    let meta: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(raw.join("meta.json"))?)?;
    let store = tempfile::tempdir()?;
    let mut mem: Vec<Arc<dyn PatchSource>> = vec![];
    let mut disk: Vec<Arc<dyn PatchSource>> = vec![];
    let mut cached: Vec<Arc<dyn PatchSource>> = vec![];
    let cache = CaseCache::new(DEFAULT_CASE_CACHE_BYTES);
    let cfg3 = plans.configuration("3d_fullres")?;
    let cfg2 = plans.configuration("2d")?;
    for m in &meta {
        let id = m["id"].as_str().unwrap_or("case");
        let s: Vec<usize> = serde_json::from_value(m["shape"].clone())?;
        let shape = [s[1], s[2], s[3]];
        let f = std::fs::read(raw.join(format!("{id}.f32")))?;
        let data: Vec<f32> = f.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let g = std::fs::read(raw.join(format!("{id}.i16")))?;
        let seg: Vec<i16> = g.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let case = MemoryCase::new(id, data.clone(), seg.clone(), s[0], shape);
        let n = shape.iter().product::<usize>();
        let pc = PreprocessedCase {
            data: (0..s[0]).map(|c| Volume { shape, data: data[c * n..(c + 1) * n].to_vec() }).collect(),
            seg: Volume { shape, data: seg },
            has_label: true,
            properties: CaseProperties {
                spacing: [1.0; 3],
                spacing_transposed: [1.0; 3],
                shape_before_cropping: shape,
                bbox_used_for_cropping: BBox([[0, shape[0]], [0, shape[1]], [0, shape[2]]]),
                shape_after_cropping_and_before_resampling: shape,
            },
            target_spacing: [1.0; 3],
            class_locations: ClassLocations { classes: case.locations.classes.clone() },
        };
        let dir = store.path().join(id);
        nnunet_prep::store::write_preprocessed(&dir, &pc, &cfg3.patch_size)?;
        disk.push(Arc::new(StoreCase::open(&dir, id)?));
        cached.push(Arc::new(StoreCase::open_cached(&dir, id, Some(cache.clone()))?));
        mem.push(Arc::new(case));
    }
    println!(
        "{} cases, 3d_fullres patch {:?} bs {}, 2d patch {:?} bs {}",
        mem.len(),
        cfg3.patch_size,
        cfg3.batch_size,
        cfg2.patch_size,
        cfg2.batch_size
    );
    for (name, cases) in [("memory", &mem), ("store, partial reads", &disk), ("store, decoded cache", &cached)] {
        let a3 = time_augmentation(cases.clone(), &cfg3, None, 30, 1)?;
        println!(
            "augment 1 thread 3d_fullres ({name}): {:.4} s/batch, {:.3e} vox/s, shape {:?}",
            a3.seconds_per_batch, a3.voxels_per_second, a3.data_shape
        );
        let a2 = time_augmentation(cases.clone(), &cfg2, None, 5, 1)?;
        println!(
            "augment 1 thread 2d ({name}): {:.4} s/batch, {:.3e} vox/s, shape {:?}",
            a2.seconds_per_batch, a2.voxels_per_second, a2.data_shape
        );
    }
    let opts = TrainOptions { torch_threads: threads, ..TrainOptions::default() };
    let st = time_train_step(&cfg3, 1, 3, 2, 3, &opts)?;
    println!(
        "train step 3d_fullres bs 2, {threads} threads: {:.3} s (first {:.3} s), {} params",
        st.seconds_per_step, st.first_step_seconds, st.parameters
    );
    Ok(())
}
