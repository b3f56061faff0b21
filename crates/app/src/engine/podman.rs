//! The podman engine: the same app config run through the podman CLI, for hosts that
//! standardise on podman.
//!
//! The app's image in podman is exactly the filesystem the native engine mounts (base +
//! layers + image, exported from Cairn's store: the `image` module), plus its include-tar
//! files as layers on top; include-path directories are overlay volumes at their host paths
//! and include-path files per-call copies (writable, changes dropped, as natively).
//! Each call is one `podman run --rm` whose arguments keep the launch contract: the
//! caller's arguments after the image name (podman parses no option there), `-i` always
//! and `-t` only with a terminal, no detach keys, `--init` when catatonit is installed (so
//! that the target is not pid 1 and signals behave as natively), no network unless the app
//! asks for it, the app's name as hostname.
//!
//! Host limits are handled up front (the `host` module): runc instead of crun on v1/hybrid
//! cgroups, ulimits no higher than this process may grant. What podman still reports is
//! turned into one clear error (the `relay` module). The launch context's cgroup parent is
//! not applied: podman places containers in its own cgroups.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{LaunchContext, invalid};
use crate::config::AppConfig;
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::Apps;

mod host;
mod image;
mod process;
mod relay;

pub use image::forget;

/// The run-arg that gives the app the host's default podman network (as natively).
const SHARE_NET: &str = "--share-net";

/// Runs one call of image app `name` with `args` passed exactly; returns the target's exit
/// status.
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    config.validate(name)?;
    let podman =
        host::find_podman().ok_or_else(|| engine_error(name, "podman is not installed"))?;
    // podman's own report of a missing bind source is long and names no app.
    for path in &config.include_path {
        std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    }
    let parts = image::parts(apps, name, config)?;
    let reference = image::reference(name, &parts, &config.include_tar)?;
    // The container's files are podman's: the instance holds only copies of include-path
    // files, and makes the call visible to `cairn app ps`, `app stop` (SIGTERM to this
    // launcher, passed on) and `app rm`.
    let instance = Instance::create(&apps.instances.join(name))?;
    let copies = copy_include_files(config, &instance)?;
    let image_env = parts
        .last()
        .map(|p| p.config.env.as_slice())
        .unwrap_or_default();
    let call = Call {
        args,
        tty: host::caller_has_tty(),
        copies: &copies,
        ctx,
        image_env,
    };
    let argv = run_argv(name, config, &reference, call);
    let status = run_loaded(apps, name, config, &podman, &parts, &reference, &argv);
    instance.remove()?;
    status
}

/// Copies the include-path entries that are not directories into the instance: bound
/// read-write from there, each call gets its own copy, as natively (directories become
/// overlay volumes instead). Returns (host path, copy) pairs.
fn copy_include_files(
    config: &AppConfig,
    instance: &Instance,
) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
    let mut copies = Vec::new();
    for path in &config.include_path {
        if path.is_dir() {
            continue;
        }
        let rel = path.strip_prefix("/").unwrap_or(path);
        let copy = instance.dir.join("include").join(rel);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::copy(path, &copy).map_err(|e| Error::io(path, e))?;
        copies.push((path.clone(), copy));
    }
    Ok(copies)
}

/// Loads app `name`'s image into podman now unless podman already has it (`cairn app
/// register`, so that the first launch does not pay for it). Returns whether it loaded.
pub fn prepare(apps: &Apps, name: &str, config: &AppConfig) -> Result<bool, Error> {
    let podman =
        host::find_podman().ok_or_else(|| engine_error(name, "podman is not installed"))?;
    let parts = image::parts(apps, name, config)?;
    let reference = image::reference(name, &parts, &config.include_tar)?;
    if image::has(&podman, name, &reference)? {
        return Ok(false);
    }
    image::load(&podman, apps, name, &parts, &config.include_tar, &reference)?;
    Ok(true)
}

/// Runs the call, loading the image first when podman does not have it.
fn run_loaded(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    podman: &Path,
    parts: &[cairn_image::Rootfs],
    reference: &str,
    argv: &[OsString],
) -> Result<i32, Error> {
    let mut loaded = false;
    loop {
        let ended = process::run(podman, argv)
            .map_err(|e| engine_error(name, &format!("cannot run podman: {e}")))?;
        // podman's own failures end with 125-127; its init's (a target it cannot start)
        // with 1.
        let failure = match ended.code {
            1 | 125..=127 => relay::classify(&ended.held),
            _ => None,
        };
        match failure {
            Some(relay::Failure::ImageMissing) if !loaded => {
                image::load(podman, apps, name, parts, &config.include_tar, reference)?;
                loaded = true;
            }
            Some(failure) => return Err(explain(name, config, failure, &ended.held)),
            None => {
                process::release(&ended.held);
                return Ok(ended.code);
            }
        }
    }
}

/// One error line for a podman failure: the cause and the fix.
fn explain(name: &str, config: &AppConfig, failure: relay::Failure, held: &[u8]) -> Error {
    let reason = match failure {
        relay::Failure::HybridCgroups => "crun (podman's runtime) does not support this host's \
            hybrid cgroups: install runc (Cairn then uses it) or pass --run-arg=--runtime=runc"
            .to_string(),
        relay::Failure::Rlimit => "the container's ulimits are above what this process may \
            grant (raising them needs CAP_SYS_RESOURCE): lower them with \
            --run-arg=--ulimit=nofile=N:N and --run-arg=--ulimit=nproc=N:N"
            .to_string(),
        relay::Failure::TargetMissing => match config.target.as_deref() {
            Some(t) if t != Path::new("/") => format!("target {} is not in the image", t.display()),
            _ => "the image's entrypoint is not in the image".to_string(),
        },
        relay::Failure::ImageMissing => format!(
            "the image is still missing from podman's storage after loading it: {}",
            image::last_line(held)
        ),
    };
    engine_error(name, &reason)
}

/// `app NAME: engine podman: REASON`.
pub(crate) fn engine_error(name: &str, reason: &str) -> Error {
    invalid(name, &format!("engine podman: {reason}"))
}

/// The full `podman run` command line of one call.
/// One call's share of the `podman run` arguments.
struct Call<'a> {
    args: Vec<OsString>,
    tty: bool,
    /// Per-call copies of include-path files: (host path, copy).
    copies: &'a [(PathBuf, PathBuf)],
    ctx: &'a LaunchContext,
    /// The image's `KEY=VALUE` environment (for the PATH a plug extends).
    image_env: &'a [String],
}

fn run_argv(name: &str, config: &AppConfig, reference: &str, call: Call<'_>) -> Vec<OsString> {
    let Call {
        args,
        tty,
        copies,
        ctx,
        image_env,
    } = call;
    let user = UserArgs::of(&config.run_args);
    let mut argv: Vec<OsString> = ["run", "--rm", "-i", "--pull=never"]
        .into_iter()
        .map(OsString::from)
        .collect();
    let mut push = |s: String| argv.push(s.into());
    // Without an init the target would be pid 1, which ignores SIGTERM and SIGINT unless
    // it handles them: with catatonit missing, that is the best podman can do.
    if host::has_init() {
        push("--init".into());
    }
    if tty {
        push("-t".into());
        push("--detach-keys=".into());
    }
    if !user.runtime
        && let Some(runtime) = host::runtime()
    {
        push(format!("--runtime={}", runtime.display()));
    }
    for ulimit in host::ulimits(&user.ulimits) {
        push(ulimit);
    }
    if !user.network && !user.share_net {
        push("--network=none".into());
    }
    if !user.hostname {
        push(format!("--hostname={name}"));
    }
    push(format!("--label=cairn.app={name}"));
    // The log driver would keep a copy of everything the target writes.
    push("--log-driver=none".into());
    for (k, v) in config.env.iter().chain(ctx.env.iter().map(|(k, v)| (k, v))) {
        push(format!("--env={k}={v}"));
    }
    if let Some(plug) = &ctx.confdb {
        // The same socket and binary as natively (cairn_model::plug), as bind mounts.
        for bind in plug.binds() {
            let ro = if bind.readonly { ",readonly" } else { "" };
            push(format!(
                "--mount=type=bind,source={},destination={}{ro}",
                bind.source.display(),
                bind.dest.display()
            ));
        }
        // The PATH the target would get (the call's, the app's, the image's, the
        // default), with the binary's directory at its end.
        let path = ctx
            .env
            .iter()
            .map(|(k, v)| (k, v))
            .chain(&config.env)
            .find(|(k, _)| k.as_str() == "PATH")
            .map(|(_, v)| v.as_str())
            .or_else(|| image_env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or(super::native::DEFAULT_PATH);
        let path = cairn_model::plug::with_bin_dir(Some(std::ffi::OsStr::new(path)));
        push(format!(
            "--env=CAIRN_SOCKET={}",
            cairn_model::plug::SANDBOX_SOCKET
        ));
        push(format!("--env=PATH={}", path.to_string_lossy()));
    }
    if let Some(dir) = &ctx.chdir {
        push(format!("--workdir={}", dir.display()));
    }
    if let Some(bytes) = ctx.limits.memory_max {
        push(format!("--memory={bytes}b"));
    }
    if let Some(pids) = ctx.limits.pids_max {
        push(format!("--pids-limit={pids}"));
    }
    if let Some((quota, period)) = ctx.limits.cpu_max {
        push(format!("--cpu-quota={quota}"));
        push(format!("--cpu-period={period}"));
    }
    for path in &config.include_path {
        let p = path.display();
        // A directory becomes an overlay volume: writable inside, changes dropped with the
        // container, as the native engine's per-instance copy (`-v` cannot name a path
        // holding ':': such a directory is bound read-only). A file is this call's copy.
        if let Some((_, copy)) = copies.iter().find(|(host, _)| host == path) {
            let c = copy.display();
            push(format!("--mount=type=bind,source={c},destination={p}"));
        } else if !path.to_string_lossy().contains(':') {
            push(format!("--volume={p}:{p}:O"));
        } else {
            push(format!(
                "--mount=type=bind,source={p},destination={p},readonly"
            ));
        }
    }
    let mut args = args.into_iter();
    let entrypoint = if ctx.exec {
        // `cairn app exec`: the program replaces the target (the rest are its arguments).
        args.next().map(PathBuf::from)
    } else {
        config
            .target
            .clone()
            .filter(|t| t.as_path() != Path::new("/"))
    };
    if let Some(target) = entrypoint {
        // JSON form: podman reads `--entrypoint` as a JSON array when it looks like one, so
        // any path (even one starting with '[') is taken as it is.
        let json = serde_json::to_string(&[target.to_string_lossy()]).unwrap_or_default();
        push(format!("--entrypoint={json}"));
    }
    argv.extend(
        config
            .run_args
            .iter()
            .filter(|a| *a != SHARE_NET)
            .map(OsString::from),
    );
    argv.push(reference.into());
    argv.extend(args);
    argv
}

/// What the app's run-args already decide, so the launcher does not set it twice.
#[derive(Debug, Default)]
struct UserArgs {
    runtime: bool,
    network: bool,
    share_net: bool,
    hostname: bool,
    /// Resources given `--ulimit` values.
    ulimits: Vec<String>,
}

impl UserArgs {
    fn of(run_args: &[String]) -> UserArgs {
        let mut user = UserArgs::default();
        let mut args = run_args.iter().peekable();
        while let Some(arg) = args.next() {
            let (option, inline) = match arg.split_once('=') {
                Some((o, v)) => (o, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            match option {
                "--runtime" => user.runtime = true,
                "--network" | "--net" => user.network = true,
                "--hostname" | "-h" => user.hostname = true,
                SHARE_NET => user.share_net = true,
                "--ulimit" => {
                    let value = inline.or_else(|| args.peek().map(|v| v.to_string()));
                    if let Some(resource) = value.as_deref().and_then(|v| v.split('=').next()) {
                        user.ulimits.push(resource.to_string());
                    }
                }
                _ => {}
            }
        }
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: Vec<OsString>, tty: bool) -> Call<'static> {
        static CTX: std::sync::LazyLock<LaunchContext> = std::sync::LazyLock::new(Default::default);
        Call {
            args,
            tty,
            copies: &[],
            ctx: &CTX,
            image_env: &[],
        }
    }

    fn app(run_args: &[&str]) -> AppConfig {
        AppConfig {
            image: Some("i".into()),
            target: Some("/bin/t".into()),
            engine: crate::config::Engine::Podman,
            run_args: run_args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn arguments_follow_the_image_exactly() {
        let mut c = app(&["--share-net", "--ulimit", "nproc=10:10"]);
        c.env.insert("K".into(), "v w".into());
        let args: Vec<OsString> = ["", "%x", "@y", "--help", "a b"].map(OsString::from).into();
        let argv = run_argv(
            "a",
            &c,
            "localhost/cairn-app/a:1",
            call(args.clone(), false),
        );
        let at = argv
            .iter()
            .position(|a| a == "localhost/cairn-app/a:1")
            .unwrap();
        assert_eq!(&argv[at + 1..], &args[..]);
        let before: Vec<String> = argv[..at]
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert!(
            before.contains(&"--entrypoint=[\"/bin/t\"]".to_string()),
            "{before:?}"
        );
        assert!(before.contains(&"--env=K=v w".to_string()));
        assert!(before.contains(&"--hostname=a".to_string()));
        assert!(
            !before
                .iter()
                .any(|a| a == "--network=none" || a == "--share-net")
        );
        assert!(
            !before.iter().any(|a| a.starts_with("--ulimit=nproc=")),
            "{before:?}"
        );
        assert!(!before.contains(&"-t".to_string()));
        let tty = run_argv("a", &app(&[]), "r", call(Vec::new(), true));
        assert!(tty.contains(&OsString::from("-t")));
        assert!(tty.contains(&OsString::from("--network=none")));
    }

    #[test]
    fn run_args_replace_the_launchers_defaults() {
        let c = app(&[
            "--network=host",
            "--runtime",
            "crun",
            "-h",
            "box",
            "--ulimit=nofile=5:5",
        ]);
        let argv: Vec<String> = run_argv("a", &c, "r", call(Vec::new(), false))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // The app's run-args come last before the image, as given.
        let theirs = argv.len() - 1 - c.run_args.len();
        assert_eq!(argv[theirs..argv.len() - 1], c.run_args[..]);
        let ours = &argv[..theirs];
        for option in [
            "--network=",
            "--runtime=",
            "--hostname=",
            "--ulimit=nofile=",
        ] {
            assert!(
                !ours.iter().any(|a| a.starts_with(option)),
                "{option} in {ours:?}"
            );
        }
        let user = UserArgs::of(&c.run_args);
        assert!(user.network && user.runtime && user.hostname && !user.share_net);
        assert_eq!(user.ulimits, ["nofile"]);
    }

    #[test]
    fn entrypoint_target_keeps_the_image_entrypoint() {
        let mut c = app(&[]);
        c.target = Some("/".into());
        let argv = run_argv("a", &c, "r", call(vec!["x".into()], false));
        assert!(
            !argv
                .iter()
                .any(|a| a.to_string_lossy().starts_with("--entrypoint"))
        );
        assert_eq!(
            argv[argv.len() - 2..],
            [OsString::from("r"), OsString::from("x")]
        );
    }
}
