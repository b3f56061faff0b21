//! The vm engine: each call boots a micro-VM pulled with `cairn vm pull` (cairn-vm) whose
//! init is Cairn, and runs the target there with the caller's arguments, streams and status.

use std::ffi::OsString;

use super::{LaunchContext, invalid};
use crate::config::{AppConfig, Mode};
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::Apps;

/// Engine arguments the vm engine understands (`--run-arg --memory=512M`).
pub const RUN_ARGS: &[&str] = &["--memory=SIZE", "--cpus=N"];

/// What only the vm engine requires: a pulled vm, and nothing it cannot provide yet.
pub fn validate(name: &str, config: &AppConfig) -> Result<(), Error> {
    let Some(vm) = &config.vm else {
        return Err(invalid(
            name,
            "engine vm needs vm: NAME (see `cairn vm pull`); image, base, layers and node are not available for engine vm",
        ));
    };
    if config.target.as_deref() == Some(std::path::Path::new("/")) {
        return Err(invalid(name, "target / (the entrypoint) needs an image"));
    }
    if config.mode != Mode::Fresh {
        return Err(invalid(
            name,
            &format!(
                "mode {:?} is not available for engine vm (only fresh)",
                config.mode
            )
            .to_lowercase(),
        ));
    }
    if !config.include_tar.is_empty() || !config.include_path.is_empty() {
        return Err(invalid(
            name,
            "include-tar and include-path are not available for engine vm",
        ));
    }
    if !config.confdb_plug.is_empty() {
        return Err(invalid(name, "confdb-plug is not available for engine vm"));
    }
    if let Some(size) = &config.overlay_size {
        cairn_vm::parse_size(size).map_err(|e| invalid(name, &format!("overlay-size: {e}")))?;
    }
    resources(name, config)?;
    let cairn = cairn_config::Config::load()?;
    cairn_vm::Store::new(&cairn)
        .get(vm)
        .map_err(|e| invalid(name, &e.to_string()))?;
    Ok(())
}

/// Memory and CPUs from the run arguments.
fn resources(name: &str, config: &AppConfig) -> Result<(u64, u32), Error> {
    let mut memory = cairn_vm::host::DEFAULT_MEMORY;
    let mut cpus = 1;
    for arg in &config.run_args {
        if let Some(size) = arg.strip_prefix("--memory=") {
            memory = cairn_vm::parse_size(size)
                .map_err(|e| invalid(name, &format!("run-arg --memory: {e}")))?;
        } else if let Some(n) = arg.strip_prefix("--cpus=") {
            cpus = n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    invalid(
                        name,
                        &format!("run-arg --cpus: expected 1 to 64, got {n:?}"),
                    )
                })?;
        } else {
            return Err(invalid(
                name,
                &format!(
                    "run-arg {arg:?} is not understood by the vm engine (known: {})",
                    RUN_ARGS.join(", ")
                ),
            ));
        }
    }
    Ok((memory, cpus))
}

/// Boots the app's vm for one call with `args` passed exactly; returns the target's status.
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    _ctx: &LaunchContext,
) -> Result<i32, Error> {
    let vm = config
        .vm
        .as_deref()
        .ok_or_else(|| invalid(name, "vm is missing"))?;
    let target = config
        .target
        .as_deref()
        .ok_or_else(|| invalid(name, "target is missing"))?;
    let mut argv = vec![target.as_os_str().to_os_string()];
    argv.extend(args);
    let mut launch = cairn_vm::Launch::new(argv);
    for (k, v) in &config.env {
        launch.env.retain(|(key, _)| key.as_os_str() != k.as_str());
        launch.env.push((k.into(), v.into()));
    }
    if let Some(size) = &config.overlay_size {
        launch.overlay_size =
            cairn_vm::parse_size(size).map_err(|e| invalid(name, &e.to_string()))?;
    }
    (launch.memory, launch.cpus) = resources(name, config)?;
    let cairn = cairn_config::Config::load()?;
    let store = cairn_vm::Store::new(&cairn);
    let instance = Instance::create(&apps.instances.join(name))?;
    let status = cairn_vm::run(&store, vm, &launch, &instance.dir);
    instance.remove()?;
    status.map_err(|e| invalid(name, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_app() -> AppConfig {
        AppConfig {
            vm: Some("leap".into()),
            target: Some("/bin/sh".into()),
            engine: crate::config::Engine::Vm,
            ..Default::default()
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let reason = |c: &AppConfig| validate("a", c).unwrap_err().to_string();
        let mut c = vm_app();
        c.mode = Mode::Resume;
        assert!(
            reason(&c).contains("mode resume is not available for engine vm"),
            "{}",
            reason(&c)
        );
        let mut c = vm_app();
        c.include_tar = vec!["/x.tar".into()];
        assert!(reason(&c).contains("include-tar"));
        let mut c = vm_app();
        c.overlay_size = Some("lots".into());
        assert!(reason(&c).contains("overlay-size"));
        let mut c = vm_app();
        c.run_args = vec!["--share-net".into()];
        assert!(reason(&c).contains("--share-net"));
        let mut c = vm_app();
        c.vm = None;
        c.image = Some("i".into());
        assert!(reason(&c).contains("engine vm needs vm"));
    }

    #[test]
    fn resources_from_run_args() {
        let mut c = vm_app();
        c.run_args = vec!["--memory=512M".into(), "--cpus=2".into()];
        assert_eq!(resources("a", &c).unwrap(), (512 << 20, 2));
        c.run_args = vec!["--cpus=0".into()];
        assert!(resources("a", &c).is_err());
    }
}
