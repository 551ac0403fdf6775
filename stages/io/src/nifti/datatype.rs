//! NIfTI voxel data types and the typed voxel buffer ([`NiftiData`]).

use std::fmt;

/// The voxel data types this crate reads and writes (NIfTI `datatype` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `DT_UINT8` (2)
    U8,
    /// `DT_INT8` (256)
    I8,
    /// `DT_UINT16` (512)
    U16,
    /// `DT_INT16` (4)
    I16,
    /// `DT_INT32` (8)
    I32,
    /// `DT_UINT32` (768)
    U32,
    /// `DT_INT64` (1024)
    I64,
    /// `DT_UINT64` (1280)
    U64,
    /// `DT_FLOAT32` (16)
    F32,
    /// `DT_FLOAT64` (64)
    F64,
}

impl DataType {
    /// Every supported type.
    pub const ALL: [DataType; 10] = [
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::U64,
        DataType::F32,
        DataType::F64,
    ];

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
        }
    }

    /// The type for a NIfTI code; `None` for unknown or unsupported codes
    /// (see [`code_name`] for a readable name of those).
    pub fn from_code(code: i16) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    /// Bits per voxel (the header's `bitpix`).
    pub fn bitpix(self) -> i16 {
        (self.size() * 8) as i16
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    /// A short lowercase name (`uint8`, `float32`, ...), as numpy spells it.
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::U16 => "uint16",
            DataType::I16 => "int16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A readable name for any NIfTI `datatype` code, including the ones this crate does not
/// support (complex, RGB, 128-bit float, binary).
pub fn code_name(code: i16) -> &'static str {
    if let Some(d) = DataType::from_code(code) {
        return d.name();
    }
    match code {
        0 => "unknown",
        1 => "binary",
        32 => "complex64",
        128 => "rgb24",
        255 => "all",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        _ => "not a NIfTI data type",
    }
}

/// Voxel values in file order (x fastest), one variant per [`DataType`].
#[derive(Clone, Debug, PartialEq)]
pub enum NiftiData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of a [`NiftiData`], whatever its type.
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            NiftiData::U8($v) => $body,
            NiftiData::I8($v) => $body,
            NiftiData::U16($v) => $body,
            NiftiData::I16($v) => $body,
            NiftiData::I32($v) => $body,
            NiftiData::U32($v) => $body,
            NiftiData::I64($v) => $body,
            NiftiData::U64($v) => $body,
            NiftiData::F32($v) => $body,
            NiftiData::F64($v) => $body,
        }
    };
}
pub(crate) use with_data;

impl NiftiData {
    /// Number of voxels (over all volumes).
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// Whether there are no voxels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data type of the values.
    pub fn datatype(&self) -> DataType {
        match self {
            NiftiData::U8(_) => DataType::U8,
            NiftiData::I8(_) => DataType::I8,
            NiftiData::U16(_) => DataType::U16,
            NiftiData::I16(_) => DataType::I16,
            NiftiData::I32(_) => DataType::I32,
            NiftiData::U32(_) => DataType::U32,
            NiftiData::I64(_) => DataType::I64,
            NiftiData::U64(_) => DataType::U64,
            NiftiData::F32(_) => DataType::F32,
            NiftiData::F64(_) => DataType::F64,
        }
    }

    /// The values as a slice of `T`, when `T` is the stored type.
    pub fn as_slice<T: NiftiElement>(&self) -> Option<&[T]> {
        T::slice(self)
    }

    /// Decodes raw voxel bytes of type `dt` (`bytes.len()` must be a multiple of the type size;
    /// a trailing partial element is dropped).
    pub(crate) fn decode(dt: DataType, bytes: Vec<u8>, big_endian: bool) -> NiftiData {
        macro_rules! dec {
            ($t:ty, $var:ident) => {{
                const N: usize = std::mem::size_of::<$t>();
                let conv = |c: &[u8]| -> $t {
                    let a = <[u8; N]>::try_from(c).unwrap_or([0; N]);
                    if big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                };
                NiftiData::$var(bytes.chunks_exact(N).map(conv).collect())
            }};
        }
        match dt {
            DataType::U8 => NiftiData::U8(bytes),
            DataType::I8 => NiftiData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::U16 => dec!(u16, U16),
            DataType::I16 => dec!(i16, I16),
            DataType::I32 => dec!(i32, I32),
            DataType::U32 => dec!(u32, U32),
            DataType::I64 => dec!(i64, I64),
            DataType::U64 => dec!(u64, U64),
            DataType::F32 => dec!(f32, F32),
            DataType::F64 => dec!(f64, F64),
        }
    }

    /// Appends the little-endian bytes of values `[start, end)` to `out`.
    pub(crate) fn encode_le(&self, start: usize, end: usize, out: &mut Vec<u8>) {
        with_data!(self, v => {
            for x in &v[start..end] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        })
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Element types that can be written to (and borrowed from) NIfTI data: `u8`, `i8`, `u16`,
/// `i16`, `i32`, `u32`, `i64`, `u64`, `f32`, `f64`.
pub trait NiftiElement: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The NIfTI data type of `Self`.
    const DATATYPE: DataType;
    /// Wraps a vector of values.
    fn wrap(v: Vec<Self>) -> NiftiData;
    /// Borrows the values when `d` holds `Self`.
    fn slice(d: &NiftiData) -> Option<&[Self]>;
    /// Appends the little-endian bytes of `v`.
    fn put_le(v: &[Self], out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $var:ident) => {
        impl sealed::Sealed for $t {}
        impl NiftiElement for $t {
            const DATATYPE: DataType = DataType::$var;
            fn wrap(v: Vec<Self>) -> NiftiData {
                NiftiData::$var(v)
            }
            fn slice(d: &NiftiData) -> Option<&[Self]> {
                match d {
                    NiftiData::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn put_le(v: &[Self], out: &mut Vec<u8>) {
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    };
}
element!(u8, U8);
element!(i8, I8);
element!(u16, U16);
element!(i16, I16);
element!(i32, I32);
element!(u32, U32);
element!(i64, I64);
element!(u64, U64);
element!(f32, F32);
element!(f64, F64);

/// Numeric conversions shared by every stored type.
pub(crate) trait Scalar: Copy {
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    /// The exact integer value, `None` for non-integer or non-finite floats.
    fn to_i128(self) -> Option<i128>;
}

macro_rules! scalar_int {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            #[inline]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline]
            fn to_f32(self) -> f32 { self as f32 }
            #[inline]
            fn to_i128(self) -> Option<i128> { Some(self as i128) }
        }
    )*};
}
scalar_int!(u8, i8, u16, i16, i32, u32, i64, u64);

macro_rules! scalar_float {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            #[inline]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline]
            fn to_f32(self) -> f32 { self as f32 }
            #[inline]
            fn to_i128(self) -> Option<i128> {
                // `as` saturates; values beyond i128 are rejected by the caller's range check.
                (self.is_finite() && self.fract() == 0.0).then_some(self as i128)
            }
        }
    )*};
}
scalar_float!(f32, f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_sizes() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_code(d.code()), Some(d));
            assert_eq!(d.bitpix() as usize, d.size() * 8);
            assert_eq!(code_name(d.code()), d.name());
        }
        assert_eq!(DataType::from_code(32), None);
        assert_eq!(code_name(32), "complex64");
        assert_eq!(code_name(128), "rgb24");
    }

    #[test]
    fn decode_both_endians() {
        let le = NiftiData::decode(DataType::I16, vec![0x01, 0x02, 0xff, 0xff], false);
        assert_eq!(le, NiftiData::I16(vec![0x0201, -1]));
        let be = NiftiData::decode(DataType::I16, vec![0x01, 0x02, 0xff, 0xff], true);
        assert_eq!(be, NiftiData::I16(vec![0x0102, -1]));
        let f = NiftiData::decode(DataType::F32, 1.5f32.to_be_bytes().to_vec(), true);
        assert_eq!(f, NiftiData::F32(vec![1.5]));
        let mut out = Vec::new();
        NiftiData::U16(vec![1, 2, 3]).encode_le(1, 3, &mut out);
        assert_eq!(out, vec![2, 0, 3, 0]);
    }
}
