//! The vm engine: each call boots a micro-VM pulled with `cairn vm pull` (cairn-vm) whose
//! init is Cairn, and runs the target there with the caller's arguments, streams and status.

use std::ffi::OsString;

use super::{LaunchContext, invalid};
use crate::config::AppConfig;
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::Apps;

/// What the vm engine needs of this machine: the app's VM pulled (`cairn vm pull`).
pub fn check_available(name: &str, config: &AppConfig) -> Result<(), Error> {
    let vm = config
        .vm
        .as_deref()
        .ok_or_else(|| invalid(name, "vm is missing"))?;
    let cairn = cairn_config::Config::load()?;
    cairn_vm::Store::new(&cairn)
        .get(vm)
        .map_err(|e| invalid(name, &e.to_string()))?;
    Ok(())
}

/// Boots the app's vm for one call with `args` passed exactly; returns the target's status.
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    let vm = config
        .vm
        .as_deref()
        .ok_or_else(|| invalid(name, "vm is missing"))?;
    let target = config
        .target
        .as_deref()
        .ok_or_else(|| invalid(name, "target is missing"))?;
    // `cairn app exec`: the arguments are the program. The guest's memory comes from the
    // app's run-args; a call's cgroup limits and working directory do not apply to a VM.
    let argv = if ctx.exec {
        args
    } else {
        let mut argv = vec![target.as_os_str().to_os_string()];
        argv.extend(args);
        argv
    };
    let mut launch = cairn_vm::Launch::new(argv);
    for (k, v) in config.env.iter().chain(ctx.env.iter().map(|(k, v)| (k, v))) {
        launch.env.retain(|(key, _)| key.as_os_str() != k.as_str());
        launch.env.push((k.into(), v.into()));
    }
    if let Some(size) = &config.overlay_size {
        launch.overlay_size =
            cairn_model::parse_size(size).map_err(|e| invalid(name, &e.to_string()))?;
    }
    (launch.memory, launch.cpus) = cairn_model::vm_resources(name, config)?;
    let cairn = cairn_config::Config::load()?;
    let store = cairn_vm::Store::new(&cairn);
    let instance = Instance::create(&apps.instances.join(name))?;
    let status = cairn_vm::run(&store, vm, &launch, &instance.dir);
    instance.remove()?;
    status.map_err(|e| invalid(name, &e.to_string()))
}
