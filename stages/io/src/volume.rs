//! `Volume<T>`: a dense 3D array in C order, axis 0 slowest.
//!
//! Axis order follows SimpleITK / nnU-Net: for a NIfTI file the array is `[z, y, x]`
//! (the file's x runs fastest), and spacing vectors are given in the same order.

use std::fmt;

/// A dense 3D array, C-contiguous, `data[(i0 * s1 + i1) * s2 + i2]`.
#[derive(Clone, PartialEq)]
pub struct Volume<T> {
    pub shape: [usize; 3],
    pub data: Vec<T>,
}

impl<T: fmt::Debug> fmt::Debug for Volume<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Volume{:?}({} voxels)", self.shape, self.data.len())
    }
}

/// Number of voxels of a shape.
pub fn numel(shape: [usize; 3]) -> usize {
    shape[0] * shape[1] * shape[2]
}

impl<T: Copy> Volume<T> {
    /// Wraps `data`; returns `None` when its length does not match `shape`.
    pub fn from_vec(shape: [usize; 3], data: Vec<T>) -> Option<Self> {
        (numel(shape) == data.len()).then_some(Self { shape, data })
    }

    pub fn filled(shape: [usize; 3], value: T) -> Self {
        Self { shape, data: vec![value; numel(shape)] }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    #[inline]
    pub fn index(&self, i0: usize, i1: usize, i2: usize) -> usize {
        (i0 * self.shape[1] + i1) * self.shape[2] + i2
    }

    #[inline]
    pub fn get(&self, i0: usize, i1: usize, i2: usize) -> T {
        self.data[self.index(i0, i1, i2)]
    }

    #[inline]
    pub fn set(&mut self, i0: usize, i1: usize, i2: usize, v: T) {
        let i = self.index(i0, i1, i2);
        self.data[i] = v;
    }

    pub fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Volume<U> {
        Volume { shape: self.shape, data: self.data.iter().map(|&v| f(v)).collect() }
    }

    /// Copies the box `[lo, hi)` (per axis) out of this volume.
    pub fn crop(&self, lo: [usize; 3], hi: [usize; 3]) -> Volume<T> {
        let shape = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let mut data = Vec::with_capacity(numel(shape));
        for z in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                let start = self.index(z, y, lo[2]);
                data.extend_from_slice(&self.data[start..start + shape[2]]);
            }
        }
        Volume { shape, data }
    }

    /// Writes `src` into this volume with its corner at `lo`.
    pub fn paste(&mut self, src: &Volume<T>, lo: [usize; 3]) {
        for z in 0..src.shape[0] {
            for y in 0..src.shape[1] {
                let d = self.index(lo[0] + z, lo[1] + y, lo[2]);
                let s = src.index(z, y, 0);
                self.data[d..d + src.shape[2]].copy_from_slice(&src.data[s..s + src.shape[2]]);
            }
        }
    }

    /// Permutes axes: output axis `i` is input axis `perm[i]` (numpy `transpose(perm)`).
    pub fn transpose(&self, perm: [usize; 3]) -> Volume<T> {
        if perm == [0, 1, 2] {
            return self.clone();
        }
        let shape = [self.shape[perm[0]], self.shape[perm[1]], self.shape[perm[2]]];
        let in_strides = [self.shape[1] * self.shape[2], self.shape[2], 1];
        let st = [in_strides[perm[0]], in_strides[perm[1]], in_strides[perm[2]]];
        let mut data = Vec::with_capacity(numel(shape));
        for a in 0..shape[0] {
            for b in 0..shape[1] {
                let base = a * st[0] + b * st[1];
                for c in 0..shape[2] {
                    data.push(self.data[base + c * st[2]]);
                }
            }
        }
        Volume { shape, data }
    }
}

/// Inverse of an axis permutation.
pub fn invert_perm(perm: [usize; 3]) -> [usize; 3] {
    let mut inv = [0; 3];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Applies a permutation to a per-axis vector (`out[i] = v[perm[i]]`).
pub fn permute<T: Copy>(v: [T; 3], perm: [usize; 3]) -> [T; 3] {
    [v[perm[0]], v[perm[1]], v[perm[2]]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3]) -> Volume<i32> {
        Volume::from_vec(shape, (0..numel(shape) as i32).collect()).unwrap()
    }

    #[test]
    fn transpose_roundtrip_and_values() {
        let v = ramp([2, 3, 4]);
        let t = v.transpose([2, 0, 1]);
        assert_eq!(t.shape, [4, 2, 3]);
        // t[c, a, b] == v[a, b, c]
        assert_eq!(t.get(3, 1, 2), v.get(1, 2, 3));
        let back = t.transpose(invert_perm([2, 0, 1]));
        assert_eq!(back, v);
    }

    #[test]
    fn crop_and_paste() {
        let v = ramp([3, 4, 5]);
        let c = v.crop([1, 1, 2], [3, 3, 5]);
        assert_eq!(c.shape, [2, 2, 3]);
        assert_eq!(c.get(0, 0, 0), v.get(1, 1, 2));
        let mut z = Volume::filled([3, 4, 5], -1);
        z.paste(&c, [1, 1, 2]);
        assert_eq!(z.get(2, 2, 4), v.get(2, 2, 4));
        assert_eq!(z.get(0, 0, 0), -1);
    }
}
