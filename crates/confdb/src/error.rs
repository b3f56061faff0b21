//! The one error type of the crate; its messages reach users verbatim, so each names the
//! key, the view (or schema, file) and the reason on one line.

use std::fmt;
use std::path::PathBuf;

/// Request keys named in an error: rendered as ` "a", "b"` (with a leading space) or nothing,
/// so that `cannot set{keys} through ...` reads well with and without keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keys(pub Vec<String>);

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}\"{key}\"")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No rule of the view (with the needed access) matches the request.
    #[error("cannot {op}{keys} through {view}: no matching rule")]
    NoMatchingRule {
        op: &'static str,
        keys: Keys,
        view: String,
    },
    /// Rules match but the databag holds nothing there.
    #[error("cannot get{keys} through {view}: no data")]
    NoData { keys: Keys, view: String },
    /// Part of a written value is consumed by no rule.
    #[error("cannot set{keys} through {view}: value contains unused data: \"{path}\"")]
    UnusedData {
        keys: Keys,
        view: String,
        path: String,
    },
    /// The resulting databag breaks the storage schema.
    #[error("cannot {op}{keys} through {view}: {reason}")]
    Invalid {
        op: &'static str,
        keys: Keys,
        view: String,
        reason: String,
    },
    /// A request key or placeholder value is not `[a-z0-9-]` segments joined by dots.
    #[error("cannot {op} \"{key}\" through {view}: invalid key: {reason}")]
    InvalidKey {
        op: &'static str,
        key: String,
        view: String,
        reason: String,
    },
    #[error("invalid view name \"{0}\": expected ACCOUNT/SCHEMA/VIEW")]
    InvalidViewId(String),
    #[error("view {view} not found (schema {schema} has: {available})")]
    UnknownView {
        view: String,
        schema: String,
        available: String,
    },
    #[error("schema {0} not found")]
    UnknownSchema(String),
    /// A schema document that does not parse or fails a consistency check.
    #[error("schema {schema}: {reason}")]
    Schema { schema: String, reason: String },
    /// Signing, verification and trust failures.
    #[error("{0}")]
    Signature(String),
    #[error("key \"{name}\": {reason}")]
    Key { name: String, reason: String },
    #[error("trust: {0}")]
    Trust(String),
    #[error("revision {revision} of {schema} not found (see its history)")]
    NoRevision { schema: String, revision: u64 },
    /// A transaction was given a view of another schema.
    #[error("view {view} is not part of the transaction's schema {schema}")]
    WrongSchema { view: String, schema: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("database {path}: {message}")]
    Database { path: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}
