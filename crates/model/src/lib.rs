//! Cairn's documents as plain data: what an app config says ([`app`]), what a launch asks
//! for ([`launch`]), and the sizes users write ([`size`]).
//!
//! Everything here parses, merges and validates without touching an engine, an image
//! store or a sandbox, so that any part of Cairn (the daemon, and later the fleet control
//! plane) can read and check a document without linking the device stack. Loading app
//! files from a directory is the only I/O, and it is plain file reads.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
mod error;
pub mod launch;
pub mod plug;
mod rules;
pub mod size;

pub use app::{AppConfig, Engine, Hooks, Mode};
pub use error::Error;
pub use launch::{Limits, Request, Target};
pub use plug::ConfdbPlug;
pub use rules::{NATIVE_RUN_ARGS, VM_RUN_ARGS, vm_resources};
pub use size::parse_size;
