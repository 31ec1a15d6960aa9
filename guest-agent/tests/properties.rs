//! Properties of the agent's parsers of untrusted input, over generated inputs: the frame
//! reader (garbage, truncation, huge lengths, bad checksums, any chunking), sizes, job
//! files, pass parameters, and the recogniser of zvbench's own data.
//!
//! Each property runs 64 cases by default, so `cargo test` stays quick; a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p zvbench-agent --test properties`.

use proptest::prelude::*;
use zvbench_agent::frame::{encode, scan, Frame, FrameReader, Scanned, MARKER};
use zvbench_agent::job::Job;
use zvbench_agent::pass::{PassSpec, Phase, SyncMode, Workload, MAX_BS, MIN_BS};
use zvbench_agent::verify::{fill_block, fill_random, is_block_start, SECTOR};
use zvbench_agent::ByteSize;

/// 64 cases unless PROPTEST_CASES says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Text that often holds the marker, quotes, escapes and line breaks.
fn nasty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(MARKER.to_string()),
            Just("\"\\\n\r{}".to_string()),
            any::<char>().prop_map(String::from),
        ],
        0..20,
    )
    .prop_map(|v| v.concat())
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (nasty_text(), any::<u32>(), nasty_text(), any::<u64>()).prop_map(|(v, s, b, u)| {
            Frame::Hello {
                agent_version: v,
                schema_version: s,
                build_id: b,
                uptime_ms: u,
            }
        }),
        (any::<u32>(), any::<bool>()).prop_map(|(pass, end)| Frame::Mark {
            pass,
            phase: if end { Phase::End } else { Phase::Start },
        }),
        nasty_text().prop_map(|message| Frame::Error { message }),
        any::<u32>().prop_map(|passes| Frame::Done { passes }),
    ]
}

/// Console noise: any bytes, with no `Z` so it cannot hold the marker.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120).prop_map(|v| {
        v.into_iter()
            .map(|b| if b == b'Z' { b'z' } else { b })
            .collect()
    })
}

/// A stream piece: a frame (maybe with one byte changed or cut short), noise, a bare
/// marker, or a header claiming a length, up to far beyond the limit.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (frame(), any::<prop::sample::Index>(), any::<u8>(), 0..3u8).prop_map(|(f, at, x, how)| {
            let mut b = encode(&f).into_bytes();
            let i = at.index(b.len());
            match how {
                0 => {}
                1 => b[i] ^= x | 1,
                _ => b.truncate(i),
            }
            b
        }),
        noise(),
        Just(MARKER.as_bytes().to_vec()),
        (any::<u64>(), any::<u32>()).prop_map(|(len, crc)| {
            format!("{MARKER}{} {crc:08x} ", len % (1 << 34)).into_bytes()
        }),
    ]
}

fn count_markers(b: &[u8]) -> usize {
    b.windows(MARKER.len())
        .filter(|w| *w == MARKER.as_bytes())
        .count()
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: no panic, and at most one frame or damage report per marker.
    #[test]
    fn scan_never_panics_and_reports_at_most_one_item_per_marker(
        pieces in prop::collection::vec(piece(), 0..12),
        raw in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut stream = pieces.concat();
        stream.extend(raw);
        let got = scan(&stream);
        prop_assert!(got.len() <= count_markers(&stream) + 1, "{} items", got.len());
    }

    /// Valid frames among console noise come out exactly, in order, nothing damaged.
    #[test]
    fn frames_round_trip_through_noise(
        items in prop::collection::vec((noise(), frame()), 0..8),
        tail in noise(),
    ) {
        let mut stream = Vec::new();
        for (n, f) in &items {
            stream.extend(n);
            stream.extend(encode(f).as_bytes());
        }
        stream.extend(tail);
        let want: Vec<Scanned> = items.into_iter().map(|(_, f)| Scanned::Frame(f)).collect();
        prop_assert_eq!(scan(&stream), want);
    }

    /// However a stream is cut into pushes, the reader finds what one scan finds.
    #[test]
    fn chunking_does_not_change_what_is_read(
        pieces in prop::collection::vec(piece(), 0..12),
        cuts in prop::collection::vec(1usize..64, 1..40),
    ) {
        let stream = pieces.concat();
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        let mut rest = stream.as_slice();
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*c).min(rest.len()));
            got.extend(r.push(now));
            rest = later;
        }
        if r.pending() {
            got.push(Scanned::Damaged("truncated frame at end of stream".into()));
        }
        prop_assert_eq!(got, scan(&stream));
    }

    /// Sizes: no panic on any text; what parses prints and parses back to itself.
    #[test]
    fn sizes_parse_or_fail_and_round_trip(text in "[0-9]{0,22}[ kKmMgGtTiIbB]{0,4}|.{0,12}") {
        if let Ok(s) = text.parse::<ByteSize>() {
            prop_assert_eq!(s.to_string().parse::<ByteSize>().unwrap(), s);
        }
    }

    /// Job files: any bytes, or a valid job with one byte changed, load or fail, no panic.
    #[test]
    fn job_files_load_or_fail(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        at in any::<prop::sample::Index>(),
        x in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.json");
        std::fs::write(&p, &raw).unwrap();
        let _ = Job::load(&p);
        let mut valid = format!(
            r#"{{"schema_version":{},"disk":"/dev/vda","passes":[{{"path":"/dev/vda","workload":"seqwr","bs":"1M","size":"8M","sync":"fsync","sync_every":4}}]}}"#,
            zvbench_agent::SCHEMA_VERSION
        )
        .into_bytes();
        let i = at.index(valid.len());
        valid[i] ^= x;
        std::fs::write(&p, &valid).unwrap();
        if let Ok(job) = Job::load(&p) {
            for s in &job.passes {
                let _ = s.validate();
            }
        }
    }

    /// Pass parameters: validation never panics, and what it accepts is in range.
    #[test]
    fn pass_validation_bounds(
        bs in any::<u64>(), size in any::<u64>(), every in any::<Option<u64>>(), fsync in any::<bool>(),
        iodepth in any::<u32>(), numjobs in any::<u32>(), runtime in any::<Option<f64>>(),
    ) {
        let s = PassSpec {
            sync: if fsync { SyncMode::Fsync } else { SyncMode::None },
            sync_every: every,
            iodepth,
            numjobs,
            runtime,
            ..PassSpec::new("/nonexistent".into(), Workload::Randwrite, ByteSize(bs), ByteSize(size))
        };
        if s.validate().is_ok() {
            prop_assert!((MIN_BS..=MAX_BS).contains(&bs));
            prop_assert!(size >= bs && size % bs == 0);
            prop_assert!((1..=1024).contains(&iodepth) && (1..=64).contains(&numjobs));
            prop_assert!(size / bs >= u64::from(numjobs));
            prop_assert!(runtime.is_none_or(|r| r.is_finite() && r > 0.0));
        }
    }

    /// zvbench knows its own first sector from any seed and block size, plain or
    /// verified, and no longer once any byte of that sector changes.
    #[test]
    fn own_first_sector_is_recognised_and_any_change_is_not(
        seed in any::<u64>(),
        bs in (1usize..=16).prop_map(|k| k * SECTOR),
        verify in any::<bool>(),
        at in 0..SECTOR,
        x in 1u8..,
    ) {
        let mut b = vec![0u8; bs];
        if verify { fill_block(&mut b, 0, seed, 0) } else { fill_random(&mut b, seed) }
        prop_assert!(is_block_start(&b));
        b[at] ^= x;
        prop_assert!(!is_block_start(&b));
    }
}
