//! deb822 paragraphs (dpkg's status file, control files, apt's indexes) and relation fields.
//!
//! Only what the node database needs: fields kept in file order so that a paragraph read
//! from a control file is written back to the status file as dpkg would recognise it.

use crate::error::{Error, Result};
use std::path::Path;

/// One paragraph. Field names compare case-insensitively, as in dpkg. A multi-line value is
/// kept as its first line, then `\n` and each continuation line verbatim (leading space kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces the field in place, or appends it when absent.
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value.to_string(),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
    }

    /// Inserts the field right after `after` (or at the end), replacing any existing one.
    pub fn insert_after(&mut self, after: &str, name: &str, value: &str) {
        self.remove(name);
        let at = self
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(after))
            .map_or(self.fields.len(), |i| i + 1);
        self.fields
            .insert(at, (name.to_string(), value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The paragraph as deb822 text, ending with a newline (no blank separator line).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            if !value.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(value);
            out.push('\n');
        }
        out
    }

    /// `Package`, required in every paragraph this crate handles.
    pub fn package(&self) -> &str {
        self.get("Package").unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.get("Version").unwrap_or("")
    }

    /// True for dpkg's "installed" state (`Status: <want> ok installed`).
    pub fn is_installed(&self) -> bool {
        self.get("Status")
            .is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"))
    }
}

/// Parses every paragraph of a deb822 text; `origin` names the file in errors.
pub fn parse_paragraphs(text: &str, origin: &Path) -> Result<Vec<Paragraph>> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    for (index, line) in text.lines().enumerate() {
        let bad = |message: &str| Error::Control {
            path: origin.to_path_buf(),
            line: index + 1,
            message: message.to_string(),
        };
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            let Some(last) = current.fields.last_mut() else {
                return Err(bad("continuation line before any field"));
            };
            last.1.push('\n');
            last.1.push_str(line);
        } else {
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad("expected \"Field: value\""));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad("bad field name"));
            }
            current
                .fields
                .push((name.to_string(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// One alternative of a relation field (`name:arch (op version)`), parsed enough to match
/// package names; architecture qualifiers and restrictions are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub version: Option<String>,
}

/// Parses `a (>= 1) | b, c` into alternative groups.
pub fn parse_relations(field: &str) -> Vec<Vec<Relation>> {
    field
        .split(',')
        .filter(|group| !group.trim().is_empty())
        .map(|group| {
            group
                .split('|')
                .filter_map(parse_one_relation)
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

fn parse_one_relation(text: &str) -> Option<Relation> {
    let text = text.trim();
    let end = text
        .find(|c: char| c.is_whitespace() || "([<".contains(c))
        .unwrap_or(text.len());
    let name = text[..end].split(':').next().unwrap_or("").to_string();
    if name.is_empty() {
        return None;
    }
    let version = text[end..]
        .find('(')
        .and_then(|open| {
            let rest = &text[end + open + 1..];
            rest.find(')').map(|close| rest[..close].trim().to_string())
        })
        .filter(|v| !v.is_empty());
    Some(Relation { name, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_status_with_multiline_fields() {
        let text = "Package: a\nStatus: install ok installed\nConffiles:\n /etc/a 0123\n\
                    Description: short\n long line\n .\n\nPackage: b\nStatus: deinstall ok config-files\n";
        let ps = parse_paragraphs(text, Path::new("status")).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("conffiles"), Some("\n /etc/a 0123"));
        assert_eq!(ps[0].get("Description"), Some("short\n long line\n ."));
        assert!(ps[0].is_installed());
        assert!(!ps[1].is_installed());
        assert_eq!(
            ps[0].to_text(),
            text.split("\n\n").next().unwrap().to_string() + "\n"
        );
    }

    #[test]
    fn rejects_garbage_with_line_number() {
        let err = parse_paragraphs("Package: a\nno colon here\n", Path::new("/x/status"));
        assert_eq!(
            err.unwrap_err().to_string(),
            "/x/status:2: expected \"Field: value\""
        );
        let err = parse_paragraphs(" leading\n", Path::new("s")).unwrap_err();
        assert!(err.to_string().contains("continuation"), "{err}");
    }

    #[test]
    fn relations_keep_names_and_versions() {
        let rels = parse_relations("libc6 (>= 2.3), libfoo:any | bar [amd64] <!nocheck>, ");
        assert_eq!(rels.len(), 2);
        assert_eq!(rels[0][0].name, "libc6");
        assert_eq!(rels[0][0].version.as_deref(), Some(">= 2.3"));
        assert_eq!(rels[1][0].name, "libfoo");
        assert_eq!(rels[1][1].name, "bar");
        assert_eq!(rels[1][1].version, None);
    }

    #[test]
    fn insert_after_places_status_second() {
        let mut p = parse_paragraphs("Package: a\nVersion: 1\n", Path::new("c"))
            .unwrap()
            .remove(0);
        p.insert_after("Package", "Status", "install ok installed");
        assert_eq!(
            p.to_text(),
            "Package: a\nStatus: install ok installed\nVersion: 1\n"
        );
    }

    fn field_name() -> impl Strategy<Value = String> {
        "[A-Z][A-Za-z0-9-]{0,12}"
    }

    fn field_value() -> impl Strategy<Value = String> {
        (
            "[!-~][ -~]{0,20}",
            proptest::collection::vec(" [ -~]{0,20}", 0..3),
        )
            .prop_map(|(first, rest)| {
                let first = first.trim().to_string();
                let mut v = if first.is_empty() {
                    "x".to_string()
                } else {
                    first
                };
                for line in rest {
                    if !line.trim().is_empty() {
                        v.push('\n');
                        v.push_str(line.trim_end());
                    }
                }
                v
            })
    }

    proptest! {
        #[test]
        fn paragraphs_round_trip(paras in proptest::collection::vec(
            proptest::collection::vec((field_name(), field_value()), 1..6), 1..4)) {
            let mut text = String::new();
            let mut expected = Vec::new();
            for fields in &paras {
                let mut p = Paragraph::default();
                for (n, v) in fields {
                    p.fields.push((n.clone(), v.clone()));
                }
                text.push_str(&p.to_text());
                text.push('\n');
                expected.push(p);
            }
            let parsed = parse_paragraphs(&text, Path::new("p")).unwrap();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn relation_parser_never_panics_and_names_are_clean(s in "[ -~]{0,60}") {
            for group in parse_relations(&s) {
                for rel in group {
                    prop_assert!(!rel.name.is_empty());
                    prop_assert!(!rel.name.contains([',', '|', '(', ' ']));
                }
            }
        }
    }
}
