//! The VirtualBox backend: `VBoxManage` argv vectors made by small pure functions, the
//! per-port storage counters of `debugvm statistics`, the effective flush settings, and
//! (in [`vm`]) one guest boot from the guest ISO behind the hypervisor interface.

pub mod vm;

use crate::cmd::Argv;
use crate::guest::BlockStats;
use crate::scenario::{Bus, GuestConfig, Variant, VboxFlush};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable naming the `VBoxManage` to run, read by the `zvbench` binary
/// only (the library is given a [`VBoxManage`] value).
pub const VBOXMANAGE_ENV: &str = "ZVBENCH_VBOXMANAGE";

/// How long the guest pauses at each mark for zvbench to read the counters.
pub const MARK_PAUSE: Duration = Duration::from_millis(1500);

/// The `VBoxManage` zvbench runs: its program and the syntax of its version. Every
/// VBoxManage command is an [`Argv`] made by one of its methods, so two values (two fake
/// VBoxManage programs in parallel tests) never share anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VBoxManage {
    program: OsString,
    major: Major,
}

impl VBoxManage {
    /// `program` with a known syntax.
    pub fn new(program: impl Into<OsString>, major: Major) -> VBoxManage {
        VBoxManage {
            program: program.into(),
            major,
        }
    }

    /// `program` (a path, or a name looked up on PATH), its syntax from `--version`.
    pub fn detect(program: impl Into<OsString>) -> Result<VBoxManage> {
        let program = program.into();
        let out = Argv(vec![program.clone(), "--version".into()])
            .stdout()
            .with_context(|| format!("VirtualBox's VBoxManage is needed for hypervisor = \"virtualbox\" (tried {}; set {VBOXMANAGE_ENV} to another)", program.to_string_lossy()))?;
        Ok(VBoxManage::new(program, parse_version(&out)?))
    }

    /// The syntax of its version.
    pub fn major(&self) -> Major {
        self.major
    }

    fn cmd(&self, mut parts: Vec<OsString>) -> Argv {
        parts.insert(0, self.program.clone());
        Argv(parts)
    }

    /// `createvm --register`.
    pub fn createvm(&self, vm: &str, basefolder: &Path) -> Argv {
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
        self.cmd(v)
    }

    /// `modifyvm`: memory, CPUs, boot from DVD only, COM1 (console) and COM2 (frames) to files.
    pub fn modifyvm(
        &self,
        vm: &str,
        memory_mb: u64,
        cpus: u32,
        console: &Path,
        frames: &Path,
    ) -> Argv {
        let mode = |n: u32| match self.major {
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
        self.cmd(v)
    }

    /// `storagectl --add`: a controller with the host I/O cache on or off.
    pub fn storagectl(&self, vm: &str, c: &Controller, host_io_cache: bool) -> Argv {
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
        self.cmd(v)
    }

    /// `storageattach` of `medium` (a DVD image, or a disk with `--mtype writethrough` as in
    /// the story); `None` detaches.
    pub fn storageattach(&self, vm: &str, c: &Controller, medium: Option<(&Path, bool)>) -> Argv {
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
        self.cmd(v)
    }

    /// `createmedium disk --format VDI|VMDK`, size in MiB.
    pub fn createmedium(&self, file: &Path, size_mb: u64, format: &str, variant: Variant) -> Argv {
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
        self.cmd(v)
    }

    /// A raw-disk VMDK that passes the guest's disk through to `device`.
    pub fn raw_vmdk(&self, file: &Path, device: &Path) -> Argv {
        match self.major {
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
                self.cmd(v)
            }
            Major::V6 => {
                let mut v = argv(&["internalcommands", "createrawvmdk", "-filename"]);
                v.push(file.into());
                v.push("-rawdisk".into());
                v.push(device.into());
                self.cmd(v)
            }
        }
    }

    /// `setextradata VM KEY VALUE`.
    pub fn setextradata(&self, vm: &str, key: &str, value: &str) -> Argv {
        self.cmd(argv(&["setextradata", vm, key, value]))
    }

    /// `startvm --type headless`.
    pub fn startvm(&self, vm: &str) -> Argv {
        self.cmd(argv(&["startvm", vm, "--type", "headless"]))
    }

    /// `showvminfo --machinereadable`.
    pub fn showvminfo(&self, vm: &str) -> Argv {
        self.cmd(argv(&["showvminfo", vm, "--machinereadable"]))
    }

    /// `debugvm statistics` of the storage devices.
    pub fn statistics(&self, vm: &str) -> Argv {
        self.cmd(argv(&[
            "debugvm",
            vm,
            "statistics",
            "--pattern",
            "/Public/Storage/*",
        ]))
    }

    /// `controlvm poweroff`.
    pub fn poweroff(&self, vm: &str) -> Argv {
        self.cmd(argv(&["controlvm", vm, "poweroff"]))
    }

    /// `closemedium disk F --delete`: only for media zvbench created.
    pub fn closemedium_delete(&self, file: &Path) -> Argv {
        let mut v = argv(&["closemedium", "disk"]);
        v.push(file.into());
        v.push("--delete".into());
        self.cmd(v)
    }

    /// `unregistervm --delete`.
    pub fn unregistervm(&self, vm: &str) -> Argv {
        self.cmd(argv(&["unregistervm", vm, "--delete"]))
    }

    /// `list vms`.
    pub fn list_vms(&self) -> Argv {
        self.cmd(argv(&["list", "vms"]))
    }
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

/// The storage controller the benchmark disk sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// Its name in the VM.
    pub name: &'static str,
    /// `storagectl --add`.
    pub add: &'static str,
    /// `storagectl --controller`.
    pub chipset: &'static str,
    /// VirtualBox's device name: `VBoxInternal/Devices/<device>/0/...` and, in capitals,
    /// the statistics prefix.
    pub device: &'static str,
    /// The disk's port (its LUN).
    pub port: u32,
    /// Whether VirtualBox puts its SCSI driver (DrvSCSI) between the device and the disk
    /// driver (DrvVD), as for virtio-scsi: the disk's settings then sit one level down,
    /// under `LUN#<port>/AttachedDriver`.
    pub scsi_driver: bool,
}

impl Controller {
    /// The CFGM path of the disk driver's `Config` node, under `VBoxInternal/Devices`.
    /// DrvSCSI accepts no config keys, so a key at `LUN#<port>/Config` of a SCSI-style
    /// controller stops the VM from starting (`ConsoleImpl2.cpp`, attaching DrvSCSI).
    pub fn disk_config(&self) -> String {
        let below = if self.scsi_driver {
            "AttachedDriver/"
        } else {
            ""
        };
        format!("{}/0/LUN#{}/{below}Config", self.device, self.port)
    }

    /// Prefix of the disk's counters in `debugvm statistics`: DrvVD registers them as
    /// `/Public/Storage/<DEVICE IN CAPITALS><instance>/Port<LUN>/` (`drvvdStatsRegister`).
    pub fn stats(&self) -> String {
        format!(
            "/Public/Storage/{}0/Port{}/",
            self.device.to_ascii_uppercase(),
            self.port
        )
    }

    /// Whether the guest sees a volatile write cache on this controller's disk, and so
    /// sends flushes at all. VirtualBox's NVMe controller reports none
    /// (`nvmeR3IdentifyCtrl` in `DevNVMe.cpp`, read in trunk: the 6.1-7.1 controller is
    /// in the Extension Pack), and a Linux guest then sends no flushes to it
    /// (`nvme_set_queue_limits` → `blk_queue_write_cache(q, vwc, vwc)`).
    pub fn guest_flushes(&self) -> bool {
        self.device != "nvme"
    }
}

/// The SATA controller that holds the guest ISO's DVD drive (port 0); a SATA disk goes on
/// port 1 of the same controller, as in the story.
pub const DVD: Controller = Controller {
    name: "SATA",
    add: "sata",
    chipset: "IntelAhci",
    device: "ahci",
    port: 0,
    scsi_driver: false,
};

/// The benchmark disk's controller for a bus.
pub fn controller(bus: Bus) -> Result<Controller> {
    Ok(match bus {
        Bus::Sata => Controller { port: 1, ..DVD },
        Bus::Nvme => Controller {
            name: "NVMe",
            add: "pcie",
            chipset: "NVMe",
            device: "nvme",
            port: 0,
            scsi_driver: false,
        },
        Bus::Scsi => Controller {
            name: "VirtioSCSI",
            add: "virtio",
            chipset: "VirtIO",
            device: "virtio-scsi",
            port: 0,
            scsi_driver: true,
        },
        Bus::Virtio => bail!("VirtualBox has no virtio-blk controller"),
    })
}

/// The extradata key of a flush setting of the disk's driver (DrvVD).
pub fn flush_key(c: &Controller, setting: &str) -> String {
    format!("VBoxInternal/Devices/{}/{setting}", c.disk_config())
}

/// VM names from `list vms` output (`"name" {uuid}` per line).
pub fn parse_vm_list(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix('"')?.split_once("\" {").map(|(n, _)| n))
        .collect()
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
///
/// VirtualBox leaves a counter registered as "used" out of the snapshot while it is zero
/// (`stamR3SnapshotOne` in `STAM.cpp`); DrvVD registers `ReqsFlush` and the others that
/// way, but `QueryBufAttempts` as always visible. So once any counter of the port is
/// listed the port exists, and a missing one is 0; with none listed, `None`.
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
        seen = true;
        let field = match name {
            "ReqsFlush" => &mut s.flush_operations,
            "ReqsWrite" => &mut s.wr_operations,
            "ReqsRead" => &mut s.rd_operations,
            "BytesWritten" => &mut s.wr_bytes,
            "BytesRead" => &mut s.rd_bytes,
            _ => continue,
        };
        *field = value;
    }
    seen.then_some(s)
}

/// The first line of a VM's `VBox.log` saying VirtualBox gave up on asynchronous flushes
/// for an image: after it, guest flushes on the asynchronous path (host I/O cache off)
/// complete without any flush on the host (`PDMAsyncCompletionFileNormal.cpp`:
/// "AIOMgr: Flush failed with …, disabling async flushes" when a host flush fails,
/// "AIOMgr: Preparing flush failed with …, disabling async flushes" or "AIOMgr: Async
/// flushes not supported" when one cannot be issued). Only VirtualBox's own lines count
/// (a timestamp, then `AIOMgr:`), not a guest's relayed "Guest Log:" text. At most 64 Ki
/// lines of 4 KiB are read; the text returned is at most 200 characters.
pub fn async_flushes_disabled(log: &str) -> Option<String> {
    log.lines()
        .take(65_536)
        .filter(|l| l.len() <= 4096)
        .filter_map(|l| {
            l.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == '.')
                .strip_prefix(' ')?
                .strip_prefix("AIOMgr: ")
        })
        .find(|m| m.ends_with("disabling async flushes") || *m == "Async flushes not supported")
        .map(|m| format!("AIOMgr: {}", m.chars().take(190).collect::<String>()))
}

/// [`async_flushes_disabled`] of a kept `VBox.log` (its first 16 MiB); `None` when the
/// file is absent or unreadable.
pub fn async_flushes_disabled_in(log: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(log)
        .ok()?
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    async_flushes_disabled(&text)
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
    let raw = matches!(disk, VboxDisk::Raw { .. });
    Ok(serde_json::json!({
        "vboxmanage_syntax": major,
        "controller": c.chipset,
        "hostiocache": f.host_io_cache,
        "extradata": extradata,
        "flush_path": if f.host_io_cache {
            "synchronous (host I/O cache on): IgnoreFlush decides, default 1"
        } else {
            "asynchronous (host I/O cache off, UseNewIo=1): IgnoreFlushAsync decides, default 0"
        },
        "flushes": effective_flushes(&c, f, raw),
        "mtype": "writethrough",
        "raw_vmdk": raw,
    }))
}

/// What happens to the guest's flushes, in words, first reason first.
fn effective_flushes(c: &Controller, f: &VboxFlush, raw: bool) -> &'static str {
    if !c.guest_flushes() {
        "none sent: VirtualBox's NVMe controller reports no volatile write cache, so the guest issues no flushes (DevNVMe.cpp, trunk; confirm on a real host)"
    } else if f.ignored() && f.host_io_cache {
        "ignored (IgnoreFlush, the host I/O cache's synchronous path)"
    } else if f.ignored() {
        "ignored (IgnoreFlushAsync, the asynchronous path)"
    } else if raw {
        "not passed to the device: VirtualBox's vmdkFlushImage skips extents named by an absolute device path, so a raw-disk VMDK never flushes its device (VirtualBox source; not yet seen on a running host)"
    } else {
        "passed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &Argv) -> String {
        a.display()
    }

    /// A VBoxManage value of syntax `m`, never run.
    fn vbm(m: Major) -> VBoxManage {
        VBoxManage::new("VBoxManage", m)
    }

    #[test]
    fn every_command_runs_the_program_given() {
        let v = VBoxManage::new("/opt/vb/VBoxManage", Major::V6);
        assert_eq!(v.startvm("vm").0[0], "/opt/vb/VBoxManage");
        assert_eq!(v.list_vms().0[0], "/opt/vb/VBoxManage");
        let e = crate::chain(&VBoxManage::detect("/nonexistent/VBoxManage").unwrap_err());
        assert!(
            e.contains("/nonexistent/VBoxManage") && e.contains(VBOXMANAGE_ENV),
            "{e}"
        );
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
        let v7 = s(&vbm(Major::V7).modifyvm("vm", 256, 1, c, f));
        assert!(
            v7.contains("--uart1 0x3F8 4 --uart-mode1 file /w/console.log"),
            "{v7}"
        );
        assert!(
            v7.contains("--uart2 0x2F8 3 --uart-mode2 file /w/frames.log"),
            "{v7}"
        );
        let v6 = s(&vbm(Major::V6).modifyvm("vm", 256, 1, c, f));
        assert!(v6.contains("--uartmode1 file /w/console.log"), "{v6}");
        assert!(!v6.contains("--uart-mode"), "{v6}");
    }

    #[test]
    fn raw_disk_syntax_follows_the_version() {
        let f = Path::new("/w/raw.vmdk");
        let d = Path::new("/dev/zvol/tank/vm");
        assert!(s(&vbm(Major::V7).raw_vmdk(f, d)).ends_with(
            "createmedium disk --filename /w/raw.vmdk --format VMDK --variant RawDisk --property RawDrive=/dev/zvol/tank/vm"
        ));
        assert!(s(&vbm(Major::V6).raw_vmdk(f, d)).ends_with(
            "internalcommands createrawvmdk -filename /w/raw.vmdk -rawdisk /dev/zvol/tank/vm"
        ));
    }

    #[test]
    fn the_story_setup() {
        let c = controller(Bus::Sata).unwrap();
        assert!(s(&vbm(Major::V7).storagectl("vm", &c, false))
            .ends_with("storagectl vm --name SATA --add sata --controller IntelAhci --portcount 2 --hostiocache off --bootable on"));
        assert!(s(&vbm(Major::V7).storageattach("vm", &c, Some((Path::new("/d.vdi"), false))))
            .ends_with("storageattach vm --storagectl SATA --port 1 --device 0 --type hdd --medium /d.vdi --mtype writethrough"));
        assert_eq!(
            flush_key(&c, "IgnoreFlush"),
            "VBoxInternal/Devices/ahci/0/LUN#1/Config/IgnoreFlush"
        );
        assert!(
            s(&vbm(Major::V7).createmedium(Path::new("/d.vdi"), 96, "VDI", Variant::Fixed))
                .ends_with(
                    "createmedium disk --filename /d.vdi --size 96 --format VDI --variant Fixed"
                )
        );
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
        assert!(parse_statistics(out, "/Public/Storage/NVME0/Port0/").is_none());
        assert_eq!(
            vm_state("name=\"x\"\nVMState=\"poweroff\"\n"),
            Some("poweroff")
        );
    }

    #[test]
    fn counters_of_a_port_with_only_always_visible_ones_are_zero() {
        // No I/O yet, or an NVMe disk that never gets a flush: the "used" counters are
        // left out while zero, QueryBufAttempts is always listed.
        let out = r#"<Counter c="0" unit="count" name="/Public/Storage/NVME0/Port0/QueryBufAttempts"/>
<Counter c="12" unit="count" name="/Public/Storage/NVME0/Port0/ReqsWrite"/>"#;
        let nvme = controller(Bus::Nvme).unwrap();
        let st = parse_statistics(out, &nvme.stats()).unwrap();
        assert_eq!((st.flush_operations, st.wr_operations), (0, 12));
        let quiet =
            r#"<Counter c="0" unit="count" name="/Public/Storage/NVME0/Port0/QueryBufAttempts"/>"#;
        assert_eq!(
            parse_statistics(quiet, &nvme.stats()),
            Some(BlockStats::default())
        );
    }

    #[test]
    fn counter_and_setting_paths_follow_virtualbox() {
        let [sata, nvme, scsi] = [Bus::Sata, Bus::Nvme, Bus::Scsi].map(|b| controller(b).unwrap());
        assert_eq!(sata.stats(), "/Public/Storage/AHCI0/Port1/");
        assert_eq!(nvme.stats(), "/Public/Storage/NVME0/Port0/");
        assert_eq!(scsi.stats(), "/Public/Storage/VIRTIO-SCSI0/Port0/");
        assert_eq!(
            flush_key(&nvme, "IgnoreFlush"),
            "VBoxInternal/Devices/nvme/0/LUN#0/Config/IgnoreFlush"
        );
        // DrvSCSI sits between virtio-scsi and DrvVD and takes no config keys.
        assert_eq!(
            flush_key(&scsi, "IgnoreFlushAsync"),
            "VBoxInternal/Devices/virtio-scsi/0/LUN#0/AttachedDriver/Config/IgnoreFlushAsync"
        );
    }

    #[test]
    fn disabled_async_flushes_are_found_in_the_log() {
        let log = "00:00:01.100 DrvVD: Flushes will be ignored\n00:00:01.101 DrvVD: Async flushes will be passed to the disk\n00:00:09.500 AIOMgr: Flush failed with VERR_INVALID_PARAMETER, disabling async flushes\n";
        assert_eq!(
            async_flushes_disabled(log).as_deref(),
            Some("AIOMgr: Flush failed with VERR_INVALID_PARAMETER, disabling async flushes")
        );
        assert!(async_flushes_disabled("00:00:01 AIOMgr: Async flushes not supported").is_some());
        // A guest can write to the log; its lines are not VirtualBox's.
        assert_eq!(
            async_flushes_disabled(
                "00:00:09.5 Guest Log: AIOMgr: Flush failed with X, disabling async flushes"
            ),
            None
        );
        // Both "will be" lines are printed every time; neither is a finding.
        assert_eq!(async_flushes_disabled(&log[..100]), None);
    }

    #[test]
    fn effective_flushes_name_the_reason() {
        use crate::scenario::{Aio, CacheMode, Hypervisor};
        use zvbench_agent::ByteSize;
        let cfg = |bus, host_io_cache| GuestConfig {
            hypervisor: Hypervisor::Virtualbox,
            memory: ByteSize(256 << 20),
            cpus: 1,
            bus,
            cache: CacheMode::None,
            aio: Aio::Threads,
            boot: Default::default(),
            throttle_bps: None,
            vbox: VboxFlush {
                host_io_cache,
                ..Default::default()
            },
        };
        let image = VboxDisk::Image {
            path: "/d.vdi".into(),
            format: "VDI",
            variant: Variant::Dynamic,
            size: 1 << 20,
        };
        let raw = VboxDisk::Raw {
            device: "/dev/zd0".into(),
        };
        let flushes = |bus, cache, disk: &VboxDisk| {
            settings(Major::V7, &cfg(bus, cache), disk).unwrap()["flushes"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(flushes(Bus::Sata, false, &image), "passed");
        assert!(flushes(Bus::Sata, true, &image).starts_with("ignored (IgnoreFlush,"));
        assert!(flushes(Bus::Nvme, false, &image).contains("no volatile write cache"));
        let r = flushes(Bus::Scsi, false, &raw);
        assert!(
            r.contains("vmdkFlushImage") && !r.contains("inferred"),
            "{r}"
        );
        let s = settings(Major::V7, &cfg(Bus::Scsi, true), &image).unwrap();
        assert!(s["flush_path"].as_str().unwrap().starts_with("synchronous"));
    }

    #[test]
    fn leftover_vms_are_recognised_by_name() {
        use crate::hypervisor::{is_ours, vm_name};
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
