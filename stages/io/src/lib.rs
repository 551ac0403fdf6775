//! Medical image and dataset I/O for the nnU-Net pipeline.
//!
//! - [`volume`]: `Volume<T>`, the dense 3D array every stage passes around (axis order z, y, x).
//! - [`nifti`]: NIfTI-1/2 reader and writer (`.nii`, `.nii.gz`, either byte order).
//! - [`image`]: every format behind one seam (NIfTI, MetaImage, NRRD, PNG/BMP, 2D/3D TIFF):
//!   ITK geometry, reading, writing segmentations in the input's format.
//! - [`dataset`]: nnU-Net v2 raw and MSD dataset folders (cases, channels, labels).
//! - [`labels`]: the `labels` dictionary: plain labels, regions, ignore label.
//! - [`verify`]: nnU-Net's dataset integrity check, one problem per issue.
//! - [`synth`]: a synthetic CT/MR dataset generator; [`rng`]: the seedable PRNG it uses.
//! - [`zarr`]: a minimal Zarr v3 array store (regular chunks, zstd) for preprocessed cases.
//! - [`pickle`], [`pth`]: the pickle subset and zip container of PyTorch checkpoints (`.pth`),
//!   read without executing anything, and written.
//! - [`table`]: small columnar tables written as Parquet (fingerprints, logs, metrics).
//! - [`fsio`]: crash-safe file writes (temporary file + rename), JSON, NaN-as-null serde.
//! - [`memory`]: handing freed memory back to the system between phases (a hook the binary sets).
//!
//! Architecture invariant: this crate knows nothing of the pipeline engine (no cache keys,
//! no YAML); it is plain functions and types.

pub mod dataset;
pub mod fsio;
pub mod image;
pub mod labels;
pub mod memory;
pub mod nifti;
pub mod pickle;
pub mod pth;
pub mod rng;
pub mod synth;
pub mod table;
#[doc(hidden)]
pub mod testing;
pub mod verify;
pub mod volume;
pub mod zarr;

pub use volume::Volume;
