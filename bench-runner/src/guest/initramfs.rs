//! The guest's initramfs, built in Rust: a gzip-compressed cpio "newc" archive holding the
//! static agent as `/init`, the job file, and the kernel modules the disk bus needs.
//! Entries have mtime 0 and fixed owners, so the same inputs give the same bytes.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{self, Write};

/// An in-memory newc archive under construction.
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: Vec<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            ino: 1,
            dirs: Vec::new(),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            self.ino,
            mode,
            0,
            0,
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Adds every missing parent directory of `path` (relative, no leading slash).
    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            if !self.dirs.contains(&acc) {
                self.dirs.push(acc.clone());
                let a = acc.clone();
                self.entry(&a, S_IFDIR | 0o755, (0, 0), &[]);
            }
        }
    }

    /// Adds a regular file at `path` (e.g. `zvbench/job.json`) with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        let p = path.trim_start_matches('/');
        self.parents(p);
        self.entry(p, S_IFREG | (perm & 0o7777), (0, 0), data);
        self
    }

    /// Adds a character device node.
    pub fn chardev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        let p = path.trim_start_matches('/');
        self.parents(p);
        self.entry(p, S_IFCHR | 0o600, (major, minor), &[]);
        self
    }

    /// Ends the archive and returns it gzip-compressed.
    pub fn finish_gz(mut self) -> io::Result<Vec<u8>> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&self.out)?;
        gz.finish()
    }

    /// The uncompressed archive bytes so far.
    #[cfg(test)]
    fn raw(&self) -> &[u8] {
        &self.out
    }
}

/// Whether an x86-64 ELF executable is static (has no PT_INTERP program header);
/// `None` when the bytes are not a 64-bit little-endian ELF.
pub fn elf_is_static(b: &[u8]) -> Option<bool> {
    if b.get(..5)? != b"\x7fELF\x02" || b.get(5)? != &1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(b.get(0x20..0x28)?.try_into().ok()?) as usize;
    let (entsize, num) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..num.min(256) {
        let off = phoff.checked_add(i.checked_mul(entsize)?)?;
        let p_type = u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?);
        if p_type == 3 {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn tells_static_from_dynamic_executables() {
        let dynamic = std::fs::read("/bin/sh").unwrap();
        assert_eq!(elf_is_static(&dynamic), Some(false));
        assert_eq!(elf_is_static(b"#!/bin/sh\n"), None);
        // A minimal static ELF header: no program headers at all.
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(elf_is_static(&h), Some(true));
    }

    #[test]
    fn layout_is_newc() {
        let mut c = Cpio::new();
        c.file("a/b.txt", 0o644, b"hello");
        let raw = c.raw();
        assert_eq!(&raw[..6], b"070701");
        assert!(raw.len().is_multiple_of(4));
        let text = String::from_utf8_lossy(raw);
        assert!(text.contains("a\0") && text.contains("a/b.txt\0") && text.contains("hello"));
    }

    #[test]
    fn real_cpio_lists_and_extracts_it() {
        if !crate::require::require(&["cpio"]) {
            return;
        }
        let mut c = Cpio::new();
        c.file("/init", 0o755, b"#!agent")
            .file("zvbench/job.json", 0o644, b"{}")
            .file("lib/modules/6.1/kernel/x.ko", 0o644, &[1, 2, 3]);
        let gz = c.finish_gz().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("i.cpio.gz");
        std::fs::write(&archive, gz).unwrap();
        let raw = dir.path().join("i.cpio");
        let mut d = flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap());
        std::io::copy(&mut d, &mut std::fs::File::create(&raw).unwrap()).unwrap();
        let out = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-F"])
            .arg(&raw)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(dir.path().join("init")).unwrap(), b"#!agent");
        assert_eq!(
            std::fs::read(dir.path().join("lib/modules/6.1/kernel/x.ko")).unwrap(),
            [1, 2, 3]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("init"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
