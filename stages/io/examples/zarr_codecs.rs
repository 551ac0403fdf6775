//! Codec choice for the preprocessed store: write time, size and random patch reads of one
//! f32 volume under a few codec chains (sharded, one shard per array).
//!
//!   cargo run --release -p nnunet-io --example zarr_codecs -- RAW_F32_FILE Z,Y,X SUBCHUNK_Z,Y,X PATCH_Z,Y,X
use std::sync::Arc;
use std::time::Instant;
use zarrs::array::codec::{Crc32cCodec, ZstdCodec};
use zarrs::array::{data_type, ArrayBuilder, ArraySubset, BytesToBytesCodecTraits};
use zarrs::array::{ArrayShardedReadableExt, ArrayShardedReadableExtCache, CodecOptions};
use zarrs::filesystem::FilesystemStore;

fn parse(s: &str) -> Vec<u64> {
    s.split(',').map(|v| v.parse().unwrap()).collect()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    let shape = parse(&a[2]);
    let sub = parse(&a[3]);
    let patch = parse(&a[4]);
    let n: u64 = shape.iter().product();
    let data: Vec<f32> =
        bytes.chunks_exact(4).take(n as usize).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(data.len() as u64, n);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FilesystemStore::new(dir.path()).unwrap());
    let shard: Vec<u64> = shape.iter().zip(&sub).map(|(s, c)| s.div_ceil(*c) * c).collect();
    let chains: Vec<(&str, Vec<Arc<dyn BytesToBytesCodecTraits>>)> = vec![
        ("zstd1+crc", vec![Arc::new(ZstdCodec::new(1, false)), Arc::new(Crc32cCodec::new())]),
        ("zstd3+crc", vec![Arc::new(ZstdCodec::new(3, false)), Arc::new(Crc32cCodec::new())]),
        ("raw+crc", vec![Arc::new(Crc32cCodec::new())]),
    ];
    let opts = CodecOptions::default().with_concurrent_target(1);
    for (name, codecs) in chains {
        let path = format!("/{name}");
        let mut b = ArrayBuilder::new(shape.clone(), shard.clone(), data_type::float32(), 0.0f32);
        b.bytes_to_bytes_codecs(codecs).subchunk_shape(sub.clone());
        let arr = b.build(store.clone(), &path).unwrap();
        arr.store_metadata().unwrap();
        let t = Instant::now();
        arr.store_array_subset_opt(&ArraySubset::new_with_shape(shape.clone()), &data, &opts).unwrap();
        let w = t.elapsed().as_secs_f64();
        let size = std::fs::metadata(dir.path().join(name).join("c/0/0/0")).map(|m| m.len()).unwrap_or(0);
        let cache = ArrayShardedReadableExtCache::new(&arr);
        let mut rng = 12345u64;
        let mut next = |m: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % m.max(1)
        };
        let t = Instant::now();
        let reps = 50;
        for _ in 0..reps {
            let lo: Vec<u64> = shape.iter().zip(&patch).map(|(s, p)| next(s.saturating_sub(*p) + 1)).collect();
            let ranges: Vec<_> = lo.iter().zip(&patch).zip(&shape).map(|((l, p), s)| *l..(*l + *p).min(*s)).collect();
            let v: Vec<f32> =
                arr.retrieve_array_subset_sharded_opt(&cache, &ArraySubset::new_with_ranges(&ranges), &opts).unwrap();
            std::hint::black_box(v);
        }
        let r = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        let all: Vec<f32> = arr.retrieve_array_subset_opt(&ArraySubset::new_with_shape(shape.clone()), &opts).unwrap();
        let full = t.elapsed().as_secs_f64();
        assert_eq!(all, data);
        println!(
            "{name:>12}: write {w:.3} s ({:.0} MB/s), {:.1} MB (x{:.2}), patch read {:.2} ms, full read {full:.3} s",
            n as f64 * 4.0 / w / 1e6,
            size as f64 / 1e6,
            n as f64 * 4.0 / size as f64,
            r * 1e3
        );
    }
}
