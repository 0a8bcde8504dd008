//! Python's `repr()` of a float, byte for byte.
//!
//! Keras writes metric values with Python's `str()`/`repr()` (they are the same
//! for floats since Python 3.2), so files such as the CSVLogger's only match
//! Keras's if numbers are printed the same way:
//!
//! * the shortest digit string that reads back to the same double (Rust's
//!   `{:e}` finds how many digits that takes; an exact tie between two such
//!   strings goes to the even one, as in Python);
//! * plain notation with at least one digit after the point (`1.0`,
//!   `123456789.0`, `0.0001`) when the decimal exponent is in `-5 < e < 16`;
//! * scientific notation otherwise, with a sign and at least two exponent
//!   digits and no `.0` on a one-digit mantissa (`1e-05`, `1e+16`,
//!   `2.5e-10`, `1.7976931348623157e+308`);
//! * `nan`, `inf`, `-inf`, and `-0.0` for negative zero.

use super::exponent_suffix;

/// Formats `x` exactly as Python's `repr(x)` does for a `float`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits as `d[.ddd]e<exp>`. When the
    // exact value lies halfway between two shortest candidates, Rust picks the
    // upper one and Python (David Gay's dtoa) the even one, so the digits are
    // redone with exact formatting at that length, which rounds half to even.
    let shortest = format!("{x:e}");
    let digit_count = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let sci = format!("{x:.prec$e}", prec = digit_count.saturating_sub(1));
    let (mantissa, exponent) = sci
        .split_once('e')
        .expect("`{:e}` output always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();

    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    if !(-4..16).contains(&exponent) {
        // Scientific: d[.ddd]e±XX
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(&exponent_suffix(exponent));
    } else if exponent >= 0 {
        // Digits before the point: exponent + 1.
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::float_repr;

    #[test]
    fn documented_examples() {
        assert_eq!(float_repr(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(123456789.0), "123456789.0");
        assert_eq!(float_repr(0.1f32 as f64), "0.10000000149011612");
        assert_eq!(float_repr(f64::NAN), "nan");
        assert_eq!(float_repr(-0.0), "-0.0");
    }

    #[test]
    fn matches_python_repr() {
        // (value, Python's repr(value)), checked with CPython 3.11.
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.2345e-5, "1.2345e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (123456789.0, "123456789.0"),
            (1e-7, "1e-07"),
            (2.5e-10, "2.5e-10"),
            (1e300, "1e+300"),
            (-1e-300, "-1e-300"),
            (3.0, "3.0"),
            (-7.0, "-7.0"),
            (1.5, "1.5"),
            (100.0, "100.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (0.1f32 as f64, "0.10000000149011612"),
            (0.001f32 as f64, "0.0010000000474974513"),
            (1e-4f32 as f64, "9.999999747378752e-05"),
            ((1.0f32 / 3.0) as f64, "0.3333333432674408"),
            (-123.456, "-123.456"),
            // Exact ties between two shortest candidates: Python rounds half to even.
            (f64::from_bits(0x4085_393f_2000_0000), "679.1558227539062"), // 679.15582275390625
            (f64::from_bits(0x400c_87c4_0000_0000), "3.5662918090820312"), // 3.56629180908203125
            (f64::from_bits(0x4307_74db_56c6_7caa), "825301233356693.2"),
        ];
        for &(x, want) in cases {
            assert_eq!(float_repr(x), want, "repr of {x:e}");
        }
    }

    #[test]
    fn round_trips() {
        let mut x = 1.2345678e-12_f64;
        while x < 1e20 {
            for v in [x, -x, x * 1.0000001, x / 3.0] {
                assert_eq!(float_repr(v).parse::<f64>().unwrap(), v);
            }
            x *= 1.7;
        }
    }
}
