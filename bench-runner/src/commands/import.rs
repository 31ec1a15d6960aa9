//! `zvbench import fio|sysbench FILE... --out DIR`: adds the imported rows to
//! `DIR/results.csv` (created if absent, its header checked if present) and records each
//! import in `DIR/run.json`, so `zvbench report DIR` shows them beside zvbench's results.
//!
//! Everything is checked before anything is written: every input file, every row's
//! numbers and names, the existing `results.csv` (its header and every value) and
//! `run.json`. Both files are then replaced atomically, so a refused or interrupted import
//! leaves the directory as it was, and a retry adds its rows once.

use crate::names;
use crate::run::provenance;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use zvbench_reports::run_json::{self, RunInfo};
use zvbench_reports::{atomic, row, ResultRow};

/// Where imported rows go and whose they are.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Files to import; each becomes a repetition.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The run directory to add the rows to (created if absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Target name for the rows (default: the tool's name).
    #[arg(long)]
    pub target: Option<String>,
    /// The results are the host baseline (other targets are compared with it).
    #[arg(long)]
    pub baseline: bool,
}

/// The tool whose output is imported.
#[derive(clap::Subcommand)]
pub enum ImportTool {
    /// fio output written with --output-format=json: a row per job and direction.
    Fio {
        /// The files and where their rows go.
        #[command(flatten)]
        args: ImportArgs,
    },
    /// The text of `sysbench fileio ... run` (sysbench 1.0.20): a row per file.
    Sysbench {
        /// The files and where their rows go.
        #[command(flatten)]
        args: ImportArgs,
        /// Workload name (default: mode and block size, e.g. seqwr-16K).
        #[arg(long)]
        workload: Option<String>,
    },
}

/// `zvbench import fio|sysbench`: every file parsed and checked before anything is
/// written, then the rows added to `--out`; prints a line per file; exit status 0.
pub fn import(tool: &ImportTool) -> Result<i32> {
    let (name, args) = match tool {
        ImportTool::Fio { args } => ("fio", args),
        ImportTool::Sysbench { args, .. } => ("sysbench", args),
    };
    let origin = zvbench_reports::import::Origin {
        target: args.target.clone().unwrap_or_else(|| name.to_string()),
        baseline: args.baseline,
    };
    names::check_name(&origin.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let mut imports = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let text = String::from_utf8_lossy(&text);
        let rows = match tool {
            ImportTool::Fio { .. } => zvbench_reports::import::fio(&text, &origin),
            ImportTool::Sysbench { workload, .. } => {
                zvbench_reports::import::sysbench(&text, &origin, workload.as_deref())
                    .map(|r| vec![r])
            }
        }
        .with_context(|| format!("cannot import {}", file.display()))?;
        imports.push(Imported {
            tool: name,
            file: file.clone(),
            rows,
        });
    }
    append(&args.out, &mut imports)?;
    for i in &imports {
        println!(
            "{}: {} rows into {}",
            i.file.display(),
            i.rows.len(),
            args.out.join("results.csv").display()
        );
    }
    Ok(0)
}

/// One input file's rows, as parsed by `zvbench_reports::import`.
pub struct Imported {
    /// fio or sysbench.
    pub tool: &'static str,
    /// The input file.
    pub file: PathBuf,
    /// Its rows.
    pub rows: Vec<ResultRow>,
}

/// Checks what the parsers cannot: target and workload names follow the scenario rules
/// (`names::check_name`), so imported rows can be compared with a scenario's.
fn check_names(i: &Imported) -> Result<()> {
    for r in &i.rows {
        names::check_name(&r.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
        names::check_name(&r.workload).map_err(|e| {
            let fix = match i.tool {
                "fio" => "rename the job (fio --name=...)",
                _ => "choose another with --workload",
            };
            anyhow::anyhow!("{}: workload {e}; {fix}", i.file.display())
        })?;
    }
    Ok(())
}

/// Adds `imports` to the run directory `dir`; repetitions continue after the rows already
/// there for the same target and workload (and are set in `imports`).
pub fn append(dir: &Path, imports: &mut [Imported]) -> Result<()> {
    for i in imports.iter() {
        check_names(i)?;
        for r in &i.rows {
            r.check()
                .with_context(|| format!("cannot import {}", i.file.display()))?;
        }
    }
    let csv_path = dir.join("results.csv");
    let csv_name = csv_path.display().to_string();
    // The existing file, byte for byte, and its rows (every value checked).
    let old: Option<Vec<u8>> = match std::fs::symlink_metadata(&csv_path) {
        Ok(_) => Some(row::read_bytes(&csv_path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("read {csv_name}")),
    };
    let old_bytes = old.as_deref().unwrap_or_default();
    if !old_bytes.is_empty() && !old_bytes.starts_with(&csv_header()?) {
        bail!("{csv_name} has other columns than this zvbench writes; import into a new --out directory");
    }
    let existing = row::parse(old_bytes, &csv_name)?;
    let mut run = run_json::read(dir)?.unwrap_or_else(|| RunInfo {
        run_id: Some(format!("import-{}", provenance::run_id())),
        date: Some(provenance::rfc3339(provenance::now())),
        zvbench_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..RunInfo::default()
    });

    let key = |r: &ResultRow| (r.target.clone(), r.workload.clone());
    let mut reps: HashMap<(String, String), u32> = HashMap::new();
    for r in &existing {
        *reps.entry(key(r)).or_default() += 1;
    }
    let mut w = csv::WriterBuilder::new()
        .has_headers(old_bytes.is_empty())
        .from_writer(old_bytes.to_vec());
    if !old_bytes.is_empty() && !old_bytes.ends_with(b"\n") {
        w.write_record(None::<&[u8]>)?;
    }
    let now = provenance::rfc3339(provenance::now());
    for i in imports.iter_mut() {
        for r in &mut i.rows {
            let n = reps.entry(key(r)).or_default();
            *n += 1;
            r.repetition = *n;
            w.serialize(&*r)?;
        }
        run.imported.push(run_json::Imported {
            tool: i.tool.into(),
            file: i.file.display().to_string(),
            target: i.rows.first().map(|r| r.target.clone()),
            rows: i.rows.len(),
            date: now.clone(),
        });
    }
    let new_csv = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;

    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    atomic::write(&csv_path, &new_csv).with_context(|| format!("write {csv_name}"))?;
    if let Err(e) = provenance::write(dir, &run) {
        // Put results.csv back, so the directory is as it was and a retry adds the rows once.
        let undo = match &old {
            Some(b) => atomic::write(&csv_path, b),
            None => std::fs::remove_file(&csv_path),
        };
        return Err(match undo {
            Ok(()) => e.context("nothing imported"),
            Err(u) => e.context(format!(
                "and {csv_name} could not be restored ({u}): it holds the new rows"
            )),
        });
    }
    Ok(())
}

/// The header line `results.csv` has, with its newline.
fn csv_header() -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(ResultRow::default())?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(bytes
        .split_inclusive(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str) -> ResultRow {
        ResultRow {
            target: "host".into(),
            workload: workload.into(),
            seconds: 1.0,
            mib_per_s: 36.0,
            ..Default::default()
        }
    }

    fn import(rows: Vec<ResultRow>) -> Vec<Imported> {
        vec![Imported {
            tool: "sysbench",
            file: "host.txt".into(),
            rows,
        }]
    }

    fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        let read = |n| std::fs::read(dir.join(n)).unwrap_or_default();
        (read("results.csv"), read("run.json"))
    }

    #[test]
    fn appends_with_continuing_repetitions_and_records_the_import() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &mut import(vec![row("a")])).unwrap();
        append(dir.path(), &mut import(vec![row("a"), row("b"), row("a")])).unwrap();
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
        // No temporary file is left beside them.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["results.csv", "run.json"]);
    }

    #[test]
    fn refuses_a_foreign_csv_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        std::fs::write(&p, "a,b\n1,2\n").unwrap();
        let e = append(dir.path(), &mut import(vec![row("a")])).unwrap_err();
        assert!(e.to_string().contains("other columns"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b\n1,2\n");
    }

    /// Issue 9 item 4: an invalid run.json failed the import after the rows were appended,
    /// one more row on every retry.
    #[test]
    fn a_refused_run_json_changes_nothing() {
        for (bad, says) in [
            ("{broken", "not valid JSON"),
            ("[1, 2]", "not an object"),
            (
                "{\"imported\": 5}",
                "\"imported\" is not as zvbench writes it",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            append(dir.path(), &mut import(vec![row("a")])).unwrap();
            std::fs::write(dir.path().join("run.json"), bad).unwrap();
            let before = files(dir.path());
            for _ in 0..3 {
                let e = append(dir.path(), &mut import(vec![row("a")])).unwrap_err();
                assert!(crate::chain(&e).contains(says), "{bad}: {e:#}");
                assert_eq!(files(dir.path()), before, "{bad}");
            }
        }
    }

    #[test]
    fn refuses_bad_existing_rows_names_and_values_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &mut import(vec![row("a")])).unwrap();
        let before = files(dir.path());
        let inf = ResultRow {
            iops: f64::INFINITY,
            ..row("a")
        };
        for (rows, says) in [
            (vec![row("a"), row("a b")], "workload name \"a b\" must be"),
            (vec![row("-x")], "choose another with --workload"),
            (vec![inf], "column iops: inf is not a finite number"),
        ] {
            let e = append(dir.path(), &mut import(rows)).unwrap_err();
            assert!(crate::chain(&e).contains(says), "{e:#}");
            assert_eq!(files(dir.path()), before);
        }
        // A corrupted existing row: named, nothing written.
        let p = dir.path().join("results.csv");
        let text = String::from_utf8(before.0.clone())
            .unwrap()
            .replace(",36.0,", ",-36.0,");
        std::fs::write(&p, &text).unwrap();
        let e = append(dir.path(), &mut import(vec![row("a")])).unwrap_err();
        assert!(
            crate::chain(&e).contains("row 1 (line 2), column mib_per_s: \"-36.0\" is negative"),
            "{e:#}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn header_only_or_empty_results_take_rows_and_a_directory_is_refused() {
        for existing in ["", "HEADER"] {
            let dir = tempfile::tempdir().unwrap();
            let header = String::from_utf8(csv_header().unwrap()).unwrap();
            std::fs::write(
                dir.path().join("results.csv"),
                existing.replace("HEADER", &header),
            )
            .unwrap();
            append(dir.path(), &mut import(vec![row("a")])).unwrap();
            let rows = zvbench_reports::read_results(&dir.path().join("results.csv")).unwrap();
            assert_eq!(rows.len(), 1, "{existing:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("results.csv")).unwrap();
        let e = append(dir.path(), &mut import(vec![row("a")])).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e:#}");
        assert!(!dir.path().join("run.json").exists());
    }
}
