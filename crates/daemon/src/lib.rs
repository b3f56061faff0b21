//! The Cairn device daemon and its client.
//!
//! The daemon ([`server`]) serves confdb (crate `cairn-confdb`) as an HTTP/JSON API on
//! Unix sockets: the admin socket `<run>/cairn.sock` for root, the daemon's user and group
//! `cairn`, and one restricted socket per app (`<run>/apps/<app>.sock`) that grants exactly
//! the views the app plugs. The daemon knows the caller by the socket that accepted the
//! connection. It runs custodian hooks (change-view, observe-view) and streams changes.
//! The [`client`] module is the blocking client used by `cairn conf` and `cairn run`.
//!
//! Routes (OpenAPI at `GET /v1/openapi.json`, or `cairn daemon --openapi`); errors are
//! `{"error": "<one line>", "kind": "..."}`:
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/views/A/S/V?key=K&with=P=V` | plugged apps, admin | read (`key` repeats) |
//! | `PUT /v1/views/A/S/V` `{"k": v, "gone": null}` | plugged apps, admin | one transaction |
//! | `GET /v1/views/A/S/V/watch?key=K` | plugged apps, admin | JSON lines per commit |
//! | `GET/POST /v1/schemas`, `GET/DELETE /v1/schemas/A/S` | admin | schemas |
//! | `GET /v1/schemas/A/S/history`, `POST .../rollback` | admin | revisions |
//! | `POST /v1/sessions`, `DELETE /v1/sessions/ID` | admin | `cairn run --confdb-plug` |
//!
//! It does not parse schemas, validate data or store anything itself (that is
//! `cairn-confdb`), does not build sandboxes (hooks of sandboxed apps run through
//! `cairn run`), and reads only the confdb-related keys of app configs.
// Tests may unwrap: a panic there is a failing test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod api;
pub mod apps;
pub mod client;
pub mod hooks;
pub mod logging;
pub mod memory;
pub mod peer;
pub mod server;

use std::path::PathBuf;

/// The library the daemon serves, re-exported so that the binary needs one dependency.
pub use cairn_confdb as confdb;
pub use client::{Client, Session, open_session};
pub use hyper::Method;
pub use server::{Daemon, DaemonOptions, run};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the daemon at {}: {reason} (start it with `cairn daemon`)", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    /// An error the daemon answered with; its message is already user-facing.
    #[error("{message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("unexpected answer from the daemon at {}: {reason}", socket.display())]
    BadResponse { socket: PathBuf, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another daemon is already listening on {}", socket.display())]
    AlreadyRunning { socket: PathBuf },
    #[error(transparent)]
    Confdb(#[from] cairn_confdb::Error),
    #[error("cannot prepare {}: {source}", path.display())]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
}
