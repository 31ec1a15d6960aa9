//! Where each target's ZFS layers were read, from `run.json` (`storage.<target>`: `zvol` or
//! `dataset`, `zil_source`, `vdevs`, written at provisioning), shown beside the flush trace:
//! the ZIL column is the target's own dataset's commits, or — on OpenZFS 2.1, which has
//! no per-dataset kstat — every dataset of the pool's, and a reader must know which.

use crate::run_json::RunInfo;

/// One target's ZFS sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The target.
    pub target: String,
    /// The zvol or the dataset holding the target's file.
    pub dataset: String,
    /// Where ZIL commits were read: `dataset`, `pool-wide (all datasets)` or `none`.
    pub zil_source: String,
    /// The pool's disks whose flushes are the bottom layer.
    pub vdevs: String,
}

/// The targets of `run.json` with a ZIL source, by target name.
pub fn rows(run: &RunInfo) -> Vec<Source> {
    run.storage
        .iter()
        .filter_map(|(target, p)| {
            Some(Source {
                target: target.clone(),
                dataset: p.prop("zvol").or(p.prop("dataset")).unwrap_or("–").into(),
                zil_source: p.prop("zil_source")?.to_string(),
                vdevs: p.prop("vdevs").unwrap_or("–").into(),
            })
        })
        .collect()
}

/// The table's columns.
pub const COLUMNS: [&str; 4] = [
    "target",
    "zvol or dataset",
    "ZIL commits read from",
    "pool disks (vdev flushes)",
];

const HEADING: &str = "ZFS layers";
const INTRO: &str = "Where the ZIL and pool-disk counts of each target on ZFS come from: \"dataset\" is the target's own dataset's zil_commit_count kstat; \"pool-wide\" (OpenZFS 2.1) counts the commits of every dataset of the pool, other programs' included.";

fn cells(rows: &[Source]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                r.target.clone(),
                r.dataset.clone(),
                r.zil_source.clone(),
                r.vdevs.clone(),
            ]
        })
        .collect()
}

/// `summary.md`'s "ZFS layers" section; empty without ZFS targets.
pub fn markdown(rows: &[Source]) -> String {
    crate::summary::md_table(HEADING, INTRO, &COLUMNS, &cells(rows), |_| false)
}

/// The same in HTML; empty without ZFS targets.
pub fn html(rows: &[Source]) -> String {
    crate::html::table(HEADING, INTRO, &COLUMNS, &cells(rows), |_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_zfs_target_says_where_its_zil_count_comes_from() {
        let run = serde_json::json!({"storage": {
            "zv": {"zvol": "tank/r-zv", "zil_source": "dataset", "vdevs": "vda"},
            "old": {"zvol": "tank/r-old", "zil_source": "pool-wide (all datasets)", "vdevs": "vda vdb"},
            "vdi": {"image": "/var/tmp/tank/x.vdi", "dataset": "tank", "zil_source": "dataset", "vdevs": "vda"},
            "raw": {"loop_device": "/dev/loop0"}
        }});
        let r = rows(&serde_json::from_value(run).unwrap());
        assert_eq!(r.len(), 3, "{r:?}");
        let md = markdown(&r);
        assert!(md.contains("## ZFS layers"), "{md}");
        assert!(
            md.contains("| old | tank/r-old | pool-wide (all datasets) | vda vdb |"),
            "{md}"
        );
        assert!(md.contains("| vdi | tank | dataset | vda |"), "{md}");
        assert!(!md.contains("| raw |"), "{md}");
        assert!(html(&r).contains("<td>pool-wide (all datasets)</td>"));
        assert_eq!(markdown(&rows(&RunInfo::default())), "");
    }
}
