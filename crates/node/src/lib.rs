//! Node trees: reading `node.yaml` files, finding a leaf's family, merging it, and turning
//! it into a [`cairn_sandbox::SandboxSpec`].
//!
//! A node is a directory with `etc/cairn/node.yaml` (and optionally `node-admin.yaml`);
//! its parent is the nearest ancestor directory that is a node. This crate validates the
//! files (unknown keys, enum values, variables, sticky restrictions, all with file:line),
//! merges the family with provenance, and creates, lists and removes nodes.
//!
//! It does not fork, mount or enter namespaces: that is `cairn-sandbox`'s job. The only
//! processes it starts are the host-side `exec` export and environ commands.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod caps;
mod error;
mod exec;
mod family;
mod format;
mod launch;
mod manage;
mod merge;
mod model;
mod templates;
mod vars;

pub use error::{Error, Origin};
pub use family::{Family, Node, check_node_yaml, load_family};
pub use launch::Launch;
pub use manage::{NodeInfo, create_node, list_nodes, remove_node};
pub use merge::{
    Merged, MergedCgroup, MergedConfig, MergedEnv, MergedExport, MergedShare, MergedUser, Valued,
};
pub use model::{EnvMode, ExportMode, Seccomp, Verify};
pub use templates::Template;
pub use vars::VarContext;
