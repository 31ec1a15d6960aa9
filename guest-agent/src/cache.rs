//! Making sure a read pass measures the storage, not a cache left warm by a write pass.

use crate::record::CacheDrop;
use crate::target::{PathKind, Target};
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use std::os::unix::io::AsRawFd;

fn step(method: &str, r: Result<(), String>) -> CacheDrop {
    CacheDrop {
        method: method.to_string(),
        ok: r.is_ok(),
        error: r.err(),
    }
}

/// Drops what the kernel caches of `t`: the file's pages (fadvise DONTNEED after writing
/// back dirty data) or the device's buffers (BLKFLSBUF), then, when running as root and
/// `global`, the whole page cache (`/proc/sys/vm/drop_caches`). A pass with O_DIRECT
/// passes `global` false: its reads bypass the page cache, and dropping everyone else's
/// makes the whole machine fault it back in during the measurement (seen: random 4K
/// reads at QD1 a third slower than fio's, which drops nothing). Every step is reported,
/// failures and skips too.
pub fn drop_caches(t: &Target, global: bool) -> Vec<CacheDrop> {
    let mut steps = Vec::new();
    match t.kind {
        PathKind::File => {
            let r = t.file.sync_data().map_err(|e| e.to_string()).and_then(|_| {
                posix_fadvise(
                    t.file.as_raw_fd(),
                    0,
                    0,
                    PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                )
                .map_err(|e| e.to_string())
            });
            steps.push(step("fadvise_dontneed", r));
        }
        PathKind::Blockdev => steps.push(step(
            "blkflsbuf",
            t.flush_device_buffers().map_err(|e| e.to_string()),
        )),
    }
    if !global {
        steps.push(step(
            "drop_caches",
            Err("skipped: O_DIRECT bypasses the page cache".into()),
        ));
    } else if nix::unistd::Uid::effective().is_root() {
        nix::unistd::sync();
        let r = std::fs::write("/proc/sys/vm/drop_caches", b"3").map_err(|e| e.to_string());
        steps.push(step("drop_caches", r));
    } else {
        steps.push(step("drop_caches", Err("skipped: not root".into())));
    }
    steps
}
