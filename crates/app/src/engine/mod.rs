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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec_with(
        memory: Option<u64>,
        pids: Option<u64>,
        cpu: Option<(u64, u64)>,
    ) -> cairn_sandbox::SandboxSpec {
        let mut spec = cairn_sandbox::SandboxSpec::default();
        spec.cgroup.memory_max = memory;
        spec.cgroup.pids_max = pids;
        spec.cgroup.cpu_max = cpu;
        spec
    }

    #[test]
    fn context_adds_plug_variables_directory_and_parent() {
        let mut spec = spec_with(None, None, None);
        spec.env = vec![
            ("PATH".into(), "/bin".into()),
            ("A".into(), "family".into()),
        ];
        spec.cgroup.parent = Some("/own".into());
        let ctx = LaunchContext {
            cgroup_parent: Some("/configured".into()),
            confdb: Some(ConfdbPlug {
                socket: "/run/cairn/apps/a.sock".into(),
                exe: "/usr/bin/cairn".into(),
            }),
            env: vec![("A".into(), "call".into())],
            chdir: Some("/work".into()),
            ..Default::default()
        };
        apply_context(&mut spec, &ctx);
        assert!(spec.env.contains(&("A".into(), "call".into())));
        assert!(!spec.env.contains(&("A".into(), "family".into())));
        assert!(
            spec.env
                .contains(&("PATH".into(), "/bin:/run/cairn/bin".into()))
        );
        assert!(
            spec.env
                .contains(&("CAIRN_SOCKET".into(), "/run/cairn/cairn.sock".into()))
        );
        let binds: Vec<_> = spec
            .mounts
            .iter()
            .filter_map(|m| match m {
                cairn_sandbox::Mount::Bind { dest, .. } => Some(dest.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [
                std::path::PathBuf::from("/run/cairn/cairn.sock"),
                "/run/cairn/bin/cairn".into()
            ]
        );
        assert_eq!(spec.chdir.as_deref(), Some(std::path::Path::new("/work")));
        // A spec's own cgroup parent stands; the configured one fills only a gap.
        assert_eq!(
            spec.cgroup.parent.as_deref(),
            Some(std::path::Path::new("/own"))
        );
        let mut bare = spec_with(None, None, None);
        apply_context(&mut bare, &ctx);
        assert_eq!(
            bare.cgroup.parent.as_deref(),
            Some(std::path::Path::new("/configured"))
        );
    }

    proptest! {
        /// A caller's limits only narrow: every result is at most both sides (a missing
        /// side is no limit), and it is one of them.
        #[test]
        fn limits_only_narrow(
            own_mem in proptest::option::of(1u64..1 << 40),
            asked_mem in proptest::option::of(1u64..1 << 40),
            own_pids in proptest::option::of(1u64..100_000),
            asked_pids in proptest::option::of(1u64..100_000),
            own_cpu in proptest::option::of((1u64..1_000_000, 1_000u64..1_000_000)),
            asked_cpu in proptest::option::of((1u64..1_000_000, 1_000u64..1_000_000)),
        ) {
            let mut spec = spec_with(own_mem, own_pids, own_cpu);
            let ctx = LaunchContext {
                limits: Limits { memory_max: asked_mem, pids_max: asked_pids, cpu_max: asked_cpu },
                ..Default::default()
            };
            apply_context(&mut spec, &ctx);
            let narrowed = |got: Option<u64>, a: Option<u64>, b: Option<u64>| {
                got == a.or(b).map(|_| a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX)))
            };
            prop_assert!(narrowed(spec.cgroup.memory_max, own_mem, asked_mem));
            prop_assert!(narrowed(spec.cgroup.pids_max, own_pids, asked_pids));
            let share = |c: (u64, u64)| c.0 as f64 / c.1 as f64;
            match (spec.cgroup.cpu_max, own_cpu, asked_cpu) {
                (None, None, None) => {}
                (Some(got), own, asked) => {
                    prop_assert!(Some(got) == own || Some(got) == asked);
                    for side in [own, asked].into_iter().flatten() {
                        prop_assert!(share(got) <= share(side) + 1e-12);
                    }
                }
                (None, _, _) => prop_assert!(false, "a limit was lost"),
            }
        }
    }
}
