//! The host side of `fv_mgmt`'s machine line protocol: reply lines parsed
//! into records, an `error` end line into [`ReplyError`], and records into
//! JSON for `--json`.

use crate::bench::json::Json;

/// One record line: its kind and its fields in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `vm`, `vcpu`, `host`, `hart`, `line`, `state`, `error`, ...
    pub kind: String,
    /// `key=value` pairs (values unquoted and unescaped; raw bytes that are
    /// not UTF-8 become U+FFFD).
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record as a JSON object (numbers where the value is one; `harts`,
    /// a comma-separated list, as an array of numbers).
    pub fn to_json(&self) -> Json {
        Json::obj(self.fields.iter().map(|(k, v)| {
            let j = if k == "harts" {
                Json::Arr(
                    v.split(',')
                        .filter_map(|h| h.parse::<f64>().ok())
                        .map(Json::Num)
                        .collect(),
                )
            } else if !v.is_empty() && v.len() < 20 && v.bytes().all(|b| b.is_ascii_digit()) {
                v.parse::<f64>()
                    .map_or_else(|_| Json::str(v.clone()), Json::Num)
            } else {
                Json::str(v.clone())
            };
            (k.clone(), j)
        }))
    }
}

/// A refusal: the `error` end line of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyError {
    /// `code=` (`unknown-vm`, `wrong-state`, `parse`, ...).
    pub code: String,
    /// `msg=`, the sentence for people.
    pub msg: String,
    /// The whole line.
    pub record: Record,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ReplyError {}

/// Parses one line; `None` if it is not a record.
pub fn parse_line(line: &str) -> Option<Record> {
    let line = line.trim_end_matches(['\r', '\n']);
    let b = line.as_bytes();
    let kind_end = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    let kind = &line[..kind_end];
    if kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let mut fields = Vec::new();
    let mut i = kind_end;
    while i < b.len() {
        if b[i] != b' ' {
            return None;
        }
        i += 1;
        let k0 = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() || i == k0 {
            return None;
        }
        let key = line[k0..i].to_string();
        i += 1;
        let mut val: Vec<u8> = Vec::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => match *b.get(i + 1)? {
                        b'x' => {
                            let hex = line.get(i + 2..i + 4)?;
                            val.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 4;
                        }
                        c => {
                            val.push(c);
                            i += 2;
                        }
                    },
                    c => {
                        val.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && b[i] != b' ' {
                val.push(b[i]);
                i += 1;
            }
        }
        fields.push((key, String::from_utf8_lossy(&val).into_owned()));
    }
    Some(Record {
        kind: kind.to_string(),
        fields,
    })
}

/// Parses a whole reply: its records, or the refusal its `error` line says.
/// A reply without an end line is an error of code `protocol`.
pub fn parse_reply(text: &str) -> Result<Vec<Record>, ReplyError> {
    let mut records = Vec::new();
    for line in text.lines() {
        if line == "ok" {
            return Ok(records);
        }
        let Some(r) = parse_line(line) else {
            return Err(protocol_error(&format!("malformed reply line {line:?}")));
        };
        if r.kind == "error" {
            return Err(ReplyError {
                code: r.get("code").unwrap_or("error").to_string(),
                msg: r.get("msg").unwrap_or(line).to_string(),
                record: r,
            });
        }
        records.push(r);
    }
    Err(protocol_error("the reply has no end line"))
}

/// An error that did not come from the hypervisor's reply itself.
pub fn protocol_error(msg: &str) -> ReplyError {
    ReplyError {
        code: "protocol".into(),
        msg: msg.to_string(),
        record: Record {
            kind: "error".into(),
            fields: vec![
                ("code".into(), "protocol".into()),
                ("msg".into(), msg.into()),
            ],
        },
    }
}

/// Records as JSON: an object with one array per kind, named by the kind
/// plus `s` (`vms`, `vcpus`, `harts`, `lines`), and `host` as an object.
pub fn to_json(records: &[Record]) -> Json {
    let mut groups: Vec<(String, Vec<Json>)> = Vec::new();
    let mut host = None;
    for r in records {
        if r.kind == "host" {
            host = Some(r.to_json());
            continue;
        }
        let key = format!("{}s", r.kind);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r.to_json()),
            None => groups.push((key, vec![r.to_json()])),
        }
    }
    let mut pairs: Vec<(String, Json)> = Vec::new();
    if let Some(h) = host {
        pairs.push(("host".into(), h));
    }
    pairs.extend(groups.into_iter().map(|(k, v)| (k, Json::Arr(v))));
    Json::Obj(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_records_and_quotes() {
        let r = parse_line(r#"line text="a \"b\" \\ \x41\xff" n=3"#).unwrap();
        assert_eq!(r.kind, "line");
        assert_eq!(r.get("text"), Some("a \"b\" \\ A\u{fffd}"));
        assert_eq!(r.get("n"), Some("3"));
        assert_eq!(parse_line("Vm x=1"), None);
        assert_eq!(parse_line("vm x"), None);
        assert_eq!(parse_line(r#"vm x="open"#), None);
        assert_eq!(parse_line(r#"vm x="\x4""#), None);
    }

    #[test]
    fn replies() {
        let ok = parse_reply("vm index=0 name=web state=running\nok\n").unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].get("name"), Some("web"));
        let e =
            parse_reply("error code=unknown-vm vm=nope msg=\"no VM named 'nope'\"\n").unwrap_err();
        assert_eq!(e.code, "unknown-vm");
        assert_eq!(e.msg, "no VM named 'nope'");
        assert_eq!(parse_reply("vm a=1\n").unwrap_err().code, "protocol");
    }

    #[test]
    fn json_groups_kinds() {
        let recs = parse_reply(
            "host harts=2\nvm name=a index=0 harts=0,1\nvm name=b index=1 harts=1\nok\n",
        )
        .unwrap();
        let j = to_json(&recs).pretty();
        assert!(j.contains("\"host\""), "{j}");
        assert!(j.contains("\"vms\""), "{j}");
        assert!(j.contains("\"name\": \"b\""), "{j}");
        assert!(j.contains("\"index\": 1"), "{j}");
        assert!(j.contains("\"harts\": [0, 1]"), "{j}");
    }
}
