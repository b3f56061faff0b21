//! Errors of app configuration, registration and launch.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("app {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// App names become file and command names (and the daemon's socket names).
    #[error(transparent)]
    Name(#[from] cairn_config::NameError),
    #[error("no app named {name} (see `cairn app ls`)")]
    NotFound { name: String },
    #[error("no running instance of {what} (see `cairn app ps`)")]
    NotRunning { what: String },
    #[error(
        "invalid instance id {id:?} (CAIRN_INSTANCE, NAME@ID): expected lowercase letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters"
    )]
    InstanceId { id: String },
    #[error("instance {what} {reason}")]
    Instance { what: String, reason: String },
    #[error("app {name} is already registered (use --force to replace it)")]
    Exists { name: String },
    #[error("{} exists and is not this app's command (use --force to replace it)", path.display())]
    PathTaken { path: PathBuf },
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Image(#[from] cairn_image::Error),
    #[error(transparent)]
    Sandbox(#[from] cairn_sandbox::Error),
    #[error(transparent)]
    Config(#[from] cairn_config::Error),
    #[error(transparent)]
    Model(#[from] cairn_model::Error),
}

impl Error {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}
