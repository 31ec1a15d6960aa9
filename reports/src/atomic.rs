//! Replacing a file so that a reader, a crash or a full disk sees the old content or the
//! new, never a mix: a temporary file in the same directory, written and synced, renamed
//! over the old one, and the directory synced so the rename itself survives a crash.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically, keeping the old file's permissions (0644 for a new
/// one). On error the old file is untouched and no temporary file is left.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(path, |tmp| {
        std::fs::File::options()
            .write(true)
            .open(tmp)?
            .write_all(bytes)
    })
}

/// Replaces `path` atomically with what `fill` writes to the temporary path it is given
/// (beside `path`, ending in `path`'s own extension, for writers that choose a format by
/// it), keeping the old file's permissions (0644 for a new one). On error — `fill`'s or
/// the disk's — the old file is untouched and no temporary file is left.
pub fn replace_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(&format!(".tmp{ext}"))
        .tempfile_in(dir)?;
    fill(tmp.path())?;
    let f = std::fs::File::open(tmp.path())?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_keeping_permissions_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        write(&p, b"one").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.json");
        write(&p, b"old").unwrap();
        // A directory in the way of the rename: the rename fails, the old file stays.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), "x").unwrap();
        assert!(write(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file_and_sees_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mib_s.png");
        write(&p, b"old image").unwrap();
        let e = replace_with(&p, |tmp| {
            assert_eq!(tmp.extension().unwrap(), "png", "{}", tmp.display());
            std::fs::write(tmp, b"half an ima")?;
            Err(std::io::Error::other("No space left on device"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old image");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
