//! numpy-compatible order statistics on small arrays (`np.percentile(method='linear')`,
//! `np.median`), used by the planner and the fingerprint.

/// numpy's `_lerp(a, b, t)`: `a + (b-a)*t`, computed from the upper end when `t >= 0.5`
/// (numpy does this for monotonicity).
#[inline]
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Value at the (fractional) virtual index `(n-1)*q/100` of a sorted sequence of length `n`,
/// with `kth(i)` returning the i-th smallest element. numpy's 'linear' method.
pub fn percentile_by<F: FnMut(u64) -> f64>(n: u64, q: f64, mut kth: F) -> f64 {
    assert!(n > 0, "percentile of an empty sequence");
    let quantile = q / 100.0;
    let h = (n - 1) as f64 * quantile;
    if h >= (n - 1) as f64 {
        return kth(n - 1);
    }
    if h <= 0.0 {
        return kth(0);
    }
    let lo = h.floor();
    let t = h - lo;
    let lo = lo as u64;
    let a = kth(lo);
    let b = kth((lo + 1).min(n - 1));
    lerp(a, b, t)
}

/// `np.percentile(values, q)` (linear interpolation). Returns NaN for an empty slice.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    percentile_by(v.len() as u64, q, |i| v[i as usize])
}

/// `np.median(values)`.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Per-axis `np.percentile(rows, q, axis=0)` of a list of 3-vectors.
pub fn percentile_axis0<const N: usize>(rows: &[[f64; N]], q: f64) -> [f64; N] {
    let mut out = [0.0; N];
    for (d, o) in out.iter_mut().enumerate() {
        let col: Vec<f64> = rows.iter().map(|r| r[d]).collect();
        *o = percentile(&col, q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_values() {
        // np.percentile([1, 2, 3, 4], [0.5, 10, 50, 99.5]) = [1.015, 1.3, 2.5, 3.985]
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&v, 0.5) - 1.015).abs() < 1e-12);
        assert!((percentile(&v, 10.0) - 1.3).abs() < 1e-12);
        assert_eq!(median(&v), 2.5);
        assert!((percentile(&v, 99.5) - 3.985).abs() < 1e-12);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!(percentile(&[], 50.0).is_nan());
        let r = percentile_axis0(&[[1.0, 5.0], [3.0, 1.0]], 50.0);
        assert_eq!(r, [2.0, 3.0]);
    }
}
