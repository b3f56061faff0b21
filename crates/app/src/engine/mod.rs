//! Engines: what runs an app's target. Each engine validates the configs it accepts and
//! launches one call; [`launch`] picks the engine from the merged config.
//!
//! - [`native`]: Cairn's own sandbox (overlay of the pinned layers, or a node family run by
//!   the binary exactly like `cairn run`).
//! - [`podman`]: the same config translated into podman CLI calls.
//! - [`vm`]: a micro-VM whose init is Cairn itself.

use std::ffi::OsString;
use std::path::PathBuf;

use cairn_model::{ConfdbPlug, Limits};

use crate::config::{AppConfig, Engine};
use crate::error::Error;
use crate::registry::Apps;

pub mod native;
pub mod podman;
pub mod vm;

/// What a launch takes from its caller besides the app and its arguments (the launch
/// layer, `cairn-launch`, fills it in from a [`cairn_model::Request`]).
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    /// The cgroup (v1 or v2 path) new instances are created under (cairn.toml `[cgroup]`).
    pub cgroup_parent: Option<PathBuf>,
    /// `CAIRN_INSTANCE`: the named instance a resume/attach call uses.
    pub instance: Option<String>,
    /// The daemon socket of an app with confdb plugs, and the binary offered beside it.
    pub confdb: Option<ConfdbPlug>,
    /// `cairn app exec`: the arguments are a program to run instead of the target, in a
    /// fresh instance whatever the app's mode.
    pub exec: bool,
    /// Variables over the app's own.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox instead of the image's.
    pub chdir: Option<PathBuf>,
    /// Limits over the engine's own (the tighter wins).
    pub limits: Limits,
}

impl LaunchContext {
    /// The context of a launch from this process: `CAIRN_INSTANCE` from the environment.
    pub fn from_env(cgroup_parent: Option<PathBuf>) -> LaunchContext {
        LaunchContext {
            cgroup_parent,
            instance: std::env::var("CAIRN_INSTANCE")
                .ok()
                .filter(|s| !s.is_empty()),
            ..Default::default()
        }
    }
}

/// Checks an app before it is registered or launched: the config itself
/// ([`AppConfig::validate`], no I/O), then what the engine needs of this machine.
pub fn validate(name: &str, config: &AppConfig) -> Result<(), Error> {
    config.validate(name)?;
    match config.engine {
        Engine::Native | Engine::Podman => Ok(()),
        Engine::Vm => vm::check_available(name, config),
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

/// Applies what a launch context adds to a native sandbox spec (image apps here, node
/// apps in `cairn-launch`): the confdb socket and binary, the caller's variables, the
/// tighter of both limits, the cgroup parent when the spec names none.
pub fn apply_context(spec: &mut cairn_sandbox::SandboxSpec, ctx: &LaunchContext) {
    if let Some(plug) = &ctx.confdb {
        for bind in plug.binds() {
            spec.mounts.push(cairn_sandbox::Mount::Bind {
                source: bind.source,
                dest: bind.dest,
                readonly: bind.readonly,
            });
        }
        plug.apply_env(&mut spec.env);
    }
    for (k, v) in &ctx.env {
        spec.env.retain(|(key, _)| key.as_os_str() != k.as_str());
        spec.env.push((k.into(), v.into()));
    }
    if let Some(dir) = &ctx.chdir {
        spec.chdir = Some(dir.clone());
    }
    let limits = &mut spec.cgroup;
    let tighter = |own: Option<u64>, asked: Option<u64>| match (own, asked) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    limits.memory_max = tighter(limits.memory_max, ctx.limits.memory_max);
    limits.pids_max = tighter(limits.pids_max, ctx.limits.pids_max);
    limits.cpu_max = match (limits.cpu_max, ctx.limits.cpu_max) {
        // Compare shares of one CPU: quota/period.
        (Some(a), Some(b)) if (b.0 as u128) * (a.1 as u128) < (a.0 as u128) * (b.1 as u128) => {
            Some(b)
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    if limits.parent.is_none() {
        limits.parent = ctx.cgroup_parent.clone();
    }
}

pub(crate) fn invalid(name: &str, reason: &str) -> Error {
    Error::Invalid {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}
