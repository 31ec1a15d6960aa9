//! Derives a build id from the agent's sources, so the runner can tell a guest agent built
//! from other sources (a stale `scripts/build-agent` output) from its own, and finds the
//! static libblkid (`libblkid.a`, Debian `libblkid-dev`) that `src/blkid.rs` links.
use std::path::{Path, PathBuf};

/// The directory holding `libblkid.a`: pkg-config's libdir for blkid, else Debian's
/// multiarch directory. Fails the build, naming the package, when it is missing.
fn blkid_libdir() -> PathBuf {
    let from_pkg_config = std::process::Command::new("pkg-config")
        .args(["--variable=libdir", "blkid"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let dir = from_pkg_config.unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".into());
    if !dir.join("libblkid.a").exists() {
        panic!(
            "{} has no libblkid.a: install Debian's libblkid-dev (scripts/install-deps)",
            dir.display()
        );
    }
    dir
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, files);
        } else {
            files.push(p);
        }
    }
}

fn main() {
    let mut files = Vec::new();
    walk(Path::new("src"), &mut files);
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for f in &files {
        for b in f
            .to_string_lossy()
            .bytes()
            .chain(std::fs::read(f).unwrap_or_default())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=ZVBENCH_AGENT_BUILD_ID={h:016x}");
    println!("cargo:rerun-if-changed=src");
    println!(
        "cargo:rustc-link-search=native={}",
        blkid_libdir().display()
    );
}
