//! The crate's error type: every variant names the node, package, file or line that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a node (no etc/cairn/node.yaml)")]
    NotANode { path: PathBuf },
    #[error("empty node family")]
    EmptyFamily,
    #[error("{path}:{line}: {message}")]
    Control {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("bad repository line {line:?}: {reason}")]
    BadRepoLine { line: String, reason: String },
    #[error("{node}: no repository matches {which:?} (see `cairn node repos`)")]
    NoSuchRepo { node: PathBuf, which: String },
    #[error("{node}: repository already present: {line}")]
    RepoExists { node: PathBuf, line: String },
    #[error("{node}: no repositories (add one with `cairn node add-repo`)")]
    NoRepos { node: PathBuf },
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("cannot start {tool}: {err}")]
    Spawn { tool: String, err: std::io::Error },
    #[error(
        "{package} is already installed in ancestor node {node} (use --force to install it here too)"
    )]
    AncestorHas { package: String, node: PathBuf },
    #[error("{package} is not installed in {node}")]
    NotInstalled { package: String, node: PathBuf },
    #[error("cannot remove {package}: needed by {dependents}")]
    HasDependents { package: String, dependents: String },
    #[error("the install would also remove {packages} (remove them explicitly first)")]
    WouldRemove { packages: String },
    #[error("{deb}: unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        deb: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{deb}: {message}")]
    BadDeb { deb: PathBuf, message: String },
    #[error("file conflict: /{path} of {package} is already owned by {owner} in {node}")]
    FileConflict {
        path: String,
        package: String,
        owner: String,
        node: PathBuf,
    },
    #[error("{path}: refusing to write through a symbolic link in the node")]
    SymlinkInPath { path: PathBuf },
    #[error("{package}: {script} failed ({status}); node rolled back")]
    ScriptFailed {
        package: String,
        script: String,
        status: String,
    },
    #[error("{package}: {script} uses unsupported interpreter {interpreter:?} (use --no-scripts)")]
    UnsupportedInterpreter {
        package: String,
        script: String,
        interpreter: String,
    },
    #[error(
        "{node}: an interrupted package transaction is pending (run any install/remove to repair)"
    )]
    Interrupted { node: PathBuf },
    #[error(transparent)]
    Keys(#[from] cairn_keys::Error),
    #[error("{path}: bad seal: {reason}")]
    BadSeal { path: PathBuf, reason: String },
    #[error("{node}: seal is signed by a key not in {dir}")]
    UntrustedSeal { node: PathBuf, dir: PathBuf },
    #[error("the node is sealed (verify: required); add --reseal KEY to {verb} and seal it again")]
    Sealed { verb: &'static str },
    #[error(
        "refusing to reseal: the node no longer matches its seal (/{path} {change}); restore it, or seal it as it is with `cairn node seal` first"
    )]
    ResealAltered { path: String, change: String },
    #[error("{node}: sealed node altered: /{path} {change}")]
    SealBroken {
        node: PathBuf,
        path: String,
        change: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |err| Error::Io { path, err }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
