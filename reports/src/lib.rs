//! zvbench's results and what is made of them: the `results.csv` row (one definition for
//! the runner that writes it and the reports that read it), summaries and diagnosis.
#![deny(missing_docs)]

pub mod atomic;
pub mod cache;
pub mod compare;
pub mod diagnose;
pub mod export;
pub mod figures;
pub mod flushgate;
pub mod history;
pub mod html;
pub mod import;
pub mod layer;
pub mod plot;
pub mod report;
pub mod row;
pub mod run_json;
pub mod send;
pub mod stats;
pub mod summary;
pub mod timeseries;
pub mod zfs_sources;

pub use row::{read_results, read_rows, ResultRow};
