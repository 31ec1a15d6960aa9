//! The VirtualBox backend: `VBoxManage` argv vectors made by small pure functions, the
//! per-port storage counters of `debugvm statistics`, and one guest boot from the guest ISO
//! with its teardown on every exit path.
//!
//! Frames come from a serial port written to a file (`--uart-mode1 file`), which has no
//! way back into the guest: the agent pauses at each phase mark while zvbench, polling the
//! file, reads the counters (see [`crate::guest::Handshake::Pause`]).

use crate::cmd::Argv;
use crate::guest::{build_initramfs, console_tail, snapshot, GuestPass, Handshake, Session, Step};
use crate::kernel::GuestKernel;
use crate::qemu::{BlockStats, APPEND};
use crate::scenario::{Bus, GuestConfig, Variant, VboxFlush};
use crate::storage::{Teardown, Undo};
use crate::zfs::ZilSource;
use crate::Interrupt;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::devstat::StatSource;
use zvbench_agent::pass::PassSpec;

/// Environment variable naming the `VBoxManage` to run (default: `VBoxManage` on PATH).
pub const VBOXMANAGE_ENV: &str = "ZVBENCH_VBOXMANAGE";

/// How long the guest pauses at each mark for zvbench to read the counters.
pub const MARK_PAUSE: Duration = Duration::from_millis(1500);

/// The `VBoxManage` program.
pub fn program() -> OsString {
    std::env::var_os(VBOXMANAGE_ENV).unwrap_or_else(|| "VBoxManage".into())
}

/// The installed VBoxManage's syntax, from `VBoxManage --version`.
pub fn detect() -> Result<Major> {
    let out = cmd(argv(&["--version"]))
        .stdout()
        .context("VirtualBox's VBoxManage is needed for hypervisor = \"virtualbox\" (or set ZVBENCH_VBOXMANAGE)")?;
    parse_version(&out)
}

/// VirtualBox major versions whose `VBoxManage` syntax differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Major {
    /// 6.1: `--uartmode1`, `internalcommands createrawvmdk`.
    V6,
    /// 7.x: `--uart-mode1`, `createmedium --variant RawDisk`.
    V7,
}

/// Reads `VBoxManage --version` output, e.g. `7.0.14r161095`.
pub fn parse_version(out: &str) -> Result<Major> {
    let v = out.trim();
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match (major, minor) {
        (6, 1..) => Ok(Major::V6),
        (7.., _) => Ok(Major::V7),
        _ => bail!("VirtualBox {v:?} is not supported: zvbench drives 6.1 and 7.x"),
    }
}

fn argv(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

fn cmd(mut parts: Vec<OsString>) -> Argv {
    parts.insert(0, program());
    Argv(parts)
}

/// The storage controller the benchmark disk sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// Its name in the VM.
    pub name: &'static str,
    /// `storagectl --add`.
    pub add: &'static str,
    /// `storagectl --controller`.
    pub chipset: &'static str,
    /// The device name in `VBoxInternal/Devices/<device>/0/LUN#<port>/Config/...`.
    pub device: &'static str,
    /// The disk's port.
    pub port: u32,
    /// Prefix of the disk's counters in `debugvm statistics`.
    pub stats: &'static str,
}

/// The SATA controller that holds the guest ISO's DVD drive (port 0); a SATA disk goes on
/// port 1 of the same controller, as in the story.
pub const DVD: Controller = Controller {
    name: "SATA",
    add: "sata",
    chipset: "IntelAhci",
    device: "ahci",
    port: 0,
    stats: "/Public/Storage/AHCI0/Port0/",
};

/// The benchmark disk's controller for a bus.
pub fn controller(bus: Bus) -> Result<Controller> {
    Ok(match bus {
        Bus::Sata => Controller {
            port: 1,
            stats: "/Public/Storage/AHCI0/Port1/",
            ..DVD
        },
        Bus::Nvme => Controller {
            name: "NVMe",
            add: "pcie",
            chipset: "NVMe",
            device: "nvme",
            port: 0,
            stats: "/Public/Storage/NVMe0/Port0/",
        },
        Bus::Scsi => Controller {
            name: "VirtioSCSI",
            add: "virtio",
            chipset: "VirtIO",
            device: "virtio-scsi",
            port: 0,
            stats: "/Public/Storage/VIRTIOSCSI0/Port0/",
        },
        Bus::Virtio => bail!("VirtualBox has no virtio-blk controller"),
    })
}

/// `createvm --register`.
pub fn createvm(vm: &str, basefolder: &Path) -> Argv {
    let mut v = argv(&[
        "createvm",
        "--name",
        vm,
        "--ostype",
        "Linux_64",
        "--basefolder",
    ]);
    v.push(basefolder.into());
    v.push("--register".into());
    cmd(v)
}

/// `modifyvm`: memory, CPUs, boot from DVD only, COM1 (console) and COM2 (frames) to files.
pub fn modifyvm(
    major: Major,
    vm: &str,
    memory_mb: u64,
    cpus: u32,
    console: &Path,
    frames: &Path,
) -> Argv {
    let mode = |n: u32| match major {
        Major::V6 => format!("--uartmode{n}"),
        Major::V7 => format!("--uart-mode{n}"),
    };
    let mut v = argv(&["modifyvm", vm, "--memory"]);
    v.push(memory_mb.to_string().into());
    v.push("--cpus".into());
    v.push(cpus.to_string().into());
    v.extend(argv(&[
        "--ioapic", "on", "--boot1", "dvd", "--boot2", "none", "--boot3", "none", "--boot4",
        "none", "--uart1", "0x3F8", "4",
    ]));
    v.push(mode(1).into());
    v.push("file".into());
    v.push(console.into());
    v.extend(argv(&["--uart2", "0x2F8", "3"]));
    v.push(mode(2).into());
    v.push("file".into());
    v.push(frames.into());
    cmd(v)
}

/// `storagectl --add`: a controller with the host I/O cache on or off.
pub fn storagectl(vm: &str, c: &Controller, host_io_cache: bool) -> Argv {
    let mut v = argv(&[
        "storagectl",
        vm,
        "--name",
        c.name,
        "--add",
        c.add,
        "--controller",
        c.chipset,
    ]);
    if c.add == "sata" {
        v.extend(argv(&["--portcount", "2"]));
    }
    v.extend(argv(&[
        "--hostiocache",
        if host_io_cache { "on" } else { "off" },
        "--bootable",
        "on",
    ]));
    cmd(v)
}

/// `storageattach` of `medium` (a DVD image, or a disk with `--mtype writethrough` as in
/// the story); `None` detaches.
pub fn storageattach(vm: &str, c: &Controller, medium: Option<(&Path, bool)>) -> Argv {
    let mut v = argv(&["storageattach", vm, "--storagectl", c.name, "--port"]);
    v.push(c.port.to_string().into());
    v.extend(argv(&["--device", "0"]));
    match medium {
        None => v.extend(argv(&["--medium", "none"])),
        Some((path, dvd)) => {
            v.extend(argv(&[
                "--type",
                if dvd { "dvddrive" } else { "hdd" },
                "--medium",
            ]));
            v.push(path.into());
            if !dvd {
                v.extend(argv(&["--mtype", "writethrough"]));
            }
        }
    }
    cmd(v)
}

/// `createmedium disk --format VDI|VMDK`, size in MiB.
pub fn createmedium(file: &Path, size_mb: u64, format: &str, variant: Variant) -> Argv {
    let mut v = argv(&["createmedium", "disk", "--filename"]);
    v.push(file.into());
    v.push("--size".into());
    v.push(size_mb.to_string().into());
    v.extend(argv(&[
        "--format",
        format,
        "--variant",
        match variant {
            Variant::Dynamic => "Standard",
            Variant::Fixed => "Fixed",
        },
    ]));
    cmd(v)
}

/// A raw-disk VMDK that passes the guest's disk through to `device`.
pub fn raw_vmdk(major: Major, file: &Path, device: &Path) -> Argv {
    match major {
        Major::V7 => {
            let mut v = argv(&["createmedium", "disk", "--filename"]);
            v.push(file.into());
            v.extend(argv(&[
                "--format",
                "VMDK",
                "--variant",
                "RawDisk",
                "--property",
            ]));
            let mut p = OsString::from("RawDrive=");
            p.push(device);
            v.push(p);
            cmd(v)
        }
        Major::V6 => {
            let mut v = argv(&["internalcommands", "createrawvmdk", "-filename"]);
            v.push(file.into());
            v.push("-rawdisk".into());
            v.push(device.into());
            cmd(v)
        }
    }
}

/// The extradata key of a flush setting of the disk.
pub fn flush_key(c: &Controller, setting: &str) -> String {
    format!(
        "VBoxInternal/Devices/{}/0/LUN#{}/Config/{setting}",
        c.device, c.port
    )
}

/// `setextradata VM KEY VALUE`.
pub fn setextradata(vm: &str, key: &str, value: &str) -> Argv {
    cmd(argv(&["setextradata", vm, key, value]))
}

/// `startvm --type headless`.
pub fn startvm(vm: &str) -> Argv {
    cmd(argv(&["startvm", vm, "--type", "headless"]))
}

/// `showvminfo --machinereadable`.
pub fn showvminfo(vm: &str) -> Argv {
    cmd(argv(&["showvminfo", vm, "--machinereadable"]))
}

/// `debugvm statistics` of the storage devices.
pub fn statistics(vm: &str) -> Argv {
    cmd(argv(&[
        "debugvm",
        vm,
        "statistics",
        "--pattern",
        "/Public/Storage/*",
    ]))
}

/// `controlvm poweroff`.
pub fn poweroff(vm: &str) -> Argv {
    cmd(argv(&["controlvm", vm, "poweroff"]))
}

/// `closemedium disk F --delete`: only for media zvbench created.
pub fn closemedium_delete(file: &Path) -> Argv {
    let mut v = argv(&["closemedium", "disk"]);
    v.push(file.into());
    v.push("--delete".into());
    cmd(v)
}

/// `unregistervm --delete`.
pub fn unregistervm(vm: &str) -> Argv {
    cmd(argv(&["unregistervm", vm, "--delete"]))
}

/// The name of the VM of one repetition of a target. Run ids and target names are
/// validated, so the name is safe in VBoxManage argv and file names.
pub fn vm_name(run_id: &str, target: &str, rep: u32) -> String {
    format!("zvbench-{run_id}-{target}-{rep}")
}

/// Whether a VM name is one [`vm_name`] gives: `zvbench-<YYYYMMDD>T<HHMMSS>-<pid>-<target>-<rep>`.
pub fn is_ours(vm: &str) -> bool {
    let Some(rest) = vm.strip_prefix("zvbench-") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// VM names from `list vms` output (`"name" {uuid}` per line).
pub fn parse_vm_list(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix('"')?.split_once("\" {").map(|(n, _)| n))
        .collect()
}

/// `zvbench clean` for VirtualBox: powers off and unregisters (deleting their files and
/// the media attached, which zvbench created) the VMs an interrupted run left. Nothing
/// when VBoxManage is absent.
pub fn clean() -> Vec<String> {
    if detect().is_err() {
        return Vec::new();
    }
    let Ok(list) = cmd(argv(&["list", "vms"])).stdout() else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for vm in parse_vm_list(&list).into_iter().filter(|v| is_ours(v)) {
        let _ = poweroff(vm).run();
        match unregistervm(vm).run() {
            Ok(_) => done.push(format!("unregistered and deleted VirtualBox VM {vm}")),
            Err(e) => done.push(format!("could not remove VirtualBox VM {vm}: {e}")),
        }
    }
    done
}

/// `VMState` from `showvminfo --machinereadable`.
pub fn vm_state(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("VMState="))
        .map(|v| v.trim().trim_matches('"'))
}

/// The disk's counters from `debugvm statistics` output: each element or line naming a
/// counter under `prefix` (`name="/Public/Storage/AHCI0/Port1/ReqsFlush"`) with its value
/// (`c="…"` or `val="…"`). Unknown lines are skipped; at most 64 KiB lines are read.
pub fn parse_statistics(out: &str, prefix: &str) -> Option<BlockStats> {
    fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let start = line.find(&format!(" {key}=\""))? + key.len() + 3;
        let len = line[start..].find('"')?;
        Some(&line[start..start + len])
    }
    let mut s = BlockStats::default();
    let mut seen = false;
    for line in out.lines().take(65_536) {
        let Some(name) = attr(line, "name").and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(value) = attr(line, "c")
            .or_else(|| attr(line, "val"))
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let field = match name {
            "ReqsFlush" => &mut s.flush_operations,
            "ReqsWrite" => &mut s.wr_operations,
            "ReqsRead" => &mut s.rd_operations,
            "BytesWritten" => &mut s.wr_bytes,
            "BytesRead" => &mut s.rd_bytes,
            _ => continue,
        };
        *field = value;
        seen = true;
    }
    seen.then_some(s)
}

/// The benchmark disk of a VirtualBox guest.
#[derive(Debug, Clone)]
pub enum VboxDisk {
    /// An image VirtualBox creates (`createmedium`) and deletes each boot.
    Image {
        /// The file.
        path: PathBuf,
        /// VDI or VMDK.
        format: &'static str,
        /// Standard or Fixed.
        variant: Variant,
        /// Size in bytes.
        size: u64,
    },
    /// A raw-disk VMDK over a host block device (zvol, loop, blockdev).
    Raw {
        /// The device.
        device: PathBuf,
    },
}

/// The effective VirtualBox settings of a target, for `run.json` and the report.
pub fn settings(major: Major, cfg: &GuestConfig, disk: &VboxDisk) -> Result<serde_json::Value> {
    let c = controller(cfg.bus)?;
    let f: &VboxFlush = &cfg.vbox;
    let mut extradata = serde_json::Map::new();
    if let Some(v) = f.ignore_flush {
        extradata.insert(flush_key(&c, "IgnoreFlush"), u8::from(v).into());
    }
    if let Some(v) = f.ignore_flush_async {
        extradata.insert(flush_key(&c, "IgnoreFlushAsync"), u8::from(v).into());
    }
    Ok(serde_json::json!({
        "vboxmanage_syntax": major,
        "controller": c.chipset,
        "hostiocache": f.host_io_cache,
        "extradata": extradata,
        "flushes": match (f.ignored(), f.host_io_cache) {
            (false, _) => "passed",
            (true, true) => "ignored (IgnoreFlush, the host I/O cache's synchronous path)",
            (true, false) => "ignored (IgnoreFlushAsync, the asynchronous path)",
        },
        "mtype": "writethrough",
        "raw_vmdk": matches!(disk, VboxDisk::Raw { .. }),
        "raw_vmdk_note": if matches!(disk, VboxDisk::Raw { .. }) {
            "VirtualBox's vmdkFlushImage skips extents given by absolute device paths: guest flushes may never reach the device (inferred from its source; the host device counters decide)"
        } else { "" },
    }))
}

/// Everything a VirtualBox guest boot needs.
pub struct VboxRun<'a> {
    /// Settings.
    pub cfg: &'a GuestConfig,
    /// Syntax of the installed VBoxManage.
    pub major: Major,
    /// Kernel and modules for the ISO.
    pub kernel: &'a GuestKernel,
    /// The static agent.
    pub agent: &'a Path,
    /// VM name (validated characters only).
    pub vm: String,
    /// The disk.
    pub disk: VboxDisk,
    /// Host device counters.
    pub host_stat: Option<&'a StatSource>,
    /// ZIL counter.
    pub zil: Option<&'a ZilSource>,
    /// The pool's leaf vdevs under a zvol.
    pub vdevs: &'a [StatSource],
    /// Directory for the ISO, logs and the VM's folder.
    pub work: PathBuf,
    /// Longest the guest may run.
    pub timeout: Duration,
}

impl VboxRun<'_> {
    /// Creates the VM, boots it, runs `passes`, and tears everything down.
    pub fn run(
        &self,
        passes: &[PassSpec],
        stop: &Interrupt,
        on_pass: &mut dyn FnMut(GuestPass) -> Result<()>,
    ) -> Result<()> {
        let work = std::fs::canonicalize({
            std::fs::create_dir_all(&self.work)?;
            &self.work
        })?;
        let initramfs = build_initramfs(
            self.kernel,
            self.cfg.bus,
            self.agent,
            passes,
            Handshake::Pause(MARK_PAUSE),
        )?;
        let iso = work.join("zvbench-guest.iso");
        crate::iso::build(&self.kernel.image, &initramfs, APPEND, &iso)?;
        let console = work.join("console.log");
        let frames_path = work.join("serial-frames.log");
        let ctl = controller(self.cfg.bus)?;
        let vm = self.vm.as_str();
        let mut down = Undo::default();
        let undo = |argv| Teardown::Command { argv, quiet: false };
        let log = std::fs::File::create(work.join("vboxmanage.log"))?;
        let run = |a: Argv| -> Result<String> {
            use std::io::Write;
            writeln!(&log, "{}", a.display())?;
            Ok(a.stdout()?)
        };
        run(createvm(vm, &work.join("vm")))?;
        down.push(undo(unregistervm(vm)));
        down.push(Teardown::Keep {
            from: work.join("vm").join(vm).join("Logs/VBox.log"),
            to: work.join("VBox.log"),
        });
        run(modifyvm(
            self.major,
            vm,
            self.cfg.memory.bytes() >> 20,
            self.cfg.cpus,
            &console,
            &frames_path,
        ))?;
        // A SATA disk shares the DVD's controller, and so its host I/O cache setting.
        let cache = self.cfg.vbox.host_io_cache;
        run(storagectl(vm, &DVD, ctl.name == DVD.name && cache))?;
        if ctl.name != DVD.name {
            run(storagectl(vm, &ctl, cache))?;
        }
        run(storageattach(vm, &DVD, Some((&iso, true))))?;
        down.push(undo(storageattach(vm, &DVD, None)));
        let medium = match &self.disk {
            VboxDisk::Image {
                path,
                format,
                variant,
                size,
            } => {
                run(createmedium(path, size >> 20, format, *variant))?;
                path.clone()
            }
            VboxDisk::Raw { device } => {
                let f = work.join("raw.vmdk");
                run(raw_vmdk(self.major, &f, device))?;
                f
            }
        };
        // closemedium --delete removes an image, or a raw VMDK's descriptor (never the
        // device behind it).
        down.push(undo(closemedium_delete(&medium)));
        run(storageattach(vm, &ctl, Some((&medium, false))))?;
        down.push(undo(storageattach(vm, &ctl, None)));
        let f = &self.cfg.vbox;
        for (setting, v) in [
            ("IgnoreFlush", f.ignore_flush),
            ("IgnoreFlushAsync", f.ignore_flush_async),
        ] {
            if let Some(v) = v {
                run(setextradata(
                    vm,
                    &flush_key(&ctl, setting),
                    if v { "1" } else { "0" },
                ))?;
            }
        }
        run(startvm(vm))?;
        down.push(Teardown::Command {
            argv: poweroff(vm),
            quiet: true,
        });
        let fail = |what: String| {
            anyhow!(
                "{what}; guest console (last lines):{}",
                console_tail(&console)
            )
        };
        let stats = || {
            statistics(vm)
                .stdout()
                .ok()
                .and_then(|o| parse_statistics(&o, ctl.stats))
        };
        let mut session = Session::new(&work, passes, self.agent, self.timeout)?;
        let mut file: Option<std::fs::File> = None;
        let mut buf = vec![0u8; 64 << 10];
        let mut last_state_check = Instant::now();
        let mut vm_off = false;
        loop {
            session.check(stop, &fail)?;
            if file.is_none() {
                file = std::fs::File::open(&frames_path).ok();
            }
            let n = match file.as_mut() {
                Some(f) => f.read(&mut buf).context("reading the serial log")?,
                None => 0,
            };
            if n == 0 {
                if vm_off {
                    bail!(fail(
                        "the guest powered off before it sent all results".into()
                    ));
                }
                if last_state_check.elapsed() > Duration::from_secs(2) {
                    last_state_check = Instant::now();
                    // Once the VM is off, one more read drains what it wrote last.
                    vm_off = matches!(
                        vm_state(&run(showvminfo(vm))?),
                        Some("poweroff" | "aborted")
                    );
                }
                if !vm_off {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            let step = session
                .feed(
                    &buf[..n],
                    &mut || snapshot(stats(), self.host_stat, self.zil, self.vdevs),
                    &mut || Ok(()),
                    on_pass,
                )
                .map_err(|e| fail(crate::chain(&e)))?;
            if step == Step::Done {
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until {
                    if vm_state(&run(showvminfo(vm))?) == Some("poweroff") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &Argv) -> String {
        a.display()
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.14r161095\n").unwrap(), Major::V7);
        assert_eq!(parse_version("7.1.4r165100").unwrap(), Major::V7);
        assert_eq!(parse_version("6.1.50r161033").unwrap(), Major::V6);
        let e = parse_version("6.0.24r139119").unwrap_err().to_string();
        assert!(e.contains("6.1 and 7.x"), "{e}");
        assert!(parse_version("garbage").is_err());
    }

    #[test]
    fn uart_syntax_follows_the_version() {
        let c = Path::new("/w/console.log");
        let f = Path::new("/w/frames.log");
        let v7 = s(&modifyvm(Major::V7, "vm", 256, 1, c, f));
        assert!(
            v7.contains("--uart1 0x3F8 4 --uart-mode1 file /w/console.log"),
            "{v7}"
        );
        assert!(
            v7.contains("--uart2 0x2F8 3 --uart-mode2 file /w/frames.log"),
            "{v7}"
        );
        let v6 = s(&modifyvm(Major::V6, "vm", 256, 1, c, f));
        assert!(v6.contains("--uartmode1 file /w/console.log"), "{v6}");
        assert!(!v6.contains("--uart-mode"), "{v6}");
    }

    #[test]
    fn raw_disk_syntax_follows_the_version() {
        let f = Path::new("/w/raw.vmdk");
        let d = Path::new("/dev/zvol/tank/vm");
        assert!(s(&raw_vmdk(Major::V7, f, d)).ends_with(
            "createmedium disk --filename /w/raw.vmdk --format VMDK --variant RawDisk --property RawDrive=/dev/zvol/tank/vm"
        ));
        assert!(s(&raw_vmdk(Major::V6, f, d)).ends_with(
            "internalcommands createrawvmdk -filename /w/raw.vmdk -rawdisk /dev/zvol/tank/vm"
        ));
    }

    #[test]
    fn the_story_setup() {
        let c = controller(Bus::Sata).unwrap();
        assert!(s(&storagectl("vm", &c, false))
            .ends_with("storagectl vm --name SATA --add sata --controller IntelAhci --portcount 2 --hostiocache off --bootable on"));
        assert!(s(&storageattach("vm", &c, Some((Path::new("/d.vdi"), false))))
            .ends_with("storageattach vm --storagectl SATA --port 1 --device 0 --type hdd --medium /d.vdi --mtype writethrough"));
        assert_eq!(
            flush_key(&c, "IgnoreFlush"),
            "VBoxInternal/Devices/ahci/0/LUN#1/Config/IgnoreFlush"
        );
        assert!(s(&createmedium(
            Path::new("/d.vdi"),
            96,
            "VDI",
            Variant::Fixed
        ))
        .ends_with("createmedium disk --filename /d.vdi --size 96 --format VDI --variant Fixed"));
        assert!(controller(Bus::Virtio).is_err());
    }

    #[test]
    fn statistics_of_one_port() {
        let out = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<Statistics>
<Counter c="7" unit="count" name="/Public/Storage/AHCI0/Port0/ReqsFlush"/>
<Counter c="33" unit="count" name="/Public/Storage/AHCI0/Port1/ReqsFlush"/>
<Counter c="128" unit="count" name="/Public/Storage/AHCI0/Port1/ReqsWrite"/>
<Counter c="524288" unit="bytes" name="/Public/Storage/AHCI0/Port1/BytesWritten"/>
<Counter c="x" unit="bytes" name="/Public/Storage/AHCI0/Port1/BytesRead"/>
</Statistics>"#;
        let st = parse_statistics(out, "/Public/Storage/AHCI0/Port1/").unwrap();
        assert_eq!(
            (
                st.flush_operations,
                st.wr_operations,
                st.wr_bytes,
                st.rd_bytes
            ),
            (33, 128, 524288, 0)
        );
        assert!(parse_statistics(out, "/Public/Storage/NVMe0/Port0/").is_none());
        assert_eq!(
            vm_state("name=\"x\"\nVMState=\"poweroff\"\n"),
            Some("poweroff")
        );
    }

    #[test]
    fn leftover_vms_are_recognised_by_name() {
        let list = "\"zvbench-20261127T031539-8201-vdi-1\" {0b6e...}\n\"my-desktop\" {1c2d...}\n\"zvbench-notes\" {9}\n";
        assert!(is_ours(&vm_name("20261127T031539-8201", "vdi", 1)));
        let names = parse_vm_list(list);
        assert_eq!(
            names,
            [
                "zvbench-20261127T031539-8201-vdi-1",
                "my-desktop",
                "zvbench-notes"
            ]
        );
        let ours: Vec<&str> = names.into_iter().filter(|n| is_ours(n)).collect();
        assert_eq!(ours, ["zvbench-20261127T031539-8201-vdi-1"]);
    }

    #[test]
    fn flush_defaults_follow_virtualbox() {
        let f = |cache, sync, asynch| VboxFlush {
            host_io_cache: cache,
            ignore_flush: sync,
            ignore_flush_async: asynch,
        };
        assert!(
            !f(false, None, None).ignored(),
            "SATA default: cache off, flushes passed"
        );
        assert!(
            f(true, None, None).ignored(),
            "cache on: IgnoreFlush defaults to true"
        );
        assert!(!f(true, Some(false), None).ignored());
        assert!(f(false, None, Some(true)).ignored());
        assert_eq!(
            f(true, None, None).describe(),
            "hostiocache=on flushes=ignored"
        );
    }
}
