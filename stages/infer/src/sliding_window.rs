//! Sliding-window prediction (reference §9.2, `sliding_window_prediction.py` and
//! `nnUNetPredictor.predict_sliding_window_return_logits`).
//!
//! - tile positions: `n = ceil((S − P) / (P·t)) + 1`, actual step `(S − P)/(n − 1)`, positions
//!   rounded half to even ([`compute_steps`]);
//! - images smaller than the patch are padded with 0, symmetrically (the larger half after),
//!   and un-padded at the end ([`Padding`]);
//! - Gaussian importance map ([`gaussian_importance_map`]);
//! - test-time mirroring over the identity and every non-empty subset of the allowed axes,
//!   averaged ([`mirror_combinations`]);
//! - several tiles per forward pass, accumulation on the device in f32 (f16 optional); on the
//!   CPU the accumulators are Rust buffers that become the returned logits (no copy);
//! - 2D configurations applied slice by slice to 3D images.

use crate::error::{InferError, Result};
use crate::export::Logits;
use crate::host::HostTensor;
use crate::network::SegNetwork;
use nnunet_eval::summary::numpy_sum;
use tch::{Device, Kind, Tensor};

/// Tile start positions along one axis (§9.2 step 2). `image_size >= patch` is required.
pub fn compute_steps(image_size: usize, patch: usize, tile_step_size: f64) -> Vec<usize> {
    let target = patch as f64 * tile_step_size;
    let span = image_size.saturating_sub(patch);
    let n = (span as f64 / target).ceil() as usize + 1;
    if n <= 1 {
        return vec![0];
    }
    let actual = span as f64 / (n - 1) as f64;
    // Python round / np.round: half to even (§9.2, §16).
    (0..n).map(|i| (actual * i as f64).round_ties_even() as usize).collect()
}

/// [`compute_steps`] per axis.
pub fn compute_steps_nd(image: &[usize], patch: &[usize], tile_step_size: f64) -> Vec<Vec<usize>> {
    image.iter().zip(patch).map(|(&s, &p)| compute_steps(s, p, tile_step_size)).collect()
}

/// f32 -> IEEE binary16 bits, round to nearest even (subnormals, overflow to inf).
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        let shift = (126 - exp) as u32;
        if shift >= 25 || exp == 0 {
            return sign;
        }
        let m = man | 0x80_0000;
        let mut h = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

/// IEEE binary16 bits -> f32 (exact): the io crate's decoder (also used for `.pth` half tensors).
pub use nnunet_io::pickle::f16_to_f32 as f16_bits_to_f32;

/// Rounds to the nearest fp16 value (as torch's cast of a float64 tensor does: to f32, then
/// to f16).
pub fn round_to_f16(x: f64) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x as f32))
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate·σ + 0.5)`,
/// truncate 4: `exp(-0.5/σ² · x²)` normalised by its (numpy pairwise) sum.
fn gaussian_kernel1d(sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let c = -0.5 / (sigma * sigma);
    let phi: Vec<f64> = (-radius..=radius).map(|x| (c * (x * x) as f64).exp()).collect();
    let s = numpy_sum(&phi);
    phi.iter().map(|v| v / s).collect()
}

/// The Gaussian importance map of §9.2 step 3, C order over `patch` (2 or 3 axes): an impulse
/// at `P//2` filtered with σ = `sigma_scale`·P per axis (scipy `gaussian_filter`, mode constant,
/// truncate 4), divided by `max / value_scaling`, rounded to fp16, zeros replaced by the
/// smallest non-zero value. nnU-Net uses `sigma_scale = 1/8`, `value_scaling = 10`.
pub fn gaussian_importance_map(patch: &[usize], sigma_scale: f64, value_scaling: f64) -> Vec<f32> {
    // Per axis, the filtered impulse is the kernel centred at P//2 (0 beyond the radius).
    let profiles: Vec<Vec<f64>> = patch
        .iter()
        .map(|&p| {
            let sigma = p as f64 * sigma_scale;
            let c = (p / 2) as i64;
            if sigma <= 1e-15 {
                // scipy skips the axis: the impulse stays an impulse.
                return (0..p as i64).map(|i| if i == c { 1.0 } else { 0.0 }).collect();
            }
            let k = gaussian_kernel1d(sigma);
            let r = (k.len() / 2) as i64;
            (0..p as i64).map(|i| if (i - c).abs() <= r { k[(i - c + r) as usize] } else { 0.0 }).collect()
        })
        .collect();
    // Filtering axis by axis multiplies the profiles in axis order (one non-zero tap each).
    let mut vals: Vec<f64> = vec![1.0];
    for prof in &profiles {
        let mut next = Vec::with_capacity(vals.len() * prof.len());
        for &v in &vals {
            for &w in prof {
                next.push(v * w);
            }
        }
        vals = next;
    }
    let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let div = max / value_scaling;
    let mut out: Vec<f32> = vals.iter().map(|&v| round_to_f16(v / div)).collect();
    let min_nonzero = out.iter().cloned().filter(|&v| v != 0.0).fold(f32::INFINITY, f32::min);
    if min_nonzero.is_finite() {
        out.iter_mut().filter(|v| **v == 0.0).for_each(|v| *v = min_nonzero);
    }
    out
}

/// Non-empty subsets of `axes` in `itertools.combinations` order (by size, then
/// lexicographic), the mirrored passes of §9.2 step 4.
pub fn mirror_combinations(axes: &[usize]) -> Vec<Vec<usize>> {
    fn rec(axes: &[usize], k: usize, start: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..axes.len() {
            cur.push(axes[i]);
            rec(axes, k, i + 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    for k in 1..=axes.len() {
        rec(axes, k, 0, &mut Vec::new(), &mut out);
    }
    out
}

/// Symmetric constant padding up to a minimum shape (`pad_nd_image`): `lo = diff // 2`,
/// `hi = diff − lo` per axis, nothing where the image is already large enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Padding {
    pub lo: Vec<usize>,
    pub hi: Vec<usize>,
}

impl Padding {
    pub fn to_min_shape(shape: &[usize], min_shape: &[usize]) -> Padding {
        let diff: Vec<usize> = shape.iter().zip(min_shape).map(|(&s, &m)| m.saturating_sub(s)).collect();
        Padding { lo: diff.iter().map(|d| d / 2).collect(), hi: diff.iter().map(|d| d - d / 2).collect() }
    }
    pub fn is_none(&self) -> bool {
        self.lo.iter().chain(&self.hi).all(|&v| v == 0)
    }
    pub fn padded_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().zip(&self.lo).zip(&self.hi).map(|((s, l), h)| s + l + h).collect()
    }
}

/// Where accumulation buffers live and in which precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulation {
    /// f32 (default; nnU-Net uses f16 with an inf guard, §16 lists f32 as an improvement).
    F32,
    /// f16, as nnU-Net does.
    F16,
}

/// Options of [`predict_sliding_window`].
#[derive(Clone, Debug)]
pub struct SlidingWindowOptions {
    /// Step as a fraction of the patch (0.5).
    pub tile_step_size: f64,
    pub use_gaussian: bool,
    /// Spatial axes to mirror (empty: no test-time augmentation).
    pub mirror_axes: Vec<usize>,
    /// Tiles per forward pass; 0 picks [`recommended_tiles_per_batch`].
    pub tiles_per_batch: usize,
    /// Put the mirrored copies of a batch into the same forward pass.
    pub batch_mirrors: bool,
    pub accumulation: Accumulation,
    /// Device of the networks (tiles are cut there).
    pub device: Device,
    /// Keep the accumulators on `device` (falls back to the CPU when allocation fails).
    pub accumulate_on_device: bool,
    /// Mixed precision on CUDA (`torch.autocast`, as nnU-Net does); ignored on the CPU.
    pub autocast: bool,
}

impl Default for SlidingWindowOptions {
    fn default() -> Self {
        SlidingWindowOptions {
            tile_step_size: 0.5,
            use_gaussian: true,
            mirror_axes: vec![],
            tiles_per_batch: 0,
            batch_mirrors: false,
            accumulation: Accumulation::F32,
            device: Device::Cpu,
            accumulate_on_device: true,
            autocast: true,
        }
    }
}

/// Tiles per forward pass when not set: 1 for 3D patches (nnU-Net's batch size); for 2D
/// patches as many as fit 2^17 voxels, up to 16 (2D slices are small and a batch of 1 leaves
/// the CPU idle between tiny convolutions).
pub fn recommended_tiles_per_batch(patch: &[usize]) -> usize {
    if patch.len() == 2 {
        ((1usize << 17) / patch.iter().product::<usize>().max(1)).clamp(1, 16)
    } else {
        1
    }
}

/// One tile: its start per axis of the (padded) `[Z, Y, X]` image; for 2D patches the z
/// start is the slice and the tile depth is 1.
fn tile_origins(shape: [usize; 3], patch: &[usize], step: f64) -> Vec<[usize; 3]> {
    let mut out = Vec::new();
    if patch.len() == 2 {
        let s = compute_steps_nd(&shape[1..], patch, step);
        for z in 0..shape[0] {
            for &a in &s[0] {
                for &b in &s[1] {
                    out.push([z, a, b]);
                }
            }
        }
    } else {
        let s = compute_steps_nd(&shape, patch, step);
        for &a in &s[0] {
            for &b in &s[1] {
                for &c in &s[2] {
                    out.push([a, b, c]);
                }
            }
        }
    }
    out
}

/// Forward of a batch through every network (fold ensembling: logits averaged) with
/// mirroring (each network's passes averaged first, §9.2 step 4 and 6).
fn forward_tta(
    nets: &[&dyn SegNetwork],
    x: &Tensor,
    combos: &[Vec<i64>],
    batch_mirrors: bool,
    autocast: bool,
) -> Tensor {
    let run = |net: &dyn SegNetwork, t: &Tensor| -> Tensor {
        if autocast {
            tch::autocast(true, || net.forward(t)).to_kind(Kind::Float)
        } else {
            net.forward(t).to_kind(Kind::Float)
        }
    };
    let mut total: Option<Tensor> = None;
    for net in nets {
        let mut p = if batch_mirrors && !combos.is_empty() {
            let b = x.size()[0];
            let mut inputs = vec![x.shallow_clone()];
            inputs.extend(combos.iter().map(|d| x.flip(d.as_slice())));
            let all = run(*net, &Tensor::cat(&inputs, 0));
            // A copy: the in-place sums must not write into `all`.
            let mut p = all.narrow(0, 0, b).copy();
            for (i, d) in combos.iter().enumerate() {
                p += all.narrow(0, (i as i64 + 1) * b, b).flip(d.as_slice());
            }
            p
        } else {
            let mut p = run(*net, x);
            for d in combos {
                p += run(*net, &x.flip(d.as_slice())).flip(d.as_slice());
            }
            p
        };
        if !combos.is_empty() {
            p /= (combos.len() + 1) as f64;
        }
        total = Some(match total {
            None => p,
            Some(t) => t + p,
        });
    }
    let t = total.expect("at least one network");
    if nets.len() > 1 {
        t / nets.len() as f64
    } else {
        t
    }
}

/// Predicts logits for a whole preprocessed image with a sliding window, as a tensor.
///
/// `data` is `[C, Z, Y, X]` (any device); `patch` has 3 entries (3D) or 2 (in-plane, applied
/// to every z slice). Returns `[num_outputs, Z, Y, X]` f32 logits on the CPU.
/// `progress(done, total)` is called after each batch of tiles. See
/// [`predict_sliding_window_logits`], which returns the logits without the final copy.
pub fn predict_sliding_window(
    nets: &[&dyn SegNetwork],
    data: &Tensor,
    patch: &[usize],
    num_outputs: usize,
    opts: &SlidingWindowOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<Tensor> {
    let l = predict_sliding_window_logits(nets, data, patch, num_outputs, opts, progress)?;
    let [z, y, x] = l.shape;
    Ok(Tensor::from_slice(&l.data).view([l.num_channels as i64, z as i64, y as i64, x as i64]))
}

/// The accumulators of a sliding window: libtorch tensors on the accumulation device, or, on
/// the CPU in f32, Rust buffers lent to libtorch (the result then needs no copy).
enum Accumulators {
    Host { acc: HostTensor, wsum: HostTensor },
    Tensors { acc: Tensor, wsum: Tensor },
}

impl Accumulators {
    fn new(shape: [usize; 4], kind: Kind, want: Device) -> Result<(Accumulators, Device)> {
        if want == Device::Cpu && kind == Kind::Float {
            let acc = HostTensor::zeros(&shape)?;
            let wsum = HostTensor::zeros(&shape[1..])?;
            return Ok((Accumulators::Host { acc, wsum }, Device::Cpu));
        }
        let s: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
        match (Tensor::f_zeros(s.as_slice(), (kind, want)), Tensor::f_zeros(&s[1..], (kind, want))) {
            (Ok(acc), Ok(wsum)) => Ok((Accumulators::Tensors { acc, wsum }, want)),
            // Out of device memory: accumulate on the host (nnU-Net's fallback).
            _ if kind == Kind::Float => Accumulators::new(shape, kind, Device::Cpu),
            _ => Ok((
                Accumulators::Tensors {
                    acc: Tensor::f_zeros(s.as_slice(), (kind, Device::Cpu))?,
                    wsum: Tensor::f_zeros(&s[1..], (kind, Device::Cpu))?,
                },
                Device::Cpu,
            )),
        }
    }

    /// Shallow handles for the accumulation loop (dropped before [`Accumulators::finish`]).
    fn handles(&self) -> (Tensor, Tensor) {
        match self {
            Accumulators::Host { acc, wsum } => (acc.tensor().shallow_clone(), wsum.tensor().shallow_clone()),
            Accumulators::Tensors { acc, wsum } => (acc.shallow_clone(), wsum.shallow_clone()),
        }
    }

    /// `acc / wsum` (in place, libtorch's kernel either way), checked for inf, as host logits of
    /// the padded shape `[K, Z, Y, X]`.
    fn finish(self, shape: [usize; 4]) -> Result<Vec<f32>> {
        match self {
            Accumulators::Host { acc, wsum } => {
                {
                    let mut a = acc.tensor().shallow_clone();
                    a /= wsum.tensor();
                }
                drop(wsum);
                let v = acc.into_vec();
                if v.iter().any(|x| x.is_infinite()) {
                    return Err(InferError::NonFinite);
                }
                Ok(v)
            }
            Accumulators::Tensors { mut acc, wsum } => {
                acc /= &wsum;
                drop(wsum);
                if acc.isinf().any().int64_value(&[]) != 0 {
                    return Err(InferError::NonFinite);
                }
                let t = acc.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
                let n: usize = shape.iter().product();
                let mut v = vec![0f32; n];
                t.f_copy_data(&mut v, n)?;
                Ok(v)
            }
        }
    }
}

/// Copies the box `[lo, lo + out)` of every channel of a `[K, padded]` buffer.
fn unpad(v: Vec<f32>, k: usize, padded: [usize; 3], lo: [usize; 3], out: [usize; 3]) -> Vec<f32> {
    if padded == out {
        return v;
    }
    let mut r = Vec::with_capacity(k * out.iter().product::<usize>());
    for c in 0..k {
        for z in 0..out[0] {
            for y in 0..out[1] {
                let at = ((c * padded[0] + z + lo[0]) * padded[1] + y + lo[1]) * padded[2] + lo[2];
                r.extend_from_slice(&v[at..at + out[2]]);
            }
        }
    }
    r
}

/// Predicts logits for a whole preprocessed image with a sliding window.
///
/// `data` is `[C, Z, Y, X]` (any device); `patch` has 3 entries (3D) or 2 (in-plane, applied
/// to every z slice). Returns `[num_outputs, Z, Y, X]` f32 logits on the host.
/// `progress(done, total)` is called after each batch of tiles.
///
/// Memory: on the CPU the accumulators are the returned buffer (normalized in place), so the
/// image-sized arrays alive are the input, the `K` logit channels and one weight map.
///
/// Long (~135 lines): the tile loop with its batching, mirroring and in-place accumulation is
/// the hot path; splitting it would pass the accumulators through several signatures.
pub fn predict_sliding_window_logits(
    nets: &[&dyn SegNetwork],
    data: &Tensor,
    patch: &[usize],
    num_outputs: usize,
    opts: &SlidingWindowOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<Logits> {
    if nets.is_empty() {
        return Err(InferError::Invalid("no network to predict with".into()));
    }
    let size = data.size();
    if size.len() != 4 {
        return Err(InferError::Invalid(format!("sliding window input must be [C, Z, Y, X], got {size:?}")));
    }
    if !(patch.len() == 2 || patch.len() == 3) || patch.contains(&0) {
        return Err(InferError::Invalid(format!("patch size {patch:?} must have 2 or 3 positive entries")));
    }
    if !(opts.tile_step_size > 0.0 && opts.tile_step_size <= 1.0) {
        return Err(InferError::Invalid(format!("tile_step_size {} must be in (0, 1]", opts.tile_step_size)));
    }
    let nd = patch.len();
    if let Some(&a) = opts.mirror_axes.iter().find(|&&a| a >= nd) {
        return Err(InferError::Invalid(format!("mirror axis {a} does not exist for a {nd}D patch")));
    }
    let shape: Vec<usize> = size[1..].iter().map(|&s| s as usize).collect();
    let _guard = tch::no_grad_guard();
    let device = opts.device;

    // 1. Pad to at least the patch (in-plane only for 2D patches).
    let spatial = &shape[3 - nd..];
    let pad = Padding::to_min_shape(spatial, patch);
    let mut lo3 = [0usize; 3];
    let mut hi3 = [0usize; 3];
    for i in 0..nd {
        lo3[3 - nd + i] = pad.lo[i];
        hi3[3 - nd + i] = pad.hi[i];
    }
    let data = data.to_device(device).to_kind(Kind::Float);
    let data = if pad.is_none() {
        data
    } else {
        // torch pad order: last axis first, (lo, hi) pairs.
        let p: Vec<i64> = (0..3).rev().flat_map(|a| [lo3[a] as i64, hi3[a] as i64]).collect();
        data.f_constant_pad_nd(p.as_slice())?
    };
    let ps: Vec<usize> = data.size()[1..].iter().map(|&s| s as usize).collect();
    let padded = [ps[0], ps[1], ps[2]];

    // 2. Accumulators.
    let acc_kind = match opts.accumulation {
        Accumulation::F32 => Kind::Float,
        Accumulation::F16 => Kind::Half,
    };
    let acc_shape = [num_outputs, padded[0], padded[1], padded[2]];
    let want_dev = if opts.accumulate_on_device { device } else { Device::Cpu };
    let (accumulators, acc_dev) = Accumulators::new(acc_shape, acc_kind, want_dev)?;
    let tile3: [i64; 3] = if nd == 2 {
        [1, patch[0] as i64, patch[1] as i64]
    } else {
        [patch[0] as i64, patch[1] as i64, patch[2] as i64]
    };
    let gauss = if opts.use_gaussian {
        Tensor::from_slice(&gaussian_importance_map(patch, 1.0 / 8.0, 10.0)).view(tile3).to_device(device)
    } else {
        Tensor::ones(tile3, (Kind::Float, device))
    };
    let gauss_acc = gauss.to_device(acc_dev).to_kind(acc_kind);

    // 3. Tiles, batched.
    let origins = tile_origins(padded, patch, opts.tile_step_size);
    let combos: Vec<Vec<i64>> =
        mirror_combinations(&opts.mirror_axes).into_iter().map(|c| c.iter().map(|&a| a as i64 + 2).collect()).collect();
    let autocast = opts.autocast && matches!(device, Device::Cuda(_));
    let bs = if opts.tiles_per_batch == 0 { recommended_tiles_per_batch(patch) } else { opts.tiles_per_batch };
    let total = origins.len();
    {
        let (acc, wsum) = accumulators.handles();
        for (bi, batch) in origins.chunks(bs).enumerate() {
            let tiles: Vec<Tensor> = batch
                .iter()
                .map(|o| {
                    let t = data.narrow(1, o[0] as i64, tile3[0]).narrow(2, o[1] as i64, tile3[1]).narrow(
                        3,
                        o[2] as i64,
                        tile3[2],
                    );
                    if nd == 2 {
                        t.squeeze_dim(1)
                    } else {
                        t
                    }
                })
                .collect();
            let x = Tensor::stack(&tiles, 0);
            drop(tiles);
            let pred = forward_tta(nets, &x, &combos, opts.batch_mirrors, autocast);
            drop(x);
            let psize = pred.size();
            if psize.len() != nd + 2
                || psize[1] != num_outputs as i64
                || psize[2..].iter().zip(patch).any(|(&a, &b)| a != b as i64)
            {
                return Err(InferError::Invalid(format!(
                    "network output {psize:?} does not match {num_outputs} channels x patch {patch:?}"
                )));
            }
            for (b, o) in batch.iter().enumerate() {
                let mut p = pred.get(b as i64);
                if nd == 2 {
                    p = p.unsqueeze(1);
                }
                let weighted = (p * &gauss).to_device(acc_dev).to_kind(acc_kind);
                let mut dst = acc.narrow(1, o[0] as i64, tile3[0]).narrow(2, o[1] as i64, tile3[1]).narrow(
                    3,
                    o[2] as i64,
                    tile3[2],
                );
                dst += &weighted;
                let mut wdst = wsum.narrow(0, o[0] as i64, tile3[0]).narrow(1, o[1] as i64, tile3[1]).narrow(
                    2,
                    o[2] as i64,
                    tile3[2],
                );
                wdst += &gauss_acc;
            }
            progress(((bi + 1) * bs).min(total), total);
        }
    }
    drop(data);
    // 4. Normalise, check, un-pad.
    let v = accumulators.finish(acc_shape)?;
    let out_shape = [shape[0], shape[1], shape[2]];
    Logits::new(num_outputs, out_shape, unpad(v, num_outputs, padded, lo3, out_shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_example_from_the_reference() {
        assert_eq!(compute_steps(110, 64, 0.5), vec![0, 23, 46]);
        assert_eq!(compute_steps(64, 64, 0.5), vec![0]);
        assert_eq!(compute_steps(65, 64, 0.5), vec![0, 1]);
    }

    #[test]
    fn f16_rounding() {
        for (x, bits) in [
            (1.0f32, 0x3c00u16),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (5.96e-8, 0x0001),
            (2.0f32.powi(-25), 0),
            (-2.0, 0xc000),
        ] {
            assert_eq!(f32_to_f16_bits(x), bits, "{x}");
        }
        // every f16 value round-trips, and the midpoints round to even
        for h in 0u16..0x7c00 {
            let v = f16_bits_to_f32(h);
            assert_eq!(f32_to_f16_bits(v), h);
            if h < 0x7bff {
                let mid = (v as f64 + f16_bits_to_f32(h + 1) as f64) / 2.0;
                let r = f32_to_f16_bits(mid as f32);
                assert_eq!(r, if h % 2 == 0 { h } else { h + 1 }, "mid of {h:#x}");
            }
        }
    }

    #[test]
    fn mirror_subsets_in_itertools_order() {
        assert_eq!(
            mirror_combinations(&[0, 1, 2]),
            vec![vec![0], vec![1], vec![2], vec![0, 1], vec![0, 2], vec![1, 2], vec![0, 1, 2]]
        );
        assert!(mirror_combinations(&[]).is_empty());
    }

    #[test]
    fn padding_puts_the_larger_half_after() {
        let p = Padding::to_min_shape(&[3, 34, 55], &[3, 96, 64]);
        assert_eq!(p.lo, vec![0, 31, 4]);
        assert_eq!(p.hi, vec![0, 31, 5]);
        assert_eq!(p.padded_shape(&[3, 34, 55]), vec![3, 96, 64]);
    }
}
