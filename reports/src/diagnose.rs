//! Diagnosis: findings with their evidence, each from one small rule over the results.
//! A rule returns nothing when its case is absent; the tests check both sides of each.

use crate::cache::{Cache, QemuCache};
use crate::layer::Layer;
use crate::stats::Spread;
use crate::ResultRow;
use std::collections::BTreeMap;

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Rule id, e.g. `flushes-dropped`.
    pub rule: &'static str,
    /// Target, or empty for run-wide findings.
    pub target: String,
    /// Workload, or empty.
    pub workload: String,
    /// What it means and which setting causes it.
    pub message: String,
    /// The numbers behind it.
    pub evidence: String,
}

/// What the rules know about the run beyond the rows.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// volblocksize of zvol targets, in bytes, by target.
    pub volblocksize: BTreeMap<String, u64>,
    /// VirtualBox targets whose `VBox.log` says async flushes were disabled: the line.
    pub async_flushes_disabled: BTreeMap<String, String>,
    /// The ZFS properties of zvol targets ([`ZFS_PROPS`], as `zfs get` printed them), by
    /// target, then by property.
    pub zfs: BTreeMap<String, BTreeMap<String, String>>,
}

/// The zvol properties the rules read from `run.json`.
pub const ZFS_PROPS: [&str; 4] = ["sync", "logbias", "compression", "primarycache"];

impl Context {
    /// A zvol target's ZFS property, if known.
    pub fn zfs_prop(&self, target: &str, prop: &str) -> Option<&str> {
        self.zfs.get(target)?.get(prop).map(String::as_str)
    }
}

/// Rows of one (target, workload), in file order.
pub type Groups<'a> = BTreeMap<(String, String), Vec<&'a ResultRow>>;

/// Groups rows by (target, workload).
pub fn groups(rows: &[ResultRow]) -> Groups<'_> {
    let mut g: Groups = BTreeMap::new();
    for r in rows {
        g.entry((r.target.clone(), r.workload.clone()))
            .or_default()
            .push(r);
    }
    g
}

fn med(rows: &[&ResultRow], f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
    Spread::of(rows.iter().filter_map(|r| f(r))).map(|s| s.median)
}

/// Reads one counter from a row.
type Counter = fn(&ResultRow) -> Option<u64>;

/// The median of a counter over `rows`, `None` when no row has it.
fn med_count(rows: &[&ResultRow], f: impl Fn(&ResultRow) -> Option<u64>) -> Option<f64> {
    med(rows, |r| f(r).map(|v| v as f64))
}

/// The flush trace of a group as (layer, median count), top to bottom, present layers only.
pub fn trace(rows: &[&ResultRow]) -> Vec<(Layer, f64)> {
    Layer::ALL
        .into_iter()
        .filter_map(|l| med_count(rows, |r| l.flushes(r)).map(|m| (l, m)))
        .collect()
}

fn cause_of_drop(r: &ResultRow, lower: Layer) -> &'static str {
    use Layer::{GuestDevice, HostDevice, Hypervisor, PoolVdevs, Zil};
    let no_write_cache = r.dev_write_cache.as_deref() == Some("write through");
    let cache = Cache::parse(&r.cache);
    match (r.hypervisor.as_str(), cache, lower) {
        ("virtualbox", _, GuestDevice) if r.bus == "nvme" => {
            "the NVMe controller reports no volatile write cache, so the guest issues no flushes; with the host cache off writes go O_DIRECT to the image and are never fsynced: the results are not durable"
        }
        (_, _, GuestDevice) if no_write_cache => {
            "the guest's disk reports no write cache (\"write through\"), so the guest kernel issues no flushes: writes are durable only if every layer below writes through"
        }
        // Below QEMU: the image's host device, or a ZFS dataset's ZIL and pool disks.
        ("qemu", Cache::Qemu(QemuCache::Unsafe), Hypervisor | HostDevice | Zil | PoolVdevs) => {
            "QEMU cache=unsafe ignores guest flushes: the results are not durable"
        }
        (
            "virtualbox",
            Cache::Virtualbox {
                flushes_ignored: true,
                ..
            },
            HostDevice | Zil,
        ) => {
            "VirtualBox ignores the guest's flushes: the host I/O cache is on and IgnoreFlush is 1 (its default there), or IgnoreFlushAsync is 1: the results are not durable"
        }
        ("virtualbox", _, HostDevice | Zil)
            if matches!(r.storage.as_str(), "loop" | "zvol" | "blockdev") =>
        {
            "a raw-disk VMDK: VirtualBox does not flush the device behind it (its vmdkFlushImage skips extents named by a device path): the results are not durable"
        }
        ("virtualbox", _, HostDevice | Zil) => {
            "VirtualBox's settings pass the flushes, yet none reached the host: look in the target's VBox.log for \"disabling async flushes\": the results are not durable"
        }
        (_, _, HostDevice) if r.storage == "zvol" => {
            "the zvol acknowledged them without a ZIL commit or a flush of the pool's disks (what sync=disabled does): writes acknowledged as durable are not"
        }
        _ => "flushes stop here: writes acknowledged as durable are not",
    }
}

/// Flushes issued above and not seen below: the agent issued N>0, a lower layer saw 0.
pub fn flushes_dropped(g: &Groups<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        let tr = trace(rows);
        let Some(&(_, agent)) = tr.first() else {
            continue;
        };
        if agent <= 0.0 {
            continue;
        }
        // A zero with a non-zero layer below it is a counter that cannot see flushes
        // (e.g. a bio-based device), not a drop.
        let first_zero = tr.iter().position(|&(_, n)| n == 0.0);
        if let Some(i) = first_zero.filter(|&i| tr[i..].iter().all(|&(_, n)| n == 0.0)) {
            let above = tr[i - 1];
            out.push(Finding {
                rule: "flushes-dropped",
                target: t.clone(),
                workload: w.clone(),
                message: format!(
                    "flushes dropped between {} and {}: {}",
                    above.0,
                    tr[i].0,
                    cause_of_drop(rows[0], tr[i].0)
                ),
                evidence: fmt_trace(&tr),
            });
        }
    }
    out
}

fn fmt_trace(tr: &[(Layer, f64)]) -> String {
    tr.iter()
        .map(|(n, v)| format!("{n} {v:.0}"))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// A lower layer sees many more flushes than the agent issued.
pub fn flush_amplification(g: &Groups<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        let tr = trace(rows);
        let Some(&(_, agent)) = tr.first() else {
            continue;
        };
        if let Some(&(layer, n)) = tr
            .iter()
            .skip(1)
            .find(|&&(_, n)| n > 2.0 * agent && n >= agent + 10.0)
        {
            out.push(Finding {
                rule: "flush-amplification",
                target: t.clone(),
                workload: w.clone(),
                message: format!(
                    "the {layer} sees {:.1}x the flushes the agent issued: something below the guest adds flushes (sync=always, writethrough cache, O_SYNC on the image)",
                    n / agent.max(1.0)
                ),
                evidence: fmt_trace(&tr),
            });
        }
    }
    out
}

fn host_of<'a>(g: &'a Groups<'a>, workload: &str) -> Option<&'a Vec<&'a ResultRow>> {
    g.iter()
        .find(|((_, w), rows)| w == workload && rows[0].storage == "host")
        .map(|(_, r)| r)
}

/// A workload that flushes periodically or opens with O_SYNC/O_DSYNC (one end flush after
/// a large write does not make a workload flush-bound).
fn flush_bound(r: &ResultRow) -> bool {
    (r.sync_every > 0 && r.agent_flushes > 1) || matches!(r.sync.as_str(), "osync" | "odsync")
}

/// Groups of guest targets whose median throughput beats the host baseline's on the same
/// workload by more than `factor`, among rows `selected`; one finding each.
fn beats_host(
    g: &Groups<'_>,
    selected: impl Fn(&ResultRow) -> bool,
    factor: f64,
    rule: &'static str,
    message: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        if rows[0].storage == "host" || !selected(rows[0]) {
            continue;
        }
        let host = host_of(g, w).and_then(|h| med(h, |r| Some(r.mib_per_s)));
        let (Some(host), Some(guest)) = (host, med(rows, |r| Some(r.mib_per_s))) else {
            continue;
        };
        if guest > host * factor {
            out.push(Finding {
                rule,
                target: t.clone(),
                workload: w.clone(),
                message: message.to_string(),
                evidence: format!(
                    "{guest:.1} MiB/s in the guest vs {host:.1} MiB/s on the host ({:.2}x)",
                    guest / host
                ),
            });
        }
    }
    out
}

/// A guest faster than the host baseline on a flush-bound workload.
pub fn guest_faster_than_host(g: &Groups<'_>) -> Vec<Finding> {
    beats_host(
        g,
        |r| r.kind == "seqwr" && flush_bound(r),
        1.1,
        "guest-faster-than-host",
        "a guest out-writes its own host on a flush-bound workload: its flushes are not reaching the disk",
    )
}

/// Reads faster than the host baseline's reads of the same workload: a cache is measured.
pub fn reads_from_cache(g: &Groups<'_>) -> Vec<Finding> {
    beats_host(
        g,
        |r| r.kind == "seqrd",
        1.5,
        "reads-from-cache",
        "reads in the guest beat the host device: a host cache is being measured (QEMU cache=writeback/unsafe, VirtualBox host I/O cache, ZFS ARC)",
    )
}

/// Software emulation: absolute numbers are not comparable to KVM.
pub fn software_emulation(rows: &[ResultRow]) -> Vec<Finding> {
    let targets: Vec<&str> = {
        let mut v: Vec<&str> = rows
            .iter()
            .filter(|r| r.accel == "tcg")
            .map(|r| r.target.as_str())
            .collect();
        v.dedup();
        v
    };
    if targets.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        rule: "software-emulation",
        target: String::new(),
        workload: String::new(),
        message: "guests ran under TCG software emulation: compare guests with each other and flush counts anywhere, but not guest throughput with a KVM host".into(),
        evidence: format!("accel=tcg for {}", targets.join(", ")),
    }]
}

/// A pass that only wrote (random mixes by their read share; older rows by their kind).
fn write_only(r: &ResultRow) -> bool {
    r.rw_mix_read
        .map_or(matches!(r.kind.as_str(), "seqwr" | "randwrite"), |p| p == 0)
}

/// The medians of a write-only pass's bytes: the agent's, and the pool vdevs' written and
/// read, when all were measured.
struct PoolBytes {
    agent: f64,
    written: f64,
    read: f64,
}

fn pool_bytes(rows: &[&ResultRow]) -> Option<PoolBytes> {
    let m = |f: Counter| med_count(rows, f);
    let agent = m(|r| r.agent_write_bytes).filter(|&a| a > 0.0)?;
    Some(PoolBytes {
        agent,
        written: m(|r| r.vdev_write_bytes)?,
        read: m(|r| r.vdev_read_bytes)?,
    })
}

fn fmt_bytes(p: &PoolBytes) -> String {
    format!(
        "agent wrote {:.0} B → pool vdevs wrote {:.0} B ({:.2}x) and read {:.0} B",
        p.agent,
        p.written,
        p.written / p.agent,
        p.read
    )
}

/// Writes smaller than a zvol's volblocksize: ZFS must read the rest of each block before
/// it can write it (read-modify-write). Seen in the pool vdevs' reads during a pass that
/// only wrote (the blocks were not in ARC, e.g. `primarycache=metadata`); a run without
/// vdev counters gets the finding from the sizes alone.
pub fn volblocksize_mismatch(g: &Groups<'_>, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        let Some(&vbs) = ctx.volblocksize.get(t) else {
            continue;
        };
        let bs = rows[0].bs_bytes;
        if !write_only(rows[0]) || bs >= vbs {
            continue;
        }
        let (message, evidence) = match pool_bytes(rows) {
            None => (
                "writes smaller than the zvol's volblocksize make ZFS read-modify-write each block".to_string(),
                format!("bs {bs} B < volblocksize {vbs} B"),
            ),
            Some(p) if p.read >= (vbs as f64).max(p.agent / 20.0) => (
                format!(
                    "writes smaller than the zvol's volblocksize made ZFS read-modify-write: it read {:.0} B from the pool's disks in a pass that only wrote, the rest of each {vbs}-byte block{}; match volblocksize to the guest's writes (it is fixed at creation)",
                    p.read,
                    match ctx.zfs_prop(t, "primarycache") {
                        Some(pc) if pc != "all" => format!(" (primarycache={pc} keeps no data in ARC)"),
                        _ => String::new(),
                    }
                ),
                format!("bs {bs} B < volblocksize {vbs} B; {}", fmt_bytes(&p)),
            ),
            Some(_) => continue,
        };
        out.push(Finding {
            rule: "volblocksize-rmw",
            target: t.clone(),
            workload: w.clone(),
            message,
            evidence,
        });
    }
    out
}

/// A zvol with `sync=always`: ZFS commits the ZIL for every write, also those the
/// workload never flushed: ZIL commits and pool vdev flushes well above the agent's.
pub fn zfs_sync_always(g: &Groups<'_>, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        if ctx.zfs_prop(t, "sync") != Some("always") {
            continue;
        }
        let m = |f: Counter| med_count(rows, f);
        let agent = m(|r| Some(r.agent_flushes)).unwrap_or(0.0);
        let margin = (agent / 4.0).max(4.0);
        let Some(zil) = m(|r| r.zil_commits) else {
            continue;
        };
        let vdev = m(|r| r.vdev_flushes);
        if zil <= agent + margin || vdev.is_some_and(|v| v <= agent + margin) {
            continue;
        }
        let writes = m(|r| r.agent_write_bytes.map(|b| b / r.bs_bytes.max(1)));
        out.push(Finding {
            rule: "zfs-sync-always",
            target: t.clone(),
            workload: w.clone(),
            message: format!(
                "the zvol has sync=always: ZFS commits the ZIL for every write before acknowledging it, also the writes the workload never flushed: {zil:.0} ZIL commits{} for {agent:.0} flushes by the agent; durable, but every write waits for a log write and a disk flush; `zfs set sync=standard` commits only what is flushed",
                vdev.map_or(String::new(), |v| format!(" and {v:.0} pool vdev flushes"))
            ),
            evidence: format!(
                "sync=always; {}{}",
                writes.map_or(String::new(), |n| format!("{n:.0} writes; ")),
                fmt_trace(&trace(rows))
            ),
        });
    }
    out
}

/// A zvol with `logbias=throughput`, in a pass whose writes the ZIL committed: synced data
/// is written in place as whole volblocksize blocks (the ZIL records only where), once
/// instead of twice (ZIL, then the transaction group) for full blocks, and amplified for
/// writes smaller than the volblocksize. Names the bytes the pool's disks wrote.
pub fn zfs_logbias_throughput(g: &Groups<'_>, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        if ctx.zfs_prop(t, "logbias") != Some("throughput") || !write_only(rows[0]) {
            continue;
        }
        let zil = med_count(rows, |r| r.zil_commits).unwrap_or(0.0);
        let Some(p) = pool_bytes(rows).filter(|_| zil >= 1.0) else {
            continue;
        };
        let bs = rows[0].bs_bytes;
        let ratio = p.written / p.agent;
        let message = match ctx.volblocksize.get(t) {
            Some(&vbs) if bs < vbs => format!(
                "the zvol has logbias=throughput: each synced write smaller than the volblocksize ({bs} < {vbs} B) is written in place as a whole {vbs}-byte block instead of into the ZIL: the pool's disks wrote {ratio:.1}x the agent's bytes; logbias=latency logs small synced writes"
            ),
            _ => format!(
                "the zvol has logbias=throughput: synced data is written once, in place (the ZIL records only where), not first into the ZIL and again at the transaction group as with logbias=latency: the pool's disks wrote {ratio:.1}x the agent's bytes"
            ),
        };
        out.push(Finding {
            rule: "zfs-logbias-throughput",
            target: t.clone(),
            workload: w.clone(),
            message,
            evidence: format!(
                "logbias=throughput; {}; ZIL commits {zil:.0}",
                fmt_bytes(&p)
            ),
        });
    }
    out
}

/// A zvol with compression on whose pool stored a write-only pass in fewer bytes than the
/// agent wrote: the data compressed, so the throughput measured depends on the data.
/// (Passes the ZIL commits write the data twice, uncompressed into the log first, so
/// compression shows there only as less than that.)
pub fn zfs_compression(g: &Groups<'_>, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        let Some(c) = ctx.zfs_prop(t, "compression").filter(|&c| c != "off") else {
            continue;
        };
        let Some(p) = pool_bytes(rows).filter(|p| p.written < 0.8 * p.agent) else {
            continue;
        };
        if !write_only(rows[0]) {
            continue;
        }
        out.push(Finding {
            rule: "zfs-compression",
            target: t.clone(),
            workload: w.clone(),
            message: format!(
                "the zvol has compression={c} and the data compressed: the pool's disks wrote {:.0}% of the agent's bytes, so the throughput measured depends on how compressible the data is (set the workload's buffer_compress_percentage to choose; without it, writes smaller than the volblocksize repeat one buffer and compress)",
                100.0 * p.written / p.agent
            ),
            evidence: format!("compression={c}; {}", fmt_bytes(&p)),
        });
    }
    out
}

/// The host device counted flushes in passes whose agent issued none: other programs (a
/// filesystem journal, another process) share that device's counters, so its column
/// carries noise on every workload of the target.
pub fn shared_host_counter(g: &Groups<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        let tr = trace(rows);
        let agent = tr.first().map_or(0.0, |l| l.1);
        if agent > 0.0 {
            continue;
        }
        if let Some(&(layer, n)) = tr
            .iter()
            .find(|&&(l, v)| v > 0.0 && matches!(l, Layer::HostDevice | Layer::Zil))
        {
            out.push(Finding {
                rule: "shared-host-counter",
                target: t.clone(),
                workload: w.clone(),
                message: format!(
                    "the {layer} counted {n:.0} flushes in a pass that issued none: other activity shares its counters, so the target's host-device numbers carry noise; give it a `dir` on a device of its own"
                ),
                evidence: fmt_trace(&tr),
            });
        }
    }
    out
}

/// VirtualBox logged that it disabled asynchronous flushes for a target's disk: from then
/// on, guest flushes on the asynchronous path (host I/O cache off) complete without a
/// flush on the host (`PDMAsyncCompletionFileNormal.cpp`), whatever `IgnoreFlushAsync` says.
pub fn async_flushes_disabled(ctx: &Context) -> Vec<Finding> {
    ctx.async_flushes_disabled
        .iter()
        .map(|(t, line)| Finding {
            rule: "vbox-async-flushes-disabled",
            target: t.clone(),
            workload: String::new(),
            message: "VirtualBox disabled asynchronous flushes after a host flush failed: later guest flushes complete without reaching the host, so the results are not durable; use a host filesystem whose asynchronous fsync works, or the host I/O cache with ignore_flush = false (the synchronous path)".into(),
            evidence: format!("VBox.log: {line}"),
        })
        .collect()
}

/// A simulated power cut lost blocks the guest had been told were durable
/// (`zvbench run --powercut`): the proof, beyond flush counters, that the target is not
/// durable, naming the layer the power-cut check found dropping the flushes.
pub fn acknowledged_writes_lost(g: &Groups<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((target, workload), rows) in g {
        let lost: Vec<&&ResultRow> = rows
            .iter()
            .filter(|r| r.powercut_lost_blocks.is_some_and(|n| n > 0))
            .collect();
        let Some(worst) = lost.iter().max_by_key(|r| r.powercut_lost_blocks) else {
            continue;
        };
        let total = |f: fn(&ResultRow) -> Option<u64>| {
            rows.iter()
                .filter_map(|r| f(r))
                .fold(0u64, u64::saturating_add)
        };
        let (cuts, cuts_lost) = (total(|r| r.powercut_cuts), total(|r| r.powercut_cuts_lost));
        out.push(Finding {
            rule: "acknowledged-writes-lost",
            target: target.clone(),
            workload: workload.clone(),
            message: format!(
                "a simulated power cut lost writes the guest's fsync had acknowledged; dropped at: {}",
                worst.powercut_dropped_at.as_deref().unwrap_or("unknown")
            ),
            evidence: format!(
                "{cuts_lost} of {cuts} cuts lost blocks; up to {} of {} acknowledged blocks lost at one cut; {} flushes reached stable storage",
                worst.powercut_lost_blocks.unwrap_or(0),
                worst.powercut_acked_blocks.unwrap_or(0),
                worst.powercut_log_flushes.unwrap_or(0)
            ),
        });
    }
    out
}

/// A zvol with `sync=disabled` whose guest or agent flushed: ZFS itself acknowledges the
/// flushes without committing anything (no ZIL commit; the pool's vdevs flush only at
/// transaction-group syncs).
pub fn zfs_sync_disabled(g: &Groups<'_>, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((t, w), rows) in g {
        if ctx.zfs_prop(t, "sync") != Some("disabled") {
            continue;
        }
        let tr = trace(rows);
        if tr.first().is_some_and(|&(_, agent)| agent > 0.0) {
            out.push(Finding {
                rule: "zfs-sync-disabled",
                target: t.clone(),
                workload: w.clone(),
                message: "the zvol has sync=disabled: ZFS acknowledges every flush without committing it (no ZIL commit; the pool's vdevs flush only at transaction-group syncs): the results are not durable; `zfs set sync=standard` makes them so".into(),
                evidence: format!("sync=disabled; {}", fmt_trace(&tr)),
            });
        }
    }
    out
}

/// Every rule, in report order.
pub fn diagnose(rows: &[ResultRow], ctx: &Context) -> Vec<Finding> {
    let g = groups(rows);
    let mut f = acknowledged_writes_lost(&g);
    f.extend(flushes_dropped(&g));
    f.extend(flush_amplification(&g));
    f.extend(guest_faster_than_host(&g));
    f.extend(reads_from_cache(&g));
    f.extend(zfs_sync_disabled(&g, ctx));
    f.extend(zfs_sync_always(&g, ctx));
    f.extend(zfs_logbias_throughput(&g, ctx));
    f.extend(zfs_compression(&g, ctx));
    f.extend(volblocksize_mismatch(&g, ctx));
    f.extend(shared_host_counter(&g));
    f.extend(async_flushes_disabled(ctx));
    f.extend(software_emulation(rows));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, storage: &str, kind: &str, mib: f64) -> ResultRow {
        ResultRow {
            target: target.into(),
            storage: storage.into(),
            hypervisor: if storage == "host" { "none" } else { "qemu" }.into(),
            accel: if storage == "host" { "" } else { "kvm" }.into(),
            cache: "none".into(),
            workload: "w".into(),
            kind: kind.into(),
            bs_bytes: 4096,
            mib_per_s: mib,
            ..Default::default()
        }
    }

    fn set(ctx: &mut Context, target: &str, prop: &str, value: &str) {
        ctx.zfs
            .entry(target.into())
            .or_default()
            .insert(prop.into(), value.into());
    }

    fn flushing(mut r: ResultRow, agent: u64, guest: u64, hv: u64, host: u64) -> ResultRow {
        r.agent_flushes = agent;
        r.sync = "fsync".into();
        r.sync_every = 1;
        if r.storage != "host" {
            r.guest_dev_flushes = Some(guest);
            r.hv_flushes = Some(hv);
        }
        r.host_dev_flushes = Some(host);
        r
    }

    #[test]
    fn lost_acknowledged_writes_name_the_layer() {
        let cut = |cache: &str, lost: u64| {
            let mut r = row(cache, "loop", "seqwr", 3.0);
            r.cache = cache.into();
            r.powercut_cuts = Some(21);
            r.powercut_cuts_lost = Some(if lost > 0 { 21 } else { 0 });
            r.powercut_acked_blocks = Some(128);
            r.powercut_lost_blocks = Some(lost);
            r.powercut_log_flushes = Some(if lost > 0 { 0 } else { 128 });
            r.powercut_dropped_at = (lost > 0)
                .then(|| format!("QEMU cache={cache} (no guest flush reached stable storage)"));
            r
        };
        let f = acknowledged_writes_lost(&groups(&[cut("unsafe", 128), cut("none", 0)]));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].target, "unsafe");
        assert!(f[0].message.contains("cache=unsafe"), "{}", f[0].message);
        assert!(
            f[0].evidence.starts_with("21 of 21 cuts"),
            "{}",
            f[0].evidence
        );
        assert!(acknowledged_writes_lost(&groups(&[row("t", "loop", "seqwr", 1.0)])).is_empty());
    }

    #[test]
    fn sync_disabled_is_named_only_for_that_zvol() {
        let zvol = |t: &str, zil: u64, vdev: u64| {
            let mut r = flushing(row(t, "zvol", "seqwr", 1.0), 33, 33, 33, 0);
            r.zil_commits = Some(zil);
            r.vdev_flushes = Some(vdev);
            r
        };
        let rows = [zvol("std", 32, 36), zvol("off", 0, 2)];
        let mut ctx = Context::default();
        set(&mut ctx, "std", "sync", "standard");
        set(&mut ctx, "off", "sync", "disabled");
        let f = zfs_sync_disabled(&groups(&rows), &ctx);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].target, "off");
        assert!(f[0].message.contains("sync=disabled"), "{}", f[0].message);
        assert!(
            f[0].evidence.ends_with("ZIL 0 → pool vdevs 2"),
            "{}",
            f[0].evidence
        );
        // A zero ZIL above a counting vdev layer is not a drop at the host device.
        assert!(flushes_dropped(&groups(&rows)).is_empty());
        // With the vdevs silent too, the drop is named at the zvol.
        let silent = [zvol("off", 0, 0)];
        let d = flushes_dropped(&groups(&silent));
        assert!(
            d[0].message.contains("the zvol acknowledged them"),
            "{}",
            d[0].message
        );
        let idle = [flushing(row("off", "zvol", "seqwr", 1.0), 0, 0, 0, 0)];
        assert!(zfs_sync_disabled(&groups(&idle), &ctx).is_empty());
    }

    /// A pass on a zvol run on the host, with the layers' numbers measured in the ZFS lab
    /// (`scenarios/lab-zvol-props.toml`, docs/lab.md): bytes the agent wrote, bytes the
    /// pool's vdevs wrote and read, the agent's flushes, ZIL commits, vdev flushes.
    fn zpass(
        t: &str,
        w: &str,
        bs: u64,
        agent_w: u64,
        vdev: (u64, u64),
        flushes: (u64, u64, u64),
    ) -> ResultRow {
        ResultRow {
            target: t.into(),
            storage: "zvol".into(),
            hypervisor: "none".into(),
            workload: w.into(),
            kind: "seqwr".into(),
            bs_bytes: bs,
            rw_mix_read: Some(0),
            agent_write_bytes: Some(agent_w),
            vdev_write_bytes: Some(vdev.0),
            vdev_read_bytes: Some(vdev.1),
            agent_flushes: flushes.0,
            host_dev_flushes: Some(0),
            zil_commits: Some(flushes.1),
            vdev_flushes: Some(flushes.2),
            ..Default::default()
        }
    }

    fn zvol_ctx(props: &[(&str, &str, &str)], vbs: &[(&str, u64)]) -> Context {
        let mut ctx = Context::default();
        for (t, k, v) in props {
            set(&mut ctx, t, k, v);
        }
        for (t, b) in vbs {
            ctx.volblocksize.insert(t.to_string(), *b);
        }
        ctx
    }

    #[test]
    fn sync_always_is_named_for_writes_never_flushed() {
        let rows = [
            zpass(
                "always",
                "nosync-4k",
                4096,
                262144,
                (870400, 0),
                (0, 65, 66),
            ),
            // Every write flushed by the agent: sync=always adds no disk flush.
            zpass(
                "always",
                "fsync-4k",
                4096,
                262144,
                (970240, 0),
                (64, 129, 68),
            ),
            zpass("std", "nosync-4k", 4096, 262144, (640000, 0), (0, 1, 3)),
        ];
        let ctx = zvol_ctx(
            &[("always", "sync", "always"), ("std", "sync", "standard")],
            &[],
        );
        let f = zfs_sync_always(&groups(&rows), &ctx);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].target.as_str(), f[0].workload.as_str()),
            ("always", "nosync-4k")
        );
        assert!(
            f[0].message.contains("sync=always")
                && f[0]
                    .message
                    .contains("65 ZIL commits and 66 pool vdev flushes for 0 flushes"),
            "{}",
            f[0].message
        );
        assert_eq!(
            f[0].evidence,
            "sync=always; 64 writes; agent 0 → host device 0 → ZIL 65 → pool vdevs 66"
        );
    }

    #[test]
    fn logbias_throughput_names_the_bytes_written_in_place() {
        let rows = [
            zpass(
                "thru",
                "fsync-16k",
                16384,
                1048576,
                (1403392, 0),
                (64, 65, 66),
            ),
            zpass("thru", "rand-4k", 4096, 4194304, (21205504, 0), (1, 2, 5)),
            zpass(
                "std",
                "fsync-16k",
                16384,
                1048576,
                (2448896, 0),
                (64, 65, 66),
            ),
            // No ZIL commit: nothing was written through the log.
            zpass("thru", "idle", 4096, 262144, (349696, 0), (0, 0, 3)),
        ];
        let ctx = zvol_ctx(
            &[
                ("thru", "logbias", "throughput"),
                ("std", "logbias", "latency"),
            ],
            &[("thru", 16384), ("std", 16384)],
        );
        let f = zfs_logbias_throughput(&groups(&rows), &ctx);
        assert_eq!(f.len(), 2, "{f:?}");
        let full = f.iter().find(|f| f.workload == "fsync-16k").unwrap();
        assert!(
            full.message.contains("written once, in place") && full.message.contains("1.3x"),
            "{}",
            full.message
        );
        assert_eq!(
            full.evidence,
            "logbias=throughput; agent wrote 1048576 B → pool vdevs wrote 1403392 B (1.34x) and read 0 B; ZIL commits 65"
        );
        let small = f.iter().find(|f| f.workload == "rand-4k").unwrap();
        assert!(
            small.message.contains("as a whole 16384-byte block") && small.message.contains("5.1x"),
            "{}",
            small.message
        );
    }

    #[test]
    fn compression_is_named_when_the_pool_wrote_less_than_the_agent() {
        let rows = [
            zpass("lz4", "comp-50", 65536, 4194304, (2311680, 0), (1, 2, 3)),
            zpass("off", "comp-50", 65536, 4194304, (8536064, 0), (1, 2, 3)),
            zpass("lz4", "random", 4096, 4194304, (9012736, 0), (1, 2, 14)),
        ];
        let ctx = zvol_ctx(
            &[("lz4", "compression", "on"), ("off", "compression", "off")],
            &[],
        );
        let f = zfs_compression(&groups(&rows), &ctx);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].target.as_str(), f[0].workload.as_str()),
            ("lz4", "comp-50")
        );
        assert!(
            f[0].message.contains("compression=on") && f[0].message.contains("wrote 55%"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].evidence.starts_with(
                "compression=on; agent wrote 4194304 B → pool vdevs wrote 2311680 B (0.55x)"
            ),
            "{}",
            f[0].evidence
        );
        // A read pass is not judged.
        let mut read = rows[0].clone();
        read.rw_mix_read = Some(100);
        assert!(zfs_compression(&groups(&[read]), &ctx).is_empty());
    }

    #[test]
    fn read_modify_write_is_seen_in_vdev_reads_of_a_write_only_pass() {
        let rows = [
            zpass(
                "meta",
                "nosync-4k",
                4096,
                262144,
                (642048, 655360),
                (0, 1, 3),
            ),
            // Whole 64K blocks: only metadata is read.
            zpass(
                "meta",
                "comp-50",
                65536,
                4194304,
                (2304000, 34304),
                (1, 2, 3),
            ),
            // The blocks were in ARC: no read, no finding.
            zpass("all", "nosync-4k", 4096, 262144, (642048, 0), (0, 1, 3)),
        ];
        let ctx = zvol_ctx(
            &[
                ("meta", "primarycache", "metadata"),
                ("all", "primarycache", "all"),
            ],
            &[("meta", 65536), ("all", 65536)],
        );
        let f = volblocksize_mismatch(&groups(&rows), &ctx);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].target.as_str(), f[0].workload.as_str()),
            ("meta", "nosync-4k")
        );
        assert!(
            f[0].message.contains("read 655360 B")
                && f[0].message.contains("primarycache=metadata"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].evidence
                .starts_with("bs 4096 B < volblocksize 65536 B; agent wrote 262144 B"),
            "{}",
            f[0].evidence
        );
    }

    #[test]
    fn dropped_flushes_fire_only_when_a_layer_sees_none() {
        let mut unsafe_row = flushing(row("vdi", "image", "seqwr", 50.0), 17, 17, 17, 0);
        unsafe_row.cache = "unsafe".into();
        let f = flushes_dropped(&groups(&[unsafe_row]));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("between hypervisor and host device"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("cache=unsafe"));
        assert_eq!(
            f[0].evidence,
            "agent 17 → guest device 17 → hypervisor 17 → host device 0"
        );
        // The same image on a ZFS dataset (docs/story.md): the drop shows at its ZIL.
        let mut on_zfs = flushing(row("vdi", "image", "seqwr", 50.0), 8, 8, 8, 0);
        (on_zfs.cache, on_zfs.host_dev_flushes) = ("unsafe".into(), None);
        (on_zfs.zil_commits, on_zfs.vdev_flushes) = (Some(0), Some(0));
        let f = flushes_dropped(&groups(&[on_zfs]));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.contains("between hypervisor and ZIL"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("cache=unsafe"), "{}", f[0].message);
        assert!(flushes_dropped(&groups(&[flushing(
            row("raw", "loop", "seqwr", 5.0),
            17,
            17,
            17,
            17
        )]))
        .is_empty());
        assert!(flushes_dropped(&groups(&[flushing(
            row("raw", "loop", "seqwr", 5.0),
            0,
            0,
            0,
            0
        )]))
        .is_empty());
    }

    #[test]
    fn virtualbox_drops_name_their_setting() {
        let vbox = |storage: &str, cache: &str| {
            let mut r = flushing(row("vm", storage, "seqwr", 50.0), 17, 17, 17, 0);
            r.hypervisor = "virtualbox".into();
            r.cache = cache.into();
            flushes_dropped(&groups(&[r]))[0].message.clone()
        };
        let m = vbox("image", "hostiocache=on flushes=ignored");
        assert!(m.contains("IgnoreFlush is 1"), "{m}");
        let m = vbox("zvol", "hostiocache=off flushes=passed");
        assert!(
            m.contains("raw-disk VMDK") && !m.contains("inferred"),
            "{m}"
        );
    }

    #[test]
    fn virtualbox_nvme_sends_no_flushes() {
        let nvme = |bus: &str, write_cache: &str| {
            let mut r = flushing(row("vm", "image", "seqwr", 50.0), 17, 0, 0, 0);
            r.hypervisor = "virtualbox".into();
            r.cache = "hostiocache=off flushes=passed".into();
            r.bus = bus.into();
            r.dev_write_cache = Some(write_cache.into());
            flushes_dropped(&groups(&[r]))
        };
        let f = nvme("nvme", "write through");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.starts_with("flushes dropped between agent and guest device: the NVMe controller reports no volatile write cache"),
            "{}",
            f[0].message
        );
        assert_eq!(
            f[0].evidence,
            "agent 17 → guest device 0 → hypervisor 0 → host device 0"
        );
        let m = &nvme("sata", "write through")[0].message;
        assert!(m.contains("reports no write cache"), "{m}");
        // The guest device saw the flushes: not this rule's case.
        let mut passed = flushing(row("vm", "image", "seqwr", 50.0), 17, 17, 17, 17);
        passed.hypervisor = "virtualbox".into();
        passed.bus = "nvme".into();
        assert!(flushes_dropped(&groups(&[passed])).is_empty());
    }

    #[test]
    fn disabled_async_flushes_are_a_finding_of_their_own() {
        let mut ctx = Context::default();
        assert!(async_flushes_disabled(&ctx).is_empty());
        ctx.async_flushes_disabled.insert(
            "vdi".into(),
            "AIOMgr: Flush failed with VERR_INVALID_PARAMETER, disabling async flushes".into(),
        );
        let f = async_flushes_disabled(&ctx);
        assert_eq!((f.len(), f[0].target.as_str()), (1, "vdi"));
        assert!(f[0].evidence.contains("disabling async flushes"));
        // The drop it causes names the log, not IgnoreFlush.
        let mut r = flushing(row("vdi", "image", "seqwr", 50.0), 17, 17, 17, 0);
        r.hypervisor = "virtualbox".into();
        r.cache = "hostiocache=off flushes=passed".into();
        let m = &flushes_dropped(&groups(&[r]))[0].message;
        assert!(m.contains("VBox.log"), "{m}");
    }

    #[test]
    fn shared_counter_only_when_the_agent_issued_nothing() {
        let quiet = flushing(row("vdi", "image", "seqrd", 500.0), 0, 0, 0, 8);
        let f = shared_host_counter(&groups(std::slice::from_ref(&quiet)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].evidence.ends_with("host device 8"), "{f:?}");
        let clean = flushing(row("vdi", "image", "seqrd", 500.0), 0, 0, 0, 0);
        assert!(shared_host_counter(&groups(&[clean])).is_empty());
        let busy = flushing(row("vdi", "image", "seqwr", 50.0), 17, 17, 17, 20);
        assert!(shared_host_counter(&groups(&[busy])).is_empty());
    }

    #[test]
    fn amplification_needs_a_real_excess() {
        assert_eq!(
            flush_amplification(&groups(&[flushing(
                row("z", "zvol", "seqwr", 5.0),
                17,
                17,
                17,
                400
            )]))
            .len(),
            1
        );
        assert!(flush_amplification(&groups(&[flushing(
            row("z", "zvol", "seqwr", 5.0),
            17,
            17,
            17,
            20
        )]))
        .is_empty());
    }

    #[test]
    fn guest_faster_than_host_only_when_flushing() {
        let host = flushing(row("host", "host", "seqwr", 36.0), 17, 0, 0, 17);
        let vdi = flushing(row("vdi", "image", "seqwr", 54.0), 17, 17, 17, 17);
        let f = guest_faster_than_host(&groups(&[host.clone(), vdi.clone()]));
        assert_eq!(f.len(), 1);
        assert!(f[0].evidence.contains("1.50x"), "{}", f[0].evidence);
        // One end flush after a large write is not flush-bound.
        let no_flush = ResultRow {
            agent_flushes: 1,
            sync_every: 0,
            sync: "none".into(),
            ..vdi.clone()
        };
        assert!(guest_faster_than_host(&groups(&[host.clone(), no_flush])).is_empty());
        let slower = ResultRow {
            mib_per_s: 12.0,
            ..vdi
        };
        assert!(guest_faster_than_host(&groups(&[host, slower])).is_empty());
    }

    #[test]
    fn cached_reads() {
        let host = row("host", "host", "seqrd", 196.0);
        assert_eq!(
            reads_from_cache(&groups(&[
                host.clone(),
                row("vdi", "image", "seqrd", 566.0)
            ]))
            .len(),
            1
        );
        assert!(reads_from_cache(&groups(&[host, row("zvol", "zvol", "seqrd", 155.0)])).is_empty());
    }

    #[test]
    fn tcg_and_volblocksize() {
        let mut r = row("vdi", "image", "seqwr", 1.0);
        assert!(software_emulation(std::slice::from_ref(&r)).is_empty());
        r.accel = "tcg".into();
        assert_eq!(software_emulation(&[r]).len(), 1);
        let z = row("zvol", "zvol", "seqwr", 1.0);
        let mut ctx = Context::default();
        assert!(volblocksize_mismatch(&groups(std::slice::from_ref(&z)), &ctx).is_empty());
        ctx.volblocksize.insert("zvol".into(), 16384);
        assert_eq!(volblocksize_mismatch(&groups(&[z]), &ctx).len(), 1);
    }
}
