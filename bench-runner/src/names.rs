//! Validation of names that end up in paths, argv and ZFS: target names, ZFS datasets,
//! device paths. Nothing from a scenario reaches a tool unchecked.

use std::path::Path;

/// A scenario name (target or workload): 1-32 of `[A-Za-z0-9_-]`, not starting with `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-32 letters, digits, '_' or '-' (not starting with '-')"
        ))
    }
}

/// An OpenZFS dataset name: `pool/a/b`, components of `[A-Za-z0-9_.:-]`, pool starting with
/// a letter, no empty component, no `.`/`..`, at most 255 bytes (ZFS_MAX_DATASET_NAME_LEN - 1).
pub fn check_dataset(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("ZFS dataset name {name:?} {why}"));
    if name.is_empty() || name.len() > 255 {
        return fail("must be 1 to 255 characters");
    }
    let mut parts = name.split('/');
    let pool = parts.next().unwrap_or_default();
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return fail("must start with a pool name that begins with a letter");
    }
    for comp in name.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return fail("has an empty, '.' or '..' component");
        }
        if !comp
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
        {
            return fail("may only contain letters, digits and _ . : - between slashes");
        }
    }
    Ok(())
}

/// A block device path given by the user: absolute, under `/dev/`, no `..`, no commas
/// (QEMU's option separator) and no whitespace.
pub fn check_device(path: &Path) -> Result<(), String> {
    let s = path.to_string_lossy();
    let ok = s.starts_with("/dev/")
        && !s.contains("..")
        && !s.contains(',')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "device {s:?} must be an absolute path under /dev/ without '..', ',' or spaces"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["host", "vdi", "seqwr-1m_direct", "a"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "x".repeat(33).as_str(), "é", "a,b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datasets() {
        for ok in ["tank", "tank/zvbench", "rpool/vm:1/disk-0.a_b"] {
            assert!(check_dataset(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/tank",
            "tank/",
            "tank//x",
            "1tank",
            "tank/../x",
            "tank/a b",
            "tank;rm",
            "tank/$(x)",
            "-o",
        ] {
            assert!(check_dataset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices() {
        assert!(check_device(Path::new("/dev/sdx")).is_ok());
        assert!(check_device(Path::new("/dev/zvol/tank/v")).is_ok());
        for bad in [
            "sdx",
            "/etc/passwd",
            "/dev/../etc/x",
            "/dev/a,b",
            "/dev/a b",
        ] {
            assert!(check_device(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
