//! Figures from samples: percentiles of latencies, peaks in a time window, rounding for the report.

/// The `p`th percentile (0 to 100) of samples sorted ascending; 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The samples, sorted ascending (for [`percentile`]).
pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

/// The most events that fall in any window of `window_ms` (times in milliseconds).
pub fn peak_in_window(times_ms: &[u64], window_ms: u64) -> usize {
    let mut times = times_ms.to_vec();
    times.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// `value` rounded to `digits` decimals: the report shows what the run can tell apart.
pub fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// `part / whole`, or 0 when there is no whole to compare with.
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// Milliseconds since `since`.
pub fn elapsed_ms(since: std::time::Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
