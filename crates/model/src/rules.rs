//! What each engine accepts of an app config, decided from the config alone.
//!
//! These are the checks `cairn app register` and every launch make before anything is
//! touched; what needs the machine (a pulled VM, an installed podman) is checked by the
//! engines themselves in `cairn-app`.

use std::path::Path;

use crate::app::{AppConfig, Engine, Mode};
use crate::error::Error;

/// Engine arguments the native engine understands.
pub const NATIVE_RUN_ARGS: &[&str] = &["--share-net"];

/// Engine arguments the vm engine understands (`--run-arg --memory=512M`).
pub const VM_RUN_ARGS: &[&str] = &["--memory=SIZE", "--cpus=N"];

/// A VM's memory when the app does not say (bytes).
pub const VM_DEFAULT_MEMORY: u64 = 256 << 20;

/// podman options an app's run-args may not hold: the launcher sets them itself, and
/// changing them would break the launch contract (a detached or non-interactive call, a
/// different entrypoint than the app's target, no signal proxying, a container that
/// outlives the call).
const PODMAN_RESERVED: &[&str] = &[
    "--detach",
    "--tty",
    "--interactive",
    "--attach",
    "--entrypoint",
    "--sig-proxy",
    "--name",
    "--rm",
    "--restart",
    "--pull",
    "--detach-keys",
    "--rmi",
];

/// Short options that are reserved (`-d`, `-t`, `-i`, `-a`) and short flags that take no
/// value (so a cluster such as `-Pd` goes on to the next letter).
const PODMAN_RESERVED_SHORT: &[char] = &['d', 't', 'i', 'a'];
const PODMAN_SHORT_FLAGS: &[char] = &['P', 'q'];

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Fresh => "fresh",
        Mode::Resume => "resume",
        Mode::Attach => "attach",
    }
}

/// Checks what the config's engine requires (after the engine-independent checks).
pub(crate) fn validate_engine(name: &str, config: &AppConfig) -> Result<(), Error> {
    match config.engine {
        Engine::Native => native(name, config),
        Engine::Podman => podman(name, config),
        Engine::Vm => vm(name, config),
    }
}

fn native(name: &str, config: &AppConfig) -> Result<(), Error> {
    if config.vm.is_some() || config.overlay_size.is_some() {
        return Err(Error::invalid(name, "vm and overlay-size need engine vm"));
    }
    if config.node.is_some() && config.mode != Mode::Fresh {
        return Err(Error::invalid(
            name,
            format!(
                "mode {} needs an image app (node apps run like `cairn run`, without instances)",
                mode_name(config.mode)
            ),
        ));
    }
    if let Some(bad) = config
        .run_args
        .iter()
        .find(|a| !NATIVE_RUN_ARGS.contains(&a.as_str()))
    {
        return Err(Error::invalid(
            name,
            format!(
                "run-arg {bad:?} is not understood by the native engine (known: {})",
                NATIVE_RUN_ARGS.join(", ")
            ),
        ));
    }
    Ok(())
}

fn podman(name: &str, config: &AppConfig) -> Result<(), Error> {
    if config.image.is_none() {
        return Err(Error::invalid(
            name,
            "engine podman needs an image (node apps run natively)",
        ));
    }
    if config.vm.is_some() || config.overlay_size.is_some() {
        return Err(Error::invalid(name, "vm and overlay-size need engine vm"));
    }
    if config.mode != Mode::Fresh {
        return Err(Error::invalid(
            name,
            format!(
                "mode {} is not available for engine podman (only fresh)",
                mode_name(config.mode)
            ),
        ));
    }
    for arg in &config.run_args {
        if let Some(option) = podman_reserved(arg) {
            return Err(Error::invalid(
                name,
                format!(
                    "run-arg {arg:?}: {option} is set by the podman engine itself and cannot be changed"
                ),
            ));
        }
    }
    for path in &config.include_path {
        if path.to_string_lossy().contains(',') {
            return Err(Error::invalid(
                name,
                format!(
                    "include-path {}: podman cannot mount a path holding a comma",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The reserved podman option `arg` sets, if any (`--detach`, `--detach=true`, `-d`,
/// `-itd`).
fn podman_reserved(arg: &str) -> Option<String> {
    if let Some(long) = arg.strip_prefix("--") {
        let option = format!("--{}", long.split('=').next().unwrap_or(long));
        return PODMAN_RESERVED.contains(&option.as_str()).then_some(option);
    }
    let short = arg.strip_prefix('-')?;
    for c in short.chars() {
        if PODMAN_RESERVED_SHORT.contains(&c) {
            return Some(format!("-{c}"));
        }
        if !PODMAN_SHORT_FLAGS.contains(&c) {
            // An option with a value: the rest of the cluster is that value.
            return None;
        }
    }
    None
}

fn vm(name: &str, config: &AppConfig) -> Result<(), Error> {
    if config.vm.is_none() {
        return Err(Error::invalid(
            name,
            "engine vm needs vm: NAME (see `cairn vm pull`); image, base, layers and node are not available for engine vm",
        ));
    }
    if config.target.as_deref() == Some(Path::new("/")) {
        return Err(Error::invalid(
            name,
            "target / (the entrypoint) needs an image",
        ));
    }
    if config.mode != Mode::Fresh {
        return Err(Error::invalid(
            name,
            format!(
                "mode {} is not available for engine vm (only fresh)",
                mode_name(config.mode)
            ),
        ));
    }
    if !config.include_tar.is_empty() || !config.include_path.is_empty() {
        return Err(Error::invalid(
            name,
            "include-tar and include-path are not available for engine vm",
        ));
    }
    if !config.confdb_plug.is_empty() {
        return Err(Error::invalid(
            name,
            "confdb-plug is not available for engine vm (a guest has no way to reach the daemon's socket)",
        ));
    }
    if let Some(size) = &config.overlay_size {
        crate::size::parse_size(size)
            .map_err(|e| Error::invalid(name, format!("overlay-size: {e}")))?;
    }
    vm_resources(name, config)?;
    Ok(())
}

/// A vm app's memory (bytes) and CPUs from its run arguments.
pub fn vm_resources(name: &str, config: &AppConfig) -> Result<(u64, u32), Error> {
    let mut memory = VM_DEFAULT_MEMORY;
    let mut cpus = 1;
    for arg in &config.run_args {
        if let Some(size) = arg.strip_prefix("--memory=") {
            memory = crate::size::parse_size(size)
                .map_err(|e| Error::invalid(name, format!("run-arg --memory: {e}")))?;
        } else if let Some(n) = arg.strip_prefix("--cpus=") {
            cpus = n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    Error::invalid(name, format!("run-arg --cpus: expected 1 to 64, got {n:?}"))
                })?;
        } else {
            return Err(Error::invalid(
                name,
                format!(
                    "run-arg {arg:?} is not understood by the vm engine (known: {})",
                    VM_RUN_ARGS.join(", ")
                ),
            ));
        }
    }
    Ok((memory, cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn podman_app(run_args: &[&str]) -> AppConfig {
        AppConfig {
            image: Some("i".into()),
            target: Some("/bin/t".into()),
            engine: Engine::Podman,
            run_args: run_args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn vm_app() -> AppConfig {
        AppConfig {
            vm: Some("leap".into()),
            target: Some("/bin/sh".into()),
            engine: Engine::Vm,
            ..Default::default()
        }
    }

    #[test]
    fn contract_breaking_podman_run_args_are_refused() {
        for bad in [
            "-d",
            "--detach",
            "--detach=true",
            "-it",
            "-Pd",
            "--tty",
            "--entrypoint=/x",
            "--name",
            "--sig-proxy=false",
        ] {
            let err = validate_engine("a", &podman_app(&[bad]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("app a: run-arg "), "{bad}: {err}");
        }
        for ok in [
            "--share-net",
            "-e",
            "-eDATA=1",
            "--ulimit=nofile=5:5",
            "--cap-add=NET_ADMIN",
            "-v",
        ] {
            validate_engine("a", &podman_app(&[ok])).unwrap();
        }
    }

    proptest::proptest! {
        /// Values (no leading dash) are never options; every spelling of a reserved long
        /// option is caught, whatever its value; short clusters holding -d after flags too.
        #[test]
        fn reserved_options_are_found_in_any_spelling(
            value in "[^-].{0,12}",
            option in proptest::sample::select(PODMAN_RESERVED),
            flags in "[Pq]{0,3}",
        ) {
            proptest::prop_assert_eq!(podman_reserved(&value), None);
            let with_value = format!("{option}={value}");
            let some = |s: &str| Some(s.to_string());
            proptest::prop_assert_eq!(podman_reserved(&with_value), some(option));
            proptest::prop_assert_eq!(podman_reserved(option), some(option));
            let cluster = format!("-{flags}d");
            proptest::prop_assert_eq!(podman_reserved(&cluster), some("-d"));
            let valued = format!("-e{value}");
            proptest::prop_assert_eq!(podman_reserved(&valued), None);
        }
    }

    #[test]
    fn podman_modes_other_than_fresh_are_refused_clearly() {
        let mut c = podman_app(&[]);
        c.mode = Mode::Resume;
        let err = validate_engine("a", &c).unwrap_err().to_string();
        assert_eq!(
            err,
            "app a: mode resume is not available for engine podman (only fresh)"
        );
        c.mode = Mode::Fresh;
        c.image = None;
        c.node = Some("/n".into());
        assert!(validate_engine("a", &c).is_err());
    }

    #[test]
    fn vm_refusals_name_the_reason() {
        let reason = |c: &AppConfig| validate_engine("a", c).unwrap_err().to_string();
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
        c.confdb_plug = vec!["a/b/c".into()];
        assert!(reason(&c).contains("confdb-plug is not available for engine vm"));
        let mut c = vm_app();
        c.vm = None;
        c.image = Some("i".into());
        assert!(reason(&c).contains("engine vm needs vm"));
    }

    #[test]
    fn vm_resources_from_run_args() {
        let mut c = vm_app();
        c.run_args = vec!["--memory=512M".into(), "--cpus=2".into()];
        assert_eq!(vm_resources("a", &c).unwrap(), (512 << 20, 2));
        c.run_args = vec!["--cpus=0".into()];
        assert!(vm_resources("a", &c).is_err());
    }
}
