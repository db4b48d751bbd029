//! Percentiles of sorted samples, for every benchmark's figures.

/// The `p`th percentile (0–100) of `sorted`, by nearest rank; `None` without samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}
