//! Per-node Debian packages (placeholder while the crate is written).
mod control;
mod db;
mod deb;
mod error;
mod layout;
mod lock;
mod progress;
mod txn;
