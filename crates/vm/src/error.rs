//! Errors of the VM store, of launches, and of the guest init.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// VM names become directory names.
    #[error(transparent)]
    Name(#[from] cairn_config::NameError),
    #[error("no vm named {name} (see `cairn vm ls`)")]
    NotFound { name: String },
    #[error("vm {name} already exists (use --force to replace it)")]
    Exists { name: String },
    #[error("{}: not a kernel image ({reason})", path.display())]
    NotKernel { path: PathBuf, reason: String },
    #[error("{}: not a rootfs: {reason}", path.display())]
    NotRootfs { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{program} failed: {message}")]
    Tool { program: String, message: String },
    #[error(
        "engine vm needs qemu-system-x86_64 on PATH (install qemu-system-x86; Firecracker is not supported yet)"
    )]
    NoQemu,
    #[error("the guest failed: {message}")]
    Guest { message: String },
    #[error("the vm stopped before the target finished ({detail})")]
    Stopped { detail: String },
    #[error("channel {port}: {reason}")]
    Protocol { port: String, reason: String },
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Config(#[from] cairn_config::Error),
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
