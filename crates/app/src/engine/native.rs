//! The native engine: Cairn's own sandbox. An image app's pinned layers become an overlay
//! root over an instance's upper directory, with the image's runtime config and the
//! caller's arguments.
//!
//! # Modes
//!
//! - `fresh`: each call creates an instance (named `PID-STARTTIME`, or `CAIRN_INSTANCE`'s
//!   ID, which one call at a time may use), runs the target in a new sandbox
//!   ([`cairn_sandbox::run`]) and removes the instance.
//! - `resume`: instance ID (`CAIRN_INSTANCE`, default `default`) is a kept sandbox
//!   ([`cairn_sandbox::keep`]) held by a detached keeper process (`cairn app keep`, its own
//!   session, stdio on /dev/null, not killed with any caller). Each call enters it
//!   ([`cairn_sandbox::enter`]): the same overlay root, so files written by one call are
//!   seen by the next, and the same pid, network, IPC and UTS namespaces. A call is the
//!   caller's own child process: arguments, stdin/stdout/stderr, exit status and signals
//!   are exactly those of a fresh call, and a `kill -9` of the caller takes its program
//!   with it (processes the program left in the background stay in the instance). The fast
//!   path reads `state.json`, checks the keeper's pid and start time, and enters: no lock,
//!   no extra process beyond the entry fork.
//! - `attach`: the instance's one long-running process is the target started with the
//!   first call's arguments; every call (the first included) attaches to it through the
//!   keeper's socket (see [`attach`]), and later calls' arguments are not used.
//!
//! The first call of a resume or attach instance takes the app's lock, removes what a
//! crashed instance left, starts the keeper and waits for its "ready" (the keeper writes
//! `state.json` first), so two concurrent first calls start one keeper. `cairn app stop
//! APP@ID` ends a kept instance (its running calls end with it) and removes it.
//! Node apps run like `cairn run` and have no instances: they only take mode fresh.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use cairn_sandbox::{Mount, SandboxSpec};

use super::{LaunchContext, invalid};
use crate::config::{AppConfig, Mode};
use crate::error::Error;
use crate::instance::{self, AppLock, DEFAULT_ID, Instance, State};
use crate::registry::{Apps, pin_owners};

pub mod attach;

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs one call of image app `name` with `args` (passed exactly) in the way its mode says
/// (see the module doc); returns the target's exit status.
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    if let Some(id) = &ctx.instance {
        instance::check_id(id)?;
    }
    if ctx.exec {
        return fresh(apps, name, config, args, ctx);
    }
    match config.mode {
        Mode::Fresh => fresh(apps, name, config, args, ctx),
        Mode::Resume => resume(apps, name, config, args, ctx),
        Mode::Attach => attach_call(apps, name, args, ctx),
    }
}

/// A fresh instance for this call; removed afterwards, whatever happened.
fn fresh(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    let app_dir = apps.instances.join(name);
    let instance = match &ctx.instance {
        Some(id) => Instance::create_named(&app_dir, name, id)?,
        None => Instance::create(&app_dir)?,
    };
    provision(config, &instance.dir)?;
    let spec = spec_in(apps, name, config, &instance.dir, args, ctx)?;
    let status = cairn_sandbox::run(&spec);
    instance.remove()?;
    Ok(status?)
}

/// The call enters the kept sandbox of instance ID, started first if needed.
fn resume(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    let id = ctx.instance.as_deref().unwrap_or(DEFAULT_ID);
    let dir = apps.instances.join(name).join(id);
    let state = match State::read(&dir) {
        Some(s) if s.mode == Mode::Resume && s.is_alive() => s,
        _ => ensure_kept(apps, name, id, Mode::Resume, &[])?,
    };
    let spec = spec_in(apps, name, config, &dir, args, ctx)?;
    match cairn_sandbox::enter(&state.kept(), &spec) {
        // Stopped between the check and the entry: start it again, once.
        Err(cairn_sandbox::Error::Gone { .. }) => {
            let state = ensure_kept(apps, name, id, Mode::Resume, &[])?;
            Ok(cairn_sandbox::enter(&state.kept(), &spec)?)
        }
        other => Ok(other?),
    }
}

/// The call attaches to instance ID's process, started first (with this call's arguments)
/// if needed.
fn attach_call(
    apps: &Apps,
    name: &str,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    let id = ctx.instance.as_deref().unwrap_or(DEFAULT_ID);
    let dir = apps.instances.join(name).join(id);
    let what = format!("{name}@{id}");
    // An instance ending meanwhile does not take the call: start a new one (bounded).
    for _ in 0..3 {
        match State::read(&dir) {
            Some(s) if s.mode == Mode::Attach && s.is_alive() => {}
            _ => {
                ensure_kept(apps, name, id, Mode::Attach, &args)?;
            }
        }
        if let Some(status) = attach::call(&dir, &what)? {
            return Ok(status);
        }
    }
    Err(instance_error(
        name,
        id,
        "cannot be attached (it keeps ending)",
    ))
}

/// Under the app's lock: the live kept instance `id`, or a new one (stale remains removed
/// first, then a keeper started with `args`, which writes the state before it says ready).
fn ensure_kept(
    apps: &Apps,
    name: &str,
    id: &str,
    mode: Mode,
    args: &[OsString],
) -> Result<State, Error> {
    let app_dir = apps.instances.join(name);
    let dir = app_dir.join(id);
    let _lock = AppLock::acquire(&app_dir)?;
    instance::sweep(&app_dir, None)?;
    if let Some(state) = State::read(&dir) {
        if state.mode != mode {
            return Err(instance::busy(name, id, &state));
        }
        return Ok(state);
    }
    let started = start_keeper(name, id, args);
    if let Err(e) = started {
        instance::remove_tree(&dir)?;
        return Err(e);
    }
    State::read(&dir).ok_or_else(|| instance_error(name, id, "has no state after its start"))
}

fn instance_error(name: &str, id: &str, reason: &str) -> Error {
    Error::Instance {
        what: format!("{name}@{id}"),
        reason: reason.to_string(),
    }
}

/// Starts `cairn app keep NAME ID -- ARGS` detached (new session, stdio on /dev/null but
/// stdout, a pipe on which it says "ready" or why it failed, then closes it).
fn start_keeper(name: &str, id: &str, args: &[OsString]) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("/proc/self/exe"), e))?;
    let mut cmd = cairn_model::Request::keep(name, id, args.to_vec()).command(&exe);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cairn_process::detach(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| Error::io(&exe, e))?;
    // One line: "ready" or why not (the keeper closes the pipe after it).
    let mut said = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out)
            .read_line(&mut said)
            .map_err(|e| Error::io(&exe, e))?;
    }
    match said.trim_end() {
        "ready" => Ok(()),
        "" => Err(instance_error(
            name,
            id,
            "could not be started (its keeper ended silently)",
        )),
        why => Err(instance_error(
            name,
            id,
            &format!("could not be started: {why}"),
        )),
    }
}

/// The keeper of kept instance `id` of app `name` (`cairn app keep`): creates the
/// instance, calls `ready` once it can be used (its state written), and holds it until it
/// is stopped (resume) or its process ends (attach); then removes it. Runs in a process of
/// its own, started by [`launch`].
pub fn keep(
    apps: &Apps,
    name: &str,
    id: &str,
    args: Vec<OsString>,
    ctx: &LaunchContext,
    ready: &mut dyn FnMut(),
) -> Result<i32, Error> {
    instance::check_id(id)?;
    let config = apps.load(name)?;
    super::validate(name, &config)?;
    let app_dir = apps.instances.join(name);
    let dir = app_dir.join(id);
    instance::make_layers(&dir)?;
    provision(&config, &dir)?;
    let spec = spec_in(apps, name, &config, &dir, args, ctx)?;
    match config.mode {
        Mode::Resume => keep_sandbox(&app_dir, &dir, &spec, ready),
        Mode::Attach => attach::serve(&app_dir, &dir, &spec, ready),
        Mode::Fresh => Err(invalid(name, "mode fresh keeps no instance")),
    }
}

/// Resume keeper: the kept sandbox, its state written once it is ready.
fn keep_sandbox(
    app_dir: &Path,
    dir: &Path,
    spec: &SandboxSpec,
    ready: &mut dyn FnMut(),
) -> Result<i32, Error> {
    let mut written: Option<State> = None;
    let mut failed: Option<Error> = None;
    let mut on_ready = |kept: &cairn_sandbox::Kept| {
        let mut state = State::new(Mode::Resume, kept.pid, kept.cgroup.clone());
        state.start_time = kept.start_time;
        match state.write(dir) {
            Ok(()) => {
                written = Some(state);
                ready();
            }
            Err(e) => {
                failed = Some(e);
                // SAFETY: signalling the sandbox's pid 1, our own child.
                unsafe { libc::kill(kept.pid, libc::SIGKILL) };
            }
        }
    };
    let result = cairn_sandbox::keep(spec, &mut on_ready);
    if let Some(state) = &written {
        let _lock = AppLock::acquire(app_dir)?;
        instance::remove_if_owned(dir, state)?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(result?)
}

/// The sandbox spec of one launch in instance directory `dir` (its `upper` and `work`),
/// with what the caller's context adds: plugs, variables, limits, the cgroup parent.
fn spec_in(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    dir: &Path,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<SandboxSpec, Error> {
    let store = apps.store()?;
    let mut layers: Vec<PathBuf> = Vec::new();
    let mut top = None;
    for (owner, _) in pin_owners(name, config) {
        let rootfs = store.pinned(&owner)?;
        layers.extend(rootfs.layers.iter().cloned());
        top = Some(rootfs);
    }
    let Some(image) = top else {
        return Err(Error::Invalid {
            name: name.to_string(),
            reason: "no image".into(),
        });
    };
    layers.reverse();
    let userxattr = image.opaque_xattr.starts_with("user.");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let runtime = &image.config;
    let target = config.target.as_deref().unwrap_or(Path::new("/"));
    let argv = if ctx.exec {
        args
    } else {
        argv(target, &runtime.entrypoint, &runtime.cmd, args)
    };
    if argv.is_empty() {
        return Err(Error::Invalid {
            name: name.to_string(),
            reason: "target / but the image has no entrypoint or cmd".into(),
        });
    }
    let mut spec = SandboxSpec {
        argv,
        env: env(&runtime.env, config),
        hostname: Some(name.to_string()),
        chdir: runtime
            .working_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        die_with_parent: true,
        ..Default::default()
    };
    spec.user = user(name, runtime.user.as_deref())?;
    // A root store wrote trusted.overlay.* xattrs, which overlayfs reads only outside a
    // user namespace; a rootless store used user.overlay.* (and must run in one anyway).
    spec.namespaces.user = userxattr || !root;
    spec.namespaces.net = !config.run_args.iter().any(|a| a == "--share-net");
    spec.mounts = vec![
        Mount::Overlay {
            lower: layers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            dest: "/".into(),
            userxattr,
        },
        Mount::Proc {
            dest: "/proc".into(),
        },
        Mount::Dev {
            dest: "/dev".into(),
        },
        Mount::Tmpfs {
            dest: "/tmp".into(),
            mode: 0o1777,
        },
    ];
    spec.mounts.extend(include_mounts(config, dir));
    super::apply_context(&mut spec, ctx);
    Ok(spec)
}

/// The include-path copies bound at their host paths, after the engine's own mounts (so
/// that one below /tmp is not hidden by its tmpfs) and each after the includes that hold
/// it.
fn include_mounts(config: &AppConfig, dir: &Path) -> Vec<Mount> {
    let mut paths: Vec<&PathBuf> = config.include_path.iter().collect();
    paths.sort_by_key(|p| p.components().count());
    paths
        .into_iter()
        .map(|host| Mount::Bind {
            source: include_copy(dir, host),
            dest: host.clone(),
            readonly: false,
        })
        .collect()
}

/// Where instance `dir` keeps its copy of include-path `host`.
fn include_copy(dir: &Path, host: &Path) -> PathBuf {
    dir.join("include")
        .join(host.strip_prefix("/").unwrap_or(host))
}

/// `target` with the caller's arguments; `/` means the image's entrypoint, followed by the
/// caller's arguments when there are any and by the image's cmd otherwise (as `docker run`).
pub fn argv(
    target: &Path,
    entrypoint: &[String],
    cmd: &[String],
    args: Vec<OsString>,
) -> Vec<OsString> {
    if target != Path::new("/") {
        let mut v = vec![target.as_os_str().to_os_string()];
        v.extend(args);
        return v;
    }
    let mut v: Vec<OsString> = entrypoint.iter().map(OsString::from).collect();
    if args.is_empty() {
        v.extend(cmd.iter().map(OsString::from));
    } else {
        v.extend(args);
    }
    v
}

/// The image's environment, then the app's (which wins); PATH defaults like a container's.
fn env(image_env: &[String], config: &AppConfig) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    };
    for entry in image_env {
        if let Some((k, v)) = entry.split_once('=') {
            set(k, v);
        }
    }
    for (k, v) in &config.env {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// The image's `user` (numeric `uid[:gid]` or `root`; names would need the image's
/// /etc/passwd, which is not read).
fn user(name: &str, user: Option<&str>) -> Result<cairn_sandbox::UserIds, Error> {
    let text = user.unwrap_or("").trim();
    if text.is_empty() || text == "root" || text == "0" {
        return Ok(cairn_sandbox::UserIds::default());
    }
    let (u, g) = text.split_once(':').unwrap_or((text, ""));
    let uid = u.parse::<u32>();
    let gid = if g.is_empty() {
        uid.clone()
    } else {
        g.parse::<u32>()
    };
    match (uid, gid) {
        (Ok(uid), Ok(gid)) => Ok(cairn_sandbox::UserIds { uid, gid }),
        _ => Err(Error::Invalid {
            name: name.to_string(),
            reason: format!("image user {text:?}: only numeric uid[:gid] is supported"),
        }),
    }
}

/// Unpacks the app's include-tar archives into instance `dir`'s upper directory and copies
/// its include-path trees beside it (bound by [`include_mounts`]: a copy in the upper
/// directory would be hidden by a mount over its place, such as the tmpfs on /tmp).
pub fn provision(config: &AppConfig, dir: &Path) -> Result<(), Error> {
    let upper = dir.join("upper");
    for tar_path in &config.include_tar {
        let file = std::fs::File::open(tar_path).map_err(|e| Error::io(tar_path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        archive.set_preserve_permissions(true);
        archive.unpack(&upper).map_err(|e| Error::io(tar_path, e))?;
    }
    for host in &config.include_path {
        copy_tree(host, &include_copy(dir, host), true)?;
    }
    Ok(())
}

/// Copies `from` to `to`. With `follow` (an include's own path), a symbolic link is copied
/// as what it points to, as podman's engine does: the copy is bound at the path, and a
/// bound link would expose its host target; links inside a tree stay links.
fn copy_tree(from: &Path, to: &Path, follow: bool) -> Result<(), Error> {
    let meta = if follow {
        std::fs::metadata(from)
    } else {
        std::fs::symlink_metadata(from)
    }
    .map_err(|e| Error::io(from, e))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if meta.is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io(from, e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| Error::io(to, e))
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        std::fs::set_permissions(to, meta.permissions()).map_err(|e| Error::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let entry = entry.map_err(|e| Error::io(from, e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), false)?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| Error::io(from, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv_keeps_arguments_exactly() {
        let args = os(&["", "%x", "@y", "--help", "a b"]);
        let v = argv(Path::new("/bin/t"), &[], &[], args.clone());
        assert_eq!(v[0], "/bin/t");
        assert_eq!(&v[1..], &args[..]);
        let ep = vec!["/ep".to_string()];
        let cmd = vec!["default".to_string()];
        assert_eq!(
            argv(Path::new("/"), &ep, &cmd, vec![]),
            os(&["/ep", "default"])
        );
        assert_eq!(
            argv(Path::new("/"), &ep, &cmd, os(&["x"])),
            os(&["/ep", "x"])
        );
    }

    #[test]
    fn app_env_beats_image_env_and_path_defaults() {
        let mut c = AppConfig::default();
        c.env.insert("A".into(), "app".into());
        let e = env(&["A=image".into(), "B=b".into()], &c);
        assert!(e.contains(&("A".into(), "app".into())));
        assert!(e.contains(&("B".into(), "b".into())));
        assert!(e.iter().any(|(k, _)| k == "PATH"));
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(user("a", Some("1:2")).unwrap().gid, 2);
        assert_eq!(user("a", Some("5")).unwrap().gid, 5);
        assert!(user("a", Some("nobody")).is_err());
    }
}
