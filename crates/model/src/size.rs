//! Sizes as users write them (`256M`, `1G`): a vm app's overlay and memory, and later
//! service limits and disk reserves.

use crate::error::Error;

/// Bytes in `value`: a decimal number with an optional `K`, `M`, `G` or `T` suffix (powers
/// of 1024, also written `KiB`, `MB`...). Zero is refused: no guest runs in zero bytes.
pub fn parse_size(value: &str) -> Result<u64, Error> {
    let bad = || Error::Size {
        value: value.to_string(),
    };
    let text = value.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(bad());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        for bad in ["", "M", "1.5G", "-1G", "1X", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,12}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn megabytes_scale(n in 1u64..100_000) {
            prop_assert_eq!(parse_size(&format!("{n}M")).unwrap(), n << 20);
        }
    }
}
