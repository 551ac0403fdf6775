//! Crop to the nonzero region (§2 step 2, `preprocessing/cropping/cropping.py`).
//!
//! mask = OR over channels of (x != 0), holes filled like scipy's `binary_fill_holes` (background
//! components that do not touch the array border become foreground; 6-connectivity, scipy's
//! default structure), bounding box `[min, max+1)` per axis, every channel and the label cropped
//! to it, and label voxels that are 0 *and* outside the mask set to −1.
//!
//! An all-zero image gives an empty mask; like nnU-Net (`acvl_utils.get_bbox_from_mask`) the
//! bounding box is then the whole image and every label voxel that is 0 becomes −1.

use crate::error::{PrepError, Result};
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use serde::{Deserialize, Serialize};

/// Result of [`crop_to_nonzero`].
#[derive(Clone, Debug, PartialEq)]
pub struct Cropped {
    /// Cropped channels.
    /// Cropped channels.
    pub data: Vec<Volume<f32>>,
    /// Cropped label; −1 marks voxels outside the (hole-filled) nonzero mask. Without an input
    /// label this is 0 inside the mask and −1 outside (nnU-Net's `np.where(mask, 0, -1)`).
    pub seg: Volume<i16>,
    /// The crop box in the input volume.
    pub bbox: BBox,
    /// Input shape.
    pub shape_before: [usize; 3],
    /// Cropped shape (`bbox.shape()`).
    pub shape_after: [usize; 3],
}

/// Half-open bounding box `[[lo, hi); 3]` as nnU-Net stores it (`bbox_used_for_cropping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BBox(pub [[usize; 2]; 3]);

impl BBox {
    /// Lower corner (inclusive).
    pub fn lo(&self) -> [usize; 3] {
        [self.0[0][0], self.0[1][0], self.0[2][0]]
    }
    /// Upper corner (exclusive).
    pub fn hi(&self) -> [usize; 3] {
        [self.0[0][1], self.0[1][1], self.0[2][1]]
    }
    /// Extent per axis.
    pub fn shape(&self) -> [usize; 3] {
        [self.0[0][1] - self.0[0][0], self.0[1][1] - self.0[1][0], self.0[2][1] - self.0[2][0]]
    }
}

/// OR over channels of `x != 0` (NaN counts as nonzero, as in numpy).
pub fn nonzero_mask(channels: &[Volume<f32>]) -> Volume<bool> {
    let shape = channels[0].shape;
    let mut m = vec![false; numel(shape)];
    for c in channels {
        for (o, &v) in m.iter_mut().zip(&c.data) {
            *o |= v != 0.0;
        }
    }
    Volume { shape, data: m }
}

/// scipy `binary_fill_holes` with the default (6-connected) structure: every background voxel
/// that is not 6-connected to the array border through background becomes foreground.
pub fn fill_holes(mask: &Volume<bool>) -> Volume<bool> {
    let [n0, n1, n2] = mask.shape;
    let n = numel(mask.shape);
    // reached[i]: background connected to the border.
    let mut reached = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let idx = |a: usize, b: usize, c: usize| (a * n1 + b) * n2 + c;
    let seed = |i: usize, reached: &mut Vec<bool>, stack: &mut Vec<u32>| {
        if !mask.data[i] && !reached[i] {
            reached[i] = true;
            stack.push(i as u32);
        }
    };
    for a in 0..n0 {
        for b in 0..n1 {
            for c in 0..n2 {
                let border = a == 0 || b == 0 || c == 0 || a + 1 == n0 || b + 1 == n1 || c + 1 == n2;
                if border {
                    seed(idx(a, b, c), &mut reached, &mut stack);
                }
            }
        }
    }
    while let Some(i) = stack.pop() {
        let i = i as usize;
        let c = i % n2;
        let b = (i / n2) % n1;
        let a = i / (n1 * n2);
        let mut visit = |j: usize| {
            if !mask.data[j] && !reached[j] {
                reached[j] = true;
                stack.push(j as u32);
            }
        };
        if a > 0 {
            visit(i - n1 * n2);
        }
        if a + 1 < n0 {
            visit(i + n1 * n2);
        }
        if b > 0 {
            visit(i - n2);
        }
        if b + 1 < n1 {
            visit(i + n2);
        }
        if c > 0 {
            visit(i - 1);
        }
        if c + 1 < n2 {
            visit(i + 1);
        }
    }
    Volume { shape: mask.shape, data: reached.into_iter().map(|r| !r).collect() }
}

/// Bounding box of `mask` as `[min, max+1)` per axis; the whole volume when the mask is empty
/// (`acvl_utils.get_bbox_from_mask` semantics).
pub fn bbox_of_mask(mask: &Volume<bool>) -> BBox {
    let [n0, n1, n2] = mask.shape;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for a in 0..n0 {
        for b in 0..n1 {
            let row = &mask.data[(a * n1 + b) * n2..(a * n1 + b + 1) * n2];
            if let Some(first) = row.iter().position(|&v| v) {
                let last = row.iter().rposition(|&v| v).unwrap_or(first);
                any = true;
                lo[0] = lo[0].min(a);
                hi[0] = hi[0].max(a + 1);
                lo[1] = lo[1].min(b);
                hi[1] = hi[1].max(b + 1);
                lo[2] = lo[2].min(first);
                hi[2] = hi[2].max(last + 1);
            }
        }
    }
    if !any {
        return BBox([[0, n0], [0, n1], [0, n2]]);
    }
    BBox([[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]])
}

/// Checks that all channels (and the label) share one non-empty shape.
pub fn check_case_shapes(channels: &[Volume<f32>], label: Option<&Volume<i16>>) -> Result<[usize; 3]> {
    let first = channels.first().ok_or_else(|| PrepError::Shape("case has no channels".into()))?;
    let shape = first.shape;
    for (i, c) in channels.iter().enumerate() {
        if c.shape != shape || c.data.len() != numel(c.shape) {
            return Err(PrepError::Shape(format!("channel {i} has shape {:?}, channel 0 has {:?}", c.shape, shape)));
        }
    }
    if let Some(l) = label {
        if l.shape != shape || l.data.len() != numel(l.shape) {
            return Err(PrepError::Shape(format!("label has shape {:?}, image has {:?}", l.shape, shape)));
        }
    }
    if numel(shape) == 0 {
        return Err(PrepError::Shape(format!("empty image of shape {shape:?}")));
    }
    Ok(shape)
}

/// nnU-Net's `crop_to_nonzero(data, seg, nonzero_label=-1)`.
pub fn crop_to_nonzero(channels: &[Volume<f32>], label: Option<&Volume<i16>>) -> Result<Cropped> {
    let shape_before = check_case_shapes(channels, label)?;
    let mask = fill_holes(&nonzero_mask(channels));
    let bbox = bbox_of_mask(&mask);
    let (lo, hi) = (bbox.lo(), bbox.hi());
    let data: Vec<Volume<f32>> = channels.iter().map(|c| c.crop(lo, hi)).collect();
    let mask_c = mask.crop(lo, hi);
    let seg = match label {
        Some(l) => {
            let mut s = l.crop(lo, hi);
            for (v, &m) in s.data.iter_mut().zip(&mask_c.data) {
                if *v == 0 && !m {
                    *v = -1;
                }
            }
            s
        }
        None => mask_c.map(|m| if m { 0i16 } else { -1 }),
    };
    let shape_after = bbox.shape();
    Ok(Cropped { data, seg, bbox, shape_before, shape_after })
}

/// Crops `v` to `[lo, hi)` within its own buffer (rows move towards the start, never past
/// a row not yet moved), then releases the tail.
fn crop_in_place<T: Copy>(v: &mut Volume<T>, lo: [usize; 3], hi: [usize; 3]) {
    let [_, s1, s2] = v.shape;
    let shape = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    if shape == v.shape {
        return;
    }
    let mut w = 0;
    for z in lo[0]..hi[0] {
        for y in lo[1]..hi[1] {
            let r = (z * s1 + y) * s2;
            v.data.copy_within(r + lo[2]..r + hi[2], w);
            w += shape[2];
        }
    }
    v.data.truncate(w);
    v.data.shrink_to_fit();
    v.shape = shape;
}

/// [`crop_to_nonzero`] taking the volumes and cropping each within its own buffer: a case is
/// held once, not twice (an uncropped case, usual for CT, is not copied at all).
pub fn crop_to_nonzero_owned(mut channels: Vec<Volume<f32>>, label: Option<Volume<i16>>) -> Result<Cropped> {
    let shape_before = check_case_shapes(&channels, label.as_ref())?;
    let mut mask_c = fill_holes(&nonzero_mask(&channels));
    let bbox = bbox_of_mask(&mask_c);
    let (lo, hi) = (bbox.lo(), bbox.hi());
    for c in &mut channels {
        crop_in_place(c, lo, hi);
    }
    let data = channels;
    crop_in_place(&mut mask_c, lo, hi);
    let seg = match label {
        Some(mut s) => {
            crop_in_place(&mut s, lo, hi);
            for (v, &m) in s.data.iter_mut().zip(&mask_c.data) {
                if *v == 0 && !m {
                    *v = -1;
                }
            }
            s
        }
        None => mask_c.map(|m| if m { 0i16 } else { -1 }),
    };
    let shape_after = bbox.shape();
    Ok(Cropped { data, seg, bbox, shape_before, shape_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol<T: Copy>(shape: [usize; 3], data: Vec<T>) -> Volume<T> {
        Volume::from_vec(shape, data).unwrap()
    }

    #[test]
    fn owned_crop_equals_borrowed_crop() {
        let s = [4usize, 5, 6];
        let mut img = Volume::filled(s, 0.0f32);
        img.set(1, 2, 3, 4.0);
        img.set(2, 3, 4, -1.0);
        let lab = Volume::filled(s, 0i16);
        let a = crop_to_nonzero(&[img.clone()], Some(&lab)).unwrap();
        assert_eq!(crop_to_nonzero_owned(vec![img], Some(lab)).unwrap(), a);
        let full = Volume::filled(s, 1.0f32);
        let b = crop_to_nonzero(&[full.clone()], None).unwrap();
        assert_eq!(crop_to_nonzero_owned(vec![full], None).unwrap(), b);
    }

    #[test]
    fn fill_holes_fills_enclosed_cavity_only() {
        // 5x5x5 hollow cube shell with an interior hole, plus a dent open to the border.
        let s = [5usize, 5, 5];
        let mut m = Volume::filled(s, false);
        for a in 1..4 {
            for b in 1..4 {
                for c in 1..4 {
                    m.set(a, b, c, true);
                }
            }
        }
        m.set(2, 2, 2, false); // enclosed hole
        let f = fill_holes(&m);
        assert!(f.get(2, 2, 2));
        assert!(!f.get(0, 0, 0));
        // A cavity connected to the border through a tunnel stays background.
        let mut m2 = m.clone();
        m2.set(2, 2, 1, false);
        m2.set(2, 2, 0, false);
        let f2 = fill_holes(&m2);
        assert!(!f2.get(2, 2, 2));
        // Diagonal-only connection does not count (6-connectivity): hole at (2,2,2) whose only
        // escape is diagonal is filled.
        let mut m3 = m.clone();
        m3.set(1, 1, 1, false); // corner voxel of the block touches (0,*,*) face-adjacent → connected
        let f3 = fill_holes(&m3);
        assert!(!f3.get(1, 1, 1));
        assert!(f3.get(2, 2, 2), "(2,2,2) only touches (1,1,1) diagonally");
    }

    #[test]
    fn single_slice_volume_never_fills() {
        // shape (1, 4, 4): every voxel lies on the border (nnU-Net's 2D behaviour).
        let mut m = Volume::filled([1, 4, 4], true);
        m.set(0, 1, 1, false);
        let f = fill_holes(&m);
        assert!(!f.get(0, 1, 1));
    }

    #[test]
    fn crop_sets_minus_one_outside_and_keeps_labels() {
        let s = [3usize, 4, 5];
        let mut img = Volume::filled(s, 0.0f32);
        img.set(1, 1, 1, 2.0);
        img.set(1, 2, 3, -1.0);
        let mut lab = Volume::filled(s, 0i16);
        lab.set(1, 1, 2, 1); // inside the bbox but outside the mask, label 1: kept
        let c = crop_to_nonzero(&[img], Some(&lab)).unwrap();
        assert_eq!(c.bbox, BBox([[1, 2], [1, 3], [1, 4]]));
        assert_eq!(c.shape_after, [1, 2, 3]);
        assert_eq!(c.shape_before, s);
        assert_eq!(c.seg.get(0, 0, 0), 0); // (1,1,1) nonzero
        assert_eq!(c.seg.get(0, 0, 1), 1);
        assert_eq!(c.seg.get(0, 0, 2), -1);
        assert_eq!(c.seg.get(0, 1, 2), 0); // (1,2,3) nonzero
        assert_eq!(c.data[0].get(0, 1, 2), -1.0);
    }

    #[test]
    fn all_zero_image_keeps_full_box() {
        let s = [2usize, 3, 4];
        let img = Volume::filled(s, 0.0f32);
        let c = crop_to_nonzero(&[img.clone(), img], None).unwrap();
        assert_eq!(c.bbox, BBox([[0, 2], [0, 3], [0, 4]]));
        assert!(c.seg.data.iter().all(|&v| v == -1));
        assert_eq!(c.shape_after, s);
    }

    #[test]
    fn or_over_channels_and_shape_checks() {
        let s = [1usize, 1, 4];
        let a = vol(s, vec![0.0, 1.0, 0.0, 0.0]);
        let b = vol(s, vec![0.0, 0.0, 0.0, 3.0]);
        let c = crop_to_nonzero(&[a.clone(), b], None).unwrap();
        assert_eq!(c.bbox, BBox([[0, 1], [0, 1], [1, 4]]));
        let bad = vol([1, 2, 2], vec![0.0; 4]);
        assert!(crop_to_nonzero(&[a, bad], None).is_err());
    }
}
