//! Housekeeping (issue 11, point 9): the repository names no package
//! registry or mirror host. Set-up scripts take their mirrors from the
//! machine's apt sources (and stop, saying so, when there is none), so no
//! file needs a network address.
//!
//! The check is generic, so this file names no host either: no text file in
//! the tree (outside `target/`, `.git/` and `Cargo.lock`, whose source lines
//! are cargo's own record of its default index) contains a URL with a host
//! name (a scheme separator, colon slash slash, followed by a name with a
//! letter and a dot; loopback addresses and patterns that parse URLs are
//! fine) or a word that looks like a host name under a public top-level
//! domain (labels joined by dots, the last one of [`TLDS`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

const TLDS: &[&str] = &["org", "com", "io", "net", "edu", "cn"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && name != ".git" {
                files(&p, out);
            }
        } else if name != "Cargo.lock" {
            out.push(p);
        }
    }
}

/// Host-like words in `text`: a run of `[A-Za-z0-9._-]` with at least one
/// dot whose last label is one of [`TLDS`] and whose other labels are
/// non-empty and start with a letter or digit.
fn host_like(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    // `_` never occurs in a host name but does in identifiers: keeping it in
    // the word makes `vm.net_pending` one word whose last label is no TLD.
    for word in
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
    {
        let word = word.trim_matches('.');
        let labels: Vec<&str> = word.split('.').collect();
        if labels.len() < 2 {
            continue;
        }
        let last = labels[labels.len() - 1];
        if TLDS.contains(&last.to_ascii_lowercase().as_str())
            && labels[..labels.len() - 1]
                .iter()
                .all(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric()))
        {
            found.push(word.to_string());
        }
    }
    found
}

/// Whether `line` has a URL naming a host: what follows a scheme separator
/// is a run of `[A-Za-z0-9.-]` with a letter and a dot.
fn url_hosts(line: &str) -> bool {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(2)).any(|i| {
        b[i..i + 3] == [b':', b'/', b'/'] && {
            let host: Vec<u8> = b[i + 3..]
                .iter()
                .copied()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
                .collect();
            host.contains(&b'.') && host.iter().any(u8::is_ascii_alphabetic)
        }
    })
}

#[test]
fn host_like_finds_hosts_and_not_code() {
    let sep = ":/";
    assert!(url_hosts(&format!("get http{sep}/pkgs.example.test/x")));
    assert!(!url_hosts(&format!("grep 'https?{sep}/[^ ]+'")));
    assert!(!url_hosts(&format!(
        "curl http{sep}/127.0.0.1:8080/metrics"
    )));
    let dot = ".";
    let text = format!("see mirror{dot}example{dot}org/x and a{dot}b{dot}net");
    assert_eq!(host_like(&text).len(), 2, "{:?}", host_like(&text));
    assert!(host_like("self.dev.read(); std::io::Error; file.rs; v0.1.0").is_empty());
    // Fields whose name starts with a TLD are code, not hosts.
    assert!(host_like("vm.net_pending.load(); vm.io_pending.store(x)").is_empty());
}

#[test]
fn the_tree_names_no_hosts() {
    let mut all = Vec::new();
    files(&repo_root(), &mut all);
    assert!(all.len() > 50, "only {} files found", all.len());
    let mut bad = Vec::new();
    for f in all {
        let Ok(bytes) = fs::read(&f) else { continue };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let scheme = url_hosts(line);
            let hosts = host_like(line);
            if scheme || !hosts.is_empty() {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "network addresses in the tree:\n{}",
        bad.join("\n")
    );
}
