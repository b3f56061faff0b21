//! Why a launch could not start (the program's own failures are its exit status).
//!
//! Each message holds its cause, and no variant hands the cause on as `source()`: the
//! project's one rule for error chains (ARCHITECTURE.md), so a printed chain names each
//! cause once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] cairn_config::Error),
    #[error(transparent)]
    Node(#[from] cairn_node::Error),
    #[error(transparent)]
    App(#[from] cairn_app::Error),
    #[error(transparent)]
    Daemon(#[from] cairn_api::Error),
    #[error(
        "refusing to run: node {node} has no seal, and {origin} says verify: required (seal it with `cairn node seal {node} --key K`)",
        node = node.display()
    )]
    Unsealed { node: PathBuf, origin: String },
    #[error("refusing to run: node {} fails its seal check: {err}", node.display())]
    SealBroken {
        node: PathBuf,
        err: cairn_pkg::Error,
    },
    #[error("cannot run in {}: {err}", node.display())]
    Run {
        node: PathBuf,
        err: cairn_sandbox::Error,
    },
    #[error("cannot run app {name}: {err}")]
    RunApp { name: String, err: cairn_app::Error },
    #[error(
        "app {app} plugs confdb views, but the daemon serves no socket for it at {} (start `cairn daemon`)",
        socket.display()
    )]
    NoAppSocket { app: String, socket: PathBuf },
    #[error("cannot find the cairn binary to export into the sandbox: {err}")]
    Exe { err: std::io::Error },
    #[error("cannot keep instance {what}: {reason}")]
    Keeper { what: String, reason: String },
}
