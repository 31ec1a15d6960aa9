//! The send step's results, read back from `run.json` (`storage.<target>.send`, written by
//! the runner's send step) and shown as a table with units in `summary.md` and
//! `report.html`. A send is one copy per target, not a pass: it has no row in
//! `results.csv`.

use crate::run_json::RunInfo;

/// One target's timed `zfs send | zfs receive`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRow {
    /// The target.
    pub target: String,
    /// The snapshot sent.
    pub snapshot: String,
    /// The dataset it was received as.
    pub received_as: String,
    /// Bytes of the stream.
    pub bytes: u64,
    /// Seconds, both commands together.
    pub seconds: f64,
}

impl SendRow {
    /// MiB/s, from the bytes and seconds (not run.json's copy of it); 0 for no time.
    pub fn mib_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1048576.0 / self.seconds
        } else {
            0.0
        }
    }
}

/// The sends in `run.json`, by target name; an entry with a missing or
/// impossible value (negative or non-finite seconds, bytes that are not a count) is left
/// out rather than shown.
pub fn rows(run: &RunInfo) -> Vec<SendRow> {
    run.storage
        .iter()
        .filter_map(|(target, st)| {
            let s = st.send.as_ref()?.valid()?;
            Some(SendRow {
                target: target.clone(),
                snapshot: s.snapshot.clone(),
                received_as: s.received_as.clone(),
                bytes: s.bytes,
                seconds: Some(s.seconds).filter(|v| v.is_finite() && *v >= 0.0)?,
            })
        })
        .collect()
}

/// The table's columns, units in the names.
pub const COLUMNS: [&str; 6] = ["target", "sent", "received as", "MiB", "seconds", "MiB/s"];

fn cells(r: &SendRow) -> [String; 6] {
    [
        r.target.clone(),
        r.snapshot.clone(),
        r.received_as.clone(),
        format!("{:.1}", r.bytes as f64 / 1048576.0),
        format!("{:.2}", r.seconds),
        format!("{:.1}", r.mib_per_s()),
    ]
}

const INTRO: &str = "Each target with `send_to` was sent after its last repetition: `zfs send` of its snapshot piped by zvbench into `zfs receive` on the second pool (the copy destroyed afterwards); the stream's bytes as counted in the pipe, the time from starting both commands to both exiting.";

/// `summary.md`'s "ZFS send" section; empty when no target was sent.
pub fn markdown(rows: &[SendRow]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r).to_vec()).collect();
    crate::summary::md_table("ZFS send", INTRO, &COLUMNS, &cells, |i| i >= 3)
}

/// The same table in HTML, with its heading; empty when no target was sent.
pub fn html(rows: &[SendRow]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r).to_vec()).collect();
    crate::html::table("ZFS send", INTRO, &COLUMNS, &cells, |i| i >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_from_run_json_with_units_and_bad_entries_left_out() {
        let run = serde_json::json!({"storage": {
            "zvol": {"send": {"snapshot": "tank/r-zvol@zvbench-send", "received_as": "backup/r-zvol",
                               "bytes": 3145728u64, "seconds": 2.0, "mib_per_s": 99.0}},
            "vdi": {"image": "/var/tmp/x.vdi"},
            "neg": {"send": {"snapshot": "a@b", "received_as": "c/d", "bytes": 1, "seconds": -1.0}},
            "text": {"send": {"snapshot": "a@b", "received_as": "c/d", "bytes": "1", "seconds": 1.0}},
            "<x>": {"send": {"snapshot": "a@<b>", "received_as": "c/d", "bytes": 0, "seconds": 0.0}}
        }});
        let r = rows(&serde_json::from_value(run).unwrap());
        assert_eq!(r.len(), 2, "{r:?}");
        let z = r.iter().find(|r| r.target == "zvol").unwrap();
        assert_eq!(z.mib_per_s(), 1.5, "computed, not run.json's 99");
        let md = markdown(&r);
        assert!(
            md.contains("| target | sent | received as | MiB | seconds | MiB/s |"),
            "{md}"
        );
        assert!(
            md.contains("| zvol | tank/r-zvol@zvbench-send | backup/r-zvol | 3.0 | 2.00 | 1.5 |"),
            "{md}"
        );
        let h = html(&r);
        assert!(
            h.contains("<td>a@&lt;b&gt;</td>") && !h.contains("<x>"),
            "{h}"
        );
        assert!(h.contains("<td class=\"n\">1.5</td>"), "{h}");
        assert_eq!(markdown(&[]), "");
        assert_eq!(html(&rows(&RunInfo::default())), "");
    }
}
