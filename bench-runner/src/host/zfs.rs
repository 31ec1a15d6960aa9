//! OpenZFS commands as argv (tested against real `zfs-fuse` pools where it can run them,
//! and against recorded argv for zvols, which zfs-fuse lacks) and the ZIL kstats.

use crate::cmd::Argv;
use crate::names::check_dataset;
use std::path::{Path, PathBuf};
use zvbench_agent::devstat::{DevStat, StatSource};

/// The user property that marks everything zvbench creates, with the run id as value.
pub const TAG: &str = "zvbench:run";

/// `zfs create -V SIZE -o k=v... -o zvbench:run=RUN NAME`.
pub fn create_zvol_argv(
    name: &str,
    size_bytes: u64,
    props: &[(String, String)],
    run_id: &str,
) -> Argv {
    let mut v: Vec<String> = vec![
        "zfs".into(),
        "create".into(),
        "-V".into(),
        size_bytes.to_string(),
    ];
    for (k, val) in props {
        v.push("-o".into());
        v.push(format!("{k}={val}"));
    }
    v.push("-o".into());
    v.push(format!("{TAG}={run_id}"));
    v.push(name.into());
    Argv::new(v)
}

/// `zfs create -o zvbench:run=RUN NAME` (a file system dataset).
pub fn create_fs_argv(name: &str, run_id: &str) -> Argv {
    Argv::new(["zfs", "create", "-o", &format!("{TAG}={run_id}"), name])
}

/// `zfs create -o canmount=off -o encryption=on -o keyformat=raw -o keylocation=file://KEY
/// -o zvbench:run=RUN NAME`: an encrypted parent for a zvol, never mounted, its raw key
/// read from `keyfile` (an absolute path, checked by the scenario).
pub fn create_encrypted_parent_argv(name: &str, keyfile: &Path, run_id: &str) -> Argv {
    let mut v: Vec<String> = vec!["zfs".into(), "create".into()];
    for opt in [
        "canmount=off".to_string(),
        "encryption=on".into(),
        "keyformat=raw".into(),
        format!("keylocation=file://{}", keyfile.display()),
        format!("{TAG}={run_id}"),
    ] {
        v.push("-o".into());
        v.push(opt);
    }
    v.push(name.into());
    Argv::new(v)
}

/// `zfs destroy -r NAME`.
pub fn destroy_argv(name: &str) -> Argv {
    Argv::new(["zfs", "destroy", "-r", name])
}

/// `zfs list -H -o name,zvbench:run -t TYPES`: datasets with their zvbench tag.
pub fn list_tagged_argv(types: &str) -> Argv {
    Argv::new([
        "zfs",
        "list",
        "-H",
        "-o",
        &format!("name,{TAG}"),
        "-t",
        types,
    ])
}

/// The snapshot a zvol target's repetitions start from.
pub const CLEAN_SNAPSHOT: &str = "zvbench-clean";

/// `zfs snapshot NAME@zvbench-clean`, taken before the first repetition.
pub fn snapshot_clean_argv(name: &str) -> Argv {
    snapshot_argv(&format!("{name}@{CLEAN_SNAPSHOT}"))
}

/// `zfs snapshot DATASET@SNAP`.
pub fn snapshot_argv(snapshot: &str) -> Argv {
    Argv::new(["zfs", "snapshot", snapshot])
}

/// `zfs rollback -r NAME@zvbench-clean`, before every later repetition.
pub fn rollback_clean_argv(name: &str) -> Argv {
    Argv::new(["zfs", "rollback", "-r", &format!("{name}@{CLEAN_SNAPSHOT}")])
}

/// `zfs list -H -o name NAME`: succeeds only when the dataset exists.
pub fn exists_argv(name: &str) -> Argv {
    Argv::new(["zfs", "list", "-H", "-o", "name", name])
}

/// `zfs get -H -p -o value PROP NAME`.
pub fn get_argv(name: &str, prop: &str) -> Argv {
    Argv::new(["zfs", "get", "-H", "-p", "-o", "value", prop, name])
}

/// Datasets whose zvbench tag is set, from `list_tagged_argv` output. Lines with a name
/// that does not validate are ignored rather than passed on to `zfs destroy`.
pub fn parse_tagged(list: &str) -> Vec<(String, String)> {
    list.lines()
        .take(100_000)
        .filter_map(|l| l.split_once('\t'))
        .filter(|(n, tag)| *tag != "-" && !tag.is_empty() && check_dataset(n).is_ok())
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// `zpool status -P -L POOL`: vdevs by full path, symlinks (by-id, by-path) resolved.
pub fn status_argv(pool: &str) -> Argv {
    Argv::new(["zpool", "status", "-P", "-L", pool])
}

/// The leaf vdevs' device paths from `zpool status -P -L` output: config lines whose
/// first word is an absolute `/dev/` path (files as vdevs are not devices and are left out),
/// each once (a spare in use is listed under its vdev and again under `spares`).
pub fn leaf_vdevs(status: &str) -> Vec<PathBuf> {
    first_of_each(
        status
            .lines()
            .take(10_000)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.starts_with("/dev/") && !w.contains(".."))
            .map(PathBuf::from),
    )
}

/// The whole disks under the leaf vdevs of `zpool status -P -L` output, each once,
/// `disk_of` mapping a vdev's device to its disk (a disk split into partitions that are
/// vdevs of the pool is counted once, wherever its partitions are listed).
pub fn leaf_disks<T: PartialEq>(status: &str, disk_of: impl Fn(&Path) -> Option<T>) -> Vec<T> {
    first_of_each(leaf_vdevs(status).iter().filter_map(|d| disk_of(d)))
}

/// `items` without repeats, in the order of their first appearance.
fn first_of_each<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = Vec::new();
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v
}

/// `zpool sync POOL`: writes out the pool's dirty data (ends its open transaction group).
pub fn sync_argv(pool: &str) -> Argv {
    Argv::new(["zpool", "sync", pool])
}

/// A pool's leaf vdevs as whole disks: the bottom of the flush trace below a zvol or a
/// file on the pool's file system (a zvol's own counters see no flushes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolVdevs {
    /// The pool.
    pub pool: String,
    /// The whole disks under its leaf vdevs, each once.
    pub disks: Vec<StatSource>,
}

impl PoolVdevs {
    /// Ends the pool's open transaction group (`zpool sync`), so that what was written
    /// before now is on the disks, then reads their counters, summed. Read at a pass's
    /// start and end, the difference holds the pass's own writes (ZFS would otherwise
    /// write them up to `zfs_txg_timeout`, 5 s, later, into the next pass) and the
    /// flushes of that one transaction-group sync. `None` when a disk cannot be read.
    pub fn sync_and_read(&self) -> Option<DevStat> {
        if let Err(e) = sync_argv(&self.pool).run() {
            crate::observe::warning!(
                "zvbench: warning: {e}: the pool's byte counts may miss this pass's last writes"
            );
        }
        sum_stats(self.disks.iter().map(|d| d.read().ok()))
    }
}

/// Counters of several disks added up; `None` if any is `None` (or there are none). Flush
/// counts only when every disk has them.
fn sum_stats(stats: impl IntoIterator<Item = Option<DevStat>>) -> Option<DevStat> {
    let mut total: Option<DevStat> = None;
    for s in stats {
        let s = s?;
        total = Some(match total {
            None => s,
            Some(t) => DevStat {
                read_ios: t.read_ios + s.read_ios,
                read_sectors: t.read_sectors + s.read_sectors,
                write_ios: t.write_ios + s.write_ios,
                write_sectors: t.write_sectors + s.write_sectors,
                flush_ios: t.flush_ios.zip(s.flush_ios).map(|(a, b)| a + b),
                flush_ticks_ms: t.flush_ticks_ms.zip(s.flush_ticks_ms).map(|(a, b)| a + b),
            },
        });
    }
    total
}

/// The dataset of the kernel ZFS file system holding `dir` (an absolute, resolved path),
/// from `/proc/self/mountinfo` text: the longest mount point above it, when its type is
/// `zfs` and its source a valid dataset name.
pub fn dataset_of_dir(mountinfo: &str, dir: &Path) -> Option<String> {
    let mut best: Option<(usize, &str, &str)> = None;
    for l in mountinfo.lines().take(100_000) {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|w| *w == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype), Some(source)) = (f.get(4), f.get(sep + 1), f.get(sep + 2))
        else {
            continue;
        };
        if dir.starts_with(mp) && best.is_none_or(|b| mp.len() > b.0) {
            best = Some((mp.len(), fstype, source));
        }
    }
    let (_, fstype, source) = best?;
    (fstype == "zfs" && check_dataset(source).is_ok()).then(|| source.to_string())
}

/// The pool of the kernel ZFS file system holding `dir` ([`dataset_of_dir`]).
pub fn pool_of_dir(mountinfo: &str, dir: &Path) -> Option<String> {
    dataset_of_dir(mountinfo, dir).and_then(|d| d.split('/').next().map(str::to_string))
}

/// The Linux device node of a zvol.
pub fn zvol_dev(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/zvol/{name}"))
}

nix::ioctl_read!(
    /// OpenZFS's `BLKZNAME` (include/sys/fs/zfs.h): `_IOR(0x12, 125, char[256])`, the
    /// dataset name of a zvol device; what udev's `zvol_id` asks to make `/dev/zvol/...`.
    blkzname,
    0x12,
    125,
    [u8; 256]
);

/// The dataset name behind a `/dev/zdN` device, by `BLKZNAME`.
fn zvol_name_of(dev: &Path) -> Option<String> {
    let f = std::fs::File::open(dev).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: the fd is open for the call's duration and `buf` is exactly the 256 bytes
    // the ioctl writes.
    unsafe { blkzname(std::os::fd::AsRawFd::as_raw_fd(&f), &mut buf) }.ok()?;
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// Whether a `/dev` entry is a whole zvol (`zd0`, `zd16`; not the partition `zd0p1`).
pub fn is_zvol_node(file: &str) -> bool {
    file.strip_prefix("zd")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The device of zvol `name`: the udev link `/dev/zvol/<name>` when it exists, else the
/// `/dev/zdN` that answers `name` to `BLKZNAME` (a host without udev has no link).
/// Waits up to `limit`; the error says what was looked for.
pub fn find_zvol(
    dev_root: &Path,
    name: &str,
    limit: std::time::Duration,
) -> Result<PathBuf, String> {
    let start = std::time::Instant::now();
    let link = dev_root.join("zvol").join(name);
    loop {
        if link.exists() {
            return Ok(link);
        }
        let nodes = std::fs::read_dir(dev_root).into_iter().flatten().flatten();
        for e in nodes {
            if is_zvol_node(&e.file_name().to_string_lossy())
                && zvol_name_of(&e.path()).as_deref() == Some(name)
            {
                return Ok(e.path());
            }
        }
        if start.elapsed() > limit {
            return Err(format!(
                "zvol {name} has no device after {} s: neither {} (made by udev with OpenZFS's \
                 zvol rule) nor a {}/zd* device naming it; is the zvol's volmode dev, and are \
                 zvols enabled (zvol_inhibit_dev=0)?",
                limit.as_secs(),
                link.display(),
                dev_root.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Reads a named counter from kstat text (`name type data` lines).
pub fn kstat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().take(10_000).find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.nth(1)?.parse().ok())?
    })
}

/// Where a dataset's ZIL commit count can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZilSource {
    /// The dataset's own objset kstat (OpenZFS 2.2+): exact.
    Objset(PathBuf),
    /// The global `/proc/spl/kstat/zfs/zil`: every dataset's commits.
    Global(PathBuf),
}

impl ZilSource {
    /// Finds the objset kstat whose `dataset_name` is `name` under `kstat_root`
    /// (normally `/proc/spl/kstat/zfs`), else the global zil kstat, else none.
    pub fn find(kstat_root: &Path, name: &str) -> Option<ZilSource> {
        let pool = name.split('/').next()?;
        if let Ok(rd) = std::fs::read_dir(kstat_root.join(pool)) {
            for e in rd.flatten() {
                let fname = e.file_name();
                if !fname.to_string_lossy().starts_with("objset-") {
                    continue;
                }
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    // OpenZFS 2.1's objset kstats name the dataset but count no ZIL
                    // commits: those fall back to the global kstat below.
                    let is_it = kstat_value(&text, "zil_commit_count").is_some()
                        && text.lines().any(|l| {
                            let mut it = l.split_whitespace();
                            it.next() == Some("dataset_name") && it.nth(1) == Some(name)
                        });
                    if is_it {
                        return Some(ZilSource::Objset(e.path()));
                    }
                }
            }
        }
        let g = kstat_root.join("zil");
        g.exists().then_some(ZilSource::Global(g))
    }

    /// How run.json names this source (`zil_source`).
    pub fn describe(source: Option<&ZilSource>) -> &'static str {
        match source {
            Some(ZilSource::Objset(_)) => "dataset",
            Some(ZilSource::Global(_)) => "pool-wide (all datasets)",
            None => "none",
        }
    }

    /// The current commit count.
    pub fn read(&self) -> Option<u64> {
        let path = match self {
            ZilSource::Objset(p) | ZilSource::Global(p) => p,
        };
        kstat_value(&std::fs::read_to_string(path).ok()?, "zil_commit_count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded argv for zvol creation, as OpenZFS's `zfs create` accepts it
    /// (`zfs create [-ps] [-b blocksize] [-o property=value]... -V size volume`).
    #[test]
    fn zvol_create_argv_matches_recording() {
        let props = vec![
            ("volblocksize".to_string(), "16K".to_string()),
            ("sync".to_string(), "always".to_string()),
        ];
        let a = create_zvol_argv("tank/zvbench/r1-zvol", 1 << 30, &props, "r1");
        assert_eq!(
            a.display(),
            "zfs create -V 1073741824 -o volblocksize=16K -o sync=always -o zvbench:run=r1 tank/zvbench/r1-zvol"
        );
        assert_eq!(
            destroy_argv("tank/zvbench/r1-zvol").display(),
            "zfs destroy -r tank/zvbench/r1-zvol"
        );
        assert_eq!(zvol_dev("tank/v"), PathBuf::from("/dev/zvol/tank/v"));
        assert_eq!(
            create_encrypted_parent_argv("tank/r1-z-enc", Path::new("/k/key"), "r1").display(),
            "zfs create -o canmount=off -o encryption=on -o keyformat=raw -o keylocation=file:///k/key -o zvbench:run=r1 tank/r1-z-enc"
        );
        assert_eq!(
            snapshot_clean_argv("tank/v").display(),
            "zfs snapshot tank/v@zvbench-clean"
        );
        assert_eq!(
            rollback_clean_argv("tank/v").display(),
            "zfs rollback -r tank/v@zvbench-clean"
        );
    }

    #[test]
    fn pool_of_a_directory_from_mountinfo() {
        let mi = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 22 0:50 / /var/tmp rw - tmpfs tmpfs rw
41 40 0:51 / /var/tmp/tank rw - zfs tank rw,xattr
42 41 0:52 / /var/tmp/tank/sub rw - zfs tank/sub rw,xattr
43 22 0:53 / /srv/fuse rw - fuse zfs-fuse rw
";
        let p = |d: &str| pool_of_dir(mi, Path::new(d));
        assert_eq!(p("/var/tmp/tank/sub/x").as_deref(), Some("tank"));
        assert_eq!(
            dataset_of_dir(mi, Path::new("/var/tmp/tank/sub/x")).as_deref(),
            Some("tank/sub")
        );
        assert_eq!(
            dataset_of_dir(mi, Path::new("/var/tmp/tank/y")).as_deref(),
            Some("tank")
        );
        assert_eq!(dataset_of_dir(mi, Path::new("/srv/fuse/a")), None);
        assert_eq!(p("/var/tmp/tank").as_deref(), Some("tank"));
        assert_eq!(p("/var/tmp/tankx"), None);
        assert_eq!(p("/var/tmp/other"), None);
        assert_eq!(p("/srv/fuse/a"), None);
        assert_eq!(p("/home"), None);
    }

    #[test]
    fn leaf_vdevs_from_status() {
        let s = "  pool: tank
 state: ONLINE
config:

\tNAME           STATE     READ WRITE CKSUM
\ttank           ONLINE       0     0     0
\t  mirror-0     ONLINE       0     0     0
\t    /dev/vda1  ONLINE       0     0     0
\t    /dev/vdb1  ONLINE       0     0     0
\tlogs
\t  /dev/vdc1    ONLINE       0     0     0
\t  /var/tmp/f   ONLINE       0     0     0

errors: No known data errors
";
        assert_eq!(
            leaf_vdevs(s),
            ["/dev/vda1", "/dev/vdb1", "/dev/vdc1"].map(PathBuf::from)
        );
        assert_eq!(status_argv("tank").display(), "zpool status -P -L tank");
    }

    /// A spare in use is listed twice, apart; two partitions of one disk may be apart too.
    #[test]
    fn repeated_vdevs_and_disks_count_once_even_when_not_adjacent() {
        let s = "config:

\tNAME             STATE     READ WRITE CKSUM
\ttank             DEGRADED     0     0     0
\t  mirror-0       DEGRADED     0     0     0
\t    spare-0      DEGRADED     0     0     0
\t      /dev/vda1  FAULTED      0     0     0
\t      /dev/vdc1  ONLINE       0     0     0
\t    /dev/vdb1    ONLINE       0     0     0
\t  /dev/vda2      ONLINE       0     0     0
\tspares
\t  /dev/vdc1      INUSE     currently in use
";
        assert_eq!(
            leaf_vdevs(s),
            ["/dev/vda1", "/dev/vdc1", "/dev/vdb1", "/dev/vda2"].map(PathBuf::from)
        );
        let disk = |p: &Path| Some(p.to_str()?.trim_end_matches(char::is_numeric).to_string());
        assert_eq!(leaf_disks(s, disk), ["/dev/vda", "/dev/vdc", "/dev/vdb"]);
    }

    #[test]
    fn vdev_counters_add_up_and_an_unreadable_disk_is_no_number() {
        let a = DevStat::parse("1 0 8 0 2 0 16 0 0 0 0 0 0 0 0 3 4").unwrap();
        let b = DevStat::parse("10 0 80 0 20 0 160 0 0 0 0 0 0 0 0 30 40").unwrap();
        let t = sum_stats([Some(a), Some(b)]).unwrap();
        assert_eq!(
            (t.read_ios, t.read_sectors, t.write_ios, t.write_sectors),
            (11, 88, 22, 176)
        );
        assert_eq!((t.flush_ios, t.flush_ticks_ms), (Some(33), Some(44)));
        let old = DevStat::parse("1 0 8 0 2 0 16 0 0 0 0").unwrap();
        assert_eq!(sum_stats([Some(a), Some(old)]).unwrap().flush_ios, None);
        assert_eq!(sum_stats([Some(a), None]), None);
        assert_eq!(sum_stats([]), None);
        assert_eq!(sync_argv("tank").display(), "zpool sync tank");
    }

    #[test]
    fn zvol_nodes_and_a_clear_error_when_none_appears() {
        assert!(is_zvol_node("zd0") && is_zvol_node("zd112"));
        for not in ["zd", "zd0p1", "zda", "vda", "zram0"] {
            assert!(!is_zvol_node(not), "{not}");
        }
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("zd0"), b"").unwrap();
        let e = find_zvol(dev.path(), "tank/v", std::time::Duration::ZERO).unwrap_err();
        assert!(
            e.contains("zvol tank/v has no device") && e.contains("udev"),
            "{e}"
        );
        std::fs::create_dir_all(dev.path().join("zvol/tank")).unwrap();
        std::fs::write(dev.path().join("zvol/tank/v"), b"").unwrap();
        assert_eq!(
            find_zvol(dev.path(), "tank/v", std::time::Duration::ZERO).unwrap(),
            dev.path().join("zvol/tank/v")
        );
    }

    #[test]
    fn tagged_list_skips_untagged_and_invalid_names() {
        let list = "tank\t-\ntank/zvbench/r1-zvol\tr1\ntank/zvbench\t-\nbad name\tr1\n";
        assert_eq!(
            parse_tagged(list),
            vec![("tank/zvbench/r1-zvol".to_string(), "r1".to_string())]
        );
    }

    #[test]
    fn kstats() {
        let text = "36 1 0x01 4 1088 1 2\nname                            type data\ndataset_name                    7    tank/v\nzil_commit_count                4    51\nzil_commit_writer_count         4    40\n";
        assert_eq!(kstat_value(text, "zil_commit_count"), Some(51));
        assert_eq!(kstat_value(text, "nope"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tank")).unwrap();
        std::fs::write(dir.path().join("tank/objset-0x36"), text).unwrap();
        std::fs::write(
            dir.path().join("tank/objset-0x37"),
            text.replace("tank/v", "tank/w"),
        )
        .unwrap();
        let s = ZilSource::find(dir.path(), "tank/v").unwrap();
        assert_eq!(s, ZilSource::Objset(dir.path().join("tank/objset-0x36")));
        assert_eq!(s.read(), Some(51));
        assert_eq!(ZilSource::find(dir.path(), "tank/x"), None);
        // 2.1: an objset kstat without zil_commit_count is not a source.
        std::fs::write(
            dir.path().join("tank/objset-0x38"),
            "dataset_name 7 tank/old\nwrites 4 3\n",
        )
        .unwrap();
        assert_eq!(ZilSource::find(dir.path(), "tank/old"), None);
        std::fs::write(dir.path().join("zil"), "zil_commit_count 4 9\n").unwrap();
        assert_eq!(
            ZilSource::find(dir.path(), "tank/x").unwrap().read(),
            Some(9)
        );
    }
}
