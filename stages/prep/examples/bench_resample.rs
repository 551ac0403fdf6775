//! Times data (order 3) and seg (one-hot order 1) resampling on a CT-sized synthetic volume,
//! for comparison with nnU-Net's `resample_data_or_seg_to_shape` (same shapes and spacings).
//!
//! `cargo run -p nnunet-prep --release --example bench_resample -- [Z Y X]`

use nnunet_io::volume::numel;
use nnunet_io::Volume;
use nnunet_prep::plans::ResamplingKwargs;
use nnunet_prep::resample::{compute_new_shape, resample_data, resample_seg, SegResampleMode};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse()).collect::<Result<_, _>>()?;
    let shape = if a.len() == 3 { [a[0], a[1], a[2]] } else { [160, 384, 384] };
    let n = numel(shape);
    let img: Vec<f32> = (0..n)
        .map(|i| {
            let (z, y, x) = (i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]);
            ((z as f32 * 0.07).sin() + (y as f32 * 0.05).cos() * (x as f32 * 0.03).sin()) * 100.0
        })
        .collect();
    let seg: Vec<i16> = img.iter().map(|&v| ((v + 200.0) / 80.0).clamp(0.0, 4.0) as i16).collect();
    let img = Volume::from_vec(shape, img).ok_or("shape")?;
    let seg = Volume::from_vec(shape, seg).ok_or("shape")?;
    if let Ok(dir) = std::env::var("BENCH_DUMP") {
        let b: Vec<u8> = seg.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(format!("{dir}/seg_input.raw"), b)?;
        let b: Vec<u8> = img.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(format!("{dir}/img_input.raw"), b)?;
    }
    let kd = ResamplingKwargs { is_seg: false, order: 3, order_z: 0, force_separate_z: None };
    let ks = ResamplingKwargs { is_seg: true, order: 1, order_z: 0, force_separate_z: None };
    for (name, cur, tgt) in [
        ("anisotropic (separate z)", [2.5, 0.8, 0.8], [2.0, 0.7, 0.7]),
        ("isotropic", [1.0, 1.0, 1.0], [0.8, 1.2, 1.1]),
    ] {
        let new = compute_new_shape(shape, cur, tgt);
        let t = Instant::now();
        let d = resample_data(std::slice::from_ref(&img), new, cur, tgt, &kd)?;
        let td = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let s = resample_seg(&seg, new, cur, tgt, &ks, SegResampleMode::default())?;
        let ts = t.elapsed().as_secs_f64();
        if let Ok(dir) = std::env::var("BENCH_DUMP") {
            let bytes: Vec<u8> = s.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(format!("{dir}/seg_{}.raw", name.split(' ').next().unwrap_or(name)), bytes)?;
            let bytes: Vec<u8> = d[0].data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(format!("{dir}/data_{}.raw", name.split(' ').next().unwrap_or(name)), bytes)?;
        }
        println!(
            "{name}: {shape:?} -> {new:?}: data order 3 {td:.2}s, seg one-hot {ts:.2}s ({} threads, checksum {:.3} {})",
            rayon::current_num_threads(),
            d[0].data.iter().map(|&v| v as f64).sum::<f64>() / d[0].len() as f64,
            s.data.iter().map(|&v| v as i64).sum::<i64>()
        );
    }
    Ok(())
}
