//! Medians and spreads: every number in a report comes with its spread across repetitions.

/// Median and range of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Number of values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`; `None` when empty. NaNs are ignored.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            // Not (a + b) / 2: two values near f64::MAX would overflow to infinity.
            v[n / 2 - 1].midpoint(v[n / 2])
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// `v` with `digits` decimals, in scientific notation from 1e15 on: a huge value stays a
/// short cell, not 300 digits.
pub fn fixed(v: f64, digits: usize) -> String {
    if v.abs() >= 1e15 {
        format!("{v:.3e}")
    } else {
        format!("{v:.digits$}")
    }
}

/// `v` in its shortest exact form, in scientific notation from 1e15 on (for messages).
pub fn plain(v: f64) -> String {
    if v.abs() >= 1e15 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A spread as a table cell: median (min–max), or "–" when there is no value.
pub fn cell(s: Option<Spread>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!(
            "{} ({}–{})",
            fixed(s.median, digits),
            fixed(s.min, digits),
            fixed(s.max, digits)
        ),
        Some(s) => fixed(s.median, digits),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Spread::of([]).is_none());
        assert_eq!(Spread::of([f64::NAN, 5.0]).unwrap().n, 1);
        // Found by the compare property: the median of two f64::MAX was infinite.
        assert_eq!(Spread::of([f64::MAX, f64::MAX]).unwrap().median, f64::MAX);
    }

    #[test]
    fn cells_stay_short() {
        assert_eq!(cell(Spread::of([1.0, 2.0, 4.0]), 1), "2.0 (1.0–4.0)");
        assert_eq!(cell(Spread::of([f64::MAX]), 0), "1.798e308");
        assert_eq!(cell(None, 0), "–");
        assert_eq!(
            (plain(1e308), plain(-2.5), plain(f64::NEG_INFINITY)),
            ("1e308".into(), "-2.5".into(), "-inf".into())
        );
    }
}
