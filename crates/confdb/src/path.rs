//! Keys, rule patterns and matching between them (pure, no I/O).
//!
//! A key is `[a-z0-9-]` segments joined by dots (no leading, trailing or doubled `-`). A rule
//! pattern is the same with whole-segment `{placeholder}`s.

use std::collections::BTreeMap;
use std::fmt;

/// Placeholder name → the key segment it stands for.
pub type Bindings = BTreeMap<String, String>;

/// Checks one key segment; the reason is phrased to follow "invalid key: ".
pub fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty segment".to_string());
    }
    let bytes = segment.as_bytes();
    if let Some(c) = segment
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "segment \"{segment}\" contains {c:?} (allowed: a-z, 0-9, -)"
        ));
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' || segment.contains("--") {
        return Err(format!(
            "segment \"{segment}\" must not start or end with '-' or contain \"--\""
        ));
    }
    Ok(())
}

/// Splits a key given by a user into its segments.
pub fn parse_key(key: &str) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Err("empty key".to_string());
    }
    key.split('.')
        .map(|s| check_segment(s).map(|()| s.to_string()))
        .collect()
}

/// Renders segments back to the dotted form.
pub fn join(segments: &[String]) -> String {
    segments.join(".")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Key(String),
    Placeholder(String),
}

/// A rule's request or storage path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Pattern(pub Vec<Segment>);

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match s {
                Segment::Key(k) => f.write_str(k)?,
                Segment::Placeholder(p) => write!(f, "{{{p}}}")?,
            }
        }
        Ok(())
    }
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty path".to_string());
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                check_segment(inner).map_err(|e| format!("placeholder {part}: {e}"))?;
                segments.push(Segment::Placeholder(inner.to_string()));
            } else {
                check_segment(part).map_err(|e| format!("\"{text}\": {e}"))?;
                segments.push(Segment::Key(part.to_string()));
            }
        }
        Ok(Pattern(segments))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn concat(&self, other: &Pattern) -> Pattern {
        Pattern(self.0.iter().chain(other.0.iter()).cloned().collect())
    }

    pub fn placeholders(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|s| match s {
                Segment::Placeholder(p) => Some(p.as_str()),
                Segment::Key(_) => None,
            })
            .collect()
    }

    /// The pattern with placeholder names erased, so that `a.{x}` and `a.{y}` compare equal.
    pub fn shape(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.as_str(),
                Segment::Placeholder(_) => "{}",
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Matches the first `min(len, key.len())` segments against `key`, extending `bindings`.
    /// Returns `None` if a literal differs or a placeholder is already bound to another value.
    pub fn match_prefix(&self, key: &[String], bindings: &Bindings) -> Option<Bindings> {
        let mut out = bindings.clone();
        for (seg, k) in self.0.iter().zip(key.iter()) {
            match seg {
                Segment::Key(lit) if lit == k => {}
                Segment::Key(_) => return None,
                Segment::Placeholder(p) => match out.get(p) {
                    Some(v) if v != k => return None,
                    Some(_) => {}
                    None => {
                        out.insert(p.clone(), k.clone());
                    }
                },
            }
        }
        Some(out)
    }

    /// Replaces bound placeholders by their values; unbound ones stay.
    pub fn substitute(&self, bindings: &Bindings) -> Pattern {
        Pattern(
            self.0
                .iter()
                .map(|s| match s {
                    Segment::Placeholder(p) => match bindings.get(p) {
                        Some(v) => Segment::Key(v.clone()),
                        None => s.clone(),
                    },
                    Segment::Key(_) => s.clone(),
                })
                .collect(),
        )
    }

    /// The literal key if no placeholder is left.
    pub fn to_key(&self) -> Option<Vec<String>> {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.clone()),
                Segment::Placeholder(_) => None,
            })
            .collect()
    }

    /// True if one of `self` and `key` is a prefix of the other, placeholders matching any
    /// segment: a change at `key` is then visible through this pattern.
    pub fn overlaps(&self, key: &[String]) -> bool {
        self.0.iter().zip(key.iter()).all(|(seg, k)| match seg {
            Segment::Key(lit) => lit == k,
            Segment::Placeholder(_) => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> Vec<String> {
        parse_key(s).unwrap()
    }

    #[test]
    fn segments() {
        assert!(check_segment("eth0").is_ok());
        assert!(check_segment("server-url").is_ok());
        assert!(check_segment("9").is_ok());
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", "é"] {
            assert!(check_segment(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_key("a..b").is_err());
        assert!(parse_key("").is_err());
        assert_eq!(parse_key("a.b-c.d").unwrap(), vec!["a", "b-c", "d"]);
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("interfaces.{name}.stats").unwrap();
        assert_eq!(p.to_string(), "interfaces.{name}.stats");
        assert_eq!(p.placeholders(), vec!["name"]);
        assert_eq!(p.shape(), "interfaces.{}.stats");
        assert!(Pattern::parse("a.{B}").is_err());
        assert!(Pattern::parse("a.{}").is_err());
        assert!(Pattern::parse("a.x{b}").is_err());
        let b = p
            .match_prefix(&key("interfaces.eth0"), &Bindings::new())
            .unwrap();
        assert_eq!(b.get("name").map(String::as_str), Some("eth0"));
        assert_eq!(p.substitute(&b).to_string(), "interfaces.eth0.stats");
        assert!(
            p.match_prefix(&key("other.eth0"), &Bindings::new())
                .is_none()
        );
        let mut fixed = Bindings::new();
        fixed.insert("name".into(), "wlan0".into());
        assert!(p.match_prefix(&key("interfaces.eth0"), &fixed).is_none());
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}"
    }

    fn pattern_and_key() -> impl Strategy<Value = (Pattern, Vec<String>)> {
        prop::collection::vec((segment(), any::<bool>()), 1..6).prop_map(|segs| {
            let mut pattern = Vec::new();
            let mut key = Vec::new();
            for (i, (s, placeholder)) in segs.into_iter().enumerate() {
                if placeholder {
                    pattern.push(Segment::Placeholder(format!("p{i}")));
                } else {
                    pattern.push(Segment::Key(s.clone()));
                }
                key.push(s);
            }
            (Pattern(pattern), key)
        })
    }

    proptest! {
        /// Substituting the bindings of a match gives back the matched key.
        #[test]
        fn match_then_substitute_roundtrips((pattern, key) in pattern_and_key(), cut in 0usize..6) {
            let cut = cut.min(key.len());
            let prefix = &key[..cut];
            let b = pattern.match_prefix(prefix, &Bindings::new());
            prop_assert!(b.is_some());
            let b = b.unwrap();
            let sub = Pattern(pattern.0[..cut].to_vec()).substitute(&b);
            prop_assert_eq!(sub.to_key().unwrap(), prefix.to_vec());
            prop_assert!(pattern.overlaps(prefix));
        }

        /// A key differing from the pattern at a literal segment never matches.
        #[test]
        fn literal_mismatch_never_matches((pattern, key) in pattern_and_key(), idx in 0usize..6) {
            let idx = idx % key.len();
            if let Segment::Key(_) = pattern.0[idx] {
                let mut other = key.clone();
                other[idx] = format!("{}x", other[idx]);
                prop_assert!(pattern.match_prefix(&other, &Bindings::new()).is_none());
                prop_assert!(!pattern.overlaps(&other));
            }
        }

        /// Parsing the display form of a pattern gives the same pattern.
        #[test]
        fn pattern_display_parses_back((pattern, _key) in pattern_and_key()) {
            prop_assert_eq!(Pattern::parse(&pattern.to_string()).unwrap(), pattern);
        }
    }
}
