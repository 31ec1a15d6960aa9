//! The subcommands that are not a run: `clean`, `doctor`, `import`, `report`.

pub mod clean;
pub mod doctor;
pub mod import;
pub mod report;
