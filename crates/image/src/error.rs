//! The crate's error type: every variant names the object (path, reference, digest) that failed.

use std::path::PathBuf;

use crate::hostile::Hostile;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid image reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("invalid digest {value:?}: expected sha256:<64 hex digits>")]
    BadDigest { value: String },
    #[error("{what} {expected}: content hashes to {actual} (corrupted or tampered)")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{what}: {message}")]
    Json { what: String, message: String },
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("{reference}: no manifest for {os}/{arch} in the image index")]
    NoPlatform {
        reference: String,
        os: String,
        arch: String,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("layer {layer}: {entry}")]
    HostileLayer { layer: String, entry: Hostile },
    #[error("layer {layer}: {path}: {message}")]
    Unpack {
        layer: String,
        path: String,
        message: String,
    },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("image {reference:?} not found in the store")]
    NotFound { reference: String },
    #[error("image reference {reference:?} matches {count} images: use a longer digest prefix")]
    Ambiguous { reference: String, count: usize },
    #[error("{path}: not an OCI layout or docker-archive (no oci-layout nor manifest.json)")]
    UnknownArchive { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the failing path to an io error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|error| Error::Io {
            path: path.into(),
            error,
        })
    }
}

/// serde_json errors say where in the document the problem is; keep them on one line.
pub(crate) fn json_error(what: impl Into<String>, err: &serde_json::Error) -> Error {
    Error::Json {
        what: what.into(),
        message: err.to_string().replace('\n', " "),
    }
}
