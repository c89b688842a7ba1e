//! Small statistics helpers: normal tail probabilities, the two-proportion
//! z-test, the Kolmogorov–Smirnov distribution and the seed's exact
//! percentile index rule.
//!
//! Pure functions; no allocation except where a sorted copy is returned.

/// Complementary error function, |relative error| < 1.2e-7 everywhere
/// (Numerical Recipes `erfcc`, a Chebyshev fit).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Two-sided p-value of the two-proportion z-test for `x1` of `n1` against
/// `x2` of `n2` (pooled standard error). 1.0 when either side is empty or
/// the pooled proportion is 0 or 1 (no variation: no evidence of a change).
pub(crate) fn two_proportion_p_value(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p1 = x1 as f64 / n1f;
    let p2 = x2 as f64 / n2f;
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return 1.0;
    }
    let z = (p2 - p1).abs() / se;
    erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// Asymptotic p-value of the two-sample KS statistic `d` for sample sizes
/// `n1`, `n2` (Numerical Recipes `probks` with the Stephens correction).
pub(crate) fn ks_p_value(d: f64, n1: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let ne = (n1 as f64 * n2 as f64) / (n1 as f64 + n2 as f64);
    let sq = ne.sqrt();
    let lambda = (sq + 0.12 + 0.11 / sq) * d;
    if lambda < 1e-3 {
        return 1.0;
    }
    let a2 = -2.0 * lambda * lambda;
    let mut fac = 2.0;
    let mut sum = 0.0;
    let mut prev = 0.0f64;
    for j in 1..=100 {
        let jf = j as f64;
        let term = fac * (a2 * jf * jf).exp();
        sum += term;
        if term.abs() <= 1e-10 * prev || term.abs() <= 1e-12 * sum.abs() {
            return sum.clamp(0.0, 1.0);
        }
        fac = -fac;
        prev = term.abs();
    }
    // The series did not converge: only happens for tiny lambda, where p ≈ 1.
    1.0
}

/// The seed's percentile: `sorted[int(n * q)]`, clamped to the last element.
/// `sorted` must be ascending and non-empty.
pub(crate) fn seed_percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let idx = ((n as f64) * q) as usize;
    sorted[idx.min(n - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (1.959_963_985 / std::f64::consts::SQRT_2, 0.05),
            (3.0, 2.209_049_7e-5),
            (-1.0, 1.842_700_793),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() < 1e-6 * want.max(1e-3),
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn z_test_separates_large_differences_from_noise() {
        assert!(two_proportion_p_value(10, 100, 30, 100) < 0.01);
        assert!(two_proportion_p_value(10, 100, 12, 100) > 0.5);
        assert_eq!(two_proportion_p_value(0, 100, 0, 100), 1.0);
        assert_eq!(two_proportion_p_value(0, 0, 5, 10), 1.0);
    }

    #[test]
    fn ks_p_value_is_small_only_for_large_distances() {
        assert!(ks_p_value(0.5, 200, 200) < 1e-6);
        assert!(ks_p_value(0.05, 200, 200) > 0.5);
        // Critical value at α = 0.05 is ≈ 1.36·sqrt(2/n).
        let crit = 1.358 * (2.0f64 / 400.0).sqrt();
        let p = ks_p_value(crit, 400, 400);
        assert!((p - 0.05).abs() < 0.01, "p at the critical value = {p}");
    }

    #[test]
    fn seed_percentile_uses_int_n_times_q() {
        let v: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(seed_percentile(&v, 0.5), 10.0);
        assert_eq!(seed_percentile(&v, 0.95), 19.0);
        assert_eq!(seed_percentile(&v, 0.99), 19.0);
        assert_eq!(seed_percentile(&[7.0], 0.99), 7.0);
    }
}
