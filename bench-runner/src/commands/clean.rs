//! `zvbench clean`: removes what dead runs left, and only that. A run is alive while its
//! lock is held ([`crate::host::owner`]); nothing of a live run is touched. A dead run's recorded
//! objects go first (a loop device only while it still backs the recorded file, by device
//! and inode); then files whose whole name is one zvbench generates; then QEMU processes
//! named for a dead run; then (without `--dir`) tagged datasets and VirtualBox VMs. Every
//! outcome is reported as it really was: a failed removal is a failure.

use crate::host::loopdev;
use crate::host::owner::{self, generated_file, FoundRun, Owned};
use crate::host::storage::Teardown;
use crate::host::zfs;
use crate::hypervisor::vbox::{self, VBoxManage};
use crate::hypervisor::{is_ours, run_of};
use std::collections::HashSet;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What `clean` looks at.
pub struct Scope {
    /// Directories holding zvbench's files.
    pub dirs: Vec<PathBuf>,
    /// Only what is tied to `dirs` (`--dir`): dead runs with a file there, and their QEMU.
    /// Otherwise also every dead run, orphaned QEMU, tagged dataset and VirtualBox VM.
    pub only_dirs: bool,
    /// The runtime directory of run locks.
    pub runtime: PathBuf,
    /// The VBoxManage whose leftover VMs go too (not with `only_dirs`); `None`: no
    /// VirtualBox here.
    pub vboxmanage: Option<VBoxManage>,
}

/// One thing `clean` did or did not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Removed, detached, stopped or destroyed.
    Done(String),
    /// Could not be removed.
    Failed(String),
    /// Left alone: a live run uses it.
    InUse(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(s) => write!(f, "{s}"),
            Outcome::Failed(s) => write!(f, "FAILED: {s}"),
            Outcome::InUse(s) => write!(f, "left alone: {s}"),
        }
    }
}

fn outcome(what: String, r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Done(what),
        Err(e) => Outcome::Failed(format!("{what}: {e}")),
    }
}

fn under(path: &Path, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| path.starts_with(d))
}

/// Removes what dead runs left within `scope`.
pub fn clean(scope: &Scope) -> Vec<Outcome> {
    let runs = owner::scan(&scope.runtime);
    let live: HashSet<String> = runs
        .iter()
        .filter(|r| r.alive())
        .map(|r| r.run_id.clone())
        .collect();
    let mut out = Vec::new();
    let mut qemus = qemu_processes();
    let mut dead_ids = HashSet::new();
    for run in runs.into_iter().filter(|r| !r.alive()) {
        let in_scope = !scope.only_dirs
            || run.owned.iter().any(|o| match o {
                Owned::File { path } => under(path, &scope.dirs),
                Owned::Loop(l) => under(&l.backing, &scope.dirs),
                Owned::Dataset { .. } => false,
            });
        if in_scope {
            dead_ids.insert(run.run_id.clone());
            // QEMU first: it holds the loop devices and files.
            stop_qemu(&mut qemus, |id| id == run.run_id, &mut out);
            clean_run(run, &mut out);
        }
    }
    dead_write_logs(
        &std::fs::read_to_string("/proc/self/mounts").unwrap_or_default(),
        scope,
        &mut out,
    );
    let is_live = |id: &str| live.contains(id);
    for dir in &scope.dirs {
        clean_dir(dir, &is_live, &mut out);
    }
    if scope.only_dirs {
        return out;
    }
    stop_qemu(&mut qemus, |id| !is_live(id), &mut out);
    if let Ok(list) = zfs::list_tagged_argv("volume,filesystem").stdout() {
        for (name, tag) in zfs::parse_tagged(&list) {
            // A child (a zvol under its encrypted parent) goes with its parent's `destroy -r`.
            if zfs::exists_argv(&name).run().is_err() {
                continue;
            }
            if is_live(&tag) {
                out.push(Outcome::InUse(format!("{name}: run {tag} is running")));
            } else {
                let r = Teardown::DestroyDataset(name.clone()).try_run();
                out.push(outcome(format!("destroyed {name} (run {tag})"), r));
            }
        }
    }
    if let Some(vbox) = &scope.vboxmanage {
        out.extend(vbox_vms(vbox, &|vm| run_of(vm).is_some_and(is_live)));
    }
    out
}

/// The FUSE write logs of power cuts ([`crate::writelog`], file system name
/// `zvbench-writelog`) whose zvbench died (`kill -9`): the mount answers ENOTCONN once its
/// server is gone, and is detached and its directory removed. A mount that still answers
/// belongs to a running zvbench and is left alone. `mounts` is `/proc/self/mounts`; with
/// `--dir`, only mounts below those directories count.
fn dead_write_logs(mounts: &str, scope: &Scope, out: &mut Vec<Outcome>) {
    for dir in write_log_mounts(mounts) {
        if scope.only_dirs && !under(&dir, &scope.dirs) {
            continue;
        }
        match std::fs::metadata(&dir) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                let r = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| e.to_string())
                    .and_then(|()| std::fs::remove_dir(&dir).map_err(|e| e.to_string()));
                out.push(outcome(
                    format!("unmounted the dead write log {}", dir.display()),
                    r,
                ));
            }
            _ => out.push(Outcome::InUse(format!(
                "write log {}: its zvbench is running",
                dir.display()
            ))),
        }
    }
}

/// The mount points of `zvbench-writelog` file systems in a mounts table (octal escapes
/// such as `\040` for a space decoded).
fn write_log_mounts(mounts: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let unescape = |s: &str| {
        let b = s.as_bytes();
        let mut v = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let oct = b
                .get(i + 1..i + 4)
                .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
            match oct {
                Some(d) => {
                    v.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                    i += 4;
                }
                None => {
                    v.push(b[i]);
                    i += 1;
                }
            }
        }
        PathBuf::from(std::ffi::OsString::from_vec(v))
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            (f.next()? == crate::writelog::FS_NAME).then(|| f.next().map(unescape))?
        })
        .collect()
}

/// VirtualBox: powers off and unregisters (deleting their files and the media attached,
/// which zvbench created) the VMs an interrupted run left, except those whose run `live`
/// says is running.
pub fn vbox_vms(vbox: &VBoxManage, live: &dyn Fn(&str) -> bool) -> Vec<Outcome> {
    let Ok(list) = vbox.list_vms().stdout() else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for vm in vbox::parse_vm_list(&list)
        .into_iter()
        .filter(|v| is_ours(v))
    {
        if live(vm) {
            done.push(Outcome::InUse(format!(
                "VirtualBox VM {vm}: its run is running"
            )));
            continue;
        }
        let _ = vbox.poweroff(vm).run();
        done.push(match vbox.unregistervm(vm).run() {
            Ok(_) => Outcome::Done(format!("unregistered and deleted VirtualBox VM {vm}")),
            Err(e) => Outcome::Failed(format!("could not remove VirtualBox VM {vm}: {e}")),
        });
    }
    done
}

/// `zvbench clean`'s arguments.
#[derive(clap::Args)]
pub struct CleanArgs {
    /// Only what runs left in these directories (repeatable); without it: everything
    /// of dead runs, and zvbench's files in /var/tmp/zvbench.
    #[arg(long = "dir")]
    pub dirs: Vec<PathBuf>,
}

/// `zvbench clean`: prints each outcome; exit status 1 if something could not be removed.
pub fn command(a: CleanArgs) -> i32 {
    // VirtualBox VMs are looked for only when no directory limits the clean.
    let vboxmanage = a
        .dirs
        .is_empty()
        .then(|| VBoxManage::detect(super::vboxmanage()).ok())
        .flatten();
    let scope = Scope {
        only_dirs: !a.dirs.is_empty(),
        dirs: if a.dirs.is_empty() {
            vec![PathBuf::from("/var/tmp/zvbench")]
        } else {
            a.dirs
        },
        runtime: owner::runtime_dir(),
        vboxmanage,
    };
    let done = clean(&scope);
    if done.is_empty() {
        println!("nothing to clean");
    }
    for d in &done {
        println!("{d}");
    }
    i32::from(done.iter().any(|d| matches!(d, Outcome::Failed(_))))
}

/// Undoes a dead run's recorded objects in reverse, then forgets the run if all went.
fn clean_run(run: FoundRun, out: &mut Vec<Outcome>) {
    let before = out.len();
    for o in run.owned.iter().rev() {
        match o {
            // Detached since, or someone else's now: not ours to touch.
            Owned::Loop(l) if l.check().is_err() => {}
            Owned::Loop(l) => out.push(outcome(
                format!(
                    "detached {} (backing {})",
                    l.device.display(),
                    l.backing.display()
                ),
                Teardown::DetachLoop(l.clone()).try_run(),
            )),
            Owned::File { path } => {
                if path.symlink_metadata().is_ok() {
                    out.push(outcome(
                        format!("removed {}", path.display()),
                        Teardown::RemoveFile(path.clone()).try_run(),
                    ));
                }
            }
            Owned::Dataset { name } => {
                if zfs::exists_argv(name).run().is_ok() {
                    out.push(outcome(
                        format!("destroyed {name} (run {})", run.run_id),
                        Teardown::DestroyDataset(name.clone()).try_run(),
                    ));
                }
            }
        }
    }
    if !out[before..]
        .iter()
        .any(|o| matches!(o, Outcome::Failed(_)))
    {
        if let Err(e) = run.forget() {
            out.push(Outcome::Failed(format!("remove the run's lock: {e}")));
        }
    }
}

/// Files in `dir` named as zvbench names them, of runs that are not alive, with the loop
/// devices that still back them.
fn clean_dir(dir: &Path, is_live: &dyn Fn(&str) -> bool, out: &mut Vec<Outcome>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = generated_file(&name) else {
            continue;
        };
        let path = e.path();
        if is_live(id) {
            out.push(Outcome::InUse(format!(
                "{}: run {id} is running",
                path.display()
            )));
            continue;
        }
        let mut ok = true;
        for l in loopdev::backing(&path) {
            let r = Teardown::DetachLoop(l.clone()).try_run();
            ok &= r.is_ok();
            out.push(outcome(format!("detached {}", l.device.display()), r));
        }
        if ok {
            out.push(outcome(
                format!("removed {}", path.display()),
                Teardown::RemoveFile(path.clone()).try_run(),
            ));
        } else {
            out.push(Outcome::Failed(format!(
                "{} kept: its loop device could not be detached",
                path.display()
            )));
        }
    }
}

/// The run id in a QEMU process's `-name zvbench-<run id>-...`, and its parent's pid.
fn qemu_of_run(pid: i32) -> Option<(String, i32)> {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
    let prog = Path::new(std::str::from_utf8(args.first()?).ok()?);
    if !prog.file_name()?.to_str()?.starts_with("qemu-system") {
        return None;
    }
    let i = args.iter().position(|a| *a == b"-name")?;
    let id = run_of(std::str::from_utf8(args.get(i + 1)?).ok()?)?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((id.to_string(), ppid))
}

/// zvbench's QEMU processes: pid, the run id in their `-name`, parent pid. Read once per
/// `clean` from `/proc`.
fn qemu_processes() -> Vec<(i32, String, i32)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| qemu_of_run(pid).map(|(id, ppid)| (pid, id, ppid)))
        .collect()
}

/// Stops the QEMU processes in `procs` whose run `wanted` selects, unless the run's own
/// process is still their parent (a live run of another runtime directory); those stopped
/// are dropped from `procs`.
fn stop_qemu(
    procs: &mut Vec<(i32, String, i32)>,
    wanted: impl Fn(&str) -> bool,
    out: &mut Vec<Outcome>,
) {
    procs.retain(|(pid, id, ppid)| {
        if !wanted(id) {
            return true;
        }
        if owner::run_pid(id) == Some(*ppid) {
            out.push(Outcome::InUse(format!(
                "QEMU pid {pid}: run {id} is running"
            )));
            return true;
        }
        let r = kill(*pid, id);
        let stopped = r.is_ok();
        out.push(outcome(format!("stopped QEMU pid {pid} of run {id}"), r));
        !stopped
    });
}

/// SIGKILL through a pidfd after checking, on the pinned process, that it is still the
/// QEMU of run `id` (a pid can be reused); waits up to 5 s for it to exit.
fn kill(pid: i32, id: &str) -> Result<(), String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: pidfd_open returned a descriptor this function now owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if qemu_of_run(pid).map(|(i, _)| i).as_deref() != Some(id) {
        return Err("the process changed before it could be stopped".into());
    }
    // SAFETY: a pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut p, 1, 5000) } {
        1 => Ok(()),
        _ => Err("still running 5 s after SIGKILL".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_log_mounts_are_found_by_name_with_escapes_decoded() {
        let table = "proc /proc proc rw 0 0\n\
            zvbench-writelog /var/tmp/out\\040a/guests/vdi-1/writelog fuse rw,user_id=0 0 0\n\
            other-fuse /mnt/x fuse rw 0 0\n\
            zvbench-writelog\n";
        assert_eq!(
            super::write_log_mounts(table),
            [std::path::PathBuf::from(
                "/var/tmp/out a/guests/vdi-1/writelog"
            )]
        );
    }
}
