//! The NIfTI header as a struct (NIfTI-1 and NIfTI-2 unified) and its geometry (qform,
//! sform, affine, spacing). The byte layout lives in `layout.rs`.

use super::datatype::DataType;
use super::layout::ext_size;

/// NIfTI-1 header size (`sizeof_hdr`).
pub const NIFTI1_HEADER_SIZE: usize = 348;
/// NIfTI-2 header size (`sizeof_hdr`).
pub const NIFTI2_HEADER_SIZE: usize = 540;

/// Which header format a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NiftiVersion {
    /// NIfTI-1: 348-byte header, 16-bit dims, 32-bit float geometry.
    V1,
    /// NIfTI-2: 540-byte header, 64-bit dims, 64-bit float geometry.
    V2,
}

impl NiftiVersion {
    /// Header size in bytes.
    pub fn header_size(self) -> usize {
        match self {
            NiftiVersion::V1 => NIFTI1_HEADER_SIZE,
            NiftiVersion::V2 => NIFTI2_HEADER_SIZE,
        }
    }
}

/// Byte order of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    Little,
    Big,
}

/// One header extension (`esize`, `ecode`, then the payload). `data` holds the payload
/// exactly as stored (its length is `esize - 8`, padding included), so a file written
/// back carries the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NiftiExtension {
    /// `ecode` (e.g. 4 = AFNI, 6 = comment, 32 = CIfTI).
    pub code: i32,
    /// The payload.
    pub data: Vec<u8>,
}

/// A NIfTI header, NIfTI-1 or NIfTI-2, with every field widened to the NIfTI-2 types.
///
/// Widening is lossless (i16 -> i64, f32 -> f64), so a NIfTI-1 header written back as
/// NIfTI-1 is bit-identical in every field. The obsolete Analyze fields of NIfTI-1
/// (`data_type`, `db_name`, `extents`, `session_error`, `regular`, `glmax`, `glmin`) are
/// not kept; they are written as zeros (and `regular = 'r'`).
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiHeader {
    /// Header format read (and written back).
    pub version: NiftiVersion,
    /// Byte order of the file the header was read from. Files are always written little-endian.
    pub endian: Endian,
    /// MRI slice ordering (`dim_info`).
    pub dim_info: u8,
    /// `dim[0]` = number of dimensions (1..=7), `dim[1..=7]` = sizes (x, y, z, t, ...).
    pub dim: [i64; 8],
    pub intent_p1: f64,
    pub intent_p2: f64,
    pub intent_p3: f64,
    pub intent_code: i32,
    /// Voxel data type.
    pub datatype: DataType,
    /// Bits per voxel as stored in the file (not trusted on read; set from `datatype` on write).
    pub bitpix: i16,
    pub slice_start: i64,
    /// `pixdim[0]` is qfac (-1 or 1), `pixdim[1..=3]` are the x, y, z spacings.
    pub pixdim: [f64; 8],
    /// Byte offset of the voxel data.
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub slice_end: i64,
    pub slice_code: i32,
    /// Units of pixdim (bits 0-2 space, 3-5 time).
    pub xyzt_units: i32,
    pub cal_max: f64,
    pub cal_min: f64,
    pub slice_duration: f64,
    pub toffset: f64,
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern_b: f64,
    pub quatern_c: f64,
    pub quatern_d: f64,
    pub qoffset_x: f64,
    pub qoffset_y: f64,
    pub qoffset_z: f64,
    pub srow_x: [f64; 4],
    pub srow_y: [f64; 4],
    pub srow_z: [f64; 4],
    pub intent_name: [u8; 16],
    /// Header extensions (present when the extender's first byte is non-zero).
    pub extensions: Vec<NiftiExtension>,
}

impl Default for NiftiHeader {
    /// A NIfTI-1 float32 header of a 1x1x1 volume with unit spacing and no orientation.
    fn default() -> Self {
        NiftiHeader {
            version: NiftiVersion::V1,
            endian: Endian::Little,
            dim_info: 0,
            dim: [3, 1, 1, 1, 1, 1, 1, 1],
            intent_p1: 0.0,
            intent_p2: 0.0,
            intent_p3: 0.0,
            intent_code: 0,
            datatype: DataType::F32,
            bitpix: 32,
            slice_start: 0,
            pixdim: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            slice_end: 0,
            slice_code: 0,
            xyzt_units: 2, // NIFTI_UNITS_MM
            cal_max: 0.0,
            cal_min: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            descrip: [0; 80],
            aux_file: [0; 24],
            qform_code: 0,
            sform_code: 0,
            quatern_b: 0.0,
            quatern_c: 0.0,
            quatern_d: 0.0,
            qoffset_x: 0.0,
            qoffset_y: 0.0,
            qoffset_z: 0.0,
            srow_x: [1.0, 0.0, 0.0, 0.0],
            srow_y: [0.0, 1.0, 0.0, 0.0],
            srow_z: [0.0, 0.0, 1.0, 0.0],
            intent_name: [0; 16],
            extensions: Vec::new(),
        }
    }
}

/// A 4x4 affine (row-major), mapping voxel indices (i, j, k, 1) to world (x, y, z, 1) in mm.
pub type Affine = [[f64; 4]; 4];

impl NiftiHeader {
    /// A NIfTI-1 header for a volume of `shape_zyx` voxels with `spacing_zyx` mm spacing,
    /// scanner-anatomical qform and sform set to the plain scaling (identity rotation,
    /// origin 0). Use [`NiftiHeader::set_rotation_origin`] for a rotated, shifted geometry.
    /// The spacing is rounded to f32, what a NIfTI-1 file stores, so that the header equals
    /// the one read back from a written file.
    pub fn new(shape_zyx: [usize; 3], spacing_zyx: [f64; 3], datatype: DataType) -> NiftiHeader {
        let sp = spacing_zyx.map(|v| v as f32 as f64);
        let mut h = NiftiHeader {
            datatype,
            bitpix: datatype.bitpix(),
            dim: [3, shape_zyx[2] as i64, shape_zyx[1] as i64, shape_zyx[0] as i64, 1, 1, 1, 1],
            pixdim: [1.0, sp[2], sp[1], sp[0], 1.0, 1.0, 1.0, 1.0],
            ..NiftiHeader::default()
        };
        h.set_rotation_origin([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]);
        h
    }

    /// Sets qform and sform (both code 1, scanner anatomical) consistently from a rotation
    /// quaternion's `(b, c, d)` part (with `a = sqrt(1 - b² - c² - d²)`), the spacing already
    /// in `pixdim[1..=3]`, qfac = 1, and the world position `origin_xyz` of voxel (0, 0, 0).
    /// The quaternion is normalised first when `b² + c² + d² > 1`.
    pub fn set_rotation_origin(&mut self, bcd: [f64; 3], origin_xyz: [f64; 3]) {
        let n = (bcd[0] * bcd[0] + bcd[1] * bcd[1] + bcd[2] * bcd[2]).sqrt();
        let bcd = if n > 1.0 { [bcd[0] / n, bcd[1] / n, bcd[2] / n] } else { bcd };
        self.pixdim[0] = 1.0;
        self.qform_code = 1;
        self.sform_code = 1;
        // Store what a NIfTI-1 file can hold so the sform equals the stored qform.
        let q = |v: f64| if self.version == NiftiVersion::V1 { v as f32 as f64 } else { v };
        self.quatern_b = q(bcd[0]);
        self.quatern_c = q(bcd[1]);
        self.quatern_d = q(bcd[2]);
        self.qoffset_x = q(origin_xyz[0]);
        self.qoffset_y = q(origin_xyz[1]);
        self.qoffset_z = q(origin_xyz[2]);
        let a = self.qform_affine();
        self.srow_x = a[0].map(q);
        self.srow_y = a[1].map(q);
        self.srow_z = a[2].map(q);
    }

    /// Sets qform and sform (both code 1, scanner anatomical) and `pixdim[0..=3]` from a RAS
    /// voxel-to-world affine made of a rotation (or reflection) times the spacings and an
    /// offset: the quaternion and qfac as `nifti_mat44_to_quatern` computes them.
    pub fn set_affine(&mut self, a: Affine) {
        let col = |j: usize| [a[0][j], a[1][j], a[2][j]];
        let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        let mut r = [[0.0f64; 3]; 3];
        let mut sp = [1.0f64; 3];
        for j in 0..3 {
            let c = col(j);
            let n = norm(c);
            sp[j] = if n > 0.0 { n } else { 1.0 };
            for i in 0..3 {
                r[i][j] = if n > 0.0 {
                    c[i] / n
                } else if i == j {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        let qfac = if det > 0.0 { 1.0 } else { -1.0 };
        if qfac < 0.0 {
            for row in r.iter_mut() {
                row[2] = -row[2];
            }
        }
        let (mut qa, mut qb, mut qc, mut qd);
        let t = r[0][0] + r[1][1] + r[2][2] + 1.0;
        if t > 0.5 {
            qa = 0.5 * t.sqrt();
            qb = 0.25 * (r[2][1] - r[1][2]) / qa;
            qc = 0.25 * (r[0][2] - r[2][0]) / qa;
            qd = 0.25 * (r[1][0] - r[0][1]) / qa;
        } else {
            let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
            let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
            let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
            if xd > 1.0 {
                qb = 0.5 * xd.sqrt();
                qc = 0.25 * (r[0][1] + r[1][0]) / qb;
                qd = 0.25 * (r[0][2] + r[2][0]) / qb;
                qa = 0.25 * (r[2][1] - r[1][2]) / qb;
            } else if yd > 1.0 {
                qc = 0.5 * yd.sqrt();
                qb = 0.25 * (r[0][1] + r[1][0]) / qc;
                qd = 0.25 * (r[1][2] + r[2][1]) / qc;
                qa = 0.25 * (r[0][2] - r[2][0]) / qc;
            } else {
                qd = 0.5 * zd.sqrt();
                qb = 0.25 * (r[0][2] + r[2][0]) / qd;
                qc = 0.25 * (r[1][2] + r[2][1]) / qd;
                qa = 0.25 * (r[1][0] - r[0][1]) / qd;
            }
            if qa < 0.0 {
                qb = -qb;
                qc = -qc;
                qd = -qd;
                qa = -qa;
            }
        }
        let _ = qa;
        let q = |v: f64| if self.version == NiftiVersion::V1 { v as f32 as f64 } else { v };
        self.pixdim[0] = qfac;
        for j in 0..3 {
            self.pixdim[j + 1] = q(sp[j]);
        }
        self.qform_code = 1;
        self.sform_code = 1;
        self.quatern_b = q(qb);
        self.quatern_c = q(qc);
        self.quatern_d = q(qd);
        self.qoffset_x = q(a[0][3]);
        self.qoffset_y = q(a[1][3]);
        self.qoffset_z = q(a[2][3]);
        self.srow_x = a[0].map(q);
        self.srow_y = a[1].map(q);
        self.srow_z = a[2].map(q);
    }

    /// Number of dimensions (`dim[0]`).
    pub fn ndim(&self) -> usize {
        self.dim[0].clamp(0, 7) as usize
    }

    /// Size of axis `i` (1-based, as in `dim[i]`); 1 beyond `dim[0]`.
    pub fn dim_size(&self, i: usize) -> usize {
        if i >= 1 && i <= self.ndim() {
            self.dim[i].max(0) as usize
        } else {
            1
        }
    }

    /// The spatial shape in `Volume` order `[z, y, x]` (missing axes are 1, so a 2D file
    /// gives `[1, y, x]`, as SimpleITK does).
    pub fn shape_zyx(&self) -> [usize; 3] {
        [self.dim_size(3), self.dim_size(2), self.dim_size(1)]
    }

    /// Number of 3D volumes stored (the product of `dim[4..=7]`; a 4D MSD file has one
    /// volume per channel).
    pub fn num_volumes(&self) -> usize {
        (4..=7).map(|i| self.dim_size(i)).product()
    }

    /// Number of voxels over all volumes (`None` on overflow).
    pub fn num_voxels(&self) -> Option<usize> {
        (1..=7).try_fold(1usize, |acc, i| acc.checked_mul(self.dim_size(i)))
    }

    /// Spacing in `Volume` axis order `[z, y, x]` = `[pixdim3, pixdim2, pixdim1]`, the
    /// SimpleITK / nnU-Net order (reference §1.3). As in nifti1_io (which SimpleITK uses),
    /// negative values are taken as their magnitude and zero or non-finite values as 1;
    /// axes beyond `dim[0]` (the z of a 2D file) have spacing 1.
    ///
    /// The spacing is in mm: `xyzt_units` metres or microns are scaled as ITK does (issue 14).
    pub fn spacing_zyx(&self) -> [f64; 3] {
        let unit = crate::image::geometry::nifti_unit_scale(self.xyzt_units);
        let raw = self.spacing_zyx_raw();
        // The pseudo axis of a 2D file keeps spacing 1 (it is no length).
        let z = if self.ndim() < 3 { raw[0] } else { raw[0] * unit };
        [z, raw[1] * unit, raw[2] * unit]
    }

    /// [`NiftiHeader::spacing_zyx`] in the file's own unit (`pixdim` as stored, no unit scaling).
    pub fn spacing_zyx_raw(&self) -> [f64; 3] {
        let s = |i: usize| {
            let v = self.pixdim[i].abs();
            if i > self.ndim() || v == 0.0 || !v.is_finite() {
                1.0
            } else {
                v
            }
        };
        [s(3), s(2), s(1)]
    }

    /// qfac from `pixdim[0]`: -1 when negative, otherwise 1 (NIfTI standard).
    pub fn qfac(&self) -> f64 {
        if self.pixdim[0] < 0.0 {
            -1.0
        } else {
            1.0
        }
    }

    /// The qform affine built from the quaternion, `pixdim` and qfac (NIfTI "method 2").
    pub fn qform_affine(&self) -> Affine {
        let (b, c, d) = (self.quatern_b, self.quatern_c, self.quatern_d);
        let mut a = 1.0 - (b * b + c * c + d * d);
        let (mut b, mut c, mut d) = (b, c, d);
        if a < 1e-7 {
            // 180-degree rotation: a = 0, renormalise (b, c, d) as nifti1_io does.
            let n = (b * b + c * c + d * d).sqrt();
            if n > 0.0 {
                b /= n;
                c /= n;
                d /= n;
            }
            a = 0.0;
        } else {
            a = a.sqrt();
        }
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let sp = |i: usize| {
            let v = self.pixdim[i];
            if v > 0.0 && v.is_finite() {
                v
            } else if v < 0.0 && v.is_finite() {
                -v
            } else {
                1.0
            }
        };
        let scale = [sp(1), sp(2), sp(3) * self.qfac()];
        let off = [self.qoffset_x, self.qoffset_y, self.qoffset_z];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * scale[j];
            }
            m[i][3] = off[i];
        }
        m[3][3] = 1.0;
        m
    }

    /// The sform affine (`srow_x`, `srow_y`, `srow_z`).
    pub fn sform_affine(&self) -> Affine {
        [self.srow_x, self.srow_y, self.srow_z, [0.0, 0.0, 0.0, 1.0]]
    }

    /// The best affine: sform if `sform_code > 0`, else qform if `qform_code > 0`, else the
    /// `pixdim` diagonal with origin 0.
    pub fn affine(&self) -> Affine {
        if self.sform_code > 0 {
            self.sform_affine()
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            let s = self.spacing_zyx();
            [[s[2], 0.0, 0.0, 0.0], [0.0, s[1], 0.0, 0.0], [0.0, 0.0, s[0], 0.0], [0.0, 0.0, 0.0, 1.0]]
        }
    }

    /// The `descrip` field as text (up to the first NUL).
    pub fn description(&self) -> String {
        let end = self.descrip.iter().position(|&b| b == 0).unwrap_or(self.descrip.len());
        String::from_utf8_lossy(&self.descrip[..end]).into_owned()
    }

    /// Sets `descrip` (truncated to 79 bytes).
    pub fn set_description(&mut self, text: &str) {
        self.descrip = [0; 80];
        let n = text.len().min(79);
        self.descrip[..n].copy_from_slice(&text.as_bytes()[..n]);
    }

    /// The same header with one 3D volume (`dim[0] = 3` unless 2D, `dim[4..] = 1`), used as
    /// the template of per-channel outputs of a 4D file.
    pub fn to_3d(&self) -> NiftiHeader {
        let mut h = self.clone();
        h.dim[0] = if self.ndim() <= 2 { self.dim[0].max(1) } else { 3 };
        for i in (h.ndim() + 1)..8 {
            h.dim[i] = 1;
        }
        h
    }

    /// Total size of the header plus the 4-byte extender plus the extensions, which is the
    /// `vox_offset` this crate writes.
    pub fn data_offset_for_write(&self) -> usize {
        self.version.header_size() + 4 + self.extensions.iter().map(|e| ext_size(e.data.len())).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_of_identity_quaternion_is_scaling() {
        let mut h = NiftiHeader::new([10, 20, 30], [3.0, 0.5, 0.25], DataType::U8);
        h.set_rotation_origin([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]);
        let a = h.qform_affine();
        assert_eq!(a[0], [0.25, 0.0, 0.0, 1.0]);
        assert_eq!(a[1], [0.0, 0.5, 0.0, 2.0]);
        assert_eq!(a[2], [0.0, 0.0, 3.0, 3.0]);
        assert_eq!(h.affine(), h.sform_affine());
        assert_eq!(h.spacing_zyx(), [3.0, 0.5, 0.25]);
        assert_eq!(h.shape_zyx(), [10, 20, 30]);
    }

    #[test]
    fn qform_rotation_and_qfac() {
        // 90 degrees about z: q = (cos45, 0, 0, sin45)
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let mut h = NiftiHeader::new([1, 1, 1], [2.0, 1.0, 1.0], DataType::U8);
        h.version = NiftiVersion::V2;
        h.set_rotation_origin([0.0, 0.0, s], [0.0, 0.0, 0.0]);
        let a = h.qform_affine();
        assert!((a[0][1] + 1.0).abs() < 1e-12 && (a[1][0] - 1.0).abs() < 1e-12);
        assert!((a[2][2] - 2.0).abs() < 1e-12);
        h.pixdim[0] = -1.0;
        assert!((h.qform_affine()[2][2] + 2.0).abs() < 1e-12);
        // Without codes: pixdim diagonal.
        h.qform_code = 0;
        h.sform_code = 0;
        assert_eq!(h.affine()[2][2], 2.0);
    }

    #[test]
    fn spacing_rules() {
        let mut h = NiftiHeader::new([1, 4, 5], [0.0, -2.0, f64::NAN], DataType::U8);
        h.dim[0] = 2;
        assert_eq!(h.spacing_zyx(), [1.0, 2.0, 1.0]);
        assert_eq!(h.shape_zyx(), [1, 4, 5]);
    }
}
