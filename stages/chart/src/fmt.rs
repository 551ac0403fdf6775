//! Number formatting shared by every renderer, so the HTML page, the Markdown and the terminal
//! summary print the same digits for the same value.

/// Fixed `decimals`, `NaN` for NaN, `inf`/`-inf` for infinities.
pub fn fixed(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        let s = format!("{v:.decimals$}");
        // "-0.0000" reads as a sign error; print the zero unsigned.
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// Dice, IoU and other scores in [0, 1]: 4 decimals.
pub fn score(v: f64) -> String {
    fixed(v, 4)
}

/// Losses: 4 decimals.
pub fn loss(v: f64) -> String {
    fixed(v, 4)
}

/// Seconds: 1 decimal.
pub fn seconds(v: f64) -> String {
    fixed(v, 1)
}

/// Learning rates and other values spanning decades: 3 significant digits, scientific.
pub fn sci(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2e}")
    } else {
        fixed(v, 0)
    }
}

/// Spacings, sizes, intensities: up to 4 decimals, trailing zeros removed (`1.5`, `0.7813`, `512`).
pub fn trimmed(v: f64) -> String {
    let s = fixed(v, 4);
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".into()
        } else {
            t.to_string()
        }
    } else {
        s
    }
}

/// `[3, 0.8, 0.8]` -> `3 × 0.8 × 0.8`.
pub fn vector(v: &[f64]) -> String {
    v.iter().map(|x| trimmed(*x)).collect::<Vec<_>>().join(" × ")
}

/// Integer vector `[24, 64, 64]` -> `24 × 64 × 64`.
pub fn ivector<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" × ")
}

/// A duration for prose: `42.0 s`, `12 min 03 s`, `2 h 05 min`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".into();
    }
    if s < 60.0 {
        return format!("{} s", seconds(s));
    }
    let t = s.round() as u64;
    if t < 3600 {
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        format!("{} h {:02} min", t / 3600, (t % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(score(0.83415), "0.8341"); // 0.83415 is 0.834149999... in binary
        assert_eq!(score(f64::NAN), "NaN");
        assert_eq!(score(-0.00001), "0.0000");
        assert_eq!(trimmed(1.5), "1.5");
        assert_eq!(trimmed(0.78125), "0.7812"); // half-to-even of the binary value
        assert_eq!(trimmed(512.0), "512");
        assert_eq!(vector(&[3.0, 0.8, 0.8]), "3 × 0.8 × 0.8");
        assert_eq!(sci(0.01), "1.00e-2");
        assert_eq!(duration(42.0), "42.0 s");
        assert_eq!(duration(723.0), "12 min 03 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
    }
}
