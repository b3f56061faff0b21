//! The one rule for the names Cairn turns into file, socket and command names (apps, VMs,
//! keys), and its one error. Each crate wraps [`NameError`] in its own error type.

use std::fmt;

/// What a name names: it words the error, and keys also allow `_` (key names written
/// before the rule was shared keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    App,
    Vm,
    Key,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::App => "app",
            NameKind::Vm => "vm",
            NameKind::Key => "key",
        })
    }
}

impl NameKind {
    fn rule(self) -> &'static str {
        match self {
            NameKind::Key => {
                "lowercase letters, digits, dashes and '_', starting with a letter or digit"
            }
            NameKind::App | NameKind::Vm => {
                "lowercase letters, digits and dashes, not starting with a dash"
            }
        }
    }
}

/// A name outside the rule of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: expected {}, at most 64 bytes", kind.rule())]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
}

/// Checks `name` against the rule: lowercase ASCII letters, digits and dashes (and `_` for
/// keys), not starting with a dash (nor `_`), 1 to 64 bytes.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let allowed = |b: u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || (kind == NameKind::Key && b == b'_')
    };
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '_'])
        && name.bytes().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_keep_to_the_alphabet() {
        for kind in [NameKind::App, NameKind::Vm, NameKind::Key] {
            for good in ["a", "my-app", "x9", "9x", &"a".repeat(64)] {
                assert!(check_name(kind, good).is_ok(), "{kind} {good}");
            }
            for bad in [
                "",
                "-a",
                "_a",
                "A",
                "a/b",
                "a.b",
                "a b",
                "é",
                &"a".repeat(65),
            ] {
                assert!(check_name(kind, bad).is_err(), "{kind} {bad}");
            }
        }
        assert!(check_name(NameKind::Key, "fleet_1").is_ok());
        assert!(check_name(NameKind::App, "my_app").is_err());
        assert!(check_name(NameKind::Vm, "my_vm").is_err());
    }

    #[test]
    fn the_error_names_the_kind_and_the_name() {
        let err = check_name(NameKind::Vm, "Bad").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid vm name \"Bad\": expected lowercase"),
            "{err}"
        );
        let err = check_name(NameKind::App, "a/b").unwrap_err().to_string();
        assert!(err.starts_with("invalid app name \"a/b\""), "{err}");
        let err = check_name(NameKind::Key, "_k").unwrap_err().to_string();
        assert!(
            err.contains("'_', starting with a letter or digit"),
            "{err}"
        );
    }

    proptest! {
        /// A name that passes is a plain file name: no separator, no dot, no leading dash.
        #[test]
        fn accepted_names_are_plain_file_names(name in ".{0,70}") {
            for kind in [NameKind::App, NameKind::Vm, NameKind::Key] {
                if check_name(kind, &name).is_ok() {
                    prop_assert!(!name.is_empty() && name.len() <= 64);
                    prop_assert!(!name.contains(['/', '.', '\0']) && !name.starts_with('-'));
                }
            }
        }
    }
}
