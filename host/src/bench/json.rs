//! A small JSON writer for the benchmark's `--json` output (values are built in
//! code; nothing is parsed).

use std::fmt::Write as _;

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number; non-finite values are written as `null`.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in the given order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// A number, or `null` for `None`.
    pub fn opt(v: Option<f64>) -> Json {
        v.map_or(Json::Null, Json::Num)
    }

    /// The value as indented JSON text (two spaces), ending in a newline.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    /// The value as JSON text on one line (for JSON-lines streams).
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_compact(&self, out: &mut String) {
        let (open, close, items): (char, char, Vec<(Option<&str>, &Json)>) = match self {
            Json::Arr(items) => ('[', ']', items.iter().map(|i| (None, i)).collect()),
            Json::Obj(pairs) => (
                '{',
                '}',
                pairs.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            ),
            other => return other.write(out, 0),
        };
        out.push(open);
        for (i, (k, v)) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if let Some(k) = k {
                write_string(out, k);
                out.push(':');
            }
            v.write_compact(out);
        }
        out.push(close);
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, d: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n("  ", d));
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => write_number(out, *n),
            Json::Str(s) => write_string(out, s),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Arr(items) => {
                // Arrays of plain numbers stay on one line.
                if items.iter().all(|i| matches!(i, Json::Num(_) | Json::Null)) {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        item.write(out, depth);
                    }
                    out.push(']');
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    item.write(out, depth + 1);
                }
                pad(out, depth);
                out.push(']');
            }
            Json::Obj(pairs) if pairs.is_empty() => out.push_str("{}"),
            Json::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    write_string(out, k);
                    out.push_str(": ");
                    v.write(out, depth + 1);
                }
                pad(out, depth);
                out.push('}');
            }
        }
    }
}

fn write_number(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
    } else if n.fract() == 0.0 && n.abs() < 9.0e15 {
        // Whole numbers without a fraction (`Display` would print `3`, but be explicit).
        let _ = write!(out, "{}", n as i64);
    } else {
        // Rust's `Display` for f64 is the shortest round-tripping decimal and
        // never uses an exponent, which is valid JSON.
        let _ = write!(out, "{n}");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(Json::Null.pretty(), "null\n");
        assert_eq!(Json::Bool(true).pretty(), "true\n");
        assert_eq!(Json::Num(173.0).pretty(), "173\n");
        assert_eq!(Json::Num(-2.0).pretty(), "-2\n");
        assert_eq!(Json::Num(6.5).pretty(), "6.5\n");
        assert_eq!(Json::Num(0.0001).pretty(), "0.0001\n");
        assert_eq!(Json::Num(f64::NAN).pretty(), "null\n");
        assert_eq!(Json::opt(None).pretty(), "null\n");
        assert_eq!(Json::opt(Some(1.25)).pretty(), "1.25\n");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            Json::str("a\"b\\c\nd\te\u{1}é").pretty(),
            "\"a\\\"b\\\\c\\nd\\te\\u0001é\"\n"
        );
    }

    #[test]
    fn nested_values_are_indented() {
        let v = Json::obj([
            ("runs", Json::Arr(vec![Json::Num(1.0), Json::Num(2.5)])),
            ("empty", Json::Arr(vec![])),
            (
                "vms",
                Json::Arr(vec![Json::obj([("name", Json::str("bench"))])]),
            ),
            ("none", Json::Obj(vec![])),
        ]);
        assert_eq!(
            v.pretty(),
            "{\n  \"runs\": [1, 2.5],\n  \"empty\": [],\n  \"vms\": [\n    {\n      \"name\": \"bench\"\n    }\n  ],\n  \"none\": {}\n}\n"
        );
        assert_eq!(
            v.compact(),
            "{\"runs\":[1,2.5],\"empty\":[],\"vms\":[{\"name\":\"bench\"}],\"none\":{}}"
        );
        assert_eq!(Json::str("a\nb").compact(), "\"a\\nb\"");
    }
}
