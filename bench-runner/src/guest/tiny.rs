//! zvbench's minimal guest kernel: Debian's own `linux-source-6.1`, configured with `make
//! tinyconfig` plus the fragment `tiny.config` (what the agent and the four buses need,
//! built in but for AHCI), built once into `<cache>/kernel/tiny-<source version>-<fragment
//! CRC-32>/`. Under TCG nested in a TCG VM most of a boot is translating kernel code that runs
//! once, so a kernel that runs less distinct code at boot boots faster.

use crate::cmd::Argv;
use crate::guest::kernel::GuestKernel;
use crate::guest::vmlinux::{has_pvh_note, DirectBoot};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The config fragment laid over `make tinyconfig`.
pub const FRAGMENT: &str = include_str!("tiny.config");

/// Debian's kernel source package of the guest kernel's series.
const SOURCE_PACKAGE: &str = "linux-source-6.1";

/// The cache directory's name for a build of `version` with [`FRAGMENT`]: a changed
/// fragment gets a new build.
pub fn dir_name(version: &str) -> String {
    format!(
        "tiny-{version}-{:08x}",
        crc32fast::hash(FRAGMENT.as_bytes())
    )
}

/// The options the fragment sets, each as `(name, value)`: `CONFIG_X=value` lines, and
/// `# CONFIG_X is not set` lines as value `n`.
pub fn fragment_options(fragment: &str) -> Vec<(&str, &str)> {
    fragment
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.strip_prefix("# ") {
                Some(c) => Some((c.strip_suffix(" is not set")?, "n")),
                None => l.split_once('='),
            }
        })
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .collect()
}

/// The fragment's options that the final `.config` does not have as asked (Kconfig drops
/// an option whose dependencies are unmet, and keeps one that another selects, silently):
/// their names. An option asked off may be absent or `is not set`.
pub fn unmet_options<'a>(fragment: &'a str, config: &str) -> Vec<&'a str> {
    fragment_options(fragment)
        .into_iter()
        .filter(|(k, v)| {
            let set = config
                .lines()
                .find_map(|l| l.strip_prefix(*k)?.strip_prefix('='));
            match (*v, set) {
                ("n", s) => s.is_some(),
                (v, s) => s != Some(v),
            }
        })
        .map(|(k, _)| k)
        .collect()
}

/// The version in a `apt-get download` file name, `<package>_<version>_<arch>.deb`,
/// checked to be safe as a path component.
pub fn deb_version(file_name: &str) -> Option<&str> {
    let v = file_name
        .strip_suffix(".deb")?
        .split('_')
        .nth(1)
        .filter(|v| !v.is_empty() && v.len() <= 64)?;
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c))
        .then_some(v)
}

/// The kernel in a finished build directory (`done` written last), if any.
fn at(dir: &Path) -> Option<GuestKernel> {
    if !dir.join("done").exists() {
        return None;
    }
    let modules = std::fs::read_dir(dir.join("lib/modules"))
        .ok()?
        .flatten()
        .next()?
        .path();
    Some(GuestKernel {
        image: dir.join("bzImage"),
        modules,
        source: "tiny-build".into(),
        direct: DirectBoot::Pvh {
            vmlinux: dir.join("vmlinux"),
        },
    })
}

/// The newest finished build of the current fragment in `kernel_dir`, found without apt
/// or a lock so that a read-only cache (the lab VM's view of the host's) works.
fn cached(kernel_dir: &Path) -> Option<GuestKernel> {
    let suffix = dir_name("").trim_start_matches("tiny-").to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(kernel_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("tiny-") && n.ends_with(&suffix)
            })
        })
        .collect();
    found.sort();
    found.iter().rev().find_map(|d| at(d))
}

/// The minimal kernel, built first when missing (about 10 minutes on 2 cores; output in
/// `build.log` beside it, kept as `tiny-last-failure.log` when the build fails). The cache
/// is locked so that parallel callers build once; `stopped()` turning true ends the build.
pub fn ensure(cache: &Path, stopped: &dyn Fn() -> bool) -> Result<GuestKernel> {
    let kernel_dir = cache.join("kernel");
    if let Some(k) = cached(&kernel_dir) {
        return Ok(k);
    }
    std::fs::create_dir_all(&kernel_dir)
        .with_context(|| format!("create {}", kernel_dir.display()))?;
    let lock_path = kernel_dir.join("tiny.lock");
    let lock_file = std::fs::File::create(&lock_path)
        .with_context(|| format!("create {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("lock the kernel cache")?;
    if let Some(k) = cached(&kernel_dir) {
        return Ok(k);
    }
    let staging = kernel_dir.join("tiny.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("create {}", staging.display()))?;
    let start = Instant::now();
    crate::observe::note!(
        "zvbench: building the minimal guest kernel from Debian's {SOURCE_PACKAGE} into {} (once; about 10 min on 2 cores)",
        kernel_dir.display()
    );
    let version = match build(&staging, stopped) {
        Ok(v) => v,
        Err(e) => {
            let kept = kernel_dir.join("tiny-last-failure.log");
            let _ = std::fs::copy(staging.join("build.log"), &kept);
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.context(format!(
                "building the minimal guest kernel (log: {})",
                kept.display()
            )));
        }
    };
    let secs = start.elapsed().as_secs_f64();
    std::fs::write(
        staging.join("done"),
        serde_json::json!({ "source": SOURCE_PACKAGE, "version": version, "build_s": secs })
            .to_string(),
    )?;
    let dir = kernel_dir.join(dir_name(&version));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("rename {} to {}", staging.display(), dir.display()))?;
    crate::observe::note!("zvbench: minimal guest kernel {version} built in {secs:.0} s");
    at(&dir).context("the finished kernel build is incomplete")
}

/// Downloads, unpacks, configures and builds into `dir`, leaving `bzImage`, `vmlinux`,
/// `lib/modules/<release>/` (the few modules, `modules.dep`, `modules.builtin`), `config`
/// and `build.log`; returns the source version.
fn build(dir: &Path, stopped: &dyn Fn() -> bool) -> Result<String> {
    let log = dir.join("build.log");
    Argv::new(["apt-get", "download", "-q", SOURCE_PACKAGE])
        .command()
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .context("run apt-get download")?;
    let deb = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(SOURCE_PACKAGE) && n.ends_with(".deb"))
        .with_context(|| {
            format!("apt-get download {SOURCE_PACKAGE} gave no .deb; run apt-get update")
        })?;
    let version = deb_version(&deb)
        .with_context(|| format!("unexpected package file name {deb:?}"))?
        .to_string();
    let (pkg, obj) = (dir.join("pkg"), dir.join("build"));
    Argv::new([
        "dpkg".as_ref(),
        "-x".as_ref(),
        dir.join(&deb).as_os_str(),
        pkg.as_os_str(),
    ])
    .run()?;
    let tarball = pkg.join(format!("usr/src/{SOURCE_PACKAGE}.tar.xz"));
    Argv::new([
        "tar".as_ref(),
        "-xf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        dir.as_os_str(),
    ])
    .run_logged(dir, &log, stopped)?;
    let _ = std::fs::remove_dir_all(&pkg);
    let _ = std::fs::remove_file(dir.join(&deb));
    let src = dir.join(SOURCE_PACKAGE);
    let make = |target: &str| make_argv(&obj, target);
    configure(dir, &src, &obj, stopped)
        .with_context(|| format!("configuring {SOURCE_PACKAGE} {version}"))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    for target in ["bzImage", "modules"] {
        let mut step = make(target);
        step.0.push(format!("-j{jobs}").into());
        step.run_logged(&src, &log, stopped)?;
    }
    let mut install = make("modules_install");
    install
        .0
        .push(format!("INSTALL_MOD_PATH={}", dir.display()).into());
    install.0.push("INSTALL_MOD_STRIP=1".into());
    install.run_logged(&src, &log, stopped)?;
    let release = std::fs::read_to_string(obj.join("include/config/kernel.release"))
        .context("the build wrote no kernel.release")?;
    let release = deb_version(&format!("x_{}_x.deb", release.trim()))
        .context("unexpected kernel release")?
        .to_string();
    let modules = dir.join("lib/modules").join(&release);
    if !modules.join("modules.dep").exists() {
        bail!(
            "make modules_install left no {}/modules.dep",
            modules.display()
        );
    }
    // Links into the build tree, which is removed below.
    for link in ["build", "source"] {
        let _ = std::fs::remove_file(modules.join(link));
    }
    let vmlinux = std::fs::read(obj.join("vmlinux")).context("the build made no vmlinux")?;
    if !has_pvh_note(&vmlinux).unwrap_or(false) {
        bail!("the built vmlinux has no PVH entry note: CONFIG_PVH did not take");
    }
    std::fs::write(dir.join("vmlinux"), &vmlinux)?;
    std::fs::copy(obj.join("arch/x86/boot/bzImage"), dir.join("bzImage"))?;
    std::fs::copy(obj.join(".config"), dir.join("config"))?;
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&obj);
    Ok(version)
}

/// `make ARCH=x86_64 O=<obj> <target>`.
fn make_argv(obj: &Path, target: &str) -> Argv {
    let mut a = Argv::new(["make".to_string(), "ARCH=x86_64".into()]);
    a.0.push(format!("O={}", obj.display()).into());
    a.0.push(target.into());
    a
}

/// `make tinyconfig` in `obj`, the fragment merged over it and `make olddefconfig`; fails
/// naming every option of the fragment the final `.config` does not have as asked.
fn configure(dir: &Path, src: &Path, obj: &Path, stopped: &dyn Fn() -> bool) -> Result<()> {
    let log = dir.join("build.log");
    let fragment = dir.join("tiny.config");
    std::fs::write(&fragment, FRAGMENT)?;
    make_argv(obj, "tinyconfig").run_logged(src, &log, stopped)?;
    Argv::new([
        src.join("scripts/kconfig/merge_config.sh").as_os_str(),
        "-m".as_ref(),
        "-O".as_ref(),
        obj.as_os_str(),
        obj.join(".config").as_os_str(),
        fragment.as_os_str(),
    ])
    .run_logged(src, &log, stopped)?;
    make_argv(obj, "olddefconfig").run_logged(src, &log, stopped)?;
    let config = std::fs::read_to_string(obj.join(".config"))?;
    let unmet = unmet_options(FRAGMENT, &config);
    if !unmet.is_empty() {
        bail!(
            "Kconfig did not take {} as the fragment asks (unmet dependencies, or selected by another option): fix bench-runner/src/guest/tiny.config",
            unmet.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fragment_option_is_checked_in_the_config() {
        let frag = "# c\nCONFIG_PVH=y\nCONFIG_NR_CPUS=8\n";
        let cfg = "CONFIG_PVH=y\nCONFIG_NR_CPUS=64\n";
        assert_eq!(unmet_options(frag, cfg), ["CONFIG_NR_CPUS"]);
        assert_eq!(unmet_options(frag, "# CONFIG_PVH is not set\n").len(), 2);
        assert!(unmet_options(frag, "CONFIG_PVH=y\nCONFIG_NR_CPUS=8\n").is_empty());
        let off = "# CONFIG_VT is not set\n";
        assert_eq!(fragment_options(off), [("CONFIG_VT", "n")]);
        assert_eq!(unmet_options(off, "CONFIG_VT=y\n"), ["CONFIG_VT"]);
        assert!(unmet_options(off, "# CONFIG_VT is not set\n").is_empty());
        assert!(unmet_options(off, "CONFIG_VT_CONSOLE=y\n").is_empty());
        assert!(fragment_options(FRAGMENT).contains(&("CONFIG_PVH", "y")));
    }

    #[test]
    fn versions_come_from_safe_file_names() {
        assert_eq!(
            deb_version("linux-source-6.1_6.1.192-2_all.deb"),
            Some("6.1.192-2")
        );
        assert_eq!(deb_version("linux-source-6.1_../x_all.deb"), None);
        assert_eq!(deb_version("linux-source-6.1.tar.xz"), None);
        assert!(dir_name("6.1.192-2").starts_with("tiny-6.1.192-2-"));
    }
}
