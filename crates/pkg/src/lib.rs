//! Debian packages inside Cairn nodes.
//!
//! Each node keeps its own repository list (`etc/cairn/sources.list`) and its own package
//! database in dpkg's format (`var/lib/dpkg`, readable with `dpkg --admindir`). Installing
//! into a node resolves with the real apt against a synthesized status (the ancestors'
//! packages, and the host's when asked, held as already installed), so only what is
//! missing lands in the node. Archives are unpacked by this crate (through `dpkg-deb`),
//! path by path, under a journaled transaction that a failure or a `kill -9` rolls back.
//! The crate also verifies nodes against package checksums and signs/checks seals.
//!
//! It does not: run maintainer scripts itself (they go through `cairn run` in the node's
//! sandbox, see [`Scripts`]), know how node families are discovered (callers pass the
//! family as paths, root first, leaf last), or handle rpm.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod apt;
mod control;
mod db;
mod deb;
mod error;
mod family;
mod install;
mod keys;
mod layout;
mod lock;
mod progress;
mod query;
mod remove;
mod repos;
mod scripts;
mod seal;
mod txn;
mod verify;

pub use error::{Error, Result};
pub use family::{Options, Reseal};
pub use install::{Action, Outcome, PackageChange, install, upgrade};
pub use keys::{KeyInfo, create_key, export_key, list_keys};
pub use progress::{Event, Phase, Progress};
pub use query::{InstalledPackage, SearchHit, packages, search};
pub use remove::remove;
pub use repos::{add_repo, remove_repo, repos};
pub use scripts::Scripts;
pub use seal::{SealSummary, check_seal, seal};
pub use verify::{VerifyReport, verify};
