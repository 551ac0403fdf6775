//! Image geometry in ITK's convention (what SimpleITK reports and nnU-Net's SimpleITKIO keeps):
//! spacing, origin and direction in LPS world coordinates, axes in file order (x, y, z).
//! NIfTI (RAS) headers are converted the way ITK's `NiftiImageIO` does it.

use crate::nifti::{NiftiHeader, NiftiVersion};

/// Where a voxel grid lies in the world (LPS, millimetres), as ITK describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// Spatial dimensions of the file: 2 or 3.
    pub ndim: usize,
    /// Grid size `[z, y, x]` (z = 1 for a 2D image).
    pub shape: [usize; 3],
    /// Voxel spacing in mm, ITK axis order `(x, y, z)` (z = 1 for a 2D image).
    pub spacing: [f64; 3],
    /// World position (LPS) of voxel (0, 0, 0), `(x, y, z)`.
    pub origin: [f64; 3],
    /// Row-major 3x3: column `j` is the world direction (LPS) of voxel axis `j` (x, y, z).
    /// A 2D image uses the upper-left 2x2 block and has `direction[2][2] = 1`.
    pub direction: [[f64; 3]; 3],
}

/// The identity direction.
pub const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

impl Geometry {
    /// A plain grid: unit direction, origin 0.
    pub fn plain(ndim: usize, shape: [usize; 3], spacing_xyz: [f64; 3]) -> Geometry {
        Geometry { ndim, shape, spacing: spacing_xyz, origin: [0.0; 3], direction: IDENTITY }
    }

    /// Spacing `[z, y, x]` as nnU-Net uses it (reference §1.3): reversed for 3D; for 2D
    /// `[999 * max(y, x), y, x]` (SimpleITKIO's pseudo spacing; NaturalImage2DIO's 999 for unit
    /// spacing is the same rule).
    pub fn nnunet_spacing(&self) -> [f64; 3] {
        let [x, y, z] = self.spacing.map(f64::abs);
        if self.ndim < 3 {
            [999.0 * x.max(y), y, x]
        } else {
            [z, y, x]
        }
    }

    /// Whether two geometries put the same voxels at the same places, with numpy's `allclose`
    /// tolerance on spacing, origin and direction (what nnU-Net's checks use).
    pub fn same_place(&self, other: &Geometry) -> bool {
        self.ndim == other.ndim
            && self.shape == other.shape
            && allclose(&self.spacing, &other.spacing)
            && allclose(&self.origin, &other.origin)
            && allclose(&self.direction.concat(), &other.direction.concat())
    }

    /// Whether origin and direction agree (allclose), the part nnU-Net only warns about.
    pub fn same_orientation(&self, other: &Geometry) -> bool {
        allclose(&self.origin, &other.origin) && allclose(&self.direction.concat(), &other.direction.concat())
    }

    /// The voxel-to-world affine in NIfTI's RAS convention (row-major 4x4).
    pub fn ras_affine(&self) -> [[f64; 4]; 4] {
        let mut m = [[0.0; 4]; 4];
        for (i, row) in m.iter_mut().take(3).enumerate() {
            let flip = if i < 2 { -1.0 } else { 1.0 };
            for (j, v) in row.iter_mut().take(3).enumerate() {
                *v = flip * self.direction[i][j] * self.spacing[j];
            }
            row[3] = flip * self.origin[i];
        }
        m[3][3] = 1.0;
        m
    }

    /// ITK's AnatomicalOrientation code of MetaImage headers (e.g. `RAI` for the identity):
    /// for each axis the side it runs *from*, taken from the dominant direction component.
    pub fn anatomical_orientation(&self) -> String {
        (0..self.ndim.clamp(2, 3))
            .map(|j| {
                let col = [self.direction[0][j], self.direction[1][j], self.direction[2][j]];
                let (i, v) = col
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .map(|(i, v)| (i, *v))
                    .unwrap_or((j, 1.0));
                let pair = [('R', 'L'), ('A', 'P'), ('I', 'S')][i];
                if v >= 0.0 {
                    pair.0
                } else {
                    pair.1
                }
            })
            .collect()
    }
}

/// numpy `allclose` defaults: |a - b| <= 1e-8 + 1e-5 * |b|.
pub fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// ITK's length unit factor from NIfTI `xyzt_units` (metres and microns are scaled to mm).
pub fn nifti_unit_scale(xyzt_units: i32) -> f64 {
    match xyzt_units & 0x07 {
        1 => 1000.0, // NIFTI_UNITS_METER
        3 => 0.001,  // NIFTI_UNITS_MICRON
        _ => 1.0,    // mm or unknown
    }
}

/// Which NIfTI transform ITK uses, in its order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NiftiTransform {
    /// `sform_code` 1 (scanner anatomical) with a rotation-and-scaling sform, or an sform
    /// without a qform.
    Sform,
    /// The qform (any other sform code, or an sform with shear or scales that are not the
    /// pixdim spacings).
    Qform,
    /// Neither: unit direction, origin 0.
    None,
}

/// The transform ITK (SimpleITK 2.x) takes: the sform when `sform_code` is 1 and the sform is
/// a rotation times the pixdim spacings, else the qform when present, else the sform when
/// present, else none. Checked against SimpleITK 2.5 (see tests/fixtures/README.md).
pub fn nifti_transform(h: &NiftiHeader) -> NiftiTransform {
    let sform_ok = h.sform_code == 1 && sform_is_rigid_times_spacing(h);
    if sform_ok {
        NiftiTransform::Sform
    } else if h.qform_code > 0 {
        NiftiTransform::Qform
    } else if h.sform_code > 0 {
        NiftiTransform::Sform
    } else {
        NiftiTransform::None
    }
}

/// Whether the sform's columns are orthogonal with lengths equal to the pixdim spacings.
fn sform_is_rigid_times_spacing(h: &NiftiHeader) -> bool {
    let a = h.sform_affine();
    let nd = h.ndim().clamp(2, 3);
    let col = |j: usize| [a[0][j], a[1][j], a[2][j]];
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let sp = h.spacing_zyx_raw();
    let spacing = [sp[2], sp[1], sp[0]];
    for j in 0..nd {
        let n = norm(col(j));
        if !n.is_finite() || n == 0.0 || (n - spacing[j]).abs() > 1e-4 * spacing[j].max(1e-6) {
            return false;
        }
        for k in (j + 1)..nd {
            let (u, v) = (col(j), col(k));
            let dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
            if dot.abs() > 1e-4 * n * norm(v) {
                return false;
            }
        }
    }
    true
}

impl Geometry {
    /// The geometry ITK reads from a NIfTI header: spacing from pixdim (scaled to mm by
    /// `xyzt_units`), direction and origin from the transform [`nifti_transform`] picks,
    /// converted from RAS to LPS.
    pub fn from_nifti(h: &NiftiHeader) -> Geometry {
        let ndim = h.ndim().clamp(2, 3);
        let unit = nifti_unit_scale(h.xyzt_units);
        let sp = h.spacing_zyx_raw();
        let mut spacing = [sp[2] * unit, sp[1] * unit, sp[0] * unit];
        if ndim == 2 {
            spacing[2] = 1.0;
        }
        let (direction, origin) = match nifti_transform(h) {
            NiftiTransform::None => (IDENTITY, [0.0; 3]),
            t => {
                let a = if t == NiftiTransform::Sform { h.sform_affine() } else { h.qform_affine() };
                let mut d = [[0.0; 3]; 3];
                for j in 0..3 {
                    let c = [a[0][j], a[1][j], a[2][j]];
                    let n = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
                    for i in 0..3 {
                        d[i][j] = if n > 0.0 {
                            c[i] / n
                        } else if i == j {
                            1.0
                        } else {
                            0.0
                        };
                    }
                }
                let d = orthonormalize(d);
                let flip = [-1.0, -1.0, 1.0];
                let mut dir = [[0.0; 3]; 3];
                for i in 0..3 {
                    for j in 0..3 {
                        dir[i][j] = flip[i] * d[i][j];
                    }
                }
                let origin = [-a[0][3] * unit, -a[1][3] * unit, a[2][3] * unit];
                (dir, origin)
            }
        };
        let mut g = Geometry { ndim, shape: h.shape_zyx(), spacing, origin, direction };
        if ndim == 2 {
            g.origin[2] = 0.0;
            g.direction[2] = [0.0, 0.0, 1.0];
            g.direction[0][2] = 0.0;
            g.direction[1][2] = 0.0;
        }
        g
    }

    /// A NIfTI-1 header (NIfTI-2 when a dimension exceeds NIfTI-1's 16-bit range) with qform
    /// and sform (both scanner anatomical) describing this geometry, spacing in mm.
    pub fn to_nifti(&self, datatype: crate::nifti::DataType) -> NiftiHeader {
        let [z, y, x] = self.shape;
        let mut h = NiftiHeader::new(self.shape, [self.spacing[2], self.spacing[1], self.spacing[0]], datatype);
        if [z, y, x].iter().any(|&d| d > i16::MAX as usize) {
            h.version = NiftiVersion::V2;
            h.pixdim[1] = self.spacing[0];
            h.pixdim[2] = self.spacing[1];
            h.pixdim[3] = self.spacing[2];
        }
        if self.ndim == 2 {
            h.dim[0] = 2;
        }
        h.set_affine(self.ras_affine());
        h
    }
}

/// Gram-Schmidt on the columns (keeps a near-orthogonal matrix's handedness).
fn orthonormalize(d: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let col = |m: &[[f64; 3]; 3], j: usize| [m[0][j], m[1][j], m[2][j]];
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let mut cols = [col(&d, 0), col(&d, 1), col(&d, 2)];
    for j in 0..3 {
        for k in 0..j {
            let p = dot(cols[j], cols[k]);
            for i in 0..3 {
                cols[j][i] -= p * cols[k][i];
            }
        }
        let n = dot(cols[j], cols[j]).sqrt();
        if n > 1e-12 {
            for i in 0..3 {
                cols[j][i] /= n;
            }
        } else {
            cols[j] = IDENTITY[j];
        }
    }
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = cols[j][i];
        }
    }
    out
}
