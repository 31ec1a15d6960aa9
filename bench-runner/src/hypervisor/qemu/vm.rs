//! QEMU behind the [`Hypervisor`] interface: the command line of one guest boot, the
//! frame channel on ttyS1 (a UNIX socket, so the host acknowledges each mark), the
//! counters through QMP, and a power-cut check's `blklogwrites` log.

use super::{Accel, Disk, Firmware, QemuGuard, Qmp};
use crate::guest::{no_bytes_yet, BlockStats, Handshake, APPEND};
use crate::hypervisor::boot::{Guest, Hypervisor, Medium, Poll, Vm};
use crate::scenario::{key_name, Boot, GuestConfig};
use anyhow::{anyhow, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// QEMU, configured for one target.
pub struct Qemu {
    /// Accelerator.
    pub accel: Accel,
    /// The disk (path, QEMU format).
    pub disk: (PathBuf, &'static str),
    /// A power-cut check: log the disk's writes and flushes here (`blklogwrites`), ask the
    /// agent for sync marks, and kill QEMU hard (SIGKILL) once the results are in.
    pub powercut_log: Option<PathBuf>,
    /// The firmware of a direct kernel boot ([`Firmware::for_direct_boot`]).
    pub firmware: Firmware,
}

/// How long QEMU may take to open a socket it listens on.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

impl Qemu {
    /// QEMU's argv for `guest` booting from `medium`.
    pub fn args(&self, guest: &Guest, medium: &Medium) -> Result<Vec<OsString>> {
        let (cfg, work) = (guest.cfg, &guest.work);
        let mut args = super::base_args();
        args.extend(super::name_args(&guest.name));
        args.extend(super::machine_args(self.accel));
        args.extend(super::size_args(cfg.memory.bytes(), cfg.cpus));
        args.extend(match medium {
            Medium::Kernel { initrd } => {
                super::boot_args(self.firmware, guest.kernel.direct_image(), initrd, APPEND)
            }
            Medium::Iso(iso) => super::cdrom_args(iso),
        });
        let disk = Disk {
            path: self.disk.0.clone(),
            format: self.disk.1,
            cache: cfg.cache,
            aio: cfg.aio,
            bus: cfg.bus,
            throttle_bps: cfg.throttle_bps,
        };
        let mut drive = super::drive_args(&disk);
        if let Some(log) = &self.powercut_log {
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
            drive[1] = super::logged_drive(&disk, log);
        }
        args.extend(drive);
        args.extend(super::chardev_args(
            &guest.console(),
            &work.join("frames.sock"),
            &work.join("qmp.sock"),
        ));
        Ok(args)
    }
}

impl Hypervisor for Qemu {
    fn handshake(&self) -> Handshake {
        Handshake::Ack
    }

    /// Direct kernel boot, or the guest ISO from a CD drive (`boot = "iso"`).
    fn boot(&self, cfg: &GuestConfig) -> Boot {
        cfg.boot
    }

    fn write_log(&self) -> Option<&Path> {
        self.powercut_log.as_deref()
    }

    fn accel(&self) -> Option<Accel> {
        Some(self.accel)
    }

    /// `cache=` of the drive.
    fn cache(&self, cfg: &GuestConfig) -> String {
        key_name(cfg.cache)
    }

    /// `query-blockstats` has `flush_total_time_ns`.
    fn flush_time(&self) -> bool {
        true
    }

    fn start<'s>(&'s self, guest: &'s Guest<'s>, medium: &Medium) -> Result<Box<dyn Vm + 's>> {
        let work = &guest.work;
        for s in ["frames.sock", "qmp.sock"] {
            let _ = std::fs::remove_file(work.join(s));
        }
        let args = self.args(guest, medium)?;
        std::fs::write(
            work.join("qemu.argv"),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        )?;
        let guard = QemuGuard::spawn(&args, &work.join("qemu.log")).context("start QEMU")?;
        Ok(Box::new(QemuVm {
            qemu: self,
            work,
            guard,
            channels: None,
        }))
    }
}

/// A running QEMU guest.
struct QemuVm<'a> {
    qemu: &'a Qemu,
    work: &'a Path,
    guard: QemuGuard,
    /// The frame socket, a second handle to it for acks, and QMP, once connected.
    channels: Option<(UnixStream, UnixStream, Qmp)>,
}

impl QemuVm<'_> {
    fn channels(&mut self) -> Result<&mut (UnixStream, UnixStream, Qmp)> {
        self.channels
            .as_mut()
            .ok_or_else(|| anyhow!("QEMU's sockets are not connected"))
    }
}

impl Vm for QemuVm<'_> {
    fn connect(&mut self) -> Result<()> {
        let frames = super::connect(
            &self.work.join("frames.sock"),
            CONNECT_LIMIT,
            &mut self.guard,
        )
        .map_err(|e| {
            let e = anyhow!(
                "QEMU did not open its frame socket ({e}); see {}",
                self.work.join("qemu.log").display()
            );
            self.cause(e)
        })?;
        let qmp = super::connect(&self.work.join("qmp.sock"), CONNECT_LIMIT, &mut self.guard)
            .map_err(anyhow::Error::from)
            .and_then(Qmp::handshake)
            .map_err(|e| self.cause(e.context("QMP")))?;
        frames.set_read_timeout(Some(Duration::from_millis(200)))?;
        let writer = frames.try_clone()?;
        self.channels = Some((frames, writer, qmp));
        Ok(())
    }

    fn poll(&mut self, buf: &mut [u8]) -> Result<Poll> {
        match self.channels()?.0.read(buf) {
            Ok(0) => Ok(Poll::Ended("the guest ended before it sent all results")),
            Ok(n) => Ok(Poll::Bytes(n)),
            Err(e) if no_bytes_yet(&e) => Ok(Poll::Idle),
            Err(e) => Err(anyhow::Error::from(e).context("reading the frame socket")),
        }
    }

    fn counters(&mut self) -> Option<BlockStats> {
        self.channels().ok()?.2.blockstats().ok()
    }

    fn ack(&mut self) -> Result<()> {
        Ok(self.channels()?.1.write_all(b"A")?)
    }

    fn disk_error(&mut self) -> Option<String> {
        let ev = self.channels().ok()?.2.io_error().ok().flatten()?;
        Some(super::describe_io_error(&ev, &self.qemu.disk.0))
    }

    /// Whatever fails once QEMU is gone (a socket refused or reset, a missing frame) is
    /// named by QEMU's own last words.
    fn cause(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.guard.exited() {
            Some(why) => e.context(why),
            None => e,
        }
    }

    fn finish(&mut self) -> Result<()> {
        // With a power cut, the guard's drop kills QEMU hard: no clean shutdown, no
        // flush, no close of the log.
        if self.qemu.powercut_log.is_none() {
            let _ = self.guard.wait_timeout(Duration::from_secs(20));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::kernel::{DirectBoot, GuestKernel};
    use crate::hypervisor::boot::Below;
    use crate::scenario::{Aio, Bus, CacheMode, Hypervisor as Kind, VboxFlush};
    use zvbench_agent::ByteSize;

    /// QEMU's argv for a one-CPU virtio guest in `work`, as one line.
    fn argv(qemu: &Qemu, work: &Path, medium: &Medium) -> String {
        let cfg = GuestConfig {
            hypervisor: Kind::Qemu,
            memory: ByteSize(256 << 20),
            cpus: 1,
            bus: Bus::Virtio,
            cache: CacheMode::Writeback,
            aio: Aio::Threads,
            boot: Boot::Kernel,
            throttle_bps: None,
            vbox: VboxFlush::default(),
        };
        let kernel = GuestKernel {
            image: "/k/bzImage".into(),
            modules: "/k/modules".into(),
            source: "given".into(),
            direct: DirectBoot::Pvh {
                vmlinux: "/k/vmlinux".into(),
            },
        };
        let guest = Guest {
            cfg: &cfg,
            kernel: &kernel,
            agent: Path::new("/a/agent"),
            below: Below::default(),
            work: work.to_owned(),
            timeout: Duration::from_secs(60),
            name: "zvbench-20261127T000000-1-t-1".into(),
        };
        let args = qemu.args(&guest, medium).unwrap();
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_medium_and_the_power_cut_log_shape_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        let mut qemu = Qemu {
            accel: Accel::Tcg,
            disk: ("/d/disk.vdi".into(), "vdi"),
            powercut_log: None,
            firmware: Firmware::Qboot,
        };
        let initrd = w.join("initramfs.cpio.gz");
        let kernel = argv(
            &qemu,
            w,
            &Medium::Kernel {
                initrd: initrd.clone(),
            },
        );
        assert!(
            kernel.contains(&format!(
                "-kernel /k/vmlinux -initrd {} -append {APPEND}",
                initrd.display()
            )),
            "the PVH image boots directly: {kernel}"
        );
        assert!(
            kernel.contains("-name zvbench-20261127T000000-1-t-1"),
            "{kernel}"
        );
        assert!(
            kernel.contains("file=/d/disk.vdi,format=vdi,if=none,id=zvbdisk,cache=writeback"),
            "{kernel}"
        );
        let iso = argv(&qemu, w, &Medium::Iso(w.join("g.iso")));
        assert!(
            !iso.contains("-kernel") && iso.contains("media=cdrom") && !iso.contains("-bios"),
            "an ISO boots through SeaBIOS: {iso}"
        );
        assert!(
            kernel.contains(&format!("-bios {} -kernel", crate::hypervisor::qemu::QBOOT)),
            "a direct boot goes through qboot: {kernel}"
        );
        let log = w.join("powercut.log");
        qemu.powercut_log = Some(log.clone());
        let logged = argv(&qemu, w, &Medium::Iso(w.join("g.iso")));
        assert!(
            logged.contains(&format!(
                "driver=vdi,if=none,id=zvbdisk,cache=writeback,aio=threads,file.driver=blklogwrites,file.file.filename=/d/disk.vdi,file.log.filename={}",
                log.display()
            )),
            "{logged}"
        );
        assert!(log.exists(), "the log exists before QEMU opens it");
    }
}
