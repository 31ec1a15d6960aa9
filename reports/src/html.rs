//! `report.html`: one self-contained page — inline CSS and SVG, no script, no network —
//! with the summary tables, the diagnosis, every figure and the run's provenance.

use crate::diagnose::Finding;
use crate::summary::{place, Table, COLUMNS, NO_FINDINGS};
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
li{margin:.4em 0}code{background:#f3f3f3;padding:0 .2em}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}\
.rule{font-weight:bold}";

/// Flattens `run.json` into (key path, value) pairs; the scenario text is left to its own
/// block.
fn provenance_pairs(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if prefix.is_empty() && k == "scenario" {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                provenance_pairs(v, &key, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                provenance_pairs(v, &format!("{prefix}[{i}]"), out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Renders the page. `figures` are (caption, SVG document) pairs; `run` is `run.json`;
/// `powercut` ([`powercut_table`], maybe empty) follows the diagnosis it backs.
pub fn render(
    title: &str,
    tables: &[Table],
    findings: &[Finding],
    figures: &[(String, String)],
    run: &crate::run_json::RunInfo,
    powercut: &str,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    h.push_str("<h2>Diagnosis</h2>\n<ul>\n");
    if findings.is_empty() {
        let _ = writeln!(h, "<li>{}</li>", escape(NO_FINDINGS));
    }
    for f in findings {
        let p = place(f);
        let _ = writeln!(
            h,
            "<li><code class=\"rule\">{}</code> {}{}. <em>Evidence:</em> {}</li>",
            escape(f.rule),
            if p.is_empty() {
                String::new()
            } else {
                format!("<strong>{}</strong>: ", escape(&p))
            },
            escape(&f.message),
            escape(&f.evidence)
        );
    }
    h.push_str("</ul>\n");
    h.push_str(powercut);
    for t in tables {
        let _ = writeln!(h, "<h2>{}</h2>\n<table>\n<tr>", escape(&t.heading));
        for (c, _) in COLUMNS {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>\n");
        for r in &t.rows {
            h.push_str("<tr>");
            for (cell, (_, numeric)) in r.iter().zip(COLUMNS) {
                let class = if numeric { " class=\"n\"" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", escape(cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    if !figures.is_empty() {
        h.push_str("<h2>Figures</h2>\n");
    }
    for (caption, svg) in figures {
        // Plotters writes a complete SVG document; inline it without its XML prolog.
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let _ = writeln!(
            h,
            "<figure>{body}<figcaption>{}</figcaption></figure>",
            escape(caption)
        );
    }
    let mut pairs = Vec::new();
    // As JSON, its keys in order: every field, known or not, shown the same way.
    let json = serde_json::to_value(run).unwrap_or_default();
    provenance_pairs(&json, "", &mut pairs);
    if !pairs.is_empty() {
        h.push_str("<h2>Provenance</h2>\n<table>\n");
        for (k, v) in pairs {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(&k), escape(&v));
        }
        h.push_str("</table>\n");
    }
    if let Some(s) = &run.scenario {
        let _ = writeln!(h, "<h3>Scenario</h3>\n<pre>{}</pre>", escape(s));
    }
    h.push_str("</body></html>\n");
    h
}

/// The power-cut table ([`crate::summary::powercut_rows`]) as HTML, with its heading;
/// empty when no pass was checked.
pub fn powercut_table(cells: &[Vec<String>]) -> String {
    table(
        "Power cuts",
        crate::summary::POWERCUT_INTRO,
        &crate::summary::POWERCUT_COLUMNS,
        cells,
        crate::summary::powercut_numeric,
    )
}

/// A table of `cells` under `<h2>heading</h2>` and an optional `intro` paragraph, its
/// `numeric` columns right-aligned; empty when there are no rows.
pub fn table(
    heading: &str,
    intro: &str,
    columns: &[&str],
    cells: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
) -> String {
    if cells.is_empty() {
        return String::new();
    }
    let mut h = format!("<h2>{}</h2>\n", escape(heading));
    if !intro.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", escape(intro));
    }
    h.push_str("<table>\n<tr>");
    for c in columns {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for r in cells {
        h.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if numeric(i) { " class=\"n\"" } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_results_are_escaped() {
        let t = Table {
            heading: "w<script>".into(),
            rows: vec![vec!["a&b".into(); COLUMNS.len()]],
        };
        let run =
            serde_json::json!({"run_id": "r\"1", "host": {"cpus": 2}, "scenario": "x = \"<y>\""});
        let page = render(
            "t",
            &[t],
            &[],
            &[],
            &serde_json::from_value(run).unwrap(),
            "",
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("w&lt;script&gt;"));
        assert!(page.contains("<td>a&amp;b</td>"));
        assert!(page.contains("<th>host.cpus</th><td>2</td>"));
        assert!(page.contains("<pre>x = &quot;&lt;y&gt;&quot;</pre>"));
        assert!(page.contains(NO_FINDINGS));
    }

    #[test]
    fn powercut_table_is_escaped_and_only_when_checked() {
        let mut r = crate::ResultRow {
            target: "t<1>".into(),
            workload: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            powercut_table(&crate::summary::powercut_rows(std::slice::from_ref(&r))),
            ""
        );
        r.powercut_cuts = Some(21);
        r.powercut_lost_blocks = Some(2);
        r.powercut_dropped_at = Some("QEMU cache=unsafe".into());
        let h = powercut_table(&crate::summary::powercut_rows(&[r]));
        assert!(h.contains("<td>t&lt;1&gt;</td>"), "{h}");
        assert!(h.contains("<td>not durable: QEMU cache=unsafe</td>"), "{h}");
    }
}
