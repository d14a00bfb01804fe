//! Independent decoders that the fuzz targets check nixtla's output with.
//!
//! Each one is written from the format's own description and shares no code
//! with the crates nixtla uses, so a bug on one side shows up as a mismatch
//! instead of cancelling out.

pub mod push_request;
pub mod selector;
pub mod snappy;
