//! The Cairn device daemon.
//!
//! The daemon serves confdb (crate `cairn-confdb`) to the admin (root, the daemon's user
//! and group `cairn`) and to apps, each of which may use exactly the views it plugs. It
//! runs custodian hooks (change-view, observe-view) and streams changes. Three layers,
//! whose dependencies point one way (transport → service):
//!
//! - [`service`]: the daemon without transport: confdb operations, apps and sessions, the
//!   write pipeline with hooks, observers, watch streams, and the one authorization
//!   function over typed callers ([`service::Caller`]). Uses [`apps`] and [`hooks`].
//! - [`http`]: the HTTP/JSON translation (axum routes, one error answer, OpenAPI). Bodies
//!   are the wire types of crate `cairn-api`, which also holds the client.
//! - [`sockets`] and [`server`]: the admin socket `<run>/cairn.sock`, one socket per app
//!   (`<run>/apps/<app>.sock`) and per session, peer credentials ([`peer`]) → caller,
//!   start, reload, graceful shutdown, sd_notify and the watchdog.
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

pub mod apps;
pub mod hooks;
pub mod http;
pub mod logging;
pub mod memory;
pub mod peer;
pub mod server;
pub mod service;
pub mod sockets;

use std::path::PathBuf;

/// The library the daemon serves, re-exported so that the binary needs one dependency.
pub use cairn_confdb as confdb;
pub use server::{Daemon, DaemonOptions, run};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen on {}: {err}", path.display())]
    Listen { path: PathBuf, err: std::io::Error },
    #[error("another daemon is already listening on {}", socket.display())]
    AlreadyRunning { socket: PathBuf },
    #[error(transparent)]
    Confdb(#[from] cairn_confdb::Error),
    #[error("cannot prepare {}: {err}", path.display())]
    Prepare { path: PathBuf, err: std::io::Error },
}
