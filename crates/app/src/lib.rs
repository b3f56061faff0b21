//! Registered apps: host commands that run a program inside an image or a node family.
//!
//! This crate reads and merges app configs (`<config>/apps/NAME.yaml` + `NAME.d/*.yaml`),
//! registers and removes apps (config, host command symlink, image pins), and launches
//! them through an engine ([`engine`]: native, podman, vm). It does not parse command lines
//! or launch node apps (the binary runs those exactly like `cairn run`).
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// App configuration files: the format is `cairn-model`'s.
pub use cairn_model::app as config;
pub mod engine;
mod error;
pub mod instance;
pub mod registry;

pub use config::{AppConfig, Engine, Hooks, Mode};
pub use engine::{LaunchContext, launch, validate};
pub use error::Error;
pub use registry::{AppEntry, Apps, default_app_path};
