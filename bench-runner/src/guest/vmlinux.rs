//! The guest kernel as QEMU boots it fastest: the decompressed ELF `vmlinux` through its
//! PVH entry, rather than the bzImage.
//!
//! Why: Debian's bzImage is XZ-compressed, and under TCG the kernel's own decompressor
//! runs emulated — about 5 s of every boot here, before the kernel's clock starts. The
//! same kernel decompressed once on the host (in Rust) boots through the PVH entry point
//! (`XEN_ELFNOTE_PHYS32_ENTRY`, which QEMU's `-kernel` follows for an ELF). A kernel with
//! no PVH note, or compressed otherwise than XZ, boots as a bzImage, with the reason.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Start of an XZ stream (`FD 37 7A 58 5A 00`), as it sits inside a bzImage's payload.
pub const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point (Xen's `elfnote.h`).
pub const PVH_NOTE_TYPE: u32 = 18;
/// Largest decompressed kernel accepted (a bound on untrusted input; Debian's is 66 MB).
pub const MAX_VMLINUX: u64 = 512 << 20;

/// What QEMU's `-kernel` boots for a direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectBoot {
    /// The decompressed ELF, through its PVH entry.
    Pvh {
        /// The ELF file (in the kernel cache, or the image itself when it is one).
        vmlinux: PathBuf,
    },
    /// The bzImage, because the ELF cannot be used.
    BzImage {
        /// Why not the ELF.
        reason: String,
    },
}

/// Why a kernel image yields no PVH-bootable ELF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoPvh {
    /// Neither an ELF nor a bzImage with an XZ stream.
    #[error("no XZ stream (magic FD 37 7A 58 5A 00) in the image: zvbench decompresses XZ kernels only (Debian's are)")]
    NoXz,
    /// The XZ stream did not decompress.
    #[error("its XZ stream does not decompress: {0}")]
    Xz(String),
    /// The decompressed kernel is bigger than [`MAX_VMLINUX`].
    #[error("it decompresses to more than {} MiB", MAX_VMLINUX >> 20)]
    TooBig,
    /// The payload is not a 64-bit little-endian ELF.
    #[error("its payload is not a 64-bit little-endian ELF")]
    NotElf,
    /// The ELF has no `Xen` note of type 18 (built without `CONFIG_PVH`).
    #[error("the kernel has no PVH entry note (Xen note type 18; built without CONFIG_PVH)")]
    NoNote,
}

/// Whether `elf` (a 64-bit little-endian ELF) has a PVH entry note: a note named `Xen`
/// of type [`PVH_NOTE_TYPE`] in a `PT_NOTE` segment (where QEMU looks for it).
pub fn has_pvh_note(elf: &[u8]) -> Result<bool, NoPvh> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(NoPvh::NotElf);
    }
    let u16_at = |o: usize| -> Option<usize> {
        Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            elf.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |o: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(
            elf.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
        .ok()
    };
    let (Some(phoff), Some(entsize), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Err(NoPvh::NotElf);
    };
    for i in 0..num.min(256) {
        let Some(ph) = i.checked_mul(entsize).and_then(|o| o.checked_add(phoff)) else {
            return Err(NoPvh::NotElf);
        };
        if u32_at(ph) != Some(4) {
            continue; // not PT_NOTE
        }
        let (Some(off), Some(size)) = (u64_at(ph + 8), u64_at(ph + 32)) else {
            return Err(NoPvh::NotElf);
        };
        let notes = off
            .checked_add(size)
            .and_then(|end| elf.get(off..end))
            .ok_or(NoPvh::NotElf)?;
        if notes_have(notes, b"Xen\0", PVH_NOTE_TYPE) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a run of ELF notes (namesz, descsz, type, name, desc; each padded to 4 bytes)
/// holds one named `name` of type `ty`.
fn notes_have(mut notes: &[u8], name: &[u8], ty: u32) -> bool {
    let pad = |n: usize| n.checked_add(3).map(|x| x & !3);
    while notes.len() >= 12 {
        let w =
            |i: usize| u32::from_le_bytes(notes[i..i + 4].try_into().expect("4 bytes")) as usize;
        let (namesz, descsz, t) = (w(0), w(4), w(8) as u32);
        let (Some(np), Some(dp)) = (pad(namesz), pad(descsz)) else {
            return false;
        };
        let Some(n) = notes.get(12..12 + namesz.min(notes.len())) else {
            return false;
        };
        if t == ty && n == name {
            return true;
        }
        match np.checked_add(dp).and_then(|l| l.checked_add(12)) {
            Some(len) if len <= notes.len() => notes = &notes[len..],
            _ => return false,
        }
    }
    false
}

/// The decompressed kernel inside a bzImage: the first XZ stream, bounded to
/// [`MAX_VMLINUX`] bytes.
pub fn decompress(bzimage: &[u8]) -> Result<Vec<u8>, NoPvh> {
    let at = bzimage
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or(NoPvh::NoXz)?;
    // One stream only: the size field and padding after it in the bzImage are not XZ.
    let xz = |e: xz2::stream::Error| NoPvh::Xz(e.to_string());
    let mut stream = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0).map_err(xz)?;
    let mut input = &bzimage[at..];
    let mut out = Vec::with_capacity(64 << 20);
    loop {
        if out.len() == out.capacity() {
            if out.len() as u64 >= MAX_VMLINUX {
                return Err(NoPvh::TooBig);
            }
            out.reserve(16 << 20);
        }
        let (in_before, out_before) = (stream.total_in(), out.len());
        let status = stream
            .process_vec(input, &mut out, xz2::stream::Action::Run)
            .map_err(xz)?;
        input = &input[(stream.total_in() - in_before) as usize..];
        if status == xz2::stream::Status::StreamEnd {
            break;
        }
        if stream.total_in() == in_before && out.len() == out_before {
            return Err(NoPvh::Xz("the stream is cut short".into()));
        }
    }
    if out.len() as u64 > MAX_VMLINUX {
        return Err(NoPvh::TooBig);
    }
    Ok(out)
}

/// Chooses the direct-boot image for `image`: the image itself when it is an ELF with a
/// PVH note; else its decompressed ELF, made once and kept in `cache` under a name from
/// the image's size and CRC-32 (so a changed image gets a new one); else the bzImage,
/// with the reason. A failure to read or write files is a reason too: the bzImage still
/// boots.
pub fn choose(image: &Path, cache: &Path) -> DirectBoot {
    match pvh_elf(image, cache) {
        Ok(vmlinux) => DirectBoot::Pvh { vmlinux },
        Err(reason) => DirectBoot::BzImage { reason },
    }
}

fn pvh_elf(image: &Path, cache: &Path) -> Result<PathBuf, String> {
    let read = |e: std::io::Error| format!("read {}: {e}", image.display());
    let len = std::fs::metadata(image).map_err(read)?.len();
    if len > MAX_VMLINUX {
        return Err(format!(
            "{} is {len} bytes, more than a kernel ({} MiB at most)",
            image.display(),
            MAX_VMLINUX >> 20
        ));
    }
    let bytes = std::fs::read(image).map_err(read)?;
    if bytes.starts_with(b"\x7fELF") {
        return match has_pvh_note(&bytes) {
            Ok(true) => Ok(image.to_owned()),
            Ok(false) => Err(NoPvh::NoNote.to_string()),
            Err(e) => Err(e.to_string()),
        };
    }
    let name = format!("vmlinux-{:08x}-{}", crc32fast::hash(&bytes), bytes.len());
    let dir = cache.join("kernel/pvh");
    let out = dir.join(&name);
    let refusal = dir.join(format!("{name}.no-pvh"));
    if out.is_file() {
        return Ok(out);
    }
    if let Ok(why) = std::fs::read_to_string(&refusal) {
        return Err(why);
    }
    let mut elf = decompress(&bytes);
    if let Ok(e) = &elf {
        elf = match has_pvh_note(e) {
            Ok(true) => elf,
            Ok(false) => Err(NoPvh::NoNote),
            Err(x) => Err(x),
        };
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    match elf {
        Ok(elf) => {
            write_atomic(&out, &elf).map_err(|e| format!("write {}: {e}", out.display()))?;
            Ok(out)
        }
        Err(why) => {
            let why = why.to_string();
            // Remembered, so a kernel without PVH is not decompressed on every run.
            let _ = write_atomic(&refusal, why.as_bytes());
            Err(why)
        }
    }
}

/// Writes `path` through a temporary file of this process renamed over it, so a run
/// beside this one never reads a half-written kernel.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        // A full disk leaves no half kernel behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        e[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        e[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        e[64 + 32..64 + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes()); // p_filesz
        e.extend_from_slice(notes);
        e
    }

    fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(ty.to_le_bytes());
        n.extend(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn finds_the_pvh_note_among_others() {
        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", 6, b"linux\0"));
        notes.extend(note(b"Xen\0", 18, &0x1000850u64.to_le_bytes()));
        assert_eq!(has_pvh_note(&elf_with_notes(&notes)), Ok(true));
    }

    #[test]
    fn type_18_of_another_owner_or_a_missing_note_is_no_pvh() {
        let notes = [note(b"GNU\0", 18, &[0; 8]), note(b"Xen\0", 17, &[0; 4])].concat();
        assert_eq!(has_pvh_note(&elf_with_notes(&notes)), Ok(false));
        assert_eq!(has_pvh_note(&elf_with_notes(&[])), Ok(false));
    }

    #[test]
    fn truncated_or_lying_headers_are_errors_not_panics() {
        assert_eq!(has_pvh_note(b"MZ\0\0"), Err(NoPvh::NotElf));
        let mut e = elf_with_notes(&note(b"Xen\0", 18, &[0; 8]));
        e[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(has_pvh_note(&e), Err(NoPvh::NotElf));
        let mut bad = note(b"Xen\0", 18, &[0; 8]);
        bad[..4].copy_from_slice(&u32::MAX.to_le_bytes()); // namesz
        assert_eq!(has_pvh_note(&elf_with_notes(&bad)), Ok(false));
        let short = elf_with_notes(&[]);
        assert_eq!(has_pvh_note(&short[..70]), Err(NoPvh::NotElf));
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decompresses_the_stream_inside_a_bzimage() {
        let elf = elf_with_notes(&note(b"Xen\0", 18, &[0; 8]));
        // A setup header before, the size field and padding after, as in a bzImage.
        let image = [
            b"MZ setup...".as_slice(),
            &xz(&elf),
            &[0x78, 0, 0, 0],
            &[0; 16],
        ]
        .concat();
        assert_eq!(decompress(&image).unwrap(), elf);
        assert_eq!(decompress(b"MZ gzip \x1f\x8b"), Err(NoPvh::NoXz));
        let cut = [b"MZ".as_slice(), &xz(&elf)[..40]].concat();
        assert!(matches!(decompress(&cut), Err(NoPvh::Xz(_))));
    }

    #[test]
    fn choose_caches_the_elf_and_remembers_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let elf = elf_with_notes(&note(b"Xen\0", 18, &[0; 8]));
        let image = dir.path().join("vmlinuz");
        std::fs::write(&image, [b"MZ".as_slice(), &xz(&elf)].concat()).unwrap();
        let DirectBoot::Pvh { vmlinux } = choose(&image, dir.path()) else {
            panic!("a PVH kernel")
        };
        assert!(vmlinux.starts_with(dir.path().join("kernel/pvh")));
        assert_eq!(std::fs::read(&vmlinux).unwrap(), elf);
        // Made once: the second choice reuses the file.
        let before = std::fs::metadata(&vmlinux).unwrap().modified().unwrap();
        assert_eq!(
            choose(&image, dir.path()),
            DirectBoot::Pvh {
                vmlinux: vmlinux.clone()
            }
        );
        assert_eq!(
            std::fs::metadata(&vmlinux).unwrap().modified().unwrap(),
            before
        );
        // An ELF given directly is booted as it is.
        assert_eq!(
            choose(&vmlinux, dir.path()),
            DirectBoot::Pvh {
                vmlinux: vmlinux.clone()
            }
        );

        let plain = dir.path().join("vmlinuz-nopvh");
        std::fs::write(
            &plain,
            [b"MZ".as_slice(), &xz(&elf_with_notes(&[]))].concat(),
        )
        .unwrap();
        let want = DirectBoot::BzImage {
            reason: NoPvh::NoNote.to_string(),
        };
        assert_eq!(choose(&plain, dir.path()), want);
        let remembered = std::fs::read_dir(dir.path().join("kernel/pvh"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".no-pvh"))
            .count();
        assert_eq!(remembered, 1);
        assert_eq!(choose(&plain, dir.path()), want);
        let missing = choose(&dir.path().join("nope"), dir.path());
        assert!(matches!(missing, DirectBoot::BzImage { reason } if reason.contains("nope")));
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_VMLINUX + 1)
            .unwrap();
        let refused = choose(&huge, dir.path());
        assert!(
            matches!(&refused, DirectBoot::BzImage { reason } if reason.contains("more than a kernel")),
            "{refused:?}"
        );
        // No temporary file is left in the cache.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("kernel/pvh"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }
}
