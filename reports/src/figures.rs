//! Which figures a run gets, made from its rows: per workload, throughput with spread,
//! I/O latency percentiles and flush latency percentiles (log scale), the flush trace
//! from the agent down to the pool's vdevs, and, after `--powercut`, the share of
//! acknowledged blocks lost at the worst cut.

use crate::diagnose::trace;
use crate::layer::Layer;
use crate::plot::{stem, Bar, Chart, Figure, Series};
use crate::stats::Spread;
use crate::summary::order;
use crate::ResultRow;

fn median(rows: &[&ResultRow], f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
    Spread::of(rows.iter().filter_map(|r| f(r))).map(|s| s.median)
}

/// A named percentile column of a row.
type Column = (&'static str, fn(&ResultRow) -> Option<f64>);

/// Percentile lines for one workload: one series per target over `columns`.
fn percentiles(per_target: &[(&str, Vec<&ResultRow>)], columns: &[Column]) -> Vec<Series> {
    per_target
        .iter()
        .map(|(t, rows)| Series {
            name: t.to_string(),
            values: columns.iter().map(|(_, f)| median(rows, f)).collect(),
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect()
}

/// Every figure for `rows`, in report order.
pub fn figures(rows: &[ResultRow]) -> Vec<Figure> {
    let mut out = Vec::new();
    for w in order(rows, |r| r.workload.as_str()) {
        let wrows: Vec<&ResultRow> = rows.iter().filter(|r| r.workload == w).collect();
        let per_target: Vec<(&str, Vec<&ResultRow>)> = order(rows, |r| r.target.as_str())
            .into_iter()
            .map(|t| (t, wrows.iter().copied().filter(|r| r.target == t).collect()))
            .filter(|(_, v): &(&str, Vec<&ResultRow>)| !v.is_empty())
            .collect();
        out.push(throughput_figure(w, &per_target));
        let io: [Column; 5] = [
            ("p50", |r| Some(r.lat_p50_us)),
            ("p90", |r| r.lat_p90_us),
            ("p99", |r| Some(r.lat_p99_us)),
            ("p99.9", |r| r.lat_p999_us),
            ("max", |r| Some(r.lat_max_us)),
        ];
        out.push(Figure {
            stem: stem(&["latency", w]),
            title: format!("{w}: I/O latency percentiles"),
            y_label: "latency, µs (log)".into(),
            chart: Chart::Lines {
                categories: io.iter().map(|c| c.0.to_string()).collect(),
                series: percentiles(&per_target, &io),
                log_y: true,
                labels: false,
            },
        });
        let flush: [Column; 5] = [
            ("p50", |r| r.flush_p50_us),
            ("p90", |r| r.flush_p90_us),
            ("p99", |r| r.flush_p99_us),
            ("p99.9", |r| r.flush_p999_us),
            ("max", |r| r.flush_max_us),
        ];
        let flush_series = percentiles(&per_target, &flush);
        if !flush_series.is_empty() {
            out.push(Figure {
                stem: stem(&["flush-latency", w]),
                title: format!("{w}: flush latency percentiles"),
                y_label: "flush latency, µs (log)".into(),
                chart: Chart::Lines {
                    categories: flush.iter().map(|c| c.0.to_string()).collect(),
                    series: flush_series,
                    log_y: true,
                    labels: false,
                },
            });
        }
        if wrows.iter().any(|r| r.agent_flushes > 0) {
            out.push(flush_trace_figure(w, &per_target));
        }
        if let Some(f) = powercut_figure(w, &per_target) {
            out.push(f);
        }
    }
    out
}

/// Throughput per target, median and min–max, with the host's median as a reference line.
fn throughput_figure(w: &str, per_target: &[(&str, Vec<&ResultRow>)]) -> Figure {
    let bars: Vec<Bar> = per_target
        .iter()
        .filter_map(|(t, rows)| {
            Spread::of(rows.iter().map(|r| r.mib_per_s)).map(|s| Bar {
                label: t.to_string(),
                median: s.median,
                min: s.min,
                max: s.max,
            })
        })
        .collect();
    let host = per_target
        .iter()
        .find(|(_, rows)| rows[0].storage == "host")
        .and_then(|(_, rows)| median(rows, |r| Some(r.mib_per_s)));
    Figure {
        stem: stem(&["throughput", w]),
        title: format!("{w}: throughput, median and min–max"),
        y_label: "MiB/s".into(),
        chart: Chart::Bars {
            bars,
            reference: host.map(|h| ("host".to_string(), h)),
        },
    }
}

/// Flushes counted at each layer, the median per target.
fn flush_trace_figure(w: &str, per_target: &[(&str, Vec<&ResultRow>)]) -> Figure {
    let traces: Vec<(&str, Vec<(Layer, f64)>)> = per_target
        .iter()
        .map(|(t, rows)| (*t, trace(rows)))
        .collect();
    let layers: Vec<Layer> = Layer::ALL
        .into_iter()
        .filter(|l| traces.iter().any(|(_, tr)| tr.iter().any(|(n, _)| n == l)))
        .collect();
    Figure {
        stem: stem(&["flush-trace", w]),
        title: format!("{w}: flushes per layer (median)"),
        y_label: "flushes".into(),
        chart: Chart::Lines {
            categories: layers.iter().map(|l| l.to_string()).collect(),
            series: traces
                .iter()
                .map(|(t, tr)| Series {
                    name: t.to_string(),
                    values: layers
                        .iter()
                        .map(|l| tr.iter().find(|(n, _)| n == l).map(|(_, v)| *v))
                        .collect(),
                })
                .collect(),
            log_y: false,
            labels: true,
        },
    }
}

/// Per target, the percent of acknowledged blocks lost at the worst cut of each checked
/// pass, median and min–max over repetitions; `None` when no pass was checked.
fn powercut_figure(w: &str, per_target: &[(&str, Vec<&ResultRow>)]) -> Option<Figure> {
    let bars: Vec<Bar> = per_target
        .iter()
        .filter_map(|(t, rows)| {
            let pct = rows.iter().filter_map(|r| {
                let acked = r.powercut_acked_blocks.filter(|&a| a > 0)?;
                Some(100.0 * r.powercut_lost_blocks? as f64 / acked as f64)
            });
            Spread::of(pct).map(|s| Bar {
                label: t.to_string(),
                median: s.median,
                min: s.min,
                max: s.max,
            })
        })
        .collect();
    (!bars.is_empty()).then(|| Figure {
        stem: stem(&["powercut", w]),
        title: format!("{w}: acknowledged blocks lost at a power cut (worst cut)"),
        y_label: "% of acknowledged blocks".into(),
        chart: Chart::Bars {
            bars,
            reference: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, storage: &str, workload: &str, mib: f64, agent: u64) -> ResultRow {
        ResultRow {
            target: target.into(),
            storage: storage.into(),
            workload: workload.into(),
            mib_per_s: mib,
            lat_p50_us: 10.0,
            lat_p99_us: 100.0,
            lat_max_us: 1000.0,
            agent_flushes: agent,
            flush_p50_us: (agent > 0).then_some(50.0),
            flush_p99_us: (agent > 0).then_some(500.0),
            host_dev_flushes: Some(agent),
            hv_flushes: (storage != "host").then_some(agent),
            ..Default::default()
        }
    }

    #[test]
    fn one_set_per_workload_and_trace_only_when_flushing() {
        let rows = vec![
            row("host", "host", "seq", 100.0, 0),
            row("vdi", "image", "seq", 50.0, 0),
            row("vdi", "image", "seq", 70.0, 0),
            row("host", "host", "fs", 10.0, 9),
            row("vdi", "image", "fs", 20.0, 9),
        ];
        let f = figures(&rows);
        let stems: Vec<&str> = f.iter().map(|f| f.stem.as_str()).collect();
        assert_eq!(
            stems,
            [
                "throughput-seq",
                "latency-seq",
                "throughput-fs",
                "latency-fs",
                "flush-latency-fs",
                "flush-trace-fs"
            ]
        );
        let Chart::Bars { bars, reference } = &f[0].chart else {
            panic!("{:?}", f[0].chart)
        };
        assert_eq!(reference, &Some(("host".to_string(), 100.0)));
        assert_eq!(
            (bars[1].median, bars[1].min, bars[1].max),
            (60.0, 50.0, 70.0)
        );
        for i in [3, 4] {
            let Chart::Lines { categories, .. } = &f[i].chart else {
                panic!()
            };
            assert_eq!(
                categories,
                &["p50", "p90", "p99", "p99.9", "max"],
                "{}",
                f[i].stem
            );
        }
        let Chart::Lines {
            categories, series, ..
        } = &f[5].chart
        else {
            panic!()
        };
        // The host has no hypervisor layer: a gap, not a zero.
        assert_eq!(categories, &["agent", "hypervisor", "host device"]);
        assert_eq!(series[0].values, [Some(9.0), None, Some(9.0)]);
        assert_eq!(series[1].values, [Some(9.0), Some(9.0), Some(9.0)]);
        assert!(
            !stems.iter().any(|s| s.starts_with("powercut")),
            "no cut, no figure"
        );
    }

    #[test]
    fn power_cut_losses_are_a_share_of_the_acknowledged_blocks() {
        let cut = |t: &str, lost: u64| ResultRow {
            powercut_cuts: Some(21),
            powercut_acked_blocks: Some(128),
            powercut_lost_blocks: Some(lost),
            ..row(t, "loop", "fs", 10.0, 129)
        };
        let rows = vec![cut("none", 0), cut("unsafe", 128), cut("unsafe", 64)];
        let f = figures(&rows);
        let pc = f
            .iter()
            .find(|f| f.stem == "powercut-fs")
            .expect("a figure");
        let Chart::Bars { bars, .. } = &pc.chart else {
            panic!("{:?}", pc.chart)
        };
        let got: Vec<_> = bars
            .iter()
            .map(|b| (b.label.as_str(), b.median, b.min, b.max))
            .collect();
        assert_eq!(
            got,
            [("none", 0.0, 0.0, 0.0), ("unsafe", 75.0, 50.0, 100.0)]
        );
        // Every target durable: all bars at zero still draw.
        let durable = figures(&[cut("none", 0), cut("writeback", 0)]);
        let pc = durable.iter().find(|f| f.stem == "powercut-fs").unwrap();
        assert!(crate::plot::svg(pc).unwrap().contains("<text"));
    }
}
