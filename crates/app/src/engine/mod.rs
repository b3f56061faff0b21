//! Engines: what runs an app's target. Each engine validates the configs it accepts and
//! launches one call; [`launch`] picks the engine from the merged config.
//!
//! - [`native`]: Cairn's own sandbox (overlay of the pinned layers, or a node family run by
//!   the binary exactly like `cairn run`).
//! - [`podman`]: the same config translated into podman CLI calls.
//! - [`vm`]: a micro-VM whose init is Cairn itself.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{AppConfig, Engine};
use crate::error::Error;
use crate::registry::Apps;

pub mod native;
pub mod podman;
pub mod vm;

/// What a launch takes from its caller besides the app and its arguments.
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    /// The cgroup (v1 or v2 path) new instances are created under (cairn.toml `[cgroup]`).
    pub cgroup_parent: Option<PathBuf>,
    /// `CAIRN_INSTANCE`: the named instance a resume/attach call uses.
    pub instance: Option<String>,
}

impl LaunchContext {
    /// The context of a launch from this process: `CAIRN_INSTANCE` from the environment.
    pub fn from_env(cgroup_parent: Option<PathBuf>) -> LaunchContext {
        LaunchContext {
            cgroup_parent,
            instance: std::env::var("CAIRN_INSTANCE")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

/// Checks what the config's engine requires (after the engine-independent checks).
pub fn validate(name: &str, config: &AppConfig) -> Result<(), Error> {
    match config.engine {
        Engine::Native => native::validate(name, config),
        Engine::Podman => podman::validate(name, config),
        Engine::Vm => vm::validate(name, config),
    }
}

/// Runs one call of image or vm app `name` with `args` passed exactly; returns the target's
/// exit status. Node apps are launched by the binary (they are `cairn run` calls).
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    match config.engine {
        Engine::Native => native::launch(apps, name, config, args, ctx),
        Engine::Podman => podman::launch(apps, name, config, args, ctx),
        Engine::Vm => vm::launch(apps, name, config, args, ctx),
    }
}

pub(crate) fn invalid(name: &str, reason: &str) -> Error {
    Error::Invalid {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}
