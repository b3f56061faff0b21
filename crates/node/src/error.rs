//! The crate's error type: one line each, naming the file and line where it helps the fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// Where a value was written: a node file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: u64,
}

impl Origin {
    pub(crate) fn new(file: &Arc<Path>, line: u64) -> Origin {
        Origin {
            file: Arc::clone(file),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Origin", 2)?;
        st.serialize_field("file", &*self.file)?;
        st.serialize_field("line", &self.line)?;
        st.end()
    }
}

/// Everything that can go wrong while loading, merging, launching or managing nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: not a node (no etc/cairn/node.yaml)", path = path.display())]
    NotANode { path: PathBuf },
    #[error("{path}: {err}", path = path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// The file is not well-formed YAML, or does not have the node file's shape.
    #[error("{at}: {msg}")]
    Yaml { at: Origin, msg: String },
    /// A well-formed value that is not acceptable (bad enum value, bad number, ...).
    #[error("{at}: {msg}")]
    Invalid { at: Origin, msg: String },
    #[error("{at}: {msg}")]
    Variable { at: Origin, msg: String },
    #[error(
        "{at}: export {mount}: source {src} does not exist (create it, or add `optional: true`)",
        mount = mount.display(), src = src.display()
    )]
    MissingSource {
        at: Origin,
        mount: PathBuf,
        src: PathBuf,
    },
    /// A descendant tries to lift a restriction an ancestor set.
    #[error("{at}: {msg}")]
    Sticky { at: Origin, msg: String },
    #[error("{at}: alias {alias:?} is already used by the node {other} (aliases are unique within a family)", other = other.display())]
    DuplicateAlias {
        at: Origin,
        alias: String,
        other: PathBuf,
    },
    #[error("{at}: {entry}: command {command:?} {why}")]
    Exec {
        at: Origin,
        entry: String,
        command: String,
        why: String,
    },
    #[error("{path}: already exists", path = path.display())]
    AlreadyExists { path: PathBuf },
    #[error(
        "{path}: contains the node {child} (remove it first, or remove recursively)",
        path = path.display(), child = child.display()
    )]
    HasChildNodes { path: PathBuf, child: PathBuf },
    #[error("invalid alias {alias:?} (expected one or more of A-Z a-z 0-9 + _ . @ : -)")]
    BadAlias { alias: String },
    #[error(
        "{path}: alias {alias:?} is already used in this family by {other}",
        path = path.display(), other = other.display()
    )]
    AliasTaken {
        path: PathBuf,
        alias: String,
        other: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            err,
        }
    }

    pub(crate) fn invalid(at: Origin, msg: impl Into<String>) -> Error {
        Error::Invalid {
            at,
            msg: msg.into(),
        }
    }
}
