//! Who owns what: one lock file per run in the runtime directory, held with an exclusive
//! `flock` for the run's whole life and listing, one JSON line each, every object the run
//! provisions the moment it exists (files, loop devices with their backing file's identity,
//! datasets). QEMU processes and VirtualBox VMs carry the run id in their name. `zvbench
//! clean` trusts this and nothing looser: a run whose lock is held is alive and its
//! objects are left alone; a run whose lock can be taken is dead and its objects are its
//! leftovers. Names are matched exactly as zvbench generates them ([`generated_file`]),
//! never by a prefix alone.

use crate::host::loopdev::LoopBinding;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Environment variable naming another runtime directory (tests use their own).
pub const RUNTIME_ENV: &str = "ZVBENCH_RUNTIME_DIR";

/// Where run locks live: `$ZVBENCH_RUNTIME_DIR`, else `/run/zvbench` for root, else
/// `$XDG_RUNTIME_DIR/zvbench`, else `/tmp/zvbench-<uid>`. `/run` is emptied at boot, when
/// every run is dead anyway.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(RUNTIME_ENV) {
        return d.into();
    }
    let uid = nix::unistd::Uid::effective();
    if uid.is_root() {
        return "/run/zvbench".into();
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| PathBuf::from(d).join("zvbench"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/zvbench-{uid}")))
}

/// Splits `<run id>-<rest>` as [`run_id`] writes it; `None` if `s` does not start with one.
pub fn split_run_id(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if b.len() < 17
        || !b[..8].iter().all(u8::is_ascii_digit)
        || b[8] != b'T'
        || !b[9..15].iter().all(u8::is_ascii_digit)
        || b[15] != b'-'
    {
        return None;
    }
    let tail = &s[16..];
    let end = tail.find('-')?;
    let (pid, seq) = match tail[..end].split_once('n') {
        Some((p, n)) => (p, Some(n)),
        None => (&tail[..end], None),
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 10 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(pid) || !seq.is_none_or(digits) {
        return None;
    }
    Some((&s[..16 + end], &tail[end + 1..]))
}

/// The process id inside a run id.
pub fn run_pid(run_id: &str) -> Option<i32> {
    run_id.get(16..)?.split('n').next()?.parse().ok()
}

/// Extensions of the files zvbench creates in a target's `dir`.
const EXTENSIONS: &[&str] = &["dat", "img", "vdi", "vmdk", "vhdx", "qcow2", "raw"];

/// The run id of a file name zvbench generates (`zvbench-<run id>-<target>.<ext>`, or a
/// VMDK's `zvbench-<run id>-<target>-flat.vmdk` extent); `None` for any other name,
/// `zvbench-notes.txt` included.
pub fn generated_file(name: &str) -> Option<&str> {
    let (id, rest) = split_run_id(name.strip_prefix("zvbench-")?)?;
    let (stem, ext) = rest.rsplit_once('.')?;
    let target = match ext {
        "vmdk" => stem.strip_suffix("-flat").unwrap_or(stem),
        _ if EXTENSIONS.contains(&ext) => stem,
        _ => return None,
    };
    crate::names::check_name(target).ok().map(|_| id)
}

/// One object a run created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owned {
    /// A file.
    File {
        /// Its path.
        path: PathBuf,
    },
    /// A loop device over one of its files.
    Loop(LoopBinding),
    /// A ZFS dataset.
    Dataset {
        /// Its name.
        name: String,
    },
}

/// A run's lock, held until dropped (then the lock file is removed).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The run's id.
    pub run_id: String,
}

/// Takes an exclusive `flock` on `f` without waiting.
fn try_lock(f: &File) -> std::io::Result<()> {
    // SAFETY: flock on an open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl RunLock {
    /// Takes the lock of a new run in `dir`. The file is locked under a temporary name and
    /// only then renamed into place, so `clean` never sees an unlocked lock of a live run.
    pub fn acquire(dir: &Path, run_id: &str) -> Result<RunLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let tmp = dir.join(format!(".run-{run_id}.tmp"));
        let path = dir.join(format!("run-{run_id}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("create the run lock {}", tmp.display()))?;
        try_lock(&file).with_context(|| format!("lock {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
        Ok(RunLock {
            file,
            path,
            run_id: run_id.to_string(),
        })
    }

    /// Appends `o` to the run's list; call it the moment the object exists.
    pub fn record(&self, o: &Owned) -> Result<()> {
        let mut line = serde_json::to_vec(o)?;
        line.push(b'\n');
        (&self.file)
            .write_all(&line)
            .with_context(|| format!("write {}", self.path.display()))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A run found in the runtime directory.
#[derive(Debug)]
pub struct FoundRun {
    /// Its id.
    pub run_id: String,
    /// Its lock file.
    pub path: PathBuf,
    /// What it recorded (unreadable lines skipped).
    pub owned: Vec<Owned>,
    /// The lock, held by this process while the dead run is cleaned; `None` when alive.
    lock: Option<File>,
}

impl FoundRun {
    /// Whether the run is alive (another process holds its lock).
    pub fn alive(&self) -> bool {
        self.lock.is_none()
    }

    /// Removes the lock file of a dead run once its objects are gone.
    pub fn forget(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// Every run with a lock file in `dir`: alive, or dead and now locked by the caller.
pub fn scan(dir: &Path) -> Vec<FoundRun> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("run-")
            .and_then(|n| n.strip_suffix(".lock"))
            .filter(|id| split_run_id(&format!("{id}-x")).is_some())
        else {
            continue;
        };
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        let owned = BufReader::new(&f)
            .lines()
            .take(100_000)
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let lock = try_lock(&f).is_ok().then_some(f);
        runs.push(FoundRun {
            run_id: id.to_string(),
            path: e.path(),
            owned,
            lock,
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_split_and_generated_names() {
        let id = crate::run::provenance::run_id();
        assert_eq!(
            split_run_id(&format!("{id}-raw")),
            Some((id.as_str(), "raw"))
        );
        assert_eq!(
            run_pid(&id),
            Some(i32::try_from(std::process::id()).unwrap())
        );
        let second = crate::run::provenance::run_id();
        assert_ne!(id, second, "two runs of one process never share an id");
        assert_eq!(
            split_run_id(&format!("{second}-a-b")),
            Some((second.as_str(), "a-b"))
        );
        for (name, want) in [
            (
                "zvbench-20260101T000000-1-raw.img",
                Some("20260101T000000-1"),
            ),
            (
                "zvbench-20260101T000000-1n2-vdi.vdi",
                Some("20260101T000000-1n2"),
            ),
            (
                "zvbench-20260101T000000-77-v-m.vmdk",
                Some("20260101T000000-77"),
            ),
            (
                "zvbench-20260101T000000-77-v-m-flat.vmdk",
                Some("20260101T000000-77"),
            ),
            (
                "zvbench-20260101T000000-1-host.dat",
                Some("20260101T000000-1"),
            ),
            ("zvbench-notes.txt", None),
            ("zvbench-20260101T000000-1-raw.img.bak", None),
            ("zvbench-20260101T000000-1-.img", None),
            ("zvbench-2026010xT000000-1-raw.img", None),
            ("zvbench-20260101T000000-1n-raw.img", None),
            ("zvbench-20260101T000000--raw.img", None),
            ("zvbench-20260101T000000-1-a b.img", None),
            ("my-zvbench-20260101T000000-1-raw.img", None),
        ] {
            assert_eq!(generated_file(name), want, "{name}");
        }
    }

    #[test]
    fn a_held_lock_is_alive_and_a_dropped_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path(), "20260101T000000-1").unwrap();
        lock.record(&Owned::File {
            path: "/x/zvbench-20260101T000000-1-raw.img".into(),
        })
        .unwrap();
        let runs = scan(dir.path());
        assert_eq!(runs.len(), 1);
        assert!(runs[0].alive(), "held by this run");
        assert_eq!(runs[0].owned.len(), 1);
        drop(runs);
        drop(lock);
        assert!(scan(dir.path()).is_empty(), "a finished run leaves no lock");
    }

    #[test]
    fn a_lock_nobody_holds_is_a_dead_run() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed run leaves: the file; its flock went with the process.
        let path = dir.path().join("run-20260101T000000-2.lock");
        std::fs::write(&path, "{\"kind\":\"dataset\",\"name\":\"p/x\"}\nnot json\n").unwrap();
        let runs = scan(dir.path());
        assert!(!runs[0].alive());
        assert_eq!(runs[0].owned, [Owned::Dataset { name: "p/x".into() }]);
        assert!(
            scan(dir.path())[0].alive(),
            "while one clean holds a dead run's lock, another sees it taken"
        );
        runs.into_iter().next().unwrap().forget().unwrap();
        assert!(!path.exists());
    }
}
