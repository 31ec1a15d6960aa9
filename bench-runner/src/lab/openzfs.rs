//! OpenZFS for the lab: kernel modules built from Debian's `zfs-dkms` for exactly the
//! guest kernel zvbench fetched, and the userland (`zfsutils-linux` and its libraries)
//! unpacked beside them. Nothing is installed on the host: `zfsutils-linux` conflicts with
//! `zfs-fuse`, which the host's tests use. Everything lands in
//! `<cache>/openzfs/<Debian version>/<kernel release>/`, built once and reused.

use crate::cmd::Argv;
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which OpenZFS the lab runs: Debian 12's own, or bookworm-backports'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Branch {
    /// OpenZFS 2.3 from bookworm-backports (contrib).
    #[value(name = "2.3")]
    V2_3,
    /// OpenZFS 2.1 from bookworm (contrib).
    #[value(name = "2.1")]
    V2_1,
}

impl Branch {
    /// The Debian suite that carries this branch.
    pub fn suite(self) -> &'static str {
        match self {
            Branch::V2_3 => "bookworm-backports",
            Branch::V2_1 => "bookworm",
        }
    }

    /// The upstream version prefix, e.g. `2.3.`.
    fn prefix(self) -> &'static str {
        match self {
            Branch::V2_3 => "2.3.",
            Branch::V2_1 => "2.1.",
        }
    }
}

/// A built OpenZFS: modules for one kernel and the userland of the same version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Debian's package version, e.g. `2.3.2-2~bpo12+2`.
    pub version: String,
    /// The modules in load order (`spl.ko` … `zfs.ko`; 2.1 also builds icp, zcommon,
    /// znvpair, …), debug info stripped.
    pub modules: Vec<PathBuf>,
    /// The unpacked `zfsutils-linux` and libraries (`sbin/zfs`, `lib/x86_64-linux-gnu/…`).
    pub userland: PathBuf,
}

impl Build {
    fn at(dir: &Path, version: &str) -> Option<Build> {
        let order = std::fs::read_to_string(dir.join("modules/order"))
            .unwrap_or_else(|_| "spl\nzfs\n".into());
        let modules: Vec<PathBuf> = order
            .lines()
            .map(|n| dir.join("modules").join(format!("{n}.ko")))
            .collect();
        let userland = dir.join("userland");
        let complete = modules.iter().all(|m| m.exists())
            && modules.last().is_some_and(|m| m.ends_with("zfs.ko"));
        (dir.join("done").exists() && complete).then(|| Build {
            version: version.to_string(),
            modules,
            userland,
        })
    }
}

/// A name that is safe as an apt package, version or path component.
fn checked(what: &str, s: &str) -> Result<String> {
    if s.is_empty()
        || s.len() > 128
        || s.starts_with(['-', '.'])
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-~_:".contains(c))
    {
        bail!("unexpected {what} {s:?} from apt");
    }
    Ok(s.to_string())
}

/// The version of `pkg` that `suite` offers, from `apt-cache madison` output.
pub fn madison_version(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split('|').map(str::trim);
        let (_, ver, src) = (f.next()?, f.next()?, f.next()?);
        let dist = src.split_whitespace().nth(1)?;
        (dist.split('/').next()? == suite).then(|| ver.to_string())
    })
}

/// The first `Version:` of an `apt-cache show` stanza list.
pub fn show_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_string())
}

/// The OpenZFS libraries `zfsutils-linux` depends on, from `apt-cache depends` output.
pub fn zfs_libraries(depends: &str) -> Vec<String> {
    let mut v: Vec<String> = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .filter(|p| {
            ["libzfs", "libnvpair", "libuutil", "libzpool"]
                .iter()
                .any(|s| p.starts_with(s))
                && p.ends_with("linux")
        })
        .map(String::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The Debian packages of a kernel's build tree: `(amd64 headers, common headers, kbuild)`
/// for a release such as `6.1.0-56-amd64`.
pub fn header_packages(release: &str) -> Result<(String, String, String)> {
    let base = release
        .strip_suffix("-amd64")
        .with_context(|| format!("kernel release {release} is not a Debian -amd64 kernel"))?;
    let mut it = base.split('.');
    let (major, minor) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    if major.is_empty() || minor.is_empty() {
        bail!("kernel release {release} has no major.minor version");
    }
    Ok((
        format!("linux-headers-{release}"),
        format!("linux-headers-{base}-common"),
        format!("linux-kbuild-{major}.{minor}"),
    ))
}

/// A build already in the cache for `release` and `branch` (the newest version), found
/// without apt so that a second run works offline.
fn cached(root: &Path, release: &str, branch: Branch) -> Option<Build> {
    let mut found: Vec<(String, Build)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().into_owned();
            let b = v
                .starts_with(branch.prefix())
                .then(|| Build::at(&e.path().join(release), &v))??;
            Some((v, b))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.pop().map(|(_, b)| b)
}

/// The cached OpenZFS for `release`, built first when missing (its output goes to
/// `build.log` beside it); the cache is locked so that parallel callers build once.
pub fn ensure(cache: &Path, release: &str, branch: Branch, stop: &Interrupt) -> Result<Build> {
    let release = checked("kernel release", release)?;
    let root = cache.join("openzfs");
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let lock_file = std::fs::File::create(root.join(".lock"))
        .with_context(|| format!("create {}", root.join(".lock").display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("lock the OpenZFS cache")?;
    if let Some(b) = cached(&root, &release, branch) {
        return Ok(b);
    }
    let madison = Argv::new(["apt-cache", "madison", "zfs-dkms"]).stdout()?;
    let version = madison_version(&madison, branch.suite()).with_context(|| {
        format!(
            "apt knows no zfs-dkms in {}/contrib; run scripts/install-deps (it adds contrib \
             to the apt sources and runs apt-get update)",
            branch.suite()
        )
    })?;
    let version = checked("zfs-dkms version", &version)?;
    let dir = root.join(&version).join(&release);
    let staging = root.join(&version).join(format!("{release}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("create {}", staging.display()))?;
    let start = Instant::now();
    crate::observe::note!(
        "zvbench: building OpenZFS {version} for kernel {release} into {} (once; about 10 min on 2 cores)",
        dir.display()
    );
    let result = build(&staging, &release, &version, stop);
    if let Err(e) = result {
        let kept = root.join("last-failure.log");
        let _ = std::fs::copy(staging.join("build.log"), &kept);
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context(format!(
            "building OpenZFS {version} for {release} (log: {})",
            kept.display()
        )));
    }
    let secs = start.elapsed().as_secs_f64();
    std::fs::write(
        staging.join("done"),
        serde_json::json!({ "openzfs": version, "kernel": release, "build_s": secs }).to_string(),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("rename {} to {}", staging.display(), dir.display()))?;
    crate::observe::note!("zvbench: OpenZFS {version} built in {secs:.0} s");
    Build::at(&dir, &version).context("the finished build has no spl.ko and zfs.ko")
}

/// Downloads, unpacks, configures and compiles into `dir` (`debs/`, `src/`, `userland/`,
/// `modules/`, `build.log`); the kernel sources are removed at the end.
fn build(dir: &Path, release: &str, version: &str, stop: &Interrupt) -> Result<()> {
    let (headers, common, kbuild) = header_packages(release)?;
    let debs = dir.join("debs");
    download(&debs, release, version, (&headers, &common, &kbuild))?;
    let (src, userland) = (dir.join("src"), dir.join("userland"));
    for e in std::fs::read_dir(&debs)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let to = if name.starts_with("zfsutils-linux_") || name.starts_with("lib") {
            &userland
        } else {
            &src
        };
        Argv::new([
            "dpkg".as_ref(),
            "-x".as_ref(),
            e.path().as_os_str(),
            to.as_os_str(),
        ])
        .run()?;
    }
    let usr_src = src.join("usr/src");
    let obj = usr_src.join(format!("linux-headers-{release}"));
    let common_dir = usr_src.join(&common);
    // The flavour's Makefile includes the common tree by its absolute /usr/src path.
    let mk = obj.join("Makefile");
    let text = std::fs::read_to_string(&mk).with_context(|| format!("read {}", mk.display()))?;
    std::fs::write(&mk, retarget_include(&text, &common_dir))?;
    let zfs_src = std::fs::read_dir(&usr_src)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zfs-"))
        })
        .context("zfs-dkms has no /usr/src/zfs-*")?;
    compile(dir, &zfs_src, &common_dir, &obj, stop)?;
    install_modules(dir, &zfs_src)?;
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&debs);
    Ok(())
}

/// `apt-get download`s into `debs` zfs-dkms, zfsutils-linux and its libraries at `version`,
/// and the kernel's build tree (`headers`: amd64 headers, common headers, kbuild) at the
/// version apt has for them.
fn download(debs: &Path, release: &str, version: &str, headers: (&str, &str, &str)) -> Result<()> {
    let (headers, common, kbuild) = headers;
    let kver = Argv::new(["apt-cache", "show", headers])
        .stdout()
        .ok()
        .and_then(|t| show_version(&t))
        .with_context(|| {
            format!(
                "apt has no {headers} for the cached guest kernel {release}; the archive moved on: \
                 delete the kernel cache (~/.cache/zvbench/kernel) to fetch the current kernel"
            )
        })?;
    let kver = checked("kernel headers version", &kver)?;
    let depends =
        Argv::new(["apt-cache", "depends", &format!("zfsutils-linux={version}")]).stdout()?;
    let mut pkgs = vec![
        format!("zfs-dkms={version}"),
        format!("zfsutils-linux={version}"),
        format!("{headers}={kver}"),
        format!("{common}={kver}"),
        format!("{kbuild}={kver}"),
    ];
    pkgs.extend(
        zfs_libraries(&depends)
            .into_iter()
            .map(|l| format!("{l}={version}")),
    );
    std::fs::create_dir_all(debs)?;
    let mut dl = Argv::new(["apt-get", "download", "-q"]);
    dl.0.extend(pkgs.iter().map(Into::into));
    let out = dl
        .command()
        .current_dir(debs)
        .output()
        .context("run apt-get download")?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            dl.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `./configure` and `make` in `zfs_src` against the kernel tree, their output in
/// `dir/build.log`; a signal ends make's whole process group.
fn compile(
    dir: &Path,
    zfs_src: &Path,
    common_dir: &Path,
    obj: &Path,
    stop: &Interrupt,
) -> Result<()> {
    let log = dir.join("build.log");
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let steps = [
        Argv::new([
            "./configure".to_string(),
            "--with-config=kernel".into(),
            format!("--with-linux={}", common_dir.display()),
            format!("--with-linux-obj={}", obj.display()),
        ]),
        Argv::new(["make".to_string(), format!("-j{jobs}")]),
    ];
    for step in steps {
        step.run_logged(zfs_src, &log, &|| stop.is_set())?;
    }
    Ok(())
}

/// The built modules stripped into `dir/modules`, with their load order (`modules/order`).
fn install_modules(dir: &Path, zfs_src: &Path) -> Result<()> {
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules)?;
    let mut deps = Vec::new();
    for built in find_modules(&zfs_src.join("module"), 4) {
        let name = zvbench_agent::init::module_name(&built.to_string_lossy());
        let stripped = modules.join(format!("{name}.ko"));
        Argv::new([
            "strip".as_ref(),
            "--strip-debug".as_ref(),
            "-o".as_ref(),
            stripped.as_os_str(),
            built.as_os_str(),
        ])
        .run()?;
        let d = Argv::new([
            "modinfo".as_ref(),
            "-F".as_ref(),
            "depends".as_ref(),
            built.as_os_str(),
        ])
        .stdout()?;
        deps.push((name, super::vm::depends_names(&d)));
    }
    let order = load_order(&deps)
        .context("make produced no zfs.ko, or modules that depend on each other in a cycle")?;
    std::fs::write(modules.join("order"), order.join("\n") + "\n")?;
    Ok(())
}

/// The flavour Makefile with its `include /usr/src/...-common/Makefile` pointed at `common`.
pub fn retarget_include(makefile: &str, common: &Path) -> String {
    makefile
        .lines()
        .map(|l| match l.strip_prefix("include /usr/src/") {
            Some(rest) if rest.ends_with("/Makefile") => {
                format!("include {}/Makefile", common.display())
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Every `.ko` file under `dir`, `depth` levels down at most.
fn find_modules(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "ko") && p.is_file() {
            out.push(p);
        } else if p.is_dir() && depth > 0 {
            out.extend(find_modules(&p, depth - 1));
        }
    }
    out.sort();
    out
}

/// The built modules in load order, each after the built modules it depends on (kernel
/// modules it needs are loaded before all of them), ending with `zfs`. `None` without a
/// `zfs` module or with a dependency cycle.
pub fn load_order(deps: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < deps.len() {
        let next = deps.iter().find(|(n, ds)| {
            !order.contains(n)
                && ds
                    .iter()
                    .all(|d| order.contains(d) || !deps.iter().any(|(m, _)| m == d))
        })?;
        order.push(next.0.clone());
    }
    order.retain(|n| n != "zfs");
    deps.iter().any(|(n, _)| n == "zfs").then(|| {
        order.push("zfs".into());
        order
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_picks_the_suite() {
        let t = " zfs-dkms | 2.3.2-2~bpo12+2 | http://deb.debian.org/debian bookworm-backports/contrib amd64 Packages
  zfs-dkms | 2.1.11-1+deb12u1 | http://deb.debian.org/debian bookworm/contrib amd64 Packages
";
        assert_eq!(
            madison_version(t, "bookworm").as_deref(),
            Some("2.1.11-1+deb12u1")
        );
        assert_eq!(
            madison_version(t, "bookworm-backports").as_deref(),
            Some("2.3.2-2~bpo12+2")
        );
        assert_eq!(madison_version(t, "trixie"), None);
        assert_eq!(madison_version("", "bookworm"), None);
    }

    #[test]
    fn header_packages_for_a_release() {
        assert_eq!(
            header_packages("6.1.0-56-amd64").unwrap(),
            (
                "linux-headers-6.1.0-56-amd64".into(),
                "linux-headers-6.1.0-56-common".into(),
                "linux-kbuild-6.1".into()
            )
        );
        assert!(header_packages("6.18.44-fc").is_err());
    }

    #[test]
    fn libraries_from_depends() {
        let d = "zfsutils-linux\n  PreDepends: init-system-helpers\n  Depends: libnvpair3linux\n  Depends: libuutil3linux\n  Depends: libzfs6linux\n  Depends: libzpool6linux\n  Depends: python3\n  Depends: libblkid1\n";
        assert_eq!(
            zfs_libraries(d),
            [
                "libnvpair3linux",
                "libuutil3linux",
                "libzfs6linux",
                "libzpool6linux"
            ]
        );
    }

    #[test]
    fn include_is_retargeted_and_the_rest_kept() {
        let mk = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\noverride ARCH = x86\n";
        assert_eq!(
            retarget_include(mk, Path::new("/c/h-common")),
            "include /c/h-common/Makefile\noverride ARCH = x86\n"
        );
    }

    #[test]
    fn module_load_order() {
        let d = |n: &str, ds: &[&str]| (n.to_string(), ds.iter().map(|s| s.to_string()).collect());
        // OpenZFS 2.1: zfs on top of seven helpers; spl first; kernel modules ignored.
        let got = load_order(&[
            d(
                "zfs",
                &[
                    "zunicode", "zzstd", "zlua", "zcommon", "icp", "znvpair", "zavl", "spl",
                ],
            ),
            d("icp", &["spl"]),
            d("zcommon", &["znvpair", "spl"]),
            d("znvpair", &["spl"]),
            d("zavl", &["spl"]),
            d("zunicode", &["spl"]),
            d("zlua", &[]),
            d("zzstd", &["zlib_deflate"]),
            d("spl", &[]),
        ])
        .unwrap();
        let pos = |n: &str| got.iter().position(|x| x == n).unwrap();
        assert_eq!(got.len(), 9);
        assert_eq!(got.last().unwrap(), "zfs");
        assert!(pos("spl") < pos("icp") && pos("znvpair") < pos("zcommon"));
        // 2.3: two modules.
        assert_eq!(
            load_order(&[d("zfs", &["spl"]), d("spl", &[])]).unwrap(),
            ["spl", "zfs"]
        );
        assert_eq!(load_order(&[d("spl", &[])]), None);
        assert_eq!(
            load_order(&[d("a", &["b"]), d("b", &["a"]), d("zfs", &[])]),
            None
        );
    }

    #[test]
    fn apt_words_are_checked() {
        assert!(checked("v", "2.3.2-2~bpo12+2").is_ok());
        for bad in ["", "-x", "a b", "../x", "a/b", "a;b"] {
            assert!(checked("v", bad).is_err(), "{bad:?}");
        }
    }
}
