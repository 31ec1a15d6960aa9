//! `run.json` read back: bounded in size, a JSON object, or absent. Shared by `report`,
//! `history` and `import`, so each refuses a broken file the same way.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest `run.json` read (the scenario text and provenance stay far below it).
pub const MAX_RUN_JSON: u64 = 16 << 20;

/// Why `run.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunJsonError {
    /// It exists but cannot be read (a directory, no permission).
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Over [`MAX_RUN_JSON`].
    #[error("{path} is {bytes} bytes, over the {MAX_RUN_JSON}-byte limit: fix or move it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Not JSON.
    #[error("{path} is not valid JSON: fix or move it")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// JSON, but not an object.
    #[error("{path} is JSON but not an object as zvbench writes it: fix or move it")]
    NotObject {
        /// The file.
        path: PathBuf,
    },
}

/// `dir/run.json` as an object; `None` when there is no such file.
pub fn read(dir: &Path) -> Result<Option<Value>, RunJsonError> {
    let path = dir.join("run.json");
    let io = |source| RunJsonError::Io {
        path: path.clone(),
        source,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_RUN_JSON {
        return Err(RunJsonError::TooLarge {
            path,
            bytes: meta.len(),
        });
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    parse(&bytes, &path).map(Some)
}

/// Parses the text of a `run.json` (`path` names it in errors).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Value, RunJsonError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|source| RunJsonError::Json {
        path: path.into(),
        source,
    })?;
    if !v.is_object() {
        return Err(RunJsonError::NotObject { path: path.into() });
    }
    Ok(v)
}
