//! How numbers are written in reports and findings.

/// Formats a number for tables: integers as such, others with 4 significant
/// decimals.
pub fn number(v: f64) -> String {
    let shortest = format!("{v}");
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if shortest.len() <= 8 {
        // Short exact values such as 0.0001 or 0.25 print as written.
        shortest
    } else if v.abs() >= 1e-3 && v.abs() < 1e6 {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_exact_for_integers() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(2.0 / 3.0), "0.6667");
        assert_eq!(number(1e-7), "1.000e-7");
        assert_eq!(number(0.0001), "0.0001");
        assert_eq!(number(1.234567891e-7), "1.235e-7");
    }
}
