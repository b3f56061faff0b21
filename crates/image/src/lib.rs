//! Cairn's OCI image store: pull images from registries (OCI distribution API) and import
//! OCI layouts and docker-archives, keep every layer once by digest, unpacked once in
//! overlayfs form, and hand launchers the ordered layer directories and runtime config of
//! an image ([`ImageStore::rootfs`]).
//!
//! Pulls authenticate with the credentials [`auth`] finds (Cairn's `cairn image login` file,
//! podman's and docker's), by HTTP Basic or Bearer token as the registry asks, and trust
//! per-registry private CAs. It does not mount or run anything (app launches do) and does
//! not push.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
mod digest;
mod error;
pub mod export;
mod fsutil;
pub mod hostile;
mod import;
mod index;
pub mod manifest;
mod progress;
mod pull;
mod store;
pub mod tarstream;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use import::Imported;
pub use index::{ImageRecord, Pin};
pub use manifest::RuntimeConfig;
pub use progress::{Progress, human_bytes};
pub use pull::{PullOptions, PullReport};
pub use store::{GcReport, ImageDetails, ImageStore, ImageSummary, Rootfs, normalize_reference};
