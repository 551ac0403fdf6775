//! The one way the pipeline draws charts: hand-written, self-contained SVG (no scripts, no
//! external fonts), used by the trainer's `progress.svg` (`nnunet-net`) and every figure of the
//! run report (`nnunet-report`), plus the number formatting both print with.
//!
//! - [`LineChart`] (training curves), [`BarChart`] (per-case Dice, rankings, timings),
//!   [`stack`] (charts one above the other in one SVG), [`colour`] / [`PALETTE`].
//! - [`fmt`]: numbers as the report and the terminal print them.
//!
//! Written by hand rather than with a plotting crate: the report inlines the SVG in its HTML
//! page and needs stable, small output with exact colours; ~400 lines cover both chart types.
//! Domain crate: no dependencies.

pub mod fmt;
mod svg;

pub use svg::{colour, esc, stack, BarChart, BarGroup, LineChart, Series};

/// Series colours (label 1, 2, ... in the Dice charts; the report's slice contours use the same).
pub const PALETTE: [[u8; 3]; 6] =
    [[230, 57, 70], [69, 123, 157], [42, 157, 143], [233, 196, 106], [244, 162, 97], [131, 56, 236]];
