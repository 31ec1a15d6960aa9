//! `zvbench import fio|sysbench FILE... --out DIR`: appends the imported rows to
//! `DIR/results.csv` (created if absent, its header checked if present) and records each
//! import in `DIR/run.json`, so `zvbench report DIR` shows them beside zvbench's results.

use crate::provenance;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use zvbench_reports::ResultRow;

/// Appends `rows` imported from `source` (tool and file) to the run directory `dir`;
/// repetitions continue after the rows already there for the same target and workload.
pub fn append(dir: &Path, mut rows: Vec<ResultRow>, tool: &str, source: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let csv_path = dir.join("results.csv");
    let existed = csv_path.exists();
    // One read of the file: its header checked, its rows counted.
    let existing: Vec<ResultRow> = if existed {
        let mut r = csv::Reader::from_path(&csv_path)
            .with_context(|| format!("read {}", csv_path.display()))?;
        if r.headers()? != &csv_header()? {
            bail!(
                "{} has other columns than this zvbench writes; import into a new --out directory",
                csv_path.display()
            );
        }
        r.deserialize()
            .collect::<Result<_, _>>()
            .with_context(|| format!("read {}", csv_path.display()))?
    } else {
        Vec::new()
    };
    let key = |r: &ResultRow| (r.target.clone(), r.workload.clone());
    let mut reps: HashMap<(String, String), u32> = HashMap::new();
    for r in &existing {
        *reps.entry(key(r)).or_default() += 1;
    }
    for r in &mut rows {
        let n = reps.entry(key(r)).or_default();
        *n += 1;
        r.repetition = *n;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&csv_path)
        .with_context(|| format!("open {}", csv_path.display()))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(!existed)
        .from_writer(file);
    for r in &rows {
        w.serialize(r)?;
    }
    w.flush()?;

    let run_path = dir.join("run.json");
    let mut run: serde_json::Value = match std::fs::read(&run_path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is not JSON; fix or move it", run_path.display()))?,
        Err(_) => serde_json::json!({
            "run_id": format!("import-{}", provenance::run_id()),
            "date": provenance::rfc3339(provenance::now()),
            "zvbench_version": env!("CARGO_PKG_VERSION"),
        }),
    };
    let entry = serde_json::json!({
        "tool": tool,
        "file": source.display().to_string(),
        "target": rows.first().map(|r| r.target.clone()),
        "rows": rows.len(),
        "date": provenance::rfc3339(provenance::now()),
    });
    match run["imported"].as_array_mut() {
        Some(a) => a.push(entry),
        None => run["imported"] = serde_json::json!([entry]),
    }
    provenance::write(dir, &run)?;
    Ok(rows.len())
}

/// The header `results.csv` has.
fn csv_header() -> Result<csv::StringRecord> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(ResultRow::default())?;
    let bytes = w.into_inner()?;
    Ok(csv::Reader::from_reader(bytes.as_slice())
        .headers()?
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str) -> ResultRow {
        ResultRow {
            target: "host".into(),
            workload: workload.into(),
            mib_per_s: 36.0,
            ..Default::default()
        }
    }

    #[test]
    fn appends_with_continuing_repetitions_and_records_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new("host.txt");
        append(dir.path(), vec![row("a")], "sysbench", src).unwrap();
        append(
            dir.path(),
            vec![row("a"), row("b"), row("a")],
            "sysbench",
            src,
        )
        .unwrap();
        let rows = zvbench_reports::read_results(&dir.path().join("results.csv")).unwrap();
        let reps: Vec<(&str, u32)> = rows
            .iter()
            .map(|r| (r.workload.as_str(), r.repetition))
            .collect();
        assert_eq!(reps, [("a", 1), ("a", 2), ("b", 1), ("a", 3)]);
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
        assert_eq!(run["imported"].as_array().unwrap().len(), 2);
        assert!(run["date"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn refuses_a_foreign_csv_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        std::fs::write(&p, "a,b\n1,2\n").unwrap();
        let e = append(dir.path(), vec![row("a")], "fio", Path::new("x.json")).unwrap_err();
        assert!(e.to_string().contains("other columns"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b\n1,2\n");
    }
}
