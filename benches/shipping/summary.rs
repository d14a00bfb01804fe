//! Median and spread of repeated runs.

use serde::Serialize;

/// Median, minimum and maximum of a set of runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// Summarizes the values; NaN fields when there are none.
    pub fn of(values: impl Iterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.collect();
        values.sort_by(f64::total_cmp);
        let count = values.len();
        let median = match count {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Self {
            median,
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
            runs: count,
        }
    }
}

/// Returns `ours / theirs`, or `None` when `theirs` is zero.
pub fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (theirs != 0.0).then(|| ours / theirs)
}
