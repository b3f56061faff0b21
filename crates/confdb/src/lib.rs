//! confdb: configuration shared between apps through typed views (after snapd's confdb).
//!
//! A signed schema document defines a storage tree (types and constraints) and views onto it
//! (rules mapping request keys to storage paths). This crate parses and checks schemas,
//! verifies their ed25519 signatures against trusted keys, maps reads and writes through
//! views, validates data, and keeps one databag per schema in SQLite with revisions.
//! It does not serve sockets, decide which app may use which view, or run custodian hooks:
//! that is the daemon's job (`cairn-daemon`), which drives a [`Transaction`].
//!
//! Surface used by the daemon and the CLI:
//!
//! - [`Confdb::open`]`(dir, TrustStore)`, `dir` = `<state>/confdb` (holds `confdb.db`).
//! - Schemas: [`Confdb::add_schema`] (signed bytes), [`Confdb::schemas`],
//!   [`Confdb::schema_text`], [`Confdb::remove_schema`] (removes data and history too).
//! - Reads: [`Confdb::get`]`(view, requests, with)`: no requests = the whole view as one
//!   tree; otherwise a JSON map keyed by request (the `-d` form). Reads come from memory.
//! - Writes: [`Confdb::begin`] → [`Transaction::view_data`] /
//!   [`Transaction::replace_view_data`] (custodian hooks) → [`Transaction::commit`];
//!   dropping the transaction aborts. Writers of one schema serialize on a per-schema lock
//!   held by the transaction; readers never wait and never see half a transaction.
//! - [`Confdb::history`], [`Confdb::rollback`] (a rollback is a new revision with an old
//!   snapshot); the newest [`store::HISTORY_LIMIT`] (100) revisions per schema are kept.
//! - [`Confdb::subscribe`] gives a [`CommitEvent`] per commit; [`Confdb::affected_views`]
//!   says which views show a change.
//! - [`keys`]: key files, trust store, signing (no daemon needed).
//!
//! Semantics (snapd's): a request matches a rule when one is a prefix of the other; writes
//! use only `write`/`read-write` rules and reads only `read`/`read-write` rules (a write
//! through a read-only rule is "no matching rule", as in snapd); data that no rule consumes
//! is refused; `null` unsets; unsetting the last field of a map removes the map.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod confdb;
pub mod data;
mod error;
pub mod keys;
pub mod path;
pub mod schema;
pub mod store;
pub mod types;
pub mod view;

pub use confdb::{CommitEvent, Confdb, SchemaInfo, Transaction, ViewId};
pub use error::{Error, Keys};
pub use keys::{PublicKey, TrustStore};
pub use schema::Schema;
pub use store::RevisionInfo;

/// Parses and checks a schema document (unsigned text, YAML or JSON); the fuzz target's entry.
pub fn parse_schema(text: &str) -> Result<Schema, Error> {
    schema::parse(text).map_err(|reason| Error::Schema {
        schema: "document".into(),
        reason,
    })
}
