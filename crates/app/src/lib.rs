//! Registered apps: host commands that run a program inside an image or a node family.
//!
//! This crate reads and merges app configs (`<config>/apps/NAME.yaml` + `NAME.d/*.yaml`),
//! registers and removes apps (config, host command symlink, image pins), and launches
//! image apps with the native engine: the pinned layers as an overlayfs root over a fresh
//! per-instance upper directory. It does not parse command lines or launch node apps (the
//! binary runs those exactly like `cairn run`), and the podman and vm engines and the
//! resume and attach modes are not implemented (configs using them are refused).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
mod error;
pub mod instance;
pub mod launch;
pub mod registry;

pub use config::{AppConfig, Engine, Hooks, Mode};
pub use error::Error;
pub use launch::run_image_app;
pub use registry::{AppEntry, Apps, check_name, default_app_path};
