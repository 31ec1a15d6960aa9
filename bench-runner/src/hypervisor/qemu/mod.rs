//! The QEMU backend: the command line from small pure functions (one per concern, tested
//! with case tables), a guard that kills and reaps QEMU on every exit path, a QMP client,
//! and the KVM probe (a real boot, since `/dev/kvm` existing proves nothing). One guest
//! boot behind the hypervisor interface is [`vm`]'s.

pub mod vm;

use crate::guest::BlockStats;
use crate::scenario::{key_name, Aio, Bus, CacheMode};
use serde_json::Value;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// QEMU's id for the benchmark drive (also its name in `query-blockstats`).
pub const DRIVE_ID: &str = "zvbdisk";

/// Hardware acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Linux KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// As in results: `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The disk given to the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    /// Host file or device.
    pub path: PathBuf,
    /// QEMU format driver: raw, vdi, vmdk, vhdx, qcow2.
    pub format: &'static str,
    /// Cache mode.
    pub cache: CacheMode,
    /// aio engine.
    pub aio: Aio,
    /// Controller.
    pub bus: Bus,
    /// `throttling.bps-total`, bytes per second.
    pub throttle_bps: Option<u64>,
}

fn os(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// Escapes a value for a QEMU `-opt key=value,...` list (a comma is written twice).
pub fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// `-machine` and `-cpu` for the accelerator.
pub fn machine_args(accel: Accel) -> Vec<OsString> {
    match accel {
        Accel::Kvm => os(&["-machine", "q35,accel=kvm", "-cpu", "host"]),
        Accel::Tcg => os(&["-machine", "q35,accel=tcg", "-cpu", "max"]),
    }
}

/// Memory and CPUs.
pub fn size_args(memory_bytes: u64, cpus: u32) -> Vec<OsString> {
    vec![
        "-m".into(),
        format!("{}M", memory_bytes >> 20).into(),
        "-smp".into(),
        cpus.to_string().into(),
    ]
}

/// The firmware of a direct kernel boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Debian's qboot (package qemu-system-data): a minimal firmware that sets up PCI and
    /// the ACPI tables and jumps into the kernel QEMU loaded (PVH or bzImage), without
    /// SeaBIOS's POST. Measured here: a guest reaches its kernel 0.2 s sooner under TCG,
    /// and seconds sooner nested in the OpenZFS lab's VM.
    Qboot,
    /// QEMU's default, SeaBIOS, with QEMU's option ROM loading the kernel. An ISO boot
    /// always uses it.
    SeaBios,
}

/// Where Debian's QEMU keeps qboot.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

impl Firmware {
    /// qboot where QEMU has it, else SeaBIOS.
    pub fn for_direct_boot() -> Firmware {
        if Path::new(QBOOT).is_file() {
            Firmware::Qboot
        } else {
            Firmware::SeaBios
        }
    }
}

/// Direct kernel boot through `firmware`.
pub fn boot_args(firmware: Firmware, kernel: &Path, initrd: &Path, append: &str) -> Vec<OsString> {
    let bios: &[&str] = match firmware {
        Firmware::Qboot => &["-bios", QBOOT],
        Firmware::SeaBios => &[],
    };
    let mut v = os(bios);
    v.extend([
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
        "-append".into(),
        append.into(),
    ]);
    v
}

/// Boot from `iso` on a CD drive of the machine's own AHCI controller.
pub fn cdrom_args(iso: &Path) -> Vec<OsString> {
    vec![
        "-drive".into(),
        format!(
            "file={},format=raw,if=ide,index=0,media=cdrom,readonly=on",
            qemu_escape(iso)
        )
        .into(),
        "-boot".into(),
        "order=d".into(),
    ]
}

/// The benchmark disk: a `-drive` without a device, and the device for the bus.
pub fn drive_args(d: &Disk) -> Vec<OsString> {
    let (cache, aio) = (key_name(d.cache), key_name(d.aio));
    let drive = format!(
        "file={},format={},if=none,id={DRIVE_ID},cache={cache},aio={aio}",
        qemu_escape(&d.path),
        d.format
    );
    let mut v = vec!["-drive".into(), throttled(drive, d).into()];
    let devs: &[&str] = match d.bus {
        Bus::Virtio => &["-device", "virtio-blk-pci,drive=zvbdisk"],
        Bus::Sata => &[
            "-device",
            "ahci,id=ahci0",
            "-device",
            "ide-hd,drive=zvbdisk,bus=ahci0.0",
        ],
        Bus::Nvme => &["-device", "nvme,drive=zvbdisk,serial=zvbench0"],
        Bus::Scsi => &[
            "-device",
            "virtio-scsi-pci,id=scsi0",
            "-device",
            "scsi-hd,drive=zvbdisk,bus=scsi0.0",
        ],
    };
    v.extend(os(devs));
    v
}

/// The `-drive` value of a power-cut run (it replaces [`drive_args`]' own): a
/// `blklogwrites` node between the format driver (raw, vdi, ...) and the target's file or
/// device, logging every write and flush that reaches it to `log` (an existing file).
///
/// `cache=` on `-drive` sets `cache.direct` and `cache.no-flush` on the top node, and the
/// child nodes inherit both (QEMU's `bdrv_inherited_options`), so the log node and the file
/// below it are opened as the target itself would be: where stable storage begins. A flush
/// reaches the log only if no node above it has no-flush: `cache=unsafe` (no-flush on) logs
/// no flush at all, `none`, `writeback`, `writethrough` and `directsync` log every guest
/// flush (`bdrv_co_flush` skips a no-flush node's own flush, then flushes its children).
pub fn logged_drive(d: &Disk, log: &Path) -> OsString {
    let drive = format!(
        "driver={},if=none,id={DRIVE_ID},cache={},aio={},{}",
        d.format,
        key_name(d.cache),
        key_name(d.aio),
        logged_file(&d.path, log)
    );
    throttled(drive, d).into()
}

/// The `file.*` options of a `-drive` whose file (or device) `path` is logged by
/// `blklogwrites` to `log`: the node below the format driver (see [`logged_drive`]).
pub fn logged_file(path: &Path, log: &Path) -> String {
    format!(
        "file.driver=blklogwrites,file.file.filename={},file.log.filename={},file.log-sector-size={}",
        qemu_escape(path),
        qemu_escape(log),
        crate::powercut::LOG_SECTOR
    )
}

/// A `-drive` value with the disk's `throttling.bps-total`, if it has one.
fn throttled(drive: String, d: &Disk) -> String {
    match d.throttle_bps {
        Some(bps) => format!("{drive},throttling.bps-total={bps}"),
        None => drive,
    }
}

/// ttyS0 to a console log file; ttyS1 the frame channel on a UNIX socket QEMU listens on
/// and waits for (so no frame is written before the runner is connected); QMP on another.
pub fn chardev_args(console_log: &Path, frame_sock: &Path, qmp_sock: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        format!("file,id=con0,path={}", qemu_escape(console_log)).into(),
        "-serial".into(),
        "chardev:con0".into(),
        "-chardev".into(),
        format!(
            "socket,id=frames,path={},server=on,wait=on",
            qemu_escape(frame_sock)
        )
        .into(),
        "-serial".into(),
        "chardev:frames".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu_escape(qmp_sock)).into(),
    ]
}

/// `-name NAME`: the VM's name, which carries the run id (`vbox::vm_name`), so that
/// `zvbench clean` recognises a QEMU process of a dead run.
pub fn name_args(name: &str) -> Vec<OsString> {
    os(&["-name", name])
}

/// No default devices, no display, exit instead of rebooting.
pub fn base_args() -> Vec<OsString> {
    os(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
}

/// A running QEMU, killed and reaped when dropped.
pub struct QemuGuard {
    child: Option<Child>,
    log: PathBuf,
}

impl QemuGuard {
    /// Starts QEMU with `args`; its stdout and stderr go to `log`.
    pub fn spawn(args: &[OsString], log: &Path) -> std::io::Result<QemuGuard> {
        let f = std::fs::File::create(log)?;
        let mut c = Command::new(QEMU);
        crate::cmd::die_with_parent(&mut c);
        let child = c
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        Ok(QemuGuard {
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// If QEMU has exited: its status and the last lines of its log, the cause of
    /// whatever failed next (a socket refused or reset, a missing frame).
    pub fn exited(&mut self) -> Option<String> {
        let start = Instant::now();
        let st = loop {
            match self.child.as_mut()?.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() < Duration::from_millis(300) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        };
        Some(format!(
            "QEMU exited early ({st}); last lines of {}:{}",
            self.log.display(),
            crate::guest::console_tail(&self.log)
        ))
    }

    /// Waits up to `limit` for QEMU to exit by itself; `None` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            match self.child.as_mut()?.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    return Some(st);
                }
                Ok(None) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return None,
            }
        }
    }

    /// Whether QEMU is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects to a UNIX socket QEMU creates, retrying until `limit`.
pub fn connect(path: &Path, limit: Duration, guard: &mut QemuGuard) -> std::io::Result<UnixStream> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() > limit || !guard.running() => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The longest wait for QMP's greeting or a reply.
const QMP_REPLY_LIMIT: Duration = Duration::from_secs(120);

/// A QMP connection (JSON lines over a UNIX socket). Lines are bounded to 4 MiB. Events
/// that arrive between replies are kept, so none is lost to a command.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    partial: Vec<u8>,
    io_errors: Vec<Value>,
}

/// What a `BLOCK_IO_ERROR` event says, for an error naming the cause and `disk`: QEMU stops
/// the guest on ENOSPC (`werror=enospc`, its default) and would wait forever.
pub fn describe_io_error(event: &Value, disk: &Path) -> String {
    let d = &event["data"];
    let op = d["operation"].as_str().unwrap_or("request");
    if d["nospace"] == true {
        format!(
            "the file system holding {} is full (ENOSPC at a guest {op}; QEMU paused the guest): free space there or give the target a dir on a larger file system",
            disk.display()
        )
    } else {
        format!(
            "a host I/O error on {} at a guest {op} ({}); QEMU {} the guest",
            disk.display(),
            d["reason"].as_str().unwrap_or("no reason given"),
            match d["action"].as_str() {
                Some("stop") => "paused",
                _ => "reported it to",
            }
        )
    }
}

impl BlockStats {
    /// Finds the drive `id` in a `query-blockstats` reply.
    pub fn from_reply(reply: &Value, id: &str) -> Option<BlockStats> {
        let dev = reply
            .as_array()?
            .iter()
            .find(|d| d["device"] == id || d["qdev"].as_str().is_some_and(|q| q.contains(id)))?;
        let s = &dev["stats"];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        Some(BlockStats {
            rd_bytes: n("rd_bytes"),
            wr_bytes: n("wr_bytes"),
            rd_operations: n("rd_operations"),
            wr_operations: n("wr_operations"),
            flush_operations: n("flush_operations"),
            flush_total_time_ns: n("flush_total_time_ns"),
        })
    }
}

impl Qmp {
    /// Reads the greeting and enters command mode.
    pub fn handshake(stream: UnixStream) -> anyhow::Result<Qmp> {
        // QEMU greets once its main loop runs, after loading the kernel and initramfs: a
        // TCG QEMU nested in a TCG VM (the ZFS lab) took over 10 s there. A QEMU that dies
        // closes the socket, so a long limit never waits on a dead process.
        stream.set_read_timeout(Some(QMP_REPLY_LIMIT))?;
        let mut q = Qmp {
            r: BufReader::new(stream.try_clone()?),
            w: stream,
            partial: Vec::new(),
            io_errors: Vec::new(),
        };
        let greeting = q.read_msg()?;
        anyhow::ensure!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    /// Reads one message; a line cut short by a timeout is kept and completed next time.
    /// Events worth failing for are set aside for [`Qmp::io_error`].
    fn read_msg(&mut self) -> anyhow::Result<Value> {
        let room = (4u64 << 20).saturating_sub(self.partial.len() as u64);
        let n = std::io::Read::take(&mut self.r, room).read_until(b'\n', &mut self.partial)?;
        anyhow::ensure!(
            n > 0 && self.partial.ends_with(b"\n"),
            "QMP connection closed or line too long"
        );
        let m: Value = serde_json::from_slice(&std::mem::take(&mut self.partial))?;
        if m["event"] == "BLOCK_IO_ERROR" {
            self.io_errors.push(m.clone());
        }
        Ok(m)
    }

    /// The first `BLOCK_IO_ERROR` event QEMU sent, reading what is waiting without blocking.
    pub fn io_error(&mut self) -> anyhow::Result<Option<Value>> {
        self.w.set_nonblocking(true)?;
        let r = loop {
            match self.read_msg() {
                Ok(_) => {}
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) =>
                {
                    break Ok(())
                }
                Err(e) => break Err(e),
            }
        };
        self.w.set_nonblocking(false)?;
        r?;
        Ok(self.io_errors.first().cloned())
    }

    /// Runs a command and returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, cmd: &str) -> anyhow::Result<Value> {
        writeln!(self.w, "{}", serde_json::json!({ "execute": cmd }))?;
        for _ in 0..1000 {
            let m = self.read_msg()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                anyhow::bail!("QMP {cmd} failed: {e}");
            }
        }
        anyhow::bail!("QMP {cmd}: no reply among 1000 messages")
    }

    /// The benchmark drive's counters.
    pub fn blockstats(&mut self) -> anyhow::Result<BlockStats> {
        let r = self.execute("query-blockstats")?;
        BlockStats::from_reply(&r, DRIVE_ID)
            .ok_or_else(|| anyhow::anyhow!("drive {DRIVE_ID} not in query-blockstats"))
    }
}

/// QEMU's version line, e.g. `QEMU emulator version 10.0.2 (...)`.
pub fn version() -> Option<String> {
    let out = Command::new(QEMU).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Whether KVM really runs a guest: boots `kernel` under KVM with no initrd and looks for
/// the kernel's banner on the console within `limit`. A host where `/dev/kvm` exists but
/// cannot run a guest (as on zvbench's build machines) answers false.
pub fn probe_kvm(kernel: &Path, work: &Path, limit: Duration) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let log = work.join("kvm-probe.log");
    let mut args = base_args();
    args.extend(machine_args(Accel::Kvm));
    args.extend(size_args(256 << 20, 1));
    args.extend(os(&["-kernel"]));
    args.push(kernel.into());
    args.extend(os(&["-append", "console=ttyS0 panic=-1", "-serial"]));
    args.push(format!("file:{}", qemu_escape(&log)).into());
    let Ok(mut g) = QemuGuard::spawn(&args, &work.join("kvm-probe.qemu.log")) else {
        return false;
    };
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::read(&log).is_ok_and(|b| b.windows(13).any(|w| w == b"Linux version")) {
            return true;
        }
        if !g.running() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Whether KVM runs a guest here ([`probe_kvm`]). The answer is cached in `cache` per host
/// kernel, QEMU version and guest kernel, since a failing probe costs its whole time limit.
pub fn kvm_works(kernel: &Path, cache: &Path) -> bool {
    let key = format!(
        "{}|{}|{}",
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        version().unwrap_or_default(),
        kernel.display()
    );
    let file = cache.join("accel-probe.json");
    let cached: Option<Accel> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["key"] == key.as_str())
        .and_then(|v| serde_json::from_value(v["accel"].clone()).ok());
    let accel = cached.unwrap_or_else(|| {
        let _ = std::fs::create_dir_all(cache);
        let a = if probe_kvm(kernel, cache, Duration::from_secs(8)) {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        let _ = std::fs::write(
            &file,
            serde_json::json!({ "key": key, "accel": a }).to_string(),
        );
        a
    });
    accel == Accel::Kvm
}

/// KVM if a probe boot works, else TCG (with a warning).
pub fn choose_accel(kernel: &Path, cache: &Path) -> Accel {
    if kvm_works(kernel, cache) {
        return Accel::Kvm;
    }
    crate::observe::warning!("zvbench: warning: KVM cannot run a guest here; guests use TCG software emulation (slow, and not comparable to KVM numbers)");
    Accel::Tcg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|x| x.into_string().unwrap()).collect()
    }

    #[test]
    fn drive_args_per_bus() {
        let d = |bus| Disk {
            path: "/dev/loop3".into(),
            format: "raw",
            cache: CacheMode::None,
            aio: Aio::Threads,
            bus,
            throttle_bps: None,
        };
        let head = "file=/dev/loop3,format=raw,if=none,id=zvbdisk,cache=none,aio=threads";
        for (bus, devices) in [
            (Bus::Virtio, vec!["virtio-blk-pci,drive=zvbdisk"]),
            (
                Bus::Sata,
                vec!["ahci,id=ahci0", "ide-hd,drive=zvbdisk,bus=ahci0.0"],
            ),
            (Bus::Nvme, vec!["nvme,drive=zvbdisk,serial=zvbench0"]),
            (
                Bus::Scsi,
                vec![
                    "virtio-scsi-pci,id=scsi0",
                    "scsi-hd,drive=zvbdisk,bus=scsi0.0",
                ],
            ),
        ] {
            let got = s(drive_args(&d(bus)));
            let mut want = vec!["-drive".to_string(), head.to_string()];
            for dev in devices {
                want.extend(["-device".to_string(), dev.to_string()]);
            }
            assert_eq!(got, want, "{bus:?}");
        }
    }

    #[test]
    fn cache_and_aio_and_escaping() {
        for (cache, aio, want) in [
            (CacheMode::Unsafe, Aio::Threads, "cache=unsafe,aio=threads"),
            (
                CacheMode::Writeback,
                Aio::IoUring,
                "cache=writeback,aio=io_uring",
            ),
            (
                CacheMode::Directsync,
                Aio::Native,
                "cache=directsync,aio=native",
            ),
            (
                CacheMode::Writethrough,
                Aio::Threads,
                "cache=writethrough,aio=threads",
            ),
        ] {
            let d = Disk {
                path: "/var/tmp/a,b.vdi".into(),
                format: "vdi",
                cache,
                aio,
                bus: Bus::Virtio,
                throttle_bps: None,
            };
            let got = s(drive_args(&d));
            assert!(
                got[1].starts_with("file=/var/tmp/a,,b.vdi,format=vdi,"),
                "{got:?}"
            );
            assert!(got[1].ends_with(want), "{got:?}");
            let throttled = s(drive_args(&Disk {
                throttle_bps: Some(3 << 20),
                ..d
            }));
            assert_eq!(
                throttled[1],
                format!("{},throttling.bps-total=3145728", got[1])
            );
        }
    }

    #[test]
    fn logged_drive_puts_the_log_above_the_file() {
        let d = Disk {
            path: "/dev/loop3".into(),
            format: "vdi",
            cache: CacheMode::Unsafe,
            aio: Aio::Threads,
            bus: Bus::Virtio,
            throttle_bps: None,
        };
        assert_eq!(
            logged_drive(&d, Path::new("/r/a,b.log")),
            "driver=vdi,if=none,id=zvbdisk,cache=unsafe,aio=threads,file.driver=blklogwrites,file.file.filename=/dev/loop3,file.log.filename=/r/a,,b.log,file.log-sector-size=512"
        );
    }

    #[test]
    fn machine_and_sizes() {
        assert_eq!(
            s(machine_args(Accel::Tcg)),
            ["-machine", "q35,accel=tcg", "-cpu", "max"]
        );
        assert_eq!(
            s(machine_args(Accel::Kvm)),
            ["-machine", "q35,accel=kvm", "-cpu", "host"]
        );
        assert_eq!(s(size_args(512 << 20, 2)), ["-m", "512M", "-smp", "2"]);
    }

    #[test]
    fn chardevs_wait_for_the_frame_reader() {
        let got = s(chardev_args(
            Path::new("/r/console.log"),
            Path::new("/r/f.sock"),
            Path::new("/r/q.sock"),
        ));
        assert_eq!(got[1], "file,id=con0,path=/r/console.log");
        assert_eq!(got[5], "socket,id=frames,path=/r/f.sock,server=on,wait=on");
        assert_eq!(got[9], "unix:/r/q.sock,server=on,wait=off");
        assert_eq!(
            got.iter().filter(|a| *a == "-serial").count(),
            2,
            "ttyS0 console, ttyS1 frames"
        );
    }

    #[test]
    fn blockstats_from_reply_and_delta() {
        let reply = serde_json::json!([
            {"device": "other", "stats": {"flush_operations": 99}},
            {"device": "zvbdisk", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
             "stats": {"flush_operations": 51, "flush_total_time_ns": 1000, "wr_bytes": 4096, "wr_operations": 1,
                       "rd_bytes": 0, "rd_operations": 0}}
        ]);
        let a = BlockStats::from_reply(&reply, DRIVE_ID).unwrap();
        assert_eq!(a.flush_operations, 51);
        let b = BlockStats {
            flush_operations: 1,
            ..a
        };
        assert_eq!(a.delta(&b).flush_operations, 50);
        assert!(BlockStats::from_reply(&serde_json::json!([]), DRIVE_ID).is_none());
    }
}
