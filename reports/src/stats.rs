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

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the regularized incomplete beta function (Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < tiny { tiny } else { d };
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < tiny { tiny } else { d };
            c = 1.0 + num / c;
            c = if c.abs() < tiny { tiny } else { c };
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile (0.5 ≤ p < 1) of Student's t with `df` degrees of freedom, by
/// bisection on [`student_t_cdf`].
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while student_t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = lo.midpoint(hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
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

    #[test]
    fn student_t_quantiles_match_tables() {
        // Two-sided 95%, one-sided 99% and 99.9% from the usual t tables.
        for (p, df, want) in [
            (0.975, 1.0, 12.706),
            (0.975, 2.0, 4.303),
            (0.99, 4.0, 3.747),
            (0.999, 2.0, 22.327),
            (0.999, 7.0, 4.785),
            (0.975, 1000.0, 1.962),
        ] {
            let got = student_t_quantile(p, df);
            assert!(
                (got - want).abs() < 2e-3,
                "t({p}, {df}) = {got}, want {want}"
            );
        }
        assert!((student_t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
    }
}
