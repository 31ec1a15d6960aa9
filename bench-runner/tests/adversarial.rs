//! zvbench used the way a careful adversary would: bad scenarios, signals at every phase,
//! `kill -9` and then `clean`, a user's files beside zvbench's, a loop device re-attached by
//! someone else, a full file system under a guest. Every case here failed before its fix
//! (issue 9). Each test checks only the objects it created: its own temporary directory,
//! its own runtime directory for run locks, processes it started.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use zvbench::commands::clean::{clean, Outcome, Scope};
use zvbench::host::owner::{Owned, RunLock};

fn zvbench(runtime: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zvbench"));
    c.env(zvbench::host::owner::RUNTIME_ENV, runtime);
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text.replace("@DIR@", &dir.display().to_string())).unwrap();
    p
}

fn wait_exit(c: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = c.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn signal(pid: u32, sig: i32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) on a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Sends `sig` to a run (and, with `again`, SIGTERM while it tears down) and checks it
/// stops within `limit` with 128 + `sig`, leaving nothing in `dir` and no lock in
/// `runtime`. Returns how long it took.
fn stop_run(
    c: &mut Child,
    sig: i32,
    again: bool,
    limit: Duration,
    dir: &Path,
    runtime: &Path,
) -> Duration {
    let t = Instant::now();
    signal(c.id(), sig);
    if again {
        std::thread::sleep(Duration::from_millis(20));
        if c.try_wait().unwrap().is_none() {
            signal(c.id(), libc::SIGTERM);
        }
    }
    let st = wait_exit(c, limit).unwrap_or_else(|| panic!("not stopped within {limit:?}"));
    assert_eq!(st.code(), Some(128 + sig), "{st:?}");
    assert_nothing_left(dir);
    assert!(no_locks(runtime), "the run's lock is removed");
    t.elapsed()
}

/// `zvbench clean --dir DIR` with `runtime`: exit code and stdout.
fn clean_cli(runtime: &Path, dir: &Path) -> (Option<i32>, String) {
    let out = zvbench(runtime)
        .arg("clean")
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Live (not zombie) guest QEMU processes (with a `-name`, unlike `qemu --version`) whose
/// parent is `ppid`.
fn qemu_children(ppid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((comm, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let parent = f.next().and_then(|p| p.parse::<u32>().ok());
            let named = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"-name"));
            comm.contains("qemu-system") && state != Some("Z") && parent == Some(ppid) && named
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

fn no_locks(runtime: &Path) -> bool {
    std::fs::read_dir(runtime)
        .map(|rd| rd.count() == 0)
        .unwrap_or(true)
}

/// `zvbench run SCENARIO --out OUT` with the test agent, `kernel` (the modules of the
/// test kernel) and `accel`, its locks in `runtime`.
fn run_cmd(runtime: &Path, scenario: &Path, out: &Path, kernel: &Path, accel: &str) -> Command {
    let mut c = zvbench(runtime);
    c.arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .arg("--agent")
        .arg(agent())
        .arg("--kernel")
        .arg(kernel)
        .arg("--modules")
        .arg(&common::kernel().modules)
        .args(["--accel", accel]);
    c
}

/// Starts `zvbench run SCENARIO --out DIR/out` under TCG with the test kernel, output
/// discarded.
fn spawn_guest_run(runtime: &Path, scenario: &Path, dir: &Path) -> Child {
    run_cmd(runtime, scenario, &dir.join("out"), &kernel().image, "tcg")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Opens `dev` with `O_EXCL`, as `mkfs` and `mount` do.
fn open_excl(dev: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
}

/// Runs `c` to its end: exit code and stderr.
fn code_and_stderr(c: &mut Command) -> (Option<i32>, String) {
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- bad scenarios

const HOST: &str = r#"
[run]
repetitions = 1
@RUN@

[[target]]
name = "host"
storage = "host"
dir = "@DIR@"

[[workload]]
name = "w"
kind = "seqwr"
bs = @BS@
size = @SIZE@
@W@
"#;

/// `zvbench check` names the real cause of every bad scenario, with its place in the
/// file, and creates nothing.
#[test]
fn check_names_the_real_cause_of_bad_scenarios() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let file_s = file.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (
            HOST.replace("\"@DIR@\"", &format!("{file_s:?}")),
            "is a file, not a directory",
        ),
        (HOST.replace("@SIZE@", "-4096"), "size -4096 is negative"),
        (
            HOST.replace("@SIZE@", "4096.5"),
            "not a whole number of bytes",
        ),
        (
            HOST.replace("@RUN@", "guest_timeout_s = 0"),
            "guest_timeout_s = 0 must be 10 to",
        ),
        (
            HOST.replace("@RUN@", "guest_timeout_s = 9223372036854775807"),
            "guest_timeout_s = 9223372036854775807 must be",
        ),
        (
            HOST.replace("@BS@", "1000")
                .replace("@SIZE@", "8000")
                .replace("@W@", "direct = true"),
            "multiple of 512 bytes",
        ),
        (
            HOST.replace("@RUN@", "disk_size = \"9000000T\""),
            "larger than any Linux file",
        ),
        (
            HOST.replace("storage = \"host\"", "storage = \"loop\"")
                .replace("@RUN@", "disk_size = \"32T\""),
            "no file that large can exist",
        ),
        (
            HOST.replace(
                "storage = \"host\"",
                "storage = \"image\"\nvariant = \"fixed\"",
            )
            .replace("@RUN@", "disk_size = \"15T\""),
            "does not fit in",
        ),
    ];
    for (text, want) in cases {
        let text = text
            .replace("@RUN@", "")
            .replace("@W@", "")
            .replace("@BS@", "4096")
            .replace("@SIZE@", "8192");
        let p = write(dir.path(), "s.toml", &text);
        let (code, err) = code_and_stderr(zvbench(&dir.path().join("run")).arg("check").arg(&p));
        assert_eq!(code, Some(2), "{text}\n{err}");
        assert!(err.contains(want), "want {want:?} for\n{text}\ngot: {err}");
        let created: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "a-file" && n != "s.toml")
            .collect();
        assert!(created.is_empty(), "check created {created:?}");
    }
}

/// A scenario path that never ends (`/dev/zero`) or is not text is refused after a bounded
/// read instead of being read until memory runs out (the child gets 1 GiB of address space
/// so that an unbounded read fails fast rather than taking the machine's memory).
#[test]
fn an_endless_or_binary_scenario_is_refused_after_a_bounded_read() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let binary = dir.path().join("garbage.toml");
    std::fs::write(&binary, [0x80u8, 0xff, 0xfe, b'a', 0]).unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let cases = [
        (Path::new("/dev/zero"), "larger than 1024 KiB"),
        (big.as_path(), "larger than 1024 KiB"),
        (
            binary.as_path(),
            "not UTF-8 text (invalid byte at offset 0)",
        ),
    ];
    for (path, want) in cases {
        let mut c = zvbench(&dir.path().join("run"));
        c.arg("check").arg(path);
        // SAFETY: setrlimit(2) only, between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1 << 30,
                    rlim_max: 1 << 30,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (code, err) = code_and_stderr(&mut c);
        assert_eq!(code, Some(2), "{path:?}: {err}");
        assert!(err.contains(want), "{path:?}: want {want:?}, got: {err}");
    }
}

/// A run refused before it writes anything (`--out` names an earlier run's directory, or a
/// host check fails) leaves that directory as it was: it used to make the report there,
/// rewriting the earlier run's summary.md, report.html and plots (and printing them as
/// its own).
#[test]
fn a_refused_run_does_not_rewrite_an_earlier_runs_report() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let out = dir.path().join("out");
    let text = HOST
        .replace("@RUN@", "")
        .replace("@W@", "")
        .replace("@BS@", "4096")
        .replace("@SIZE@", "8192");
    let p = write(dir.path(), "s.toml", &text);
    let (code, err) = code_and_stderr(zvbench(&runtime).arg("run").arg(&p).arg("--out").arg(&out));
    assert_eq!(code, Some(0), "{err}");
    let summary = out.join("summary.md");
    let mut edited = std::fs::read_to_string(&summary).unwrap();
    edited.push_str("\nmy notes\n");
    std::fs::write(&summary, &edited).unwrap();
    let html = std::fs::read(out.join("report.html")).unwrap();
    std::fs::remove_dir_all(out.join("plots")).unwrap();
    let missing = write(
        dir.path(),
        "missing.toml",
        &text.replace(
            "@DIR@",
            &dir.path().join("no-such-dir").display().to_string(),
        ),
    );
    for (scenario, want) in [
        (&p, "choose a new --out directory"),
        (&missing, "no-such-dir"),
    ] {
        let (code, err) = code_and_stderr(
            zvbench(&runtime)
                .arg("run")
                .arg(scenario)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(want), "want {want:?}, got: {err}");
        assert_eq!(std::fs::read_to_string(&summary).unwrap(), edited);
        assert_eq!(std::fs::read(out.join("report.html")).unwrap(), html);
        assert!(
            !out.join("plots").exists(),
            "plots written into the earlier run"
        );
    }
}

/// A blockdev holding a file system is refused by `check`, as by `run`.
#[test]
fn check_refuses_a_blockdev_holding_a_file_system() {
    if !require(&["root", "losetup", "mkfs.ext4"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let l = LoopDev::new(dir.path(), "fs.img", 32 << 20);
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&l.dev)
        .status()
        .unwrap()
        .success());
    let text = format!(
        "[[target]]\nname = \"d\"\nstorage = \"blockdev\"\ndevice = \"{}\"\n[run]\ndisk_size = \"16M\"\n[[workload]]\nname = \"w\"\nkind = \"seqwr\"\nbs = \"1M\"\nsize = \"4M\"\n",
        l.dev.display()
    );
    let p = write(dir.path(), "s.toml", &text);
    let (code, err) = code_and_stderr(zvbench(&dir.path().join("run")).arg("check").arg(&p));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ext4 (filesystem)"), "{err}");
}

/// `--kernel` naming something that is not a kernel is said so, not "Connection refused".
#[test]
fn a_kernel_that_is_not_one_is_named() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let fake = dir.path().join("not-a-kernel");
    std::fs::write(&fake, "#!/bin/sh\necho hello\n").unwrap();
    let s = write(dir.path(), "s.toml", LOOP_GUEST);
    let runtime = dir.path().join("run");
    let (code, err) = code_and_stderr(&mut run_cmd(
        &runtime,
        &s,
        &dir.path().join("out"),
        &fake,
        "tcg",
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a Linux kernel QEMU can boot"), "{err}");

    // A file that looks like a bzImage but is not: QEMU refuses it, and its words are quoted.
    let mut bytes = vec![0u8; 8192];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&fake, bytes).unwrap();
    let (code, err) = code_and_stderr(&mut run_cmd(
        &runtime,
        &s,
        &dir.path().join("out2"),
        &fake,
        "tcg",
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QEMU exited early"), "{err}");
    assert!(err.contains("qemu.log"), "{err}");
    assert_nothing_left(dir.path());
}

/// A broken `--accel kvm` ends with QEMU's reason, not "Connection reset by peer".
#[test]
fn a_broken_kvm_is_reported_with_qemus_words() {
    if !can_boot_guests() {
        return;
    }
    if zvbench::hypervisor::qemu::probe_kvm(
        &kernel().image,
        tempfile::tempdir().unwrap().path(),
        Duration::from_secs(8),
    ) {
        eprintln!("KVM works here: nothing to report");
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let s = write(dir.path(), "s.toml", LOOP_GUEST);
    let start = Instant::now();
    let (code, err) = code_and_stderr(&mut run_cmd(
        &dir.path().join("run"),
        &s,
        &dir.path().join("out"),
        &kernel().image,
        "kvm",
    ));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("--accel kvm: KVM cannot run a guest"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "{err}");
    assert_nothing_left(dir.path());
}

/// A write into a directory that does not exist says so, not "a read pass needs a
/// preceding write pass".
#[test]
fn a_write_to_a_missing_directory_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spec = zvbench_agent::pass::PassSpec::new(
        dir.path().join("missing/f.dat"),
        zvbench_agent::pass::Workload::Seqwr,
        zvbench_agent::ByteSize(4096),
        zvbench_agent::ByteSize(8192),
    );
    let e = zvbench_agent::pass::run_pass(&spec, &mut zvbench_agent::pass::Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("its directory does not exist"), "{msg}");
    assert!(!msg.contains("preceding write pass"), "{msg}");
}

// ---------------------------------------------------------------- what a target leaves

/// A fixed VMDK's `-flat.vmdk` extent goes with its descriptor; a refused `disk_size`
/// leaves no 0-byte backing file.
#[test]
fn provisioning_leaves_no_extent_and_no_empty_file() {
    if !require(&["qemu-img"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let lock =
        RunLock::acquire(&dir.path().join("run"), &zvbench::run::provenance::run_id()).unwrap();
    let text = "[run]\ndisk_size = \"16M\"\n[[target]]\nname = \"v\"\nstorage = \"image\"\nformat = \"vmdk\"\nvariant = \"fixed\"\ndir = \"@DIR@\"\n[[workload]]\nname = \"w\"\nkind = \"seqwr\"\nbs = \"1M\"\nsize = \"4M\"\n".replace("@DIR@", &dir.path().display().to_string());
    let plan = zvbench::scenario::parse("v.toml", &text).unwrap();
    let p = zvbench::host::storage::provision(&plan.targets[0], &lock, &[]).unwrap();
    let flat = zvbench::host::storage::flat_extent(&p.disk.as_ref().unwrap().0).unwrap();
    assert!(flat.exists(), "qemu-img wrote {}", flat.display());
    drop(p);
    assert!(!flat.exists(), "the extent is torn down with the image");

    let big = text
        .replace(
            "storage = \"image\"\nformat = \"vmdk\"\nvariant = \"fixed\"",
            "storage = \"loop\"",
        )
        .replace("16M", "32T");
    let plan = zvbench::scenario::parse("v.toml", &big).unwrap();
    let e = zvbench::host::storage::provision(&plan.targets[0], &lock, &[]).unwrap_err();
    assert!(format!("{e:#}").contains("File too large"), "{e:#}");
    assert_nothing_left(dir.path());
}

// ---------------------------------------------------------------- clean and ownership

/// `clean` leaves a live run's files and a user's `zvbench-notes.txt`, removes a dead run's,
/// and reports a removal that failed as failed, with exit 1.
#[test]
fn clean_touches_only_what_dead_runs_left_and_says_what_failed() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let live = RunLock::acquire(&runtime, "20260101T000000-11").unwrap();
    let live_file = dir.path().join("zvbench-20260101T000000-11-raw.img");
    std::fs::write(&live_file, "in use").unwrap();
    live.record(&Owned::File {
        path: live_file.clone(),
    })
    .unwrap();
    let dead_file = dir.path().join("zvbench-20260101T000000-12-raw.img");
    std::fs::write(&dead_file, "left").unwrap();
    let notes = dir.path().join("zvbench-notes.txt");
    std::fs::write(&notes, "mine").unwrap();

    let (code, text) = clean_cli(&runtime, dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(live_file.exists(), "a live run's file stays: {text}");
    assert!(
        text.contains("left alone") && text.contains("is running"),
        "{text}"
    );
    assert!(!dead_file.exists(), "{text}");
    assert!(
        text.contains(&format!("removed {}", dead_file.display())),
        "{text}"
    );
    assert!(notes.exists(), "a user's zvbench-notes.txt stays");

    // Something with a generated name that cannot be removed: reported, exit 1.
    let stuck = dir.path().join("zvbench-20260101T000000-13-raw.img");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("x"), "x").unwrap();
    let (code, text) = clean_cli(&runtime, dir.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("FAILED: removed {}", stuck.display())),
        "{text}"
    );
    assert!(
        !text.contains(&format!("\nremoved {}", stuck.display())),
        "{text}"
    );
    drop(live);
    assert!(no_locks(&runtime));
}

/// A loop device detached and re-attached by someone else to their own file is never
/// detached by zvbench, neither by a run's teardown nor by `clean`.
#[test]
fn a_loop_device_reattached_by_someone_else_is_left_alone() {
    if !require(&["root", "losetup"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let ours = dir.path().join("zvbench-20260101T000000-21-raw.img");
    std::fs::File::create(&ours)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let binding = zvbench::host::loopdev::LoopBinding::attach(&ours).unwrap();
    // The dead run's lock, as a killed run leaves it.
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::write(
        runtime.join("run-20260101T000000-21.lock"),
        format!(
            "{}\n{}\n",
            serde_json::to_string(&Owned::File { path: ours.clone() }).unwrap(),
            serde_json::to_string(&Owned::Loop(binding.clone())).unwrap()
        ),
    )
    .unwrap();
    // Someone detaches it and attaches the same device to their own file.
    let theirs = dir.path().join("theirs.img");
    std::fs::File::create(&theirs)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    assert!(Command::new("losetup")
        .arg("-d")
        .arg(&binding.device)
        .status()
        .unwrap()
        .success());
    // The detach is deferred while udev still has the device open after the attach
    // (its probe of the new device): retry while the device is busy, for a few seconds.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reattached = loop {
        let ok = Command::new("losetup")
            .arg(&binding.device)
            .arg(&theirs)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok || std::time::Instant::now() > until {
            break ok;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        reattached,
        "{} was taken by another program before the test could re-attach it",
        binding.device.display()
    );
    let theirs_dev = LoopDev {
        dev: binding.device.clone(),
        backing: theirs.clone(),
    };
    let e = zvbench::host::storage::Teardown::DetachLoop(binding.clone())
        .try_run()
        .unwrap_err();
    assert!(e.contains("no longer backs"), "{e}");
    let done = clean(&Scope {
        dirs: vec![dir.path().to_owned()],
        only_dirs: true,
        runtime: runtime.clone(),
        vboxmanage: None,
    });
    assert!(
        !done.iter().any(|d| matches!(d, Outcome::Failed(_))),
        "{done:?}"
    );
    assert!(!ours.exists(), "{done:?}");
    let status = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        binding.device.file_name().unwrap().to_string_lossy()
    ))
    .unwrap();
    assert_eq!(
        Path::new(status.trim()),
        theirs,
        "their loop device is still theirs"
    );
    drop(theirs_dev);
    assert!(no_locks(&runtime), "the dead run is forgotten");
}

/// An orphaned QEMU named for a dead run (what `kill -9` left before PR_SET_PDEATHSIG) is
/// found and stopped by `clean`.
#[test]
fn clean_stops_an_orphaned_qemu_of_a_dead_run() {
    if !require(&["qemu-system-x86_64", "setsid"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let id = "20260101T000000-31";
    let file = dir.path().join(format!("zvbench-{id}-raw.img"));
    std::fs::write(&file, "x").unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::write(
        runtime.join(format!("run-{id}.lock")),
        serde_json::to_string(&Owned::File { path: file.clone() }).unwrap(),
    )
    .unwrap();
    // setsid --fork: QEMU's parent exits at once, as a killed zvbench would.
    let name = format!("zvbench-{id}-raw-1");
    assert!(Command::new("setsid")
        .args(["--fork", "qemu-system-x86_64", "-name", &name])
        .args(["-machine", "none", "-display", "none", "-nodefaults", "-S"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    let find = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|p| {
                // QEMU itself, not setsid on its way to exec it.
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.starts_with(b"qemu-system")
                        && c.split(|&b| b == 0).any(|a| a == name.as_bytes())
                })
            })
    };
    let mut pid = None;
    assert!(wait_for(Duration::from_secs(10), || {
        pid = find();
        pid.is_some()
    }));
    let pid = pid.unwrap();
    let done = clean(&Scope {
        dirs: vec![dir.path().to_owned()],
        only_dirs: true,
        runtime: runtime.clone(),
        vboxmanage: None,
    });
    assert!(
        done.contains(&Outcome::Done(format!(
            "stopped QEMU pid {pid} of run {id}"
        ))),
        "{done:?}"
    );
    assert!(!alive(pid));
    assert!(!file.exists() && no_locks(&runtime), "{done:?}");
}

// ---------------------------------------------------------------- signals and kill -9

const SLOW_HOST: &str = r#"
[run]
repetitions = 1

[[target]]
name = "host"
storage = "host"
dir = "@DIR@"

[[workload]]
name = "slow"
kind = "seqwr"
bs = "4K"
size = "512M"
sync = "fsync"
"#;

/// SIGINT and SIGTERM stop a long host pass within seconds: exit 130 / 143, the pass's file
/// removed, the run's lock gone; a second signal during teardown does not cut it short.
#[test]
fn a_signal_stops_a_host_pass_promptly() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let runtime = dir.path().join("run");
        let s = write(dir.path(), "s.toml", SLOW_HOST);
        let log = dir.path().join("stderr");
        let mut c = zvbench(&runtime)
            .arg("run")
            .arg(&s)
            .arg("--out")
            .arg(dir.path().join("out"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        assert!(wait_for(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("slow on the host"))
        }));
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            c.try_wait().unwrap().is_none(),
            "the pass was still running"
        );
        let took = stop_run(
            &mut c,
            sig,
            true,
            Duration::from_secs(10),
            dir.path(),
            &runtime,
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

/// A signal while a fixed image is being created: the run stops and removes it.
#[test]
fn a_signal_while_provisioning_tears_down() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let text = LOOP_GUEST
        .replace(
            "storage = \"loop\"",
            "storage = \"image\"\nformat = \"raw\"\nvariant = \"fixed\"",
        )
        .replace("disk_size = \"64M\"", "disk_size = \"1G\"");
    let s = write(dir.path(), "s.toml", &text);
    let mut c = spawn_guest_run(&runtime, &s, dir.path());
    assert!(wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
            zvbench::host::owner::generated_file(&e.file_name().to_string_lossy()).is_some()
        })
    }));
    stop_run(
        &mut c,
        libc::SIGTERM,
        false,
        Duration::from_secs(60),
        dir.path(),
        &runtime,
    );
}

const LOOP_GUEST: &str = r#"
[run]
repetitions = 1
disk_size = "64M"
guest_timeout_s = 600

[[target]]
name = "raw"
storage = "loop"
dir = "@DIR@"

[[workload]]
name = "w"
kind = "seqwr"
bs = "1M"
size = "48M"
direct = true
sync = "fsync"
"#;

/// Starts a guest run and returns it once its QEMU runs, with QEMU's pid.
fn start_guest(dir: &Path, runtime: &Path) -> (Child, i32) {
    let s = write(dir, "s.toml", LOOP_GUEST);
    let mut child = spawn_guest_run(runtime, &s, dir);
    let mut qemu = Vec::new();
    let up = wait_for(Duration::from_secs(120), || {
        qemu = qemu_children(child.id());
        !qemu.is_empty()
    });
    if !up {
        let _ = child.kill();
        panic!("QEMU did not start: {:?}", child.wait());
    }
    (child, qemu[0])
}

/// While a guest writes a blockdev target, another program cannot take the device
/// exclusively (what `mkfs` and `mount` do): zvbench holds it with `O_EXCL` from its
/// checks to its teardown. It used to hold nothing, so `mkfs` succeeded mid-run and the
/// guest then wrote over the new file system.
#[test]
fn a_blockdev_in_use_by_a_run_cannot_be_taken_exclusively() {
    if !can_boot_guests() || !require(&["losetup"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let l = LoopDev::new(dir.path(), "user.img", 32 << 20);
    let text = format!(
        "[run]\nrepetitions = 1\ndisk_size = \"32M\"\nguest_timeout_s = 300\n[[target]]\nname = \"d\"\nstorage = \"blockdev\"\ndevice = \"{}\"\n[[workload]]\nname = \"w\"\nkind = \"seqwr\"\nbs = \"1M\"\nsize = \"16M\"\ndirect = true\n",
        l.dev.display()
    );
    let s = write(dir.path(), "s.toml", &text);
    let mut child = spawn_guest_run(&runtime, &s, dir.path());
    let up = wait_for(Duration::from_secs(120), || {
        !qemu_children(child.id()).is_empty()
    });
    let taken = open_excl(&l.dev);
    let st = wait_exit(&mut child, Duration::from_secs(300));
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(up, "QEMU did not start");
    let e = taken.expect_err("another program took the device while the guest wrote it");
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "the run itself succeeds"
    );
    open_excl(&l.dev).expect("released at teardown");
}

/// A signal while the guest boots: exit 143, QEMU gone, nothing left.
#[test]
fn a_signal_while_the_guest_boots_tears_down() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let (mut c, qemu) = start_guest(dir.path(), &runtime);
    stop_run(
        &mut c,
        libc::SIGTERM,
        false,
        Duration::from_secs(20),
        dir.path(),
        &runtime,
    );
    assert!(!alive(qemu), "QEMU was stopped");
}

/// `kill -9` of zvbench: its QEMU dies with it (PR_SET_PDEATHSIG), and `clean --dir`
/// removes the loop device and files it left, and its lock.
#[test]
fn kill_9_then_clean_leaves_nothing() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let runtime = dir.path().join("run");
    let (mut c, qemu) = start_guest(dir.path(), &runtime);
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || !alive(qemu)),
        "QEMU {qemu} outlived the zvbench that started it"
    );
    assert!(!no_locks(&runtime), "the dead run's lock stays for clean");
    let (code, text) = clean_cli(&runtime, dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("detached /dev/loop"), "{text}");
    assert!(text.contains("removed"), "{text}");
    assert_nothing_left(dir.path());
    assert!(no_locks(&runtime), "{text}");
}

/// Whether `dir` is a mount point in this process's mount table.
fn mounted(dir: &Path) -> bool {
    mount_points().iter().any(|m| m == dir.to_str().unwrap())
}

/// The write-log child: SIGKILLed and its mount detached on drop.
struct MountChild(Child, PathBuf);

impl Drop for MountChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = nix::mount::umount2(&self.1, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Not a test of its own: the child process of `a_dead_write_log_is_unmounted_by_clean`
/// (this test binary run again), which mounts a power cut's FUSE write log and waits to
/// be killed.
#[test]
#[ignore = "the child of a_dead_write_log_is_unmounted_by_clean"]
fn write_log_mount_child() {
    let dir = PathBuf::from(
        std::env::var_os("ZVBENCH_TEST_WRITELOG_DIR").expect("run by its parent test"),
    );
    let _log =
        zvbench::writelog::LoggedFile::mount(&dir.join("disk.img"), &dir.join("writelog")).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// `kill -9` of a zvbench with a power cut's write log mounted leaves a FUSE mount with no
/// server: `clean --dir` leaves a live one alone and detaches and removes a dead one.
#[test]
fn a_dead_write_log_is_unmounted_by_clean() {
    if !require(&["root"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(dir.path().join("disk.img"), vec![0u8; 1 << 20]).unwrap();
    let mp = dir.path().join("writelog");
    // Killed, and its mount detached, however the test ends.
    let mut child = MountChild(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "write_log_mount_child",
                "--ignored",
                "--nocapture",
            ])
            .env("ZVBENCH_TEST_WRITELOG_DIR", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        mp.clone(),
    );
    let scope = || Scope {
        dirs: vec![dir.path().to_owned()],
        only_dirs: true,
        runtime: dir.path().join("run"),
        vboxmanage: None,
    };
    assert!(
        wait_for(Duration::from_secs(20), || mounted(&mp)),
        "the child mounted its write log at {}",
        mp.display()
    );
    let done = clean(&scope());
    assert!(
        done.iter()
            .any(|d| matches!(d, Outcome::InUse(s) if s.contains("write log"))),
        "{done:?}"
    );
    assert!(mounted(&mp), "a live write log stays");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(mounted(&mp), "kill -9 leaves the mount behind");
    let done = clean(&scope());
    assert!(
        done.iter()
            .any(|d| matches!(d, Outcome::Done(s) if s.contains("unmounted the dead write log"))),
        "{done:?}"
    );
    assert!(!mounted(&mp) && !mp.exists(), "{done:?}");
}

/// `zvbench report` stops on SIGTERM instead of finishing and exiting 0.
#[test]
fn report_stops_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = csv::Writer::from_path(dir.path().join("results.csv")).unwrap();
    for i in 0..200_000u32 {
        w.serialize(zvbench_reports::ResultRow {
            target: format!("t{}", i % 5),
            storage: "loop".into(),
            workload: format!("w{}", i % 8),
            repetition: i / 40 + 1,
            mib_per_s: 100.0 + f64::from(i % 97),
            iops: 1000.0 + f64::from(i % 89),
            ..Default::default()
        })
        .unwrap();
    }
    w.flush().unwrap();
    let mut c = zvbench(dir.path())
        .arg("report")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        c.try_wait().unwrap().is_none(),
        "the report was still being written"
    );
    signal(c.id(), libc::SIGTERM);
    let st = wait_exit(&mut c, Duration::from_secs(2)).expect("stopped within 2 s");
    assert!(!st.success(), "{st:?}");
    assert_eq!(st.code(), Some(143), "{st:?}");
}

// ---------------------------------------------------------------- a full file system

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// An image on a file system that fills up under the guest: QEMU pauses the VM; zvbench
/// fails at once naming ENOSPC and the image, instead of waiting out guest_timeout_s.
#[test]
fn a_full_file_system_under_a_guest_fails_at_once() {
    if !can_boot_guests() || !require(&["mount"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16M", "zvbench-test"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let _fs = Tmpfs(mnt.clone());
    let text = LOOP_GUEST
        .replace(
            "storage = \"loop\"",
            "storage = \"image\"\nformat = \"raw\"\ncache = \"writeback\"",
        )
        .replace("direct = true", "direct = false");
    let start = Instant::now();
    let err = run_text(&mnt, &dir.path().join("out"), &text).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("is full (ENOSPC"), "{msg}");
    assert!(msg.contains(&mnt.display().to_string()), "{msg}");
    assert!(
        start.elapsed() < Duration::from_secs(300),
        "{:?}",
        start.elapsed()
    );
    assert_nothing_left(&mnt);
}
