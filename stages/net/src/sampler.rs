//! Patch sampling (§8.1, nnU-Net's `nnUNetDataLoader`): cases uniformly with replacement,
//! foreground oversampling, the enlarged initial patch, crop-and-pad through partial reads.
//!
//! Cases are [`PatchSource`]s: the preprocessed case store ([`StoreCase`]) or in-memory volumes
//! ([`MemoryCase`], for tests and benchmarks). 2D configurations sample `(1, Y, X)` patches
//! from the same 3D volumes, i.e. a random slice or the slice of the chosen foreground voxel.

use crate::augment::RawSample;
use crate::error::{NetError, Result};
use nnunet_io::rng::Rng;
use nnunet_prep::class_locations::{ClassKey, ClassLocations};
use nnunet_prep::store::CaseStore;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A case patches can be read from. Spatial axes `[Z, Y, X]` (preprocessed, transposed).
pub trait PatchSource: Send + Sync {
    fn id(&self) -> &str;
    fn shape(&self) -> [usize; 3];
    fn num_channels(&self) -> usize;
    /// The box `[lo, lo + size)`: data `[C, size]` padded with 0, seg `[size]` padded with −1.
    fn read_patch(&self, lo: [i64; 3], size: [usize; 3]) -> Result<(Vec<f32>, Vec<i16>)>;
    /// Sampled foreground locations per class, rows `[0, z, y, x]`.
    fn class_locations(&self) -> &ClassLocations;
    /// Cascade: the previous stage's segmentation of the box `[lo, lo + size)`, padded with
    /// −1 (§8.1); `None` for a case without one.
    fn read_prev_stage(&self, _lo: [i64; 3], _size: [usize; 3]) -> Result<Option<Vec<i16>>> {
        Ok(None)
    }
}

/// A case of a cascade stage: the case plus the previous stage's segmentation of it, on the
/// same preprocessed grid (nnU-Net's `predicted_next_stage`, §7.3).
pub struct CascadeCase {
    inner: Arc<dyn PatchSource>,
    prev: nnunet_io::Volume<i16>,
}

impl CascadeCase {
    /// Fails naming the case when the segmentation's grid is not the case's.
    pub fn new(inner: Arc<dyn PatchSource>, prev: nnunet_io::Volume<i16>) -> Result<CascadeCase> {
        if prev.shape != inner.shape() {
            return Err(NetError::Case {
                case: inner.id().to_string(),
                msg: format!(
                    "the previous stage's segmentation has shape {:?}, the preprocessed case {:?}",
                    prev.shape,
                    inner.shape()
                ),
            });
        }
        Ok(CascadeCase { inner, prev })
    }
}

impl PatchSource for CascadeCase {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn shape(&self) -> [usize; 3] {
        self.inner.shape()
    }
    fn num_channels(&self) -> usize {
        self.inner.num_channels()
    }
    fn read_patch(&self, lo: [i64; 3], size: [usize; 3]) -> Result<(Vec<f32>, Vec<i16>)> {
        self.inner.read_patch(lo, size)
    }
    fn class_locations(&self) -> &ClassLocations {
        self.inner.class_locations()
    }
    fn read_prev_stage(&self, lo: [i64; 3], size: [usize; 3]) -> Result<Option<Vec<i16>>> {
        let (_, seg) = crate::augment::spatial::crop_box(&[], &self.prev.data, 0, self.prev.shape, lo, size);
        Ok(Some(seg))
    }
}

/// A memory budget for decoded cases shared by the [`StoreCase`]s of a run: a case is kept
/// decoded in memory after its first read while the budget lasts (first come, first served;
/// no eviction); the others keep using partial reads of the store.
#[derive(Debug)]
pub struct CaseCache {
    budget: usize,
    used: AtomicUsize,
}

/// Default [`CaseCache`] budget: 4 GiB.
pub const DEFAULT_CASE_CACHE_BYTES: usize = 4 << 30;

impl CaseCache {
    pub fn new(budget_bytes: usize) -> Arc<CaseCache> {
        Arc::new(CaseCache { budget: budget_bytes, used: AtomicUsize::new(0) })
    }
    fn reserve(&self, n: usize) -> bool {
        self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| (u + n <= self.budget).then_some(u + n)).is_ok()
    }
    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
    /// Bytes held by decoded cases.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

type Decoded = Option<(Vec<f32>, Vec<i16>)>;

/// A case of the preprocessed store (class locations loaded once; optionally decoded into
/// memory on first use, see [`CaseCache`]).
pub struct StoreCase {
    id: String,
    store: CaseStore,
    locations: ClassLocations,
    cache: Option<Arc<CaseCache>>,
    full: OnceLock<Decoded>,
}

impl StoreCase {
    pub fn open(dir: &Path, id: &str) -> Result<StoreCase> {
        Self::open_cached(dir, id, None)
    }

    /// Opens a case that may keep itself decoded in memory within `cache`'s budget.
    pub fn open_cached(dir: &Path, id: &str, cache: Option<Arc<CaseCache>>) -> Result<StoreCase> {
        let err = |e: nnunet_prep::PrepError| NetError::Case { case: id.to_string(), msg: e.to_string() };
        let store = CaseStore::open(dir).map_err(err)?;
        let locations = store.class_locations().map_err(err)?;
        Ok(StoreCase { id: id.to_string(), store, locations, cache, full: OnceLock::new() })
    }

    fn decoded(&self) -> Option<&(Vec<f32>, Vec<i16>)> {
        let cache = self.cache.as_ref()?;
        self.full
            .get_or_init(|| {
                let shape = self.store.shape();
                let n = shape.iter().product::<usize>();
                let bytes = n * (4 * self.store.num_channels() + 2);
                if !cache.reserve(bytes) {
                    return None;
                }
                match self.store.read_patch([0, 0, 0], shape) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        cache.release(bytes);
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl PatchSource for StoreCase {
    fn id(&self) -> &str {
        &self.id
    }
    fn shape(&self) -> [usize; 3] {
        self.store.shape()
    }
    fn num_channels(&self) -> usize {
        self.store.num_channels()
    }
    fn read_patch(&self, lo: [i64; 3], size: [usize; 3]) -> Result<(Vec<f32>, Vec<i16>)> {
        if let Some((d, s)) = self.decoded() {
            return Ok(crate::augment::spatial::crop_box(
                d,
                s,
                self.store.num_channels(),
                self.store.shape(),
                lo,
                size,
            ));
        }
        self.store.read_patch(lo, size).map_err(|e| NetError::Case { case: self.id.clone(), msg: e.to_string() })
    }
    fn class_locations(&self) -> &ClassLocations {
        &self.locations
    }
}

/// Opens `store_dir/<id>` for every id (decoded-case cache of `cache`, if any).
pub fn open_store_cases(
    store_dir: &Path,
    ids: &[String],
    cache: Option<Arc<CaseCache>>,
) -> Result<Vec<Arc<dyn PatchSource>>> {
    ids.iter()
        .map(|id| {
            StoreCase::open_cached(&store_dir.join(id), id, cache.clone()).map(|c| Arc::new(c) as Arc<dyn PatchSource>)
        })
        .collect()
}

/// An in-memory case: `[C, Z, Y, X]` data and `[Z, Y, X]` seg.
pub struct MemoryCase {
    pub id: String,
    pub data: Vec<f32>,
    pub seg: Vec<i16>,
    pub channels: usize,
    pub shape: [usize; 3],
    pub locations: ClassLocations,
}

impl MemoryCase {
    /// Class locations: every voxel of each label > 0 (tests and benchmarks; the store keeps
    /// a sample, §4.1 step 7).
    pub fn new(id: &str, data: Vec<f32>, seg: Vec<i16>, channels: usize, shape: [usize; 3]) -> MemoryCase {
        let mut labels: Vec<i16> = seg.iter().copied().filter(|&l| l > 0).collect();
        labels.sort_unstable();
        labels.dedup();
        let classes = labels
            .iter()
            .map(|&l| {
                let locs = seg
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v == l)
                    .map(|(i, _)| {
                        let z = i / (shape[1] * shape[2]);
                        let y = (i / shape[2]) % shape[1];
                        let x = i % shape[2];
                        [0, z as i32, y as i32, x as i32]
                    })
                    .collect();
                (ClassKey::Label(l), locs)
            })
            .collect();
        MemoryCase { id: id.to_string(), data, seg, channels, shape, locations: ClassLocations { classes } }
    }
}

impl PatchSource for MemoryCase {
    fn id(&self) -> &str {
        &self.id
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_channels(&self) -> usize {
        self.channels
    }
    fn read_patch(&self, lo: [i64; 3], size: [usize; 3]) -> Result<(Vec<f32>, Vec<i16>)> {
        Ok(crate::augment::spatial::crop_box(&self.data, &self.seg, self.channels, self.shape, lo, size))
    }
    fn class_locations(&self) -> &ClassLocations {
        &self.locations
    }
}

/// nnU-Net's patch sampler.
#[derive(Clone, Debug)]
pub struct PatchSampler {
    pub batch_size: usize,
    /// Fraction of each batch forced to contain foreground (nnU-Net: 0.33).
    pub oversample_foreground: f64,
    /// The crop read from the case (enlarged for augmentation), `[Z, Y, X]`.
    pub initial_patch_size: [usize; 3],
    /// The network's patch, `[Z, Y, X]`.
    pub final_patch_size: [usize; 3],
    /// Whether the dataset has an ignore label (then unforced samples are centred on annotated
    /// voxels, §8.1).
    pub has_ignore: bool,
}

/// Whether a class key is the ignore label's "all annotated" key (`[-1] + all labels`).
pub fn is_annotated_key(k: &ClassKey) -> bool {
    matches!(k, ClassKey::Region(r) if r.first() == Some(&-1))
}

impl PatchSampler {
    /// §7.1 / §8.1: sample `j` of a batch is forced to contain foreground iff
    /// `j ≥ round(bs × (1 − p))` (Python rounding).
    pub fn force_foreground(&self, j: usize) -> bool {
        let t = (self.batch_size as f64 * (1.0 - self.oversample_foreground)).round_ties_even();
        (j as f64) >= t
    }

    /// Lower corner of the crop (§8.1 `get_bbox`).
    pub fn bbox_lower(&self, shape: [usize; 3], force_fg: bool, locations: &ClassLocations, rng: &mut Rng) -> [i64; 3] {
        let ini = self.initial_patch_size.map(|v| v as i64);
        let mut need: [i64; 3] = std::array::from_fn(|d| ini[d] - self.final_patch_size[d] as i64);
        for d in 0..3 {
            if need[d] + (shape[d] as i64) < ini[d] {
                need[d] = ini[d] - shape[d] as i64;
            }
        }
        // Python: lb = -need // 2 (floor), ub = shape + need // 2 + need % 2 - initial.
        let lb: [i64; 3] = std::array::from_fn(|d| (-need[d]).div_euclid(2));
        let ub: [i64; 3] =
            std::array::from_fn(|d| shape[d] as i64 + need[d].div_euclid(2) + need[d].rem_euclid(2) - ini[d]);
        let random = |rng: &mut Rng| -> [i64; 3] {
            std::array::from_fn(|d| lb[d] + rng.below((ub[d] - lb[d] + 1).max(1) as u64) as i64)
        };
        let selected: Option<&Vec<[i32; 4]>> = if force_fg {
            let mut eligible: Vec<&(ClassKey, Vec<[i32; 4]>)> =
                locations.classes.iter().filter(|(_, l)| !l.is_empty()).collect();
            if eligible.len() > 1 {
                if let Some(i) = eligible.iter().position(|(k, _)| is_annotated_key(k)) {
                    eligible.remove(i);
                }
            }
            if eligible.is_empty() {
                None
            } else {
                Some(&eligible[rng.below(eligible.len() as u64) as usize].1)
            }
        } else if self.has_ignore {
            locations.classes.iter().find(|(k, l)| is_annotated_key(k) && !l.is_empty()).map(|(_, l)| l)
        } else {
            None
        };
        match selected {
            Some(voxels) => {
                let v = voxels[rng.below(voxels.len() as u64) as usize];
                // No upper clamp: padding covers the overflow.
                std::array::from_fn(|d| lb[d].max(v[d + 1] as i64 - ini[d] / 2))
            }
            None => random(rng),
        }
    }

    /// Reads the (enlarged) crop of a case.
    pub fn sample(&self, case: &dyn PatchSource, force_fg: bool, rng: &mut Rng) -> Result<RawSample> {
        let lo = self.bbox_lower(case.shape(), force_fg, case.class_locations(), rng);
        let (data, seg) = case.read_patch(lo, self.initial_patch_size)?;
        let prev = case.read_prev_stage(lo, self.initial_patch_size)?;
        Ok(RawSample { data, seg, channels: case.num_channels(), shape: self.initial_patch_size, prev })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(shape: [usize; 3], fg: &[[usize; 3]]) -> MemoryCase {
        let n = shape[0] * shape[1] * shape[2];
        let mut seg = vec![0i16; n];
        for v in fg {
            seg[(v[0] * shape[1] + v[1]) * shape[2] + v[2]] = 1;
        }
        MemoryCase::new("c", (0..n).map(|i| i as f32).collect(), seg, 1, shape)
    }

    fn sampler(bs: usize, ini: [usize; 3], fin: [usize; 3]) -> PatchSampler {
        PatchSampler {
            batch_size: bs,
            oversample_foreground: 0.33,
            initial_patch_size: ini,
            final_patch_size: fin,
            has_ignore: false,
        }
    }

    #[test]
    fn oversampling_positions() {
        // bs 2 -> 1 of 2; bs 9 -> round(6.03) = 6 -> 3 of 9; bs 366 -> round(245.22) = 245.
        let forced = |bs| (0..bs).filter(|&j| sampler(bs, [4; 3], [4; 3]).force_foreground(j)).count();
        assert_eq!(forced(2), 1);
        assert_eq!(forced(9), 3);
        assert_eq!(forced(366), 121);
        assert!(sampler(2, [4; 3], [4; 3]).force_foreground(1));
        assert!(!sampler(2, [4; 3], [4; 3]).force_foreground(0));
    }

    #[test]
    fn forced_samples_contain_foreground_and_bounds_hold() {
        let shape = [20, 30, 25];
        let c = case(shape, &[[3, 27, 2], [15, 4, 20]]);
        let s = sampler(2, [14, 18, 16], [8, 12, 10]);
        let mut r = Rng::new(1);
        for _ in 0..200 {
            let raw = s.sample(&c, true, &mut r).unwrap();
            // The centre final patch of the crop contains the voxel, up to the lb clamp: the full
            // crop always does.
            assert!(raw.seg.contains(&1));
            let lo = s.bbox_lower(shape, false, c.class_locations(), &mut r);
            // need = 6,6,6 -> lb = -3; ub = shape + 3 - initial.
            assert!(lo[0] >= -3 && lo[0] <= 20 + 3 - 14);
            assert!(lo[1] >= -3 && lo[1] <= 30 + 3 - 18);
            assert!(lo[2] >= -3 && lo[2] <= 25 + 3 - 16);
        }
        // Without foreground: random crop fallback.
        let empty = case(shape, &[]);
        let raw = s.sample(&empty, true, &mut r).unwrap();
        assert!(!raw.seg.contains(&1));
    }

    #[test]
    fn small_images_get_padded_bounds() {
        // Image smaller than the patch on axis 0: need = initial - shape.
        let s = sampler(1, [10, 4, 4], [10, 4, 4]);
        let c = case([6, 8, 8], &[]);
        let mut r = Rng::new(0);
        for _ in 0..50 {
            let lo = s.bbox_lower(c.shape(), false, c.class_locations(), &mut r);
            assert_eq!(lo[0], -2); // need 4 -> lb = -2 = ub
        }
    }

    #[test]
    fn two_d_picks_the_foreground_slice() {
        let shape = [12, 16, 16];
        let c = case(shape, &[[7, 8, 8]]);
        let s = sampler(2, [1, 20, 20], [1, 16, 16]);
        let mut r = Rng::new(3);
        for _ in 0..20 {
            let lo = s.bbox_lower(shape, true, c.class_locations(), &mut r);
            assert_eq!(lo[0], 7);
            let raw = s.sample(&c, true, &mut r).unwrap();
            assert_eq!(raw.shape, [1, 20, 20]);
            assert!(raw.seg.contains(&1));
        }
        let mut slices = std::collections::BTreeSet::new();
        for _ in 0..200 {
            slices.insert(s.bbox_lower(shape, false, c.class_locations(), &mut r)[0]);
        }
        assert_eq!(slices.len(), 12);
    }

    #[test]
    fn ignore_key_excluded_from_forced_classes() {
        let locs = ClassLocations {
            classes: vec![
                (ClassKey::Label(1), vec![[0, 5, 5, 5]]),
                (ClassKey::Region(vec![-1, 0, 1]), vec![[0, 0, 0, 0]]),
            ],
        };
        let mut s = sampler(1, [4; 3], [4; 3]);
        s.has_ignore = true;
        let mut r = Rng::new(0);
        for _ in 0..50 {
            assert_eq!(s.bbox_lower([10; 3], true, &locs, &mut r), [3, 3, 3]);
            // Unforced with an ignore label: centred on an annotated voxel.
            assert_eq!(s.bbox_lower([10; 3], false, &locs, &mut r), [0, 0, 0]);
        }
    }
}
