//! The job file the runner puts at `/zvbench/job.json` in a guest's initramfs.

use crate::pass::PassSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the job file lives inside the initramfs.
pub const JOB_PATH: &str = "/zvbench/job.json";
/// Largest job file accepted.
const MAX_JOB_BYTES: u64 = 1 << 20;

/// What a guest agent does in one boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Must equal [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Kernel modules to load, in order, as paths inside the initramfs.
    #[serde(default)]
    pub modules: Vec<PathBuf>,
    /// The disk the passes use; waited for after loading modules.
    pub disk: PathBuf,
    /// How long to wait for the disk to appear, seconds.
    #[serde(default = "default_wait")]
    pub disk_wait_s: u64,
    /// Where frames go: a serial port kept free of kernel messages, or the console.
    #[serde(default = "default_port")]
    pub frame_port: PathBuf,
    /// After each [`crate::frame::Frame::Mark`], wait up to this many milliseconds for the
    /// host's acknowledgement byte on the frame port (0: do not wait). The host reads the
    /// hypervisor's and host device's counters before it acknowledges.
    #[serde(default)]
    pub ack_timeout_ms: u64,
    /// With no acknowledgement channel (`ack_timeout_ms` 0: a serial port that writes to a
    /// file, as VirtualBox's), pause this long after each mark so the host, which polls the
    /// file, reads its counters while the guest is idle.
    #[serde(default)]
    pub mark_pause_ms: u64,
    /// Send a [`crate::frame::Frame::Synced`] after each completed sync of a write pass
    /// (without waiting for an ack): what a power-cut check needs to know was acknowledged.
    #[serde(default)]
    pub sync_marks: bool,
    /// The passes, run in order.
    pub passes: Vec<PassSpec>,
}

fn default_wait() -> u64 {
    20
}

fn default_port() -> PathBuf {
    PathBuf::from("/dev/ttyS1")
}

/// Why a job file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Unreadable or too large.
    #[error("cannot read job file {path}: {why}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Not valid JSON for a [`Job`].
    #[error("job file {path} is invalid")]
    Parse {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Written for another schema.
    #[error("job file schema {found} does not match the agent's {expected}: rebuild the initramfs with this zvbench")]
    Schema {
        /// In the file.
        found: u32,
        /// The agent's.
        expected: u32,
    },
}

impl Job {
    /// Reads and checks a job file.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let read_err = |why: String| JobError::Read {
            path: path.to_owned(),
            why,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read_err(e.to_string()))?
            .len();
        if len > MAX_JOB_BYTES {
            return Err(read_err(format!(
                "{len} bytes, more than the {MAX_JOB_BYTES} allowed"
            )));
        }
        let text = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let job: Job = serde_json::from_slice(&text).map_err(|source| JobError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if job.schema_version != crate::SCHEMA_VERSION {
            return Err(JobError::Schema {
                found: job.schema_version,
                expected: crate::SCHEMA_VERSION,
            });
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_minimal_job_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.json");
        std::fs::write(
            &p,
            r#"{"schema_version":1,"disk":"/dev/vda","passes":[{"path":"/dev/vda","workload":"seqwr","bs":"1M","size":"8M"}]}"#,
        )
        .unwrap();
        let j = Job::load(&p).unwrap();
        assert_eq!(j.disk_wait_s, 20);
        assert_eq!(j.frame_port, PathBuf::from("/dev/ttyS1"));
        assert!(j.passes[0].end_fsync);
        assert_eq!(j.passes[0].bs.bytes(), 1 << 20);
    }

    #[test]
    fn rejects_other_schema_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.json");
        std::fs::write(&p, r#"{"schema_version":99,"disk":"/dev/vda","passes":[]}"#).unwrap();
        assert!(matches!(
            Job::load(&p),
            Err(JobError::Schema { found: 99, .. })
        ));
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(Job::load(&p), Err(JobError::Parse { .. })));
    }
}
