//! Sizes on the command line: `1024`, `1K`/`1KiB`, `64M`, `1G` (powers of 1024).

/// Parses a size, naming the field in the error.
pub fn parse(field: &str, s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{field}: {s:?} is not a size like 4096, 64K or 1G"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{field}: unknown unit in {s:?} (use K, M or G)")),
    };
    n.checked_mul(scale)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{field}: {s:?} is zero or too large"))
}

/// `1536` → `1.5 KiB`, for people.
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_bad_ones_name_the_field() {
        assert_eq!(parse("from", "1K").unwrap(), 1024);
        assert_eq!(parse("to", "1GiB").unwrap(), 1 << 30);
        assert_eq!(parse("to", "4096").unwrap(), 4096);
        assert!(parse("to", "0").unwrap_err().starts_with("to:"));
        assert!(parse("from", "12Q").unwrap_err().starts_with("from:"));
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1 GiB");
    }
}
