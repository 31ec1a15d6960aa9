//! The report files for a constructed run: every plot is a real image of the right size
//! with its text drawn (no system fonts involved), and `report.html` opens in headless
//! Chromium without console messages and renders to a non-blank screenshot.

use std::path::Path;
use std::process::Command;
use zvbench_reports::plot::{HEIGHT, WIDTH};
use zvbench_reports::ResultRow;

fn rows() -> Vec<ResultRow> {
    let mut v = Vec::new();
    for rep in 1..=3u32 {
        let jitter = f64::from(rep);
        for (target, storage, cache, mib, host_flushes) in [
            ("host", "host", "", 36.0, 65),
            ("zvol", "loop", "none", 12.0, 65),
            ("vdi", "image", "unsafe", 54.0, 0),
        ] {
            for (workload, kind, agent, mib) in [
                ("seqwr", "seqwr", 65u64, mib + jitter),
                ("seqrd", "seqrd", 0, mib * 5.0 + jitter),
            ] {
                let guest = storage != "host";
                v.push(ResultRow {
                    target: target.into(),
                    storage: storage.into(),
                    hypervisor: if guest { "qemu" } else { "none" }.into(),
                    accel: if guest { "tcg" } else { "" }.into(),
                    cache: cache.into(),
                    workload: workload.into(),
                    kind: kind.into(),
                    bs_bytes: 16384,
                    size_bytes: 1 << 20,
                    sync: if agent > 0 { "fsync" } else { "none" }.into(),
                    sync_every: u64::from(agent > 0),
                    repetition: rep,
                    mib_per_s: mib,
                    iops: mib * 64.0,
                    lat_p50_us: 20.0 * jitter,
                    lat_p99_us: 400.0 * jitter,
                    lat_max_us: 4000.0,
                    flush_p50_us: (agent > 0).then_some(300.0),
                    flush_p99_us: (agent > 0).then_some(3000.0),
                    agent_flushes: agent,
                    guest_dev_flushes: guest.then_some(agent),
                    hv_flushes: guest.then_some(agent),
                    host_dev_flushes: Some(if agent > 0 { host_flushes } else { 0 }),
                    ..Default::default()
                });
            }
        }
    }
    v
}

fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut w = csv::Writer::from_path(dir.path().join("results.csv")).unwrap();
    for r in rows() {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
    let run = serde_json::json!({
        "run_id": "test-run",
        "date": "2026-11-27T00:00:00Z",
        "accel": "tcg",
        "scenario": "[run]\nrepetitions = 3\n",
    });
    std::fs::write(dir.path().join("run.json"), run.to_string()).unwrap();
    zvbench_reports::report::write(dir.path()).unwrap();
    dir
}

/// Distinct colours and the count of dark (text, axis) pixels in a region.
fn inspect(img: &image::RgbImage, rows: std::ops::Range<u32>) -> (usize, usize) {
    let mut colours = std::collections::HashSet::new();
    let mut dark = 0;
    for y in rows {
        for x in 0..img.width() {
            let p = img.get_pixel(x, y).0;
            colours.insert(p);
            if p.iter().all(|&c| c < 100) {
                dark += 1;
            }
        }
    }
    (colours.len(), dark)
}

#[test]
fn every_plot_is_a_png_and_svg_of_the_right_size_with_its_text() {
    let dir = run_dir();
    let plots = dir.path().join("plots");
    let mut stems: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".png").map(str::to_string))
        .collect();
    stems.sort();
    assert_eq!(
        stems,
        [
            "flush-latency-seqwr",
            "flush-trace-seqwr",
            "latency-seqrd",
            "latency-seqwr",
            "throughput-seqrd",
            "throughput-seqwr"
        ]
    );
    for s in &stems {
        let img = image::open(plots.join(format!("{s}.png")))
            .unwrap_or_else(|e| panic!("{s}.png: {e}"))
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT), "{s}");
        let (colours, _) = inspect(&img, 0..img.height());
        assert!(colours > 20, "{s}.png looks blank: {colours} colours");
        // The title band holds nothing but the title: dark pixels there are its glyphs.
        let (_, title_ink) = inspect(&img, 0..30);
        assert!(
            title_ink > 200,
            "{s}.png has no title text ({title_ink} dark pixels)"
        );
        let svg = std::fs::read_to_string(plots.join(format!("{s}.svg"))).unwrap();
        assert!(svg.contains(&format!("width=\"{WIDTH}\"")), "{s}.svg");
        assert!(svg.contains("<text"), "{s}.svg has no text");
    }
}

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c).arg("--version").output().is_ok() {
            return c;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install chromium (scripts/install-deps does)");
}

/// Opens `page` in headless Chromium; returns its console lines, writes `shot`.
fn open_in_chromium(page: &Path, shot: &Path) -> Vec<String> {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect()
}

#[test]
fn report_html_is_self_contained_and_renders_in_chromium() {
    let dir = run_dir();
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["src=", "<link", "<script", "url("] {
        assert!(
            !html.contains(needle),
            "report.html refers outside itself: {needle}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 6, "one inline SVG per figure");
    assert!(
        html.contains("flushes-dropped"),
        "the diagnosis is in the page"
    );
    assert!(
        html.contains("<th>run_id</th><td>test-run</td>"),
        "provenance"
    );

    let shot = dir.path().join("report.png");
    let console = open_in_chromium(&page, &shot);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1200, 2400));
    let (colours, dark) = inspect(&img, 0..img.height());
    assert!(
        colours > 50 && dark > 1000,
        "blank screenshot: {colours} colours, {dark} dark"
    );

    // The console check can fail: a page that logs is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><script>console.error('zvbench-probe')</script>",
    )
    .unwrap();
    let console = open_in_chromium(&bad, &dir.path().join("bad.png"));
    assert!(
        console.iter().any(|l| l.contains("zvbench-probe")),
        "console lines not seen: {console:?}"
    );
}
