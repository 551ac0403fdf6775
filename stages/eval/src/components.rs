//! 3D connected components (reference §10.2): full connectivity (26-neighbourhood, skimage
//! `label` with `connectivity = ndim`) by default, and keep-largest-component where **all**
//! components of the maximal size are kept.
//!
//! Run-based union-find: each row (fixed z, y) is split into runs of foreground along x; a run
//! is united with the overlapping runs of the (up to 4) previous neighbouring rows. Labels are
//! numbered in raster order of each component's first voxel, which is scipy's numbering.

use nnunet_io::Volume;

/// Which neighbours touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Connectivity {
    /// 6-neighbourhood (faces).
    Face,
    /// 26-neighbourhood (faces, edges, corners): nnU-Net's choice.
    #[default]
    Full,
}

/// A run of foreground voxels `[x0, x1]` (inclusive) in one row.
#[derive(Clone, Copy, Debug)]
struct Run {
    x0: u32,
    x1: u32,
}

struct Runs {
    runs: Vec<Run>,
    /// `row_start[r]..row_start[r + 1]` are the runs of row `r = z * ny + y`.
    row_start: Vec<usize>,
    parent: Vec<u32>,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The smaller index becomes the root: roots are then first runs in raster order.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

impl Runs {
    fn build(mask: &Volume<bool>, conn: Connectivity) -> Runs {
        let [nz, ny, nx] = mask.shape;
        let mut runs = Vec::new();
        let mut row_start = Vec::with_capacity(nz * ny + 1);
        for r in 0..nz * ny {
            let row = &mask.data[r * nx..(r + 1) * nx];
            row_start.push(runs.len());
            let mut x = 0;
            while x < nx {
                if row[x] {
                    let s = x;
                    while x < nx && row[x] {
                        x += 1;
                    }
                    runs.push(Run { x0: s as u32, x1: (x - 1) as u32 });
                } else {
                    x += 1;
                }
            }
        }
        row_start.push(runs.len());
        let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
        // Overlap test: touching diagonally (full) or sharing an x (face).
        let slack: i64 = if conn == Connectivity::Full { 1 } else { 0 };
        let link = |parent: &mut Vec<u32>, runs: &[Run], a: (usize, usize), b: (usize, usize)| {
            // Two-pointer sweep of two sorted run lists.
            let (mut i, mut j) = (a.0, b.0);
            while i < a.1 && j < b.1 {
                let (ra, rb) = (runs[i], runs[j]);
                if (ra.x0 as i64) <= rb.x1 as i64 + slack && (rb.x0 as i64) <= ra.x1 as i64 + slack {
                    union(parent, i as u32, j as u32);
                }
                if ra.x1 < rb.x1 {
                    i += 1;
                } else {
                    j += 1;
                }
            }
        };
        for z in 0..nz {
            for y in 0..ny {
                let r = z * ny + y;
                let cur = (row_start[r], row_start[r + 1]);
                if cur.0 == cur.1 {
                    continue;
                }
                let mut neighbours: [Option<usize>; 4] = [None; 4];
                if y > 0 {
                    neighbours[0] = Some(r - 1);
                }
                if z > 0 {
                    let base = (z - 1) * ny + y;
                    neighbours[1] = Some(base);
                    if conn == Connectivity::Full {
                        if y > 0 {
                            neighbours[2] = Some(base - 1);
                        }
                        if y + 1 < ny {
                            neighbours[3] = Some(base + 1);
                        }
                    }
                }
                for nr in neighbours.into_iter().flatten() {
                    let other = (row_start[nr], row_start[nr + 1]);
                    if other.0 < other.1 {
                        link(&mut parent, &runs, cur, other);
                    }
                }
            }
        }
        Runs { runs, row_start, parent }
    }

    /// Component id (1-based, raster order of first voxel) of every run, and component sizes.
    fn resolve(&mut self) -> (Vec<u32>, Vec<u64>) {
        let n = self.runs.len();
        let mut id_of_root = vec![0u32; n];
        let mut ids = vec![0u32; n];
        let mut sizes: Vec<u64> = Vec::new();
        for (i, id_slot) in ids.iter_mut().enumerate() {
            let root = find(&mut self.parent, i as u32) as usize;
            if id_of_root[root] == 0 {
                sizes.push(0);
                id_of_root[root] = sizes.len() as u32;
            }
            let id = id_of_root[root];
            *id_slot = id;
            sizes[id as usize - 1] += (self.runs[i].x1 - self.runs[i].x0 + 1) as u64;
        }
        (ids, sizes)
    }

    /// Paints the runs for which `keep(run id)` holds into a mask / label volume.
    fn paint<T: Copy>(&self, shape: [usize; 3], zero: T, value: impl Fn(usize) -> Option<T>) -> Volume<T> {
        let nx = shape[2];
        let mut data = vec![zero; nx * shape[0] * shape[1]];
        for r in 0..self.row_start.len() - 1 {
            for i in self.row_start[r]..self.row_start[r + 1] {
                if let Some(v) = value(i) {
                    let run = self.runs[i];
                    data[r * nx + run.x0 as usize..=r * nx + run.x1 as usize].fill(v);
                }
            }
        }
        Volume { shape, data }
    }
}

/// Connected components of a mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Components {
    /// 0 for background, `1..=n` per component (numbered like `scipy.ndimage.label`).
    pub labels: Volume<u32>,
    /// `sizes[k - 1]` is the voxel count of component `k`.
    pub sizes: Vec<u64>,
}

impl Components {
    pub fn count(&self) -> usize {
        self.sizes.len()
    }
}

/// Labels the connected components of `mask`.
pub fn label_components(mask: &Volume<bool>, conn: Connectivity) -> Components {
    let mut runs = Runs::build(mask, conn);
    let (ids, sizes) = runs.resolve();
    let labels = runs.paint(mask.shape, 0u32, |i| Some(ids[i]));
    Components { labels, sizes }
}

/// Sizes of the connected components, in label order.
pub fn component_sizes(mask: &Volume<bool>, conn: Connectivity) -> Vec<u64> {
    Runs::build(mask, conn).resolve().1
}

/// `remove_all_but_largest_component` (§10.2): keeps every component whose size equals the
/// maximum (ties are all kept); an empty mask stays empty.
pub fn keep_largest_component(mask: &Volume<bool>, conn: Connectivity) -> Volume<bool> {
    let mut runs = Runs::build(mask, conn);
    let (ids, sizes) = runs.resolve();
    let max = sizes.iter().copied().max().unwrap_or(0);
    runs.paint(mask.shape, false, |i| (sizes[ids[i] as usize - 1] == max).then_some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(shape: [usize; 3], on: &[[usize; 3]]) -> Volume<bool> {
        let mut v = Volume::filled(shape, false);
        for p in on {
            v.set(p[0], p[1], p[2], true);
        }
        v
    }

    /// Reference: flood fill with explicit neighbour offsets.
    fn flood(mask: &Volume<bool>, conn: Connectivity) -> (Vec<u32>, Vec<u64>) {
        let [nz, ny, nx] = mask.shape;
        let mut lab = vec![0u32; mask.data.len()];
        let mut sizes = vec![];
        for start in 0..mask.data.len() {
            if !mask.data[start] || lab[start] != 0 {
                continue;
            }
            sizes.push(0u64);
            let id = sizes.len() as u32;
            let mut stack = vec![start];
            lab[start] = id;
            while let Some(i) = stack.pop() {
                sizes[id as usize - 1] += 1;
                let (z, y, x) = ((i / (ny * nx)) as i64, ((i / nx) % ny) as i64, (i % nx) as i64);
                for dz in -1..=1i64 {
                    for dy in -1..=1i64 {
                        for dx in -1..=1i64 {
                            let n = dz.abs() + dy.abs() + dx.abs();
                            if n == 0 || (conn == Connectivity::Face && n > 1) {
                                continue;
                            }
                            let (a, b, c) = (z + dz, y + dy, x + dx);
                            if a < 0 || b < 0 || c < 0 || a >= nz as i64 || b >= ny as i64 || c >= nx as i64 {
                                continue;
                            }
                            let j = (a as usize * ny + b as usize) * nx + c as usize;
                            if mask.data[j] && lab[j] == 0 {
                                lab[j] = id;
                                stack.push(j);
                            }
                        }
                    }
                }
            }
        }
        (lab, sizes)
    }

    #[test]
    fn diagonal_corner_touch_is_connected_in_26_not_in_6() {
        let m = vol([2, 2, 2], &[[0, 0, 0], [1, 1, 1]]);
        assert_eq!(label_components(&m, Connectivity::Full).count(), 1);
        assert_eq!(label_components(&m, Connectivity::Face).count(), 2);
    }

    #[test]
    fn matches_flood_fill_on_random_masks() {
        let mut state = 12345u64;
        for (shape, density) in [([7, 9, 11], 0.3), ([5, 13, 6], 0.5), ([1, 20, 20], 0.45), ([12, 1, 30], 0.4)] {
            for conn in [Connectivity::Full, Connectivity::Face] {
                let mut m = Volume::filled(shape, false);
                for v in m.data.iter_mut() {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    *v = ((state >> 33) as f64 / (1u64 << 31) as f64) < density;
                }
                let c = label_components(&m, conn);
                let (lab, sizes) = flood(&m, conn);
                assert_eq!(c.labels.data, lab, "{shape:?} {conn:?}");
                assert_eq!(c.sizes, sizes);
            }
        }
    }

    #[test]
    fn keep_largest_keeps_ties() {
        // two 2-voxel blobs and one single voxel, all separated
        let m = vol([1, 5, 7], &[[0, 0, 0], [0, 0, 1], [0, 4, 5], [0, 4, 6], [0, 2, 3]]);
        let k = keep_largest_component(&m, Connectivity::Full);
        assert!(k.get(0, 0, 0) && k.get(0, 0, 1) && k.get(0, 4, 5) && k.get(0, 4, 6));
        assert!(!k.get(0, 2, 3));
        let empty = Volume::filled([2, 2, 2], false);
        assert_eq!(keep_largest_component(&empty, Connectivity::Full), empty);
        let zero = Volume::filled([2, 3, 0], false);
        assert_eq!(label_components(&zero, Connectivity::Full).count(), 0);
    }
}
