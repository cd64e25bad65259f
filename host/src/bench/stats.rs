//! Medians, spreads and ratios over a handful of runs.

/// One figure over several runs: every run's value, and their median and range.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// One value per run, in run order.
    pub runs: Vec<f64>,
    /// The median of `runs` (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stat {
    /// The statistics of `runs`; `None` if there are none or one is not finite.
    pub fn of(runs: &[f64]) -> Option<Stat> {
        if runs.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let median = median(runs)?;
        let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stat {
            runs: runs.to_vec(),
            median,
            min,
            max,
        })
    }

    /// All runs gave the same value.
    pub fn is_constant(&self) -> bool {
        self.min == self.max
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None`
/// for an empty slice. NaNs sort last (`total_cmp`).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let hi = *v.get(n / 2)?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        let lo = *v.get(n / 2 - 1)?;
        Some(lo / 2.0 + hi / 2.0)
    }
}

/// `numerator / denominator`; `None` when the denominator is zero or either is
/// not finite (a ratio to nothing means nothing).
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    if denominator == 0.0 || !numerator.is_finite() || !denominator.is_finite() {
        return None;
    }
    Some(numerator / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(median(&[30.0, 10.0, 20.0]), Some(20.0));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[7.0, 1.0, 1.0, 9.0, 3.0]), Some(3.0));
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[10.0, 20.0]), Some(15.0));
    }

    #[test]
    fn median_of_nothing_is_none() {
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_does_not_overflow_for_huge_values() {
        assert_eq!(median(&[f64::MAX, f64::MAX]), Some(f64::MAX));
    }

    #[test]
    fn stat_keeps_runs_in_order_with_range() {
        let s = Stat::of(&[173.0, 160.0, 190.0]);
        assert_eq!(
            s,
            Some(Stat {
                runs: vec![173.0, 160.0, 190.0],
                median: 173.0,
                min: 160.0,
                max: 190.0,
            })
        );
        assert!(!s.is_some_and(|s| s.is_constant()));
        assert!(Stat::of(&[2.0, 2.0]).is_some_and(|s| s.is_constant()));
    }

    #[test]
    fn stat_rejects_empty_and_non_finite() {
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[1.0, f64::NAN]), None);
        assert_eq!(Stat::of(&[f64::INFINITY]), None);
    }

    #[test]
    fn ratio_divides_and_refuses_zero_denominators() {
        assert_eq!(
            ratio(173.0, 26.0).map(|r| (r * 1000.0).round()),
            Some(6654.0)
        );
        assert_eq!(ratio(0.0, 5.0), Some(0.0));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(1.0, f64::INFINITY), None);
    }
}
