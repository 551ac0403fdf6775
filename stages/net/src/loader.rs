//! Multithreaded, deterministic batch production.
//!
//! A dispatcher thread hands batch jobs to a rayon pool (samples of a batch run in parallel
//! inside the pool); a reorder thread emits finished batches in order into a bounded
//! `crossbeam_channel` the trainer reads. At most `prefetch` batches are in flight or queued.
//! Batch `i` depends only on its seed (derived from `(seed, epoch, iteration)` by
//! [`batch_seed`]), so the stream is the same for any pool size. The time the trainer spends
//! blocked on the queue is measured.

use crate::augment::{augment_from_source, AugmentConfig, Sample};
use crate::error::{NetError, Result};
use crate::sampler::{PatchSampler, PatchSource};
use crossbeam_channel::{bounded, unbounded, Receiver};
use nnunet_io::rng::{splitmix64, Rng};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which stream a batch belongs to (salts the seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Train = 1,
    Validation = 2,
}

/// Seed of batch `iteration` of `epoch` in a stream.
pub fn batch_seed(seed: u64, stream: Stream, epoch: usize, iteration: usize) -> u64 {
    let mut s = seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F);
    let a = splitmix64(&mut s);
    let mut t = a ^ (epoch as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB);
    let b = splitmix64(&mut t);
    let mut u = b ^ (iteration as u64).wrapping_mul(0x8EBC_6AF0_9C88_C6E3);
    splitmix64(&mut u)
}

/// One batch: `[B, C, (Z,) Y, X]` data and one `[B, (Z,) Y, X]` label map per DS scale.
#[derive(Clone, Debug)]
pub struct Batch {
    pub data: Vec<f32>,
    pub data_shape: Vec<i64>,
    pub targets: Vec<(Vec<i16>, Vec<i64>)>,
    pub case_ids: Vec<String>,
    pub index: usize,
}

impl Batch {
    /// The data as a tensor on `device`.
    pub fn data_tensor(&self, device: tch::Device) -> tch::Tensor {
        tch::Tensor::from_slice(&self.data).reshape(self.data_shape.as_slice()).to_device(device)
    }
    /// The targets as i64 tensors on `device`.
    pub fn target_tensors(&self, device: tch::Device) -> Vec<tch::Tensor> {
        self.targets
            .iter()
            .map(|(t, s)| tch::Tensor::from_slice(t).reshape(s.as_slice()).to_device(device).to_kind(tch::Kind::Int64))
            .collect()
    }
}

/// What a loader samples from and how.
pub struct BatchSpec {
    pub cases: Vec<Arc<dyn PatchSource>>,
    pub sampler: PatchSampler,
    pub augment: AugmentConfig,
}

impl BatchSpec {
    /// One sample of a batch: case choice, crop, augmentation, all from the sample's own RNG.
    pub fn make_sample(&self, seed: u64, j: usize) -> Result<(Sample, String)> {
        if self.cases.is_empty() {
            return Err(NetError::Invalid("no cases to sample from".into()));
        }
        let mut rng = Rng::derive(seed, j as u64);
        let case = &self.cases[rng.below(self.cases.len() as u64) as usize];
        let force = self.sampler.force_foreground(j);
        let lo = self.sampler.bbox_lower(case.shape(), force, case.class_locations(), &mut rng);
        let (sample, _) = augment_from_source(&self.augment, case.as_ref(), lo, &mut rng)?;
        Ok((sample, case.id().to_string()))
    }

    /// Assembles samples into a batch.
    pub fn assemble(&self, samples: Vec<(Sample, String)>, index: usize) -> Batch {
        let bs = samples.len();
        let p = self.augment.patch_size;
        let c = self.augment.network_channels(self.cases.first().map_or(1, |c| c.num_channels()));
        let spatial = |s: [usize; 3]| -> Vec<i64> {
            if self.augment.is_2d {
                vec![s[1] as i64, s[2] as i64]
            } else {
                s.iter().map(|&v| v as i64).collect()
            }
        };
        let mut data_shape = vec![bs as i64, c as i64];
        data_shape.extend(spatial(p));
        let shapes = self.augment.target_shapes();
        let mut data = Vec::with_capacity(bs * c * p.iter().product::<usize>());
        let mut targets: Vec<(Vec<i16>, Vec<i64>)> = shapes
            .iter()
            .map(|s| {
                let mut sh = vec![bs as i64];
                sh.extend(spatial(*s));
                (Vec::with_capacity(bs * s.iter().product::<usize>()), sh)
            })
            .collect();
        let mut ids = Vec::with_capacity(bs);
        for (s, id) in samples {
            data.extend_from_slice(&s.data);
            for (t, st) in targets.iter_mut().zip(&s.targets) {
                t.0.extend_from_slice(st);
            }
            ids.push(id);
        }
        Batch { data, data_shape, targets, case_ids: ids, index }
    }

    /// A whole batch, samples in parallel on the current rayon pool.
    pub fn make_batch(&self, seed: u64, index: usize) -> Result<Batch> {
        let samples: Result<Vec<_>> =
            (0..self.sampler.batch_size).into_par_iter().map(|j| self.make_sample(seed, j)).collect();
        Ok(self.assemble(samples?, index))
    }

    /// A whole batch on the calling thread only.
    pub fn make_batch_serial(&self, seed: u64, index: usize) -> Result<Batch> {
        let samples: Result<Vec<_>> = (0..self.sampler.batch_size).map(|j| self.make_sample(seed, j)).collect();
        Ok(self.assemble(samples?, index))
    }
}

/// A running batch stream.
pub struct BatchLoader {
    rx: Option<Receiver<Result<Batch>>>,
    threads: Vec<JoinHandle<()>>,
    waited: Duration,
    remaining: usize,
}

impl BatchLoader {
    /// Starts producing one batch per seed, in order, on `pool`.
    pub fn start(pool: Arc<rayon::ThreadPool>, spec: Arc<BatchSpec>, seeds: Vec<u64>, prefetch: usize) -> BatchLoader {
        let prefetch = prefetch.max(1);
        let n = seeds.len();
        let (out_tx, out_rx) = bounded::<Result<Batch>>(prefetch);
        let (done_tx, done_rx) = unbounded::<(usize, Result<Batch>)>();
        let (token_tx, token_rx) = bounded::<()>(prefetch);
        for _ in 0..prefetch {
            let _ = token_tx.send(());
        }
        let dispatcher = std::thread::Builder::new()
            .name("batch-dispatch".into())
            .spawn(move || {
                for (i, seed) in seeds.into_iter().enumerate() {
                    if token_rx.recv().is_err() {
                        return;
                    }
                    let spec = spec.clone();
                    let done = done_tx.clone();
                    pool.spawn(move || {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spec.make_batch(seed, i)))
                            .unwrap_or_else(|_| Err(NetError::Loader(format!("batch {i}: worker panicked"))));
                        let _ = done.send((i, r));
                    });
                }
            })
            .expect("spawn dispatcher thread");
        let reorder = std::thread::Builder::new()
            .name("batch-reorder".into())
            .spawn(move || {
                let mut pending = BTreeMap::new();
                let mut next = 0usize;
                while next < n {
                    let Ok((i, b)) = done_rx.recv() else { return };
                    pending.insert(i, b);
                    while let Some(b) = pending.remove(&next) {
                        if out_tx.send(b).is_err() {
                            return;
                        }
                        next += 1;
                        let _ = token_tx.send(());
                    }
                }
            })
            .expect("spawn reorder thread");
        BatchLoader { rx: Some(out_rx), threads: vec![dispatcher, reorder], waited: Duration::ZERO, remaining: n }
    }

    /// The next batch (blocking), `None` when the stream is done.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        let t = Instant::now();
        let r = self.rx.as_ref()?.recv();
        self.waited += t.elapsed();
        self.remaining -= 1;
        Some(r.unwrap_or_else(|_| Err(NetError::Loader("the batch producer stopped".into()))))
    }

    /// Seconds the consumer spent waiting for batches so far.
    pub fn wait_seconds(&self) -> f64 {
        self.waited.as_secs_f64()
    }
}

impl Iterator for BatchLoader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Dropping the receiver stops the reorder thread, which drops the token sender and so
        // stops the dispatcher; in-flight jobs finish and their results are discarded.
        self.rx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A rayon pool of `n` augmentation workers.
pub fn worker_pool(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("augment-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| NetError::Loader(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::MemoryCase;

    fn spec(augment: bool) -> Arc<BatchSpec> {
        let shape = [12, 14, 16];
        let n = 12 * 14 * 16;
        let cases: Vec<Arc<dyn PatchSource>> = (0..3)
            .map(|k| {
                let seg: Vec<i16> = (0..n).map(|i| if (i + k * 7) % 97 < 5 { 1 } else { 0 }).collect();
                let data: Vec<f32> = (0..n).map(|i| ((i * (k + 3)) % 101) as f32 / 50.0).collect();
                Arc::new(MemoryCase::new(&format!("case{k}"), data, seg, 1, shape)) as Arc<dyn PatchSource>
            })
            .collect();
        let aug = AugmentConfig::new(&[8, 8, 8], &[vec![1.0; 3], vec![0.5; 3]], &[false], augment);
        let sampler = PatchSampler {
            batch_size: 3,
            oversample_foreground: 0.33,
            initial_patch_size: aug.initial_patch_size,
            final_patch_size: aug.patch_size,
            has_ignore: false,
        };
        Arc::new(BatchSpec { cases, sampler, augment: aug })
    }

    #[test]
    fn deterministic_across_pool_sizes_and_ordered() {
        let seeds: Vec<u64> = (0..6).map(|i| batch_seed(7, Stream::Train, 0, i)).collect();
        let run = |workers: usize| -> Vec<Batch> {
            let l = BatchLoader::start(worker_pool(workers).unwrap(), spec(true), seeds.clone(), 3);
            l.map(|b| b.unwrap()).collect()
        };
        let a = run(1);
        let b = run(3);
        assert_eq!(a.len(), 6);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.index, y.index);
            assert_eq!(x.data, y.data);
            assert_eq!(x.targets, y.targets);
            assert_eq!(x.case_ids, y.case_ids);
        }
        assert_eq!(a.iter().map(|b| b.index).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
        assert_eq!(a[0].data_shape, vec![3, 1, 8, 8, 8]);
        assert_eq!(a[0].targets[1].1, vec![3, 4, 4, 4]);
        // Serial production gives the same batch.
        let s = spec(true).make_batch_serial(seeds[2], 2).unwrap();
        assert_eq!(s.data, a[2].data);
        // Different seeds, different batches.
        assert_ne!(a[0].data, a[1].data);
        assert_ne!(batch_seed(7, Stream::Train, 0, 1), batch_seed(7, Stream::Validation, 0, 1));
        assert_ne!(batch_seed(7, Stream::Train, 1, 0), batch_seed(7, Stream::Train, 0, 1));
    }

    #[test]
    fn forced_foreground_in_last_sample_and_early_drop() {
        let sp = spec(false);
        for i in 0..10 {
            let b = sp.make_batch_serial(batch_seed(1, Stream::Validation, 0, i), i).unwrap();
            // bs 3: sample 2 is forced -> contains label 1 (no augmentation: full patch).
            let t = &b.targets[0].0[2 * 512..3 * 512];
            assert!(t.contains(&1));
            let tensors = b.target_tensors(tch::Device::Cpu);
            assert_eq!(tensors[0].size(), vec![3, 8, 8, 8]);
        }
        // Dropping a loader mid-stream does not hang.
        let seeds: Vec<u64> = (0..50).collect();
        let mut l = BatchLoader::start(worker_pool(2).unwrap(), sp, seeds, 2);
        assert!(l.next_batch().unwrap().is_ok());
        drop(l);
    }
}
