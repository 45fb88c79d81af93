//! The contract digest of spec §7.5: a JSON value serialised the way the server's
//! JavaScript does it, then SHA-256.
//!
//! Canonical means byte-for-byte what `JSON.stringify` prints for the value with its keys
//! sorted — so numbers are written as ECMAScript's `Number.prototype.toString` writes them
//! (every JSON number is an IEEE double in JavaScript), strings are escaped as
//! `JSON.stringify` escapes them, and keys that look like array indices come first in numeric
//! order, as JavaScript objects keep them. `tests/fixtures/envelope/` holds vectors computed
//! by Node itself (`scripts/envelope-vectors.js`), which the tests compare against.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Top-level keys that are not part of what the digest covers.
const EXCLUDED: [&str; 4] = ["digest", "receiptDigest", "merkleRoot", "signature"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("the value contains a number JavaScript cannot represent ({0})")]
    NonFinite(String),
}

/// `sha256:<hex>` of `value` without its top-level `digest`, `receiptDigest`, `merkleRoot`
/// and `signature`.
pub fn contract_digest(value: &Value) -> Result<String, DigestError> {
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> =
                map.iter().filter(|(k, _)| !EXCLUDED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            write_value(&Value::Object(kept), &mut out)?;
        }
        other => write_value(other, &mut out)?,
    }
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(out.as_bytes()))))
}

/// The canonical serialisation itself.
pub fn canonical(value: &Value) -> Result<String, DigestError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(v: &Value, out: &mut String) -> Result<(), DigestError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // JavaScript reads every JSON number as a double.
            let f = n.as_f64().ok_or_else(|| DigestError::NonFinite(n.to_string()))?;
            out.push_str(&js_number(f)?);
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| js_key_order(a, b));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(&map[k], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A canonical array index: a decimal integer without leading zeros below 2^32 − 1.
fn array_index(k: &str) -> Option<u32> {
    if k.is_empty() || (k.len() > 1 && k.starts_with('0')) || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse::<u64>().ok().filter(|n| *n < u32::MAX as u64).map(|n| n as u32)
}

/// Index-like keys first, ascending; then the rest by UTF-16 code units.
fn js_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (array_index(a), array_index(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.encode_utf16().cmp(b.encode_utf16()),
    }
}

/// `JSON.stringify`'s string escaping (the value is valid UTF-8, so it has no lone surrogates).
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `Number.prototype.toString()` for a finite double (ECMA-262 Number::toString, radix 10):
/// the shortest digits that round-trip, placed by the exponent rules of the spec.
fn js_number(f: f64) -> Result<String, DigestError> {
    if !f.is_finite() {
        return Err(DigestError::NonFinite(f.to_string()));
    }
    if f == 0.0 {
        return Ok("0".into()); // -0 prints as 0
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddddde<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().expect("an integer exponent") + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e = if e >= 0 { format!("+{e}") } else { e.to_string() };
        if k == 1 {
            format!("{digits}e{e}")
        } else {
            format!("{}.{}e{e}", &digits[..1], &digits[1..])
        }
    };
    Ok(format!("{sign}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        let table: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5, "1.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123456789.125, "123456789.125"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123e18, "123000000000000000000"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (0.000123, "0.000123"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740993.0, "9007199254740992"),
        ];
        for (f, want) in table {
            assert_eq!(js_number(*f).unwrap(), *want, "{f:e}");
        }
        assert!(js_number(f64::NAN).is_err() && js_number(f64::INFINITY).is_err());
    }

    /// The digest is of the number the server sent: its JSON text must parse to exactly that
    /// double. serde_json's default float parser can be one unit in the last place off for
    /// 17-digit numbers, which printed back differ (found by the `server_frame` fuzz target,
    /// S2); the `float_roundtrip` feature parses them exactly.
    #[test]
    fn seventeen_digit_numbers_read_back_to_the_same_text() {
        for text in ["1.2222222222322223e+26", "[1.2222222222322223e+26]", "0.30000000000000004", "2.2250738585072014e-308"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(canonical(&v).unwrap(), text, "{text}");
        }
    }

    #[test]
    fn keys_sort_by_utf16_with_array_indices_first() {
        let v = json!({"b": 1, "a": 2, "10": 3, "2": 4, "01": 5, "\u{e9}": 6, "\u{1f600}": 7, "\u{ff61}": 8, "4294967295": 9, "Z": 10});
        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FF61 in UTF-16
        // (though after it in UTF-8 and in code points).
        assert_eq!(
            canonical(&v).unwrap(),
            "{\"2\":4,\"10\":3,\"01\":5,\"4294967295\":9,\"Z\":10,\"a\":2,\"b\":1,\"\u{e9}\":6,\"\u{1f600}\":7,\"\u{ff61}\":8}"
        );
    }

    #[test]
    fn strings_escape_as_json_stringify_does() {
        let v = json!("q\"b\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}\u{2028}é");
        assert_eq!(canonical(&v).unwrap(), "\"q\\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}é\"");
    }

    #[test]
    fn only_top_level_digest_keys_are_left_out() {
        let a =
            json!({"x": 1, "digest": "sha256:00", "signature": "s", "receiptDigest": "r", "merkleRoot": "m", "inner": {"digest": "kept"}});
        let b = json!({"inner": {"digest": "kept"}, "x": 1});
        assert_eq!(contract_digest(&a).unwrap(), contract_digest(&b).unwrap());
        let c = json!({"inner": {}, "x": 1});
        assert_ne!(contract_digest(&a).unwrap(), contract_digest(&c).unwrap(), "nested `digest` is covered");
        let d = contract_digest(&a).unwrap();
        assert!(d.starts_with("sha256:") && d.len() == 71);
    }
}
