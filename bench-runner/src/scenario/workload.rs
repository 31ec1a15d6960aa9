//! `[[workload]]`: each table checked into the agent's [`PassSpec`], with the agent's own
//! validation and names in the scenario's spelling, and whether a read must fill first.

use super::file::{ScenarioError, Source};
use crate::names::check_name;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::Spanned;
use zvbench_agent::engine::IoEngine;
use zvbench_agent::pass::{PassSpec, SyncMode, Workload};
use zvbench_agent::ByteSize;

/// `[[workload]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDef {
    /// Unique name.
    pub name: Spanned<String>,
    /// seqwr | seqrd | randwrite | randread | randrw.
    pub kind: Workload,
    /// Block size.
    pub bs: ByteSize,
    /// Bytes per pass.
    pub size: ByteSize,
    /// O_DIRECT.
    #[serde(default)]
    pub direct: bool,
    /// Flush control.
    #[serde(default)]
    pub sync: SyncMode,
    /// A flush every N writes.
    pub sync_every: Option<u64>,
    /// Final flush (default true).
    pub end_fsync: Option<bool>,
    /// Verify headers and checks.
    #[serde(default)]
    pub verify: bool,
    /// Percent of randrw requests that read (default 50).
    pub rwmixread: Option<u8>,
    /// Requests in flight per job (default 1).
    pub iodepth: Option<u32>,
    /// auto | psync | io_uring | libaio (default auto).
    #[serde(default)]
    pub ioengine: IoEngine,
    /// Jobs, each on its own region (default 1).
    pub numjobs: Option<u32>,
    /// Seed of the random offsets (default 1).
    pub randseed: Option<u64>,
    /// Independent random blocks instead of each once per pass.
    #[serde(default)]
    pub norandommap: bool,
    /// Seconds to run instead of moving `size` once.
    pub runtime: Option<f64>,
    /// Seconds run first and left out.
    pub ramp_time: Option<f64>,
    /// Time-series interval, milliseconds (default 1000).
    pub log_avg_msec: Option<u64>,
    /// Fresh content for every write, this percent compressible (0-100; fio's
    /// `buffer_compress_percentage`); absent: one random buffer for every write.
    pub buffer_compress_percentage: Option<u8>,
}

/// One workload, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadPlan {
    /// Name.
    pub name: String,
    /// The agent's pass (path filled per target).
    pub spec: PassSpec,
    /// A fill pass (unmeasured seqwr) must run first: a seqrd with no seqwr before it.
    pub needs_fill: bool,
}

/// Checks every workload in order (names unique, passes valid).
pub(super) fn plan_all(
    defs: &[WorkloadDef],
    src: &Source,
) -> Result<Vec<WorkloadPlan>, ScenarioError> {
    let mut workloads: Vec<WorkloadPlan> = Vec::new();
    for w in defs {
        let at = |msg: String| {
            src.err_at(
                w.name.span().start,
                format!("workload {:?}: {msg}", w.name.get_ref()),
            )
        };
        check_name(w.name.get_ref()).map_err(at)?;
        if workloads.iter().any(|x| &x.name == w.name.get_ref()) {
            return Err(at(
                "the name is used twice; give each workload its own name".into(),
            ));
        }
        let spec = w.spec().map_err(at)?;
        let needs_fill = w.kind.reads() && !covered(&workloads, &spec);
        workloads.push(WorkloadPlan {
            name: w.name.get_ref().clone(),
            spec,
            needs_fill,
        });
    }
    Ok(workloads)
}

/// Whether a read `spec` reads what an earlier write left: one covered its size (every
/// block: sequential, or random with the random map; and, when verifying, verified blocks
/// of the same size). Otherwise it fills first.
fn covered(earlier: &[WorkloadPlan], spec: &PassSpec) -> bool {
    earlier.iter().any(|p| {
        let s = &p.spec;
        matches!(s.workload, Workload::Seqwr | Workload::Randwrite)
            && !s.norandommap
            && s.size >= spec.size
            && (!spec.verify || (s.verify && s.bs == spec.bs))
    })
}

impl WorkloadDef {
    /// The agent's pass for this workload, checked by the agent's own rules; errors use
    /// the scenario's key names (`sync_every`, not `--sync-every`).
    fn spec(&self) -> Result<PassSpec, String> {
        let spec = PassSpec {
            direct: self.direct,
            sync: self.sync,
            sync_every: self.sync_every,
            end_fsync: self.end_fsync.unwrap_or(true),
            verify: self.verify,
            rwmixread: self.rwmixread,
            iodepth: self.iodepth.unwrap_or(1),
            ioengine: self.ioengine,
            numjobs: self.numjobs.unwrap_or(1),
            randseed: self.randseed.unwrap_or(1),
            norandommap: self.norandommap,
            runtime: self.runtime,
            ramp_time: self.ramp_time,
            log_avg_msec: self.log_avg_msec.unwrap_or(1000),
            buffer_compress_percentage: self.buffer_compress_percentage,
            ..PassSpec::new(PathBuf::new(), self.kind, self.bs, self.size)
        };
        spec.validate().map_err(|e| {
            e.to_string()
                .replace("--", "")
                .replace("sync-every", "sync_every")
                .replace("ramp-time", "ramp_time")
                .replace("log-avg-msec", "log_avg_msec")
                .replace("buffer-compress-percentage", "buffer_compress_percentage")
        })?;
        if spec.direct && !spec.bs.bytes().is_multiple_of(512) {
            return Err(format!(
                "direct = true needs bs to be a multiple of 512 bytes (the smallest logical block of any disk); got {}",
                spec.bs
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(text: &str) -> Result<Vec<WorkloadPlan>, String> {
        #[derive(Deserialize)]
        struct W {
            workload: Vec<WorkloadDef>,
        }
        let src = Source {
            name: "w.toml",
            text,
        };
        let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
        plan_all(&w.workload, &src).map_err(|e| e.to_string())
    }

    #[test]
    fn agent_flag_names_become_scenario_keys() {
        let e = plans(
            "[[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"4K\"\nsize=\"4M\"\nramp_time=-1.0\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("w.toml:2:6: workload \"w\": ramp_time -1 "),
            "{e}"
        );
        assert!(!e.contains("--") && !e.contains("ramp-time"), "{e}");
    }

    #[test]
    fn direct_needs_a_512_byte_multiple() {
        let text =
            "[[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"1K\"\nsize=\"4M\"\ndirect=true\n";
        assert!(plans(text).is_ok());
        let mut w: WorkloadDef = toml::from_str(&text.replace("[[workload]]\n", "")).unwrap();
        w.bs = ByteSize(1000);
        w.size = ByteSize(4000);
        let e = w.spec().unwrap_err();
        assert!(
            e.contains("multiple of 512") || e.contains("bs 1000"),
            "{e}"
        );
    }

    #[test]
    fn defaults_reach_the_pass() {
        let p =
            plans("[[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"4K\"\nsize=\"4M\"\n").unwrap();
        let s = &p[0].spec;
        assert!(s.end_fsync && !s.verify && !s.direct);
        assert_eq!(
            (s.iodepth, s.numjobs, s.randseed, s.log_avg_msec),
            (1, 1, 1, 1000)
        );
        assert!(!p[0].needs_fill, "a write fills nothing first");
    }
}
