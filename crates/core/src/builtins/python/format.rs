//! Python-compatible `str.format`: the subset Keras checkpoint file names
//! use (`{epoch:02d}`, `{val_loss:.4f}`, …). Floats without a format spec
//! are written as Python's `repr` (`float_repr`).

use std::fmt;

use super::exponent_suffix;
use super::repr::float_repr;

/// A value substituted into a template: Keras formats `{epoch}` and
/// `{batch}` as Python ints and every log value as a Python float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// An integer (`epoch`, `batch`).
    Int(i64),
    /// A float (every log value).
    Float(f64),
}

/// Why a template could not be formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{name}` placeholder has no value (Python's `KeyError`).
    MissingKey(String),
    /// The template or a format spec is malformed or unsupported.
    Invalid(String),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::MissingKey(key) => write!(f, "'{key}'"),
            TemplateError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Rewrites Rust's `{:e}` output (`1.50e-5`) with Python's exponent (`1.50e-05`).
fn fix_exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => format!(
            "{m}e{}",
            exponent_suffix(e.parse().expect("valid exponent"))
        ),
        None => s.to_string(),
    }
}

/// A parsed format spec: `[[fill]align][sign][#][0][width][.precision][type]`.
#[derive(Debug, Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    kind: Option<char>,
}

fn parse_spec(spec: &str) -> Result<Spec, TemplateError> {
    let bad = || TemplateError::Invalid(format!("unsupported format spec {spec:?}"));
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let mut out = Spec::default();
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    if chars.len() >= 2 && is_align(chars[1]) {
        out.fill = Some(chars[0]);
        out.align = Some(chars[1]);
        i = 2;
    } else if !chars.is_empty() && is_align(chars[0]) {
        out.align = Some(chars[0]);
        i = 1;
    }
    if i < chars.len() && matches!(chars[i], '+' | '-' | ' ') {
        out.sign = Some(chars[i]);
        i += 1;
    }
    if i < chars.len() && chars[i] == '#' {
        out.alternate = true;
        i += 1;
    }
    if i < chars.len() && chars[i] == '0' {
        out.zero = true;
        i += 1;
    }
    let start = i;
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        out.width = chars[start..i]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| bad())?;
    }
    if i < chars.len() && chars[i] == '.' {
        i += 1;
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(TemplateError::Invalid(
                "Format specifier missing precision".into(),
            ));
        }
        out.precision = Some(
            chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .map_err(|_| bad())?,
        );
    }
    if i < chars.len() {
        out.kind = Some(chars[i]);
        i += 1;
    }
    if i != chars.len() {
        return Err(bad());
    }
    Ok(out)
}

/// Formats one value with a Python format spec (`02d`, `.4f`, `>8.2e`, `g`,
/// …). Supported: fill/align, sign, `#`, zero padding, width, precision and
/// the types `d`, `f`/`F`, `e`/`E`, `g`/`G`, `%` and none. As in Python, `d`
/// rejects floats and ints accept the float types.
pub fn format_value(value: Value, spec: &str) -> Result<String, TemplateError> {
    let spec = parse_spec(spec)?;
    let (negative, body) = match value {
        Value::Int(n) => match spec.kind {
            None | Some('d') => {
                if spec.precision.is_some() {
                    return Err(TemplateError::Invalid(
                        "Precision not allowed in integer format specifier".into(),
                    ));
                }
                (n < 0, n.unsigned_abs().to_string())
            }
            Some('f' | 'F' | 'e' | 'E' | 'g' | 'G' | '%') => float_body(n as f64, &spec)?,
            Some(c) => {
                return Err(TemplateError::Invalid(format!(
                    "Unknown format code '{c}' for object of type 'int'"
                )));
            }
        },
        Value::Float(x) => float_body(x, &spec)?,
    };
    let sign = match (negative, spec.sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    Ok(pad(sign, &body, &spec))
}

/// The unsigned text of a float and whether it is negative.
fn float_body(x: f64, spec: &Spec) -> Result<(bool, String), TemplateError> {
    let negative = x.is_sign_negative() && !x.is_nan();
    let a = x.abs();
    let upper = matches!(spec.kind, Some('F' | 'E' | 'G'));
    let body = if !a.is_finite() {
        if a.is_nan() {
            "nan".to_string()
        } else {
            "inf".to_string()
        }
    } else {
        match spec.kind {
            Some('f' | 'F') => format!("{:.*}", spec.precision.unwrap_or(6), a),
            Some('%') => format!("{:.*}%", spec.precision.unwrap_or(6), a * 100.0),
            Some('e' | 'E') => fix_exponent(&format!("{:.*e}", spec.precision.unwrap_or(6), a)),
            Some('g' | 'G') => general(a, spec.precision.unwrap_or(6), spec.alternate, false),
            None => match spec.precision {
                None => float_repr(a),
                Some(p) => general(a, p, spec.alternate, true),
            },
            Some(c) => {
                return Err(TemplateError::Invalid(format!(
                    "Unknown format code '{c}' for object of type 'float'"
                )));
            }
        }
    };
    Ok((negative, if upper { body.to_uppercase() } else { body }))
}

/// Python's `g` format of `a >= 0` with `p` significant digits. `repr_like`
/// is the no-type variant, which keeps at least one digit after the point.
fn general(a: f64, p: usize, alternate: bool, repr_like: bool) -> String {
    let p = p.max(1);
    let exp = if a == 0.0 {
        0
    } else {
        let s = format!("{:.*e}", p - 1, a);
        s.split_once('e')
            .expect("exponent")
            .1
            .parse::<i32>()
            .expect("valid exponent")
    };
    let strip = |s: String| -> String {
        if alternate || !s.contains('.') {
            s
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if -4 <= exp && exp < p as i32 {
        let decimals = (p as i32 - 1 - exp) as usize;
        let mut s = strip(format!("{a:.decimals$}"));
        if repr_like && !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let s = format!("{:.*e}", p - 1, a);
        let (m, e) = s.split_once('e').expect("exponent");
        format!(
            "{}e{}",
            strip(m.to_string()),
            exponent_suffix(e.parse().expect("valid exponent"))
        )
    }
}

fn pad(sign: &str, body: &str, spec: &Spec) -> String {
    let len = sign.chars().count() + body.chars().count();
    if len >= spec.width {
        return format!("{sign}{body}");
    }
    let n = spec.width - len;
    let (fill, align) = match (spec.align, spec.zero) {
        (Some(a), _) => (spec.fill.unwrap_or(if spec.zero { '0' } else { ' ' }), a),
        (None, true) => ('0', '='),
        (None, false) => (' ', '>'),
    };
    let fill_str = |k: usize| fill.to_string().repeat(k);
    match align {
        '<' => format!("{sign}{body}{}", fill_str(n)),
        '^' => format!("{}{sign}{body}{}", fill_str(n / 2), fill_str(n - n / 2)),
        '=' => format!("{sign}{}{body}", fill_str(n)),
        _ => format!("{}{sign}{body}", fill_str(n)),
    }
}

/// Python's `template.format(**values)` for named fields: `{name}` and
/// `{name:spec}`, with `{{`/`}}` escapes. Positional fields, attribute or
/// index access, conversions (`!r`) and nested specs are rejected.
pub fn format_template(
    template: &str,
    lookup: impl Fn(&str) -> Option<Value>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => {
                return Err(TemplateError::Invalid(
                    "Single '}' encountered in format string".into(),
                ));
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') => {
                            return Err(TemplateError::Invalid(format!(
                                "nested format fields are not supported in {template:?}"
                            )));
                        }
                        Some(c) => field.push(c),
                        None => {
                            return Err(TemplateError::Invalid(
                                "Single '{' encountered in format string".into(),
                            ));
                        }
                    }
                }
                let (name, spec) = field.split_once(':').unwrap_or((&field, ""));
                if name.is_empty() || name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(TemplateError::Invalid(format!(
                        "positional field {{{name}}} is not supported; use a name such as {{epoch}}"
                    )));
                }
                if name.contains(['.', '[', '!']) {
                    return Err(TemplateError::Invalid(format!(
                        "field {{{field}}}: attribute, index and conversion syntax is not supported"
                    )));
                }
                let value =
                    lookup(name).ok_or_else(|| TemplateError::MissingKey(name.to_string()))?;
                out.push_str(&format_value(value, spec)?);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether `template` contains any `{…}` placeholder (escapes excluded).
pub fn has_placeholders(template: &str) -> bool {
    template.replace("{{", "").replace("}}", "").contains('{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_checkpoint_name() {
        let name = format_template("ckpt-{epoch:02d}-{val_loss:.2f}.mpk", |key| match key {
            "epoch" => Some(Value::Int(3)),
            "val_loss" => Some(Value::Float(0.4567)),
            _ => None,
        })
        .unwrap();
        assert_eq!(name, "ckpt-03-0.46.mpk");
    }

    fn f(x: f64, spec: &str) -> String {
        format_value(Value::Float(x), spec).unwrap()
    }

    fn i(n: i64, spec: &str) -> String {
        format_value(Value::Int(n), spec).unwrap()
    }

    #[test]
    fn format_specs_match_python() {
        assert_eq!(i(3, "02d"), "03");
        assert_eq!(i(3, "03d"), "003");
        assert_eq!(i(123, "02d"), "123");
        assert_eq!(i(-3, "03d"), "-03");
        assert_eq!(i(7, ""), "7");
        assert_eq!(i(7, ">4"), "   7");
        assert_eq!(i(7, "<4"), "7   ");
        assert_eq!(i(7, "*^5"), "**7**");
        assert_eq!(i(7, "+d"), "+7");
        assert_eq!(i(2, ".2f"), "2.00");
        assert_eq!(f(1.2345, ".2f"), "1.23");
        assert_eq!(f(0.995, ".2f"), "0.99"); // 0.995 is 0.99499999… in binary
        assert_eq!(f(0.125, ".2f"), "0.12"); // ties to even on the exact value
        assert_eq!(f(0.375, ".2f"), "0.38");
        assert_eq!(f(-0.5, "07.3f"), "-00.500");
        assert_eq!(f(0.5, ""), "0.5");
        assert_eq!(f(1.0, "f"), "1.000000");
        assert_eq!(f(12345.678, ".3e"), "1.235e+04");
        assert_eq!(f(0.000012, "e"), "1.200000e-05");
        assert_eq!(f(0.000012, "E"), "1.200000E-05");
        assert_eq!(f(0.5, "g"), "0.5");
        assert_eq!(f(1234567.0, "g"), "1.23457e+06");
        assert_eq!(f(0.0001, "g"), "0.0001");
        assert_eq!(f(0.00001, "g"), "1e-05");
        assert_eq!(f(100.0, "g"), "100");
        assert_eq!(f(100.0, "#g"), "100.000");
        assert_eq!(f(0.0, "g"), "0");
        assert_eq!(f(1.0, ".3"), "1.0");
        assert_eq!(f(1234.0, ".3"), "1.23e+03");
        assert_eq!(f(0.25, ".1%"), "25.0%");
        assert_eq!(f(f64::NAN, ".2f"), "nan");
        assert_eq!(f(f64::INFINITY, "8.2f"), "     inf");
        assert_eq!(f(f64::NEG_INFINITY, ".2F"), "-INF");
        assert_eq!(f(0.5, "10.4f"), "    0.5000");
        assert_eq!(f(0.5, "<10.4f"), "0.5000    ");
    }

    #[test]
    fn format_spec_errors() {
        assert!(format_value(Value::Float(1.0), "d").is_err());
        assert!(format_value(Value::Int(1), ".2d").is_err());
        assert!(format_value(Value::Int(1), "s").is_err());
        assert!(format_value(Value::Float(1.0), ".f").is_err());
        assert!(format_value(Value::Float(1.0), ",.2f").is_err());
    }

    #[test]
    fn templates() {
        let lookup = |k: &str| match k {
            "epoch" => Some(Value::Int(1)),
            "batch" => Some(Value::Int(12)),
            "val_loss" => Some(Value::Float(1.23456)),
            _ => None,
        };
        assert_eq!(
            format_template("run/{epoch:02d}-{batch:03d}-{val_loss:.2f}.mpk", lookup).unwrap(),
            "run/01-012-1.23.mpk"
        );
        assert_eq!(
            format_template("{{literal}}-{epoch}", lookup).unwrap(),
            "{literal}-1"
        );
        assert_eq!(format_template("{val_loss}", lookup).unwrap(), "1.23456");
        assert_eq!(
            format_template("{acc}", lookup),
            Err(TemplateError::MissingKey("acc".into()))
        );
        assert!(format_template("{}", lookup).is_err());
        assert!(format_template("{0}", lookup).is_err());
        assert!(format_template("{epoch", lookup).is_err());
        assert!(format_template("epoch}", lookup).is_err());
        assert!(format_template("{epoch!r}", lookup).is_err());
        assert!(format_template("{epoch:{w}}", lookup).is_err());
        assert!(has_placeholders("a{epoch}"));
        assert!(!has_placeholders("a{{epoch}}"));
    }
}
