//! Medical image and dataset I/O for the nnU-Net pipeline.
//!
//! - [`volume`]: `Volume<T>`, the dense 3D array every stage passes around (axis order z, y, x).
//! - [`zarr`]: a minimal Zarr v3 array store (regular chunks, zstd) for preprocessed cases.
//! - [`table`]: small columnar tables written as Parquet (fingerprints, logs, metrics).
//!
//! Architecture invariant: this crate knows nothing of the pipeline engine (no cache keys,
//! no YAML); it is plain functions and types.

pub mod table;
pub mod volume;
pub mod zarr;

pub use volume::Volume;
