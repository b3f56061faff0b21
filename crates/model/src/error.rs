//! Errors of reading and checking documents.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("app {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("no app named {name} (see `cairn app ls`)")]
    NotFound { name: String },
    #[error("invalid size {value:?}: expected a number with an optional K, M, G or T suffix")]
    Size { value: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
