//! VirtualBox behind the [`Hypervisor`] interface: one VM created from the guest ISO with
//! `VBoxManage`, torn down on every exit path. Frames come from a serial port written to a
//! file (`--uart-mode1 file`), which has no way back into the guest: the agent pauses at
//! each phase mark while zvbench, polling the file, reads the counters
//! ([`Handshake::Pause`]).

use super::{
    controller, flush_key, parse_statistics, vm_state, Controller, VBoxManage, VboxDisk, DVD,
    MARK_PAUSE,
};
use crate::cmd::Argv;
use crate::guest::{BlockStats, Handshake};
use crate::host::storage::{Teardown, Undo};
use crate::hypervisor::boot::{Guest, Hypervisor, Medium, Poll, Vm};
use crate::scenario::{Boot, GuestConfig, Variant};
use crate::writelog::LoggedFile;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// VirtualBox, configured for one target.
pub struct VirtualBox {
    /// The VBoxManage to run.
    pub vbox: VBoxManage,
    /// The disk.
    pub disk: VboxDisk,
    /// For a power-cut check of an image disk: the write log to write and the file to copy
    /// the new image to before the VM starts (the replay's base). The image is then
    /// created and used through a [`LoggedFile`] mount; a raw-disk VMDK is not logged.
    pub powercut: Option<(PathBuf, PathBuf)>,
}

impl VirtualBox {
    /// The power-cut files, for a disk that is one image file: not a raw-disk VMDK (a
    /// device) nor a fixed VMDK (its data is in a second, `-flat.vmdk`, file).
    fn logged(&self) -> Option<&(PathBuf, PathBuf)> {
        let one_file = match &self.disk {
            VboxDisk::Image {
                format, variant, ..
            } => *format != "VMDK" || *variant != Variant::Fixed,
            VboxDisk::Raw { .. } => false,
        };
        self.powercut.as_ref().filter(|_| one_file)
    }
}

impl Hypervisor for VirtualBox {
    fn handshake(&self) -> Handshake {
        Handshake::Pause(MARK_PAUSE)
    }

    /// Always the guest ISO, from a DVD drive.
    fn boot(&self, _: &GuestConfig) -> Boot {
        Boot::Iso
    }

    /// The host I/O cache and whether flushes are ignored.
    fn cache(&self, cfg: &GuestConfig) -> String {
        cfg.vbox.describe()
    }

    /// The FUSE write log under an image disk ([`crate::writelog`]).
    fn write_log(&self) -> Option<&Path> {
        self.logged().map(|(log, _)| log.as_path())
    }

    fn settings(&self, cfg: &GuestConfig) -> Result<Option<serde_json::Value>> {
        super::settings(self.vbox.major(), cfg, &self.disk).map(Some)
    }

    /// VirtualBox's own log (`VBox.log`, kept in `work` at teardown).
    fn flushes_disabled(&self, work: &Path) -> Option<String> {
        super::async_flushes_disabled_in(&work.join("VBox.log"))
    }

    fn start<'s>(&'s self, guest: &'s Guest<'s>, medium: &Medium) -> Result<Box<dyn Vm + 's>> {
        let Medium::Iso(iso) = medium else {
            bail!("VirtualBox boots the guest ISO only");
        };
        // VBoxManage resolves relative paths against its own directory.
        let work = std::fs::canonicalize(&guest.work)?;
        let mut vm = VboxVm {
            vbox: &self.vbox,
            name: guest.name.clone(),
            ctl: controller(guest.cfg.bus)?,
            log: std::fs::File::create(work.join("vboxmanage.log"))?,
            frames: work.join("serial-frames.log"),
            file: None,
            last_state_check: Instant::now(),
            off: false,
            down: Undo::default(),
            logged: None,
        };
        vm.create(
            (&self.disk, self.logged()),
            guest.cfg,
            &work,
            &std::fs::canonicalize(iso)?,
        )?;
        vm.run(&self.vbox.startvm(&vm.name))?;
        vm.down.push(Teardown::Command {
            argv: self.vbox.poweroff(&vm.name),
            quiet: true,
        });
        Ok(Box::new(vm))
    }
}

/// A VirtualBox VM zvbench created, and what undoes it.
struct VboxVm<'a> {
    vbox: &'a VBoxManage,
    name: String,
    ctl: Controller,
    /// Every VBoxManage call, in order.
    log: std::fs::File,
    /// The serial log file the guest writes frames to.
    frames: PathBuf,
    file: Option<std::fs::File>,
    last_state_check: Instant,
    /// The VM was seen powered off: one more read drains what it wrote last.
    off: bool,
    /// Dropped after the VM is powered off: powers the VM off, detaches and deletes its
    /// media, unregisters it.
    down: Undo,
    /// The write-log mount the image is used through (power cuts); dropped after `down`,
    /// so the VM no longer holds the file when it is unmounted.
    logged: Option<LoggedFile>,
}

/// A teardown step that runs `argv`, warning if it fails.
fn undo(argv: Argv) -> Teardown {
    Teardown::Command { argv, quiet: false }
}

impl VboxVm<'_> {
    /// Runs a VBoxManage command, logged first; its stdout.
    fn run(&self, a: &Argv) -> Result<String> {
        use std::io::Write;
        writeln!(&self.log, "{}", a.display())?;
        Ok(a.stdout()?)
    }

    /// Creates and registers the VM: memory, CPUs, serial ports to files, the ISO on the
    /// DVD drive, the benchmark disk with its flush settings. Each step is undone on drop.
    fn create(
        &mut self,
        (disk, powercut): (&VboxDisk, Option<&(PathBuf, PathBuf)>),
        cfg: &GuestConfig,
        work: &Path,
        iso: &Path,
    ) -> Result<()> {
        let (vm, ctl, vbox) = (self.name.clone(), self.ctl, self.vbox);
        let vm = vm.as_str();
        self.run(&vbox.createvm(vm, &work.join("vm")))?;
        self.down.push(undo(vbox.unregistervm(vm)));
        self.down.push(Teardown::Keep {
            from: work.join("vm").join(vm).join("Logs/VBox.log"),
            to: work.join("VBox.log"),
        });
        self.run(&vbox.modifyvm(
            vm,
            cfg.memory.bytes() >> 20,
            cfg.cpus,
            &work.join("console.log"),
            &self.frames,
        ))?;
        // A SATA disk shares the DVD's controller, and so its host I/O cache setting.
        let cache = cfg.vbox.host_io_cache;
        self.run(&vbox.storagectl(vm, &DVD, ctl.name == DVD.name && cache))?;
        if ctl.name != DVD.name {
            self.run(&vbox.storagectl(vm, &ctl, cache))?;
        }
        self.run(&vbox.storageattach(vm, &DVD, Some((iso, true))))?;
        self.down.push(undo(vbox.storageattach(vm, &DVD, None)));
        let medium = match disk {
            VboxDisk::Image {
                path,
                format,
                variant,
                size,
            } => {
                let Some((log, base)) = powercut else {
                    self.run(&vbox.createmedium(path, size >> 20, format, *variant))?;
                    return self.attach(path, cfg);
                };
                let lf = LoggedFile::mount(path, &work.join("writelog"))?;
                let through = lf.path().to_owned();
                self.logged = Some(lf);
                self.run(&vbox.createmedium(&through, size >> 20, format, *variant))?;
                self.attach(&through, cfg)?;
                // The new image is the replay's base; the log starts from it.
                crate::powercut::copy_disk(path, base)?;
                return self
                    .logged
                    .as_ref()
                    .map_or(Ok(()), |l| Ok(l.start_log(log)?));
            }
            VboxDisk::Raw { device } => {
                let f = work.join("raw.vmdk");
                self.run(&vbox.raw_vmdk(&f, device))?;
                f
            }
        };
        self.attach(&medium, cfg)
    }

    /// Attaches the benchmark disk `medium` and sets its flush settings.
    fn attach(&mut self, medium: &Path, cfg: &GuestConfig) -> Result<()> {
        let (vm, ctl, vbox) = (self.name.clone(), self.ctl, self.vbox);
        let vm = vm.as_str();
        // closemedium --delete removes an image, or a raw VMDK's descriptor (never the
        // device behind it).
        self.down.push(undo(vbox.closemedium_delete(medium)));
        self.run(&vbox.storageattach(vm, &ctl, Some((medium, false))))?;
        self.down.push(undo(vbox.storageattach(vm, &ctl, None)));
        let f = &cfg.vbox;
        for (setting, v) in [
            ("IgnoreFlush", f.ignore_flush),
            ("IgnoreFlushAsync", f.ignore_flush_async),
        ] {
            if let Some(v) = v {
                let key = flush_key(&ctl, setting);
                self.run(&vbox.setextradata(vm, &key, if v { "1" } else { "0" }))?;
            }
        }
        Ok(())
    }

    /// The VM's state from `showvminfo`.
    fn state_is(&self, states: &[&str]) -> Result<bool> {
        let info = self.run(&self.vbox.showvminfo(&self.name))?;
        Ok(vm_state(&info).is_some_and(|s| states.contains(&s)))
    }
}

impl Vm for VboxVm<'_> {
    fn poll(&mut self, buf: &mut [u8]) -> Result<Poll> {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.frames).ok();
        }
        let n = match self.file.as_mut() {
            Some(f) => f.read(buf).context("reading the serial log")?,
            None => 0,
        };
        if n > 0 {
            return Ok(Poll::Bytes(n));
        }
        if self.off {
            return Ok(Poll::Ended(
                "the guest powered off before it sent all results",
            ));
        }
        if self.last_state_check.elapsed() > Duration::from_secs(2) {
            self.last_state_check = Instant::now();
            self.off = self.state_is(&["poweroff", "aborted"])?;
        }
        if !self.off {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Poll::Idle)
    }

    fn counters(&mut self) -> Option<BlockStats> {
        let out = self.vbox.statistics(&self.name).stdout().ok()?;
        parse_statistics(&out, &self.ctl.stats())
    }

    fn finish(&mut self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if self.state_is(&["poweroff"])? {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }
}
