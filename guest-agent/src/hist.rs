//! Latency histograms (HdrHistogram, nanoseconds) and their percentile summary.
//!
//! Histograms travel in the record as base64 of the standard HdrHistogram V2 (deflate)
//! encoding, so any percentile can be computed later without re-running, by zvbench or by
//! any HdrHistogram tool.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram tracks: one hour, in nanoseconds. Larger samples are clamped.
const MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub struct LatencyHist {
    h: Histogram<u64>,
}

/// Why a serialized histogram could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistError {
    /// Not base64.
    #[error("histogram is not valid base64")]
    Base64(#[from] base64::DecodeError),
    /// Not an HdrHistogram V2 encoding.
    #[error("histogram is not a valid HdrHistogram V2 encoding: {0:?}")]
    Decode(hdrhistogram::serialization::DeserializeError),
}

/// Percentiles of one histogram in microseconds, the unit of the result columns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram covering 1 ns to one hour.
    pub fn new() -> Self {
        let h = Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant bounds are valid");
        LatencyHist { h }
    }

    /// Records one latency. Never allocates: the range is fixed at creation.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.h.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds another histogram's samples (same bounds, so nothing is lost).
    pub fn add(&mut self, other: &LatencyHist) {
        self.h
            .add(&other.h)
            .expect("histograms with the same bounds always add");
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The percentile summary; `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            count: self.h.len(),
            mean_us: self.h.mean() / 1000.0,
            p50_us: us(self.h.value_at_quantile(0.50)),
            p90_us: us(self.h.value_at_quantile(0.90)),
            p99_us: us(self.h.value_at_quantile(0.99)),
            p999_us: us(self.h.value_at_quantile(0.999)),
            max_us: us(self.h.max()),
        })
    }

    /// Base64 of the V2 deflate encoding.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.h, &mut bytes)
            .expect("serializing to a Vec cannot fail");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads a histogram written by [`LatencyHist::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, HistError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistError::Decode)?;
        Ok(LatencyHist { h })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_distribution() {
        let mut h = LatencyHist::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        let p = h.percentiles().unwrap();
        assert_eq!(p.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
        assert!(close(p.p50_us, 500.0), "{p:?}");
        assert!(close(p.p99_us, 990.0), "{p:?}");
        assert!(close(p.max_us, 1000.0), "{p:?}");
        assert!(close(p.mean_us, 500.5), "{p:?}");
    }

    #[test]
    fn empty_has_no_percentiles() {
        assert!(LatencyHist::new().percentiles().is_none());
    }

    #[test]
    fn clamps_out_of_range() {
        let mut h = LatencyHist::new();
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn base64_round_trip_keeps_percentiles() {
        let mut h = LatencyHist::new();
        for i in 0..10_000u64 {
            h.record_ns(1000 + (i * 7919) % 5_000_000);
        }
        let back = LatencyHist::from_base64(&h.to_base64()).unwrap();
        assert_eq!(back.percentiles(), h.percentiles());
    }

    #[test]
    fn rejects_corrupt_encoding() {
        assert!(LatencyHist::from_base64("not base64!").is_err());
        assert!(LatencyHist::from_base64("AAAA").is_err());
    }
}
