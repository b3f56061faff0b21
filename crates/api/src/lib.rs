//! The contract between the Cairn daemon and its clients: the wire types ([`wire`]) and a
//! typed blocking client over a Unix socket ([`Client`]).
//!
//! The daemon (`cairn-daemon`) serves these types; `cairn conf`, `cairn run --confdb-plug`
//! and the launch layer call it through this crate, so that both sides share one definition
//! of every body. Deliberately small: serde types and a hyper client, no server code.
//!
//! The client is blocking on purpose: each [`Client`] owns a current-thread tokio runtime,
//! and dropping it leaves the process without extra threads, so that callers may fork
//! right after a call (`cairn run` forks its sandbox after opening a session).
// Tests may unwrap: a panic there is a failing test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod wire;

use std::path::PathBuf;

pub use client::{Client, Identity, SANDBOX_SOCKET, Session, choose_socket, open_session};
/// HTTP methods, for [`Client::call`].
pub use hyper::Method;
pub use wire::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the daemon at {}: {reason} (start it with `cairn daemon`)", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    /// An error the daemon answered with; its message is already user-facing.
    #[error("{message}")]
    Api {
        status: u16,
        kind: ErrorKind,
        message: String,
    },
    #[error("unexpected answer from the daemon at {}: {reason}", socket.display())]
    BadResponse { socket: PathBuf, reason: String },
    /// A name or argument the client refuses before asking (`ACCOUNT/SCHEMA/VIEW`, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// The daemon's error kind, if the daemon answered with an error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
