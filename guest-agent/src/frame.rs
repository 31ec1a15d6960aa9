//! The host-guest frame format: how records cross a serial console that also carries
//! kernel messages and may drop or garble bytes.
//!
//! A frame is one line: `ZVBF1 <len> <crc32-hex> <payload>\n`, where payload is `len`
//! bytes of JSON (no line break) and crc32 is over the payload. The reader scans for the
//! marker, takes exactly `len` bytes followed by the line end, and accepts the frame only
//! if the checksum matches and the payload parses; everything else is reported as a
//! damaged frame, never half-parsed. Its work is linear in its input however the input is
//! made (property-tested in `tests/properties.rs`).

use crate::record::PassRecord;
use serde::{Deserialize, Serialize};

/// Start of every frame.
pub const MARKER: &str = "ZVBF1 ";
/// Largest payload a reader accepts (bounded parsing of untrusted guest output).
pub const MAX_PAYLOAD: usize = 8 << 20;

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// The agent started; sent once per boot.
    Hello {
        /// Agent version.
        agent_version: String,
        /// Schema version of the payloads.
        schema_version: u32,
        /// [`crate::BUILD_ID`] of the agent.
        #[serde(default)]
        build_id: String,
        /// Milliseconds from kernel start to the agent's start (from /proc/uptime).
        uptime_ms: u64,
    },
    /// A pass reached a phase; with a handshake the agent then waits for the host's ack.
    Mark {
        /// Index of the pass in the job.
        pass: u32,
        /// Which phase.
        phase: crate::pass::Phase,
    },
    /// The first `blocks` blocks of a write pass are durable by the pass's rules (sent
    /// only when the job asks for sync marks: a power-cut check's acknowledged set).
    Synced {
        /// Index of the pass in the job.
        pass: u32,
        /// Blocks acknowledged so far.
        blocks: u64,
    },
    /// One pass finished.
    Record(Box<PassRecord>),
    /// Something went wrong; the agent powers off after sending it.
    Error {
        /// The error chain.
        message: String,
    },
    /// Every pass of the job ran.
    Done {
        /// Number of passes.
        passes: u32,
    },
}

/// One item found in a console stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Scanned {
    /// A frame with a valid checksum and payload.
    Frame(Frame),
    /// A marker was found but what followed was not a valid frame.
    Damaged(String),
}

/// The marker as it is written inside a payload's JSON strings (`V` as `\u0056`).
const MARKER_ESCAPED: &str = "Z\\u0056BF1 ";

/// Encodes a frame as one line, ending in `\n`. The payload never holds the marker (it can
/// only occur inside a JSON string, where it is escaped) nor a line break, which is what
/// lets the reader bound its work.
pub fn encode(frame: &Frame) -> String {
    let payload = serde_json::to_string(frame)
        .expect("frames are always serializable")
        .replace(MARKER, MARKER_ESCAPED);
    let crc = crc32fast::hash(payload.as_bytes());
    format!("{MARKER}{} {crc:08x} {payload}\n", payload.len())
}

/// Finds every frame in a complete byte stream (a console log). Bytes outside frames are
/// ignored; a frame cut off at the end is reported as damaged.
pub fn scan(stream: &[u8]) -> Vec<Scanned> {
    let mut r = FrameReader::default();
    let mut out = r.push(stream);
    if r.pending() {
        out.push(Scanned::Damaged("truncated frame at end of stream".into()));
    }
    out
}

/// Incremental frame reader for a live stream (a socket): bytes go in as they arrive,
/// complete frames come out; a frame whose bytes have not all arrived waits.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// While a frame waits for its line end: the bytes of `buf` already searched for it.
    searched: usize,
}

impl FrameReader {
    /// Adds bytes and returns every frame (or damaged frame) now complete. Linear in the
    /// bytes held, however they are made: the buffer is compacted once per call, line ends
    /// are searched for once, and a payload is checked only up to the next marker, so the
    /// checksummed payloads never overlap.
    pub fn push(&mut self, data: &[u8]) -> Vec<Scanned> {
        self.buf.extend_from_slice(data);
        let marker = MARKER.as_bytes();
        let mut out = Vec::new();
        let mut lines = Lines {
            searched: std::mem::take(&mut self.searched),
            ..Lines::default()
        };
        let mut at = 0;
        loop {
            let Some(pos) = find(&self.buf[at..], marker).map(|p| at + p) else {
                let keep = (self.buf.len() - at).min(marker.len() - 1);
                self.buf.drain(..self.buf.len() - keep);
                return out;
            };
            let start = pos + marker.len();
            match parse_at(&self.buf, start, &mut lines) {
                Ok((frame, end)) => {
                    out.push(Scanned::Frame(frame));
                    at = end;
                }
                Err(ParseError::Incomplete) => {
                    self.searched = lines.searched.saturating_sub(pos);
                    self.buf.drain(..pos);
                    return out;
                }
                Err(ParseError::Bad(why)) => {
                    out.push(Scanned::Damaged(why));
                    at = start;
                }
            }
        }
    }

    /// Whether a started frame is waiting for more bytes.
    pub fn pending(&self) -> bool {
        self.buf.starts_with(MARKER.as_bytes())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum ParseError {
    /// More bytes are needed.
    Incomplete,
    /// Not a valid frame.
    Bad(String),
}

impl From<&str> for ParseError {
    fn from(s: &str) -> Self {
        ParseError::Bad(s.to_string())
    }
}

/// Line ends found while scanning one buffer, each searched for once.
#[derive(Default)]
struct Lines {
    /// The last line end found, if any.
    end: Option<usize>,
    /// No line end lies in the bytes from the last query up to this index.
    searched: usize,
}

impl Lines {
    /// The first `\n` or `\r` at or after `from` in `buf`.
    fn next_end(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        if let Some(e) = self.end.filter(|&e| e >= from) {
            return Some(e);
        }
        let from = from.max(self.searched);
        self.end = buf
            .get(from..)
            .and_then(|b| b.iter().position(|&c| c == b'\n' || c == b'\r'))
            .map(|i| from + i);
        self.searched = self.end.map_or(buf.len(), |e| e + 1);
        self.end
    }
}

/// Parses `<len> <crc> <payload>` and its line end at `start` of `buf`; returns the frame
/// and the index after its line end.
fn parse_at(buf: &[u8], start: usize, lines: &mut Lines) -> Result<(Frame, usize), ParseError> {
    let b = &buf[start..];
    let field = |from: usize, max: usize| -> Result<(&str, usize), ParseError> {
        let rest = b.get(from..).unwrap_or_default();
        let Some(end) = rest.iter().take(max + 1).position(|&c| c == b' ') else {
            return Err(if rest.len() <= max {
                ParseError::Incomplete
            } else {
                "header field too long".into()
            });
        };
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| "header is not text")?;
        Ok((s, from + end + 1))
    };
    let (len, next) = field(0, 10)?;
    let len: usize = len
        .parse()
        .map_err(|_| ParseError::Bad(format!("bad length {len:?}")))?;
    if len > MAX_PAYLOAD {
        return Err(ParseError::Bad(format!(
            "length {len} exceeds the {MAX_PAYLOAD}-byte limit"
        )));
    }
    let (crc, next) = field(next, 8)?;
    let crc = u32::from_str_radix(crc, 16)
        .map_err(|_| ParseError::Bad(format!("bad checksum field {crc:?}")))?;
    let (from, end) = (start + next, start + next + len);
    match lines.next_end(buf, from) {
        Some(e) if e < end => return Err("line ends inside the payload".into()),
        Some(e) if e > end => return Err("payload longer than its length".into()),
        None if buf.len() <= end => return Err(ParseError::Incomplete),
        None => return Err("payload longer than its length".into()),
        Some(_) => {}
    }
    if find(&buf[from..end], MARKER.as_bytes()).is_some() {
        return Err("another frame starts inside the payload".into());
    }
    let payload = &buf[from..end];
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let frame = serde_json::from_slice(payload)
        .map_err(|e| ParseError::Bad(format!("invalid payload: {e}")))?;
    Ok((frame, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn hello() -> Frame {
        Frame::Hello {
            agent_version: "0.1.0".into(),
            schema_version: 1,
            build_id: "ab".into(),
            uptime_ms: 2500,
        }
    }

    #[test]
    fn round_trip_among_console_noise() {
        let mut log = b"[    0.000000] Linux version 6.1\r\nnoise ZVBF nope\n".to_vec();
        log.extend(encode(&hello()).as_bytes());
        log.extend(b"[    3.1] random: crng init done\n");
        log.extend(encode(&Frame::Done { passes: 3 }).as_bytes());
        assert_eq!(
            scan(&log),
            vec![
                Scanned::Frame(hello()),
                Scanned::Frame(Frame::Done { passes: 3 })
            ]
        );
    }

    #[test]
    fn truncated_frame_is_damaged() {
        let line = encode(&hello());
        for cut in [MARKER.len() + 1, MARKER.len() + 4, line.len() - 5] {
            let got = scan(&line.as_bytes()[..cut]);
            assert!(
                matches!(got.as_slice(), [Scanned::Damaged(_)]),
                "cut {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn corrupted_payload_is_damaged_and_next_frame_survives() {
        let mut a = encode(&hello()).into_bytes();
        let n = a.len();
        a[n - 10] ^= 0x20; // flip a bit inside the JSON
        a.extend(encode(&Frame::Done { passes: 1 }).as_bytes());
        let got = scan(&a);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], Scanned::Damaged(w) if w.contains("checksum")));
        assert_eq!(got[1], Scanned::Frame(Frame::Done { passes: 1 }));
    }

    #[test]
    fn kernel_message_inside_a_frame_is_detected() {
        let line = encode(&hello());
        let (a, b) = line.split_at(30);
        let mixed = format!("{a}[  5.0] ata1: link up\n{b}");
        assert!(matches!(
            scan(mixed.as_bytes()).as_slice(),
            [Scanned::Damaged(_)]
        ));
    }

    #[test]
    fn reader_waits_for_split_frames() {
        let line = encode(&hello()) + &encode(&Frame::Done { passes: 2 });
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        for chunk in line.as_bytes().chunks(7) {
            got.extend(r.push(chunk));
        }
        assert_eq!(
            got,
            vec![
                Scanned::Frame(hello()),
                Scanned::Frame(Frame::Done { passes: 2 })
            ]
        );
        assert!(!r.pending());
    }

    #[test]
    fn oversized_length_is_rejected_without_reading() {
        let got = scan(b"ZVBF1 999999999 00000000 {}");
        assert!(matches!(&got[0], Scanned::Damaged(w) if w.contains("limit")));
    }

    #[test]
    fn the_marker_inside_a_message_round_trips() {
        let f = Frame::Error {
            message: format!("guest said {MARKER}12 abc and \n more"),
        };
        let line = encode(&f);
        assert_eq!(line.matches(MARKER).count(), 1, "{line}");
        assert_eq!(scan(line.as_bytes()), vec![Scanned::Frame(f)]);
    }

    /// Streams that made the reader quadratic before: thousands of markers on one line,
    /// each claiming a payload up to the line's end; and one claimed 8 MiB payload fed a
    /// byte at a time. Each must finish in linear work (here: at all).
    #[test]
    fn adversarial_streams_stay_linear() {
        let mut line = Vec::new();
        let n = 40_000;
        for i in 0..n {
            let rest = (n - i) * 24 - 24;
            line.extend(format!("{MARKER}{rest:08} 00000000 ").as_bytes());
        }
        line.push(b'\n');
        let got = scan(&line);
        assert_eq!(got.len(), n, "one damaged frame per marker");
        assert!(got.iter().all(|g| matches!(g, Scanned::Damaged(_))));

        let mut r = FrameReader::default();
        let head = format!("{MARKER}{MAX_PAYLOAD} 00000000 ");
        assert!(r.push(head.as_bytes()).is_empty());
        for _ in 0..(1 << 18) {
            assert!(r.push(b"x").is_empty());
        }
        assert!(r.pending());
        assert!(
            matches!(r.push(b"\n").as_slice(), [Scanned::Damaged(w)] if w.contains("line ends"))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
            ..Default::default()
        })]

        /// Whatever arrives, in whatever pieces, the reader holds at most one frame still
        /// arriving (header, payload up to the limit, line end): memory stays bounded.
        #[test]
        fn the_reader_holds_at_most_one_frame(
            pushes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                    (0..(MAX_PAYLOAD as u64 * 2)).prop_map(|n| format!("{MARKER}{n} 00000000 ").into_bytes()),
                    proptest::strategy::Just(vec![b'x'; 4096]),
                ],
                0..30,
            )
        ) {
            let mut r = FrameReader::default();
            for p in &pushes {
                r.push(p);
                let bound = MARKER.len() + 11 + 9 + MAX_PAYLOAD + 1;
                proptest::prop_assert!(r.buf.len() <= bound, "{} bytes held", r.buf.len());
                proptest::prop_assert!(
                    r.buf.len() < MARKER.len() || r.pending(),
                    "only a frame still arriving is held, not {} bytes of noise",
                    r.buf.len()
                );
                proptest::prop_assert!(r.searched <= r.buf.len());
            }
        }
    }

    #[test]
    fn valid_checksum_but_unknown_type_is_damaged() {
        let payload = r#"{"type":"surprise"}"#;
        let line = format!(
            "{MARKER}{} {:08x} {payload}\n",
            payload.len(),
            crc32fast::hash(payload.as_bytes())
        );
        assert!(
            matches!(&scan(line.as_bytes())[0], Scanned::Damaged(w) if w.contains("invalid payload"))
        );
    }
}
