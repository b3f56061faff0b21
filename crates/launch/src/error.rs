//! Why a launch could not start (the program's own failures are its exit status).

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
    #[error("refusing to run: node {} fails its seal check", node.display())]
    SealBroken {
        node: PathBuf,
        #[source]
        source: cairn_pkg::Error,
    },
    #[error("cannot run in {}", node.display())]
    Run {
        node: PathBuf,
        #[source]
        source: cairn_sandbox::Error,
    },
    #[error("cannot run app {name}")]
    RunApp {
        name: String,
        #[source]
        source: cairn_app::Error,
    },
    #[error(
        "app {app} plugs confdb views, but the daemon serves no socket for it at {} (start `cairn daemon`)",
        socket.display()
    )]
    NoAppSocket { app: String, socket: PathBuf },
    #[error("cannot find the cairn binary to export into the sandbox")]
    Exe(#[source] std::io::Error),
    #[error("cannot keep instance {what}: {reason}")]
    Keeper { what: String, reason: String },
}
