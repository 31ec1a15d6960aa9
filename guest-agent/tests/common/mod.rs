//! Helpers shared by the agent's integration tests: a pass spec, required tools, and a
//! real loop device detached on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use zvbench_agent::pass::{PassSpec, Workload};
use zvbench_agent::ByteSize;

/// A plain pass on `path`.
pub fn spec(path: &Path, workload: Workload, bs: u64, size: u64) -> PassSpec {
    PassSpec::new(path.to_owned(), workload, ByteSize(bs), ByteSize(size))
}

/// Fails the test, naming what is missing, unless it runs as root.
pub fn need_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (loop devices); run the tests as root"
    );
}

/// Fails the test, naming the Debian package, unless `tool` can be run.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file())
    });
    assert!(
        found,
        "this test needs {tool}: install Debian's {package} (scripts/install-deps)"
    );
}

/// Runs a command and fails the test with its stderr if it fails.
pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a partition table with `sfdisk -q DEV < script`.
pub fn sfdisk(dev: &Path, script: &str) {
    let mut c = Command::new("sfdisk")
        .arg("-q")
        .arg(dev)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk (Debian fdisk) runs");
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "sfdisk {script:?}");
}

/// A loop device over a fresh file in its own temporary directory, detached on drop (also
/// when the test fails). Only this device is ever detached: by its name, checked against
/// its backing file.
pub struct Loop {
    pub dev: PathBuf,
    pub dir: tempfile::TempDir,
    pub backing: PathBuf,
}

impl Loop {
    pub fn new(size: u64, sector: u32) -> Loop {
        need_root();
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let backing = dir.path().join("disk.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show", "--sector-size", &sector.to_string()])
            .arg(&backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Loop { dev, dir, backing }
    }

    /// The device as a `&str` for argv.
    pub fn dev_str(&self) -> &str {
        self.dev.to_str().unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let name = self.dev.file_name().unwrap().to_string_lossy().into_owned();
        let backing = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"));
        if backing.is_ok_and(|b| Path::new(b.trim()) == self.backing) {
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        }
    }
}
