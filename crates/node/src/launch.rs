//! Turning a loaded family into a [`SandboxSpec`]: run exec entries, check export sources,
//! build the mount list and the program's environment.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use cairn_sandbox::{CgroupLimits, Mount, Namespaces, SandboxSpec, SeccompPolicy, UserIds};

use crate::error::{Error, Origin};
use crate::exec;
use crate::family::Family;
use crate::merge::{Merged, MergedEnv, MergedExport};
use crate::model::{EnvMode, ExportMode, Seccomp};

/// What the caller adds to the family's configuration for one launch.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Program and arguments, passed through exactly.
    pub argv: Vec<OsString>,
    /// `--env K=V`: beat every node setting.
    pub env_overrides: Vec<(String, String)>,
    /// `--chdir DIR`: beats the merged `chdir`.
    pub chdir: Option<PathBuf>,
    /// The caller's environment, for `inherit_env` and `inherit` entries.
    pub caller_env: Vec<(OsString, OsString)>,
}

impl Launch {
    /// A launch of `argv` from the current process's environment.
    pub fn new(argv: Vec<OsString>) -> Launch {
        Launch {
            argv,
            caller_env: std::env::vars_os().collect(),
            ..Launch::default()
        }
    }
}

/// Mode of tmpfs and anonymous exports: writable by anyone, like /tmp.
const TMPFS_MODE: u32 = 0o1777;

/// Output of an exec entry, by merged index.
enum Pending {
    Export(usize),
    Env(usize),
}

/// Exec outputs by merged index: `None` for entries that are not exec (or optional ones
/// that failed).
struct ExecOutputs {
    exports: Vec<Option<Vec<u8>>>,
    environ: Vec<Option<Vec<u8>>>,
}

impl Family {
    /// Everything [`Family::to_spec`] validates, without running exec commands: export
    /// sources exist (unless optional), the seccomp profile exists, and the mounts fit the
    /// namespaces.
    pub fn check(&self) -> Result<(), Error> {
        let merged = self.merged()?;
        for e in &merged.exports {
            if e.mode.is_bind() {
                source_exists(e)?;
            }
        }
        check_seccomp(&merged)?;
        check_namespaces(&merged)
    }

    /// The sandbox description of one launch. Runs the exec exports and environ commands
    /// (concurrently, 5 s limit), so it is not free: call it once per launch.
    pub fn to_spec(&self, launch: &Launch) -> Result<SandboxSpec, Error> {
        self.spec_from(&self.merged()?, launch)
    }

    /// [`Family::to_spec`] from an already merged family, for callers that also read the
    /// merged configuration (a launch merges once).
    pub fn spec_from(&self, merged: &Merged, launch: &Launch) -> Result<SandboxSpec, Error> {
        check_seccomp(merged)?;
        check_namespaces(merged)?;
        let outputs = run_exec_entries(merged)?;
        let mut mounts = Vec::with_capacity(merged.exports.len());
        for (e, out) in merged.exports.iter().zip(outputs.exports) {
            if let Some(m) = mount_of(e, out)? {
                mounts.push(m);
            }
        }
        // Parents before children; stable, so equal depths keep the family's order.
        mounts.sort_by_key(|m| depth(dest_of(m)));
        let env = build_env(merged, launch, outputs.environ)?;
        let c = &merged.config;
        let s = &c.share;
        Ok(SandboxSpec {
            argv: launch.argv.clone(),
            env,
            namespaces: Namespaces {
                user: !s.user.value,
                pid: !s.pid.value,
                net: !s.net.value,
                ipc: !s.ipc.value,
                uts: !s.uts.value,
                cgroup: !s.cgroup.value,
                time: !s.time.value,
            },
            user: UserIds {
                uid: c.user.uid.value,
                gid: c.user.gid.value,
            },
            hostname: Some(c.hostname.value.clone()),
            mounts,
            chdir: Some(
                launch
                    .chdir
                    .clone()
                    .unwrap_or_else(|| c.chdir.value.clone()),
            ),
            umask: Some(c.umask.value),
            die_with_parent: c.die_with_parent.value,
            new_session: c.new_session.value,
            capabilities: self.caps.iter().map(|(cap, _)| *cap).collect(),
            seccomp: match &c.seccomp.value {
                Seccomp::Default => SeccompPolicy::Default,
                Seccomp::Unconfined => SeccompPolicy::Unconfined,
                Seccomp::Profile(p) => SeccompPolicy::Profile(p.clone()),
            },
            cgroup: CgroupLimits {
                memory_max: c.cgroup.memory_max.value,
                pids_max: c.cgroup.pids_max.value,
                cpu_max: c.cgroup.cpu_max.value,
                parent: None,
            },
        })
    }
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

fn dest_of(m: &Mount) -> &Path {
    match m {
        Mount::Bind { dest, .. }
        | Mount::Tmpfs { dest, .. }
        | Mount::Proc { dest }
        | Mount::Dev { dest }
        | Mount::Mqueue { dest }
        | Mount::Symlink { dest, .. }
        | Mount::File { dest, .. }
        | Mount::Dir { dest, .. }
        | Mount::Overlay { dest, .. } => dest,
    }
}

fn source_exists(e: &MergedExport) -> Result<bool, Error> {
    let Some(src) = &e.path else { return Ok(true) };
    if src.exists() {
        return Ok(true);
    }
    if e.optional {
        return Ok(false);
    }
    Err(Error::MissingSource {
        at: e.origin.clone(),
        mount: e.mount.clone(),
        src: src.clone(),
    })
}

fn check_seccomp(m: &Merged) -> Result<(), Error> {
    if let Seccomp::Profile(p) = &m.config.seccomp.value
        && !p.is_file()
    {
        let at = m.config.seccomp.origin.clone();
        let at = at.unwrap_or_else(|| Origin {
            file: Path::new("<default>").into(),
            line: 0,
        });
        return Err(Error::invalid(
            at,
            format!(
                "seccomp profile {} does not exist (expected default, unconfined or a profile file)",
                p.display()
            ),
        ));
    }
    Ok(())
}

/// An mqueue mount needs the sandbox's own IPC namespace.
fn check_namespaces(m: &Merged) -> Result<(), Error> {
    if !m.config.share.ipc.value {
        return Ok(());
    }
    match m.exports.iter().find(|e| e.mode == ExportMode::Mqueue) {
        Some(e) => Err(Error::invalid(
            e.origin.clone(),
            format!(
                "mqueue export of {} needs a new IPC namespace (share.ipc: false)",
                e.mount.display()
            ),
        )),
        None => Ok(()),
    }
}

/// Runs every exec export and environ command at once; optional exports that fail yield
/// no output instead of an error.
fn run_exec_entries(m: &Merged) -> Result<ExecOutputs, Error> {
    let mut outputs = ExecOutputs {
        exports: vec![None; m.exports.len()],
        environ: vec![None; m.environ.len()],
    };
    let mut pending = Vec::new();
    let mut commands = Vec::new();
    for (i, e) in m.exports.iter().enumerate() {
        if let (ExportMode::Exec, Some(c)) = (e.mode, &e.command) {
            pending.push(Pending::Export(i));
            commands.push(c.as_str());
        }
    }
    for (i, e) in m.environ.iter().enumerate() {
        if let (EnvMode::Exec, Some(c)) = (e.mode, &e.command) {
            pending.push(Pending::Env(i));
            commands.push(c.as_str());
        }
    }
    if commands.is_empty() {
        return Ok(outputs);
    }
    let results = exec::run_all(&commands);
    for ((p, result), command) in pending.into_iter().zip(results).zip(&commands) {
        match (result, p) {
            (Ok(bytes), Pending::Export(i)) => outputs.exports[i] = Some(bytes),
            (Ok(bytes), Pending::Env(i)) => outputs.environ[i] = Some(bytes),
            (Err(_), Pending::Export(i)) if m.exports[i].optional => {}
            (Err(why), Pending::Export(i)) => {
                let e = &m.exports[i];
                let entry = format!("export {}", e.mount.display());
                return Err(exec_error(&e.origin, entry, command, why));
            }
            (Err(why), Pending::Env(i)) => {
                let e = &m.environ[i];
                return Err(exec_error(
                    &e.origin,
                    format!("environ {}", e.key),
                    command,
                    why,
                ));
            }
        }
    }
    Ok(outputs)
}

fn exec_error(at: &Origin, entry: String, command: &str, why: String) -> Error {
    Error::Exec {
        at: at.clone(),
        entry,
        command: command.to_owned(),
        why,
    }
}

/// The mount of one export; `None` when an optional source is missing.
fn mount_of(e: &MergedExport, exec_out: Option<Vec<u8>>) -> Result<Option<Mount>, Error> {
    let dest = e.mount.clone();
    let m = match e.mode {
        ExportMode::Public
        | ExportMode::Private
        | ExportMode::Restricted
        | ExportMode::PrivateRestricted => {
            if !source_exists(e)? {
                return Ok(None);
            }
            let readonly = matches!(
                e.mode,
                ExportMode::Restricted | ExportMode::PrivateRestricted
            );
            let source = e.path.clone().unwrap_or_default();
            Mount::Bind {
                source,
                dest,
                readonly,
            }
        }
        ExportMode::Anonymous | ExportMode::Tmpfs => Mount::Tmpfs {
            dest,
            mode: TMPFS_MODE,
        },
        ExportMode::Exec => match exec_out {
            Some(contents) => Mount::File { dest, contents },
            None => return Ok(None),
        },
        ExportMode::Symlink => Mount::Symlink {
            target: e.path.clone().unwrap_or_default(),
            dest,
        },
        ExportMode::Proc => Mount::Proc { dest },
        ExportMode::Dev => Mount::Dev { dest },
        ExportMode::Mqueue => Mount::Mqueue { dest },
    };
    Ok(Some(m))
}

/// Sets `key` in `env`, replacing an earlier value.
fn set_var(env: &mut Vec<(OsString, OsString)>, key: &OsStr, value: OsString) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_os_string(), value)),
    }
}

fn unset_var(env: &mut Vec<(OsString, OsString)>, key: &OsStr) {
    env.retain(|(k, _)| k != key);
}

/// The program's environment: caller's (when inherit_env), then PATH/LD_LIBRARY_PATH from
/// path/ldpath, then environ entries, then the launch's overrides.
fn build_env(
    m: &Merged,
    launch: &Launch,
    exec_out: Vec<Option<Vec<u8>>>,
) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if m.config.inherit_env.value {
        env.extend(launch.caller_env.iter().cloned());
    }
    let join = |parts: &[crate::merge::Valued<String>]| {
        parts
            .iter()
            .map(|v| v.value.as_str())
            .collect::<Vec<_>>()
            .join(":")
    };
    if !m.config.path.is_empty() {
        set_var(&mut env, OsStr::new("PATH"), join(&m.config.path).into());
    }
    if !m.config.ldpath.is_empty() {
        set_var(
            &mut env,
            OsStr::new("LD_LIBRARY_PATH"),
            join(&m.config.ldpath).into(),
        );
    }
    for (e, out) in m.environ.iter().zip(exec_out) {
        apply_env(&mut env, e, out, launch)?;
    }
    for (k, v) in &launch.env_overrides {
        set_var(&mut env, OsStr::new(k), v.into());
    }
    Ok(env)
}

fn apply_env(
    env: &mut Vec<(OsString, OsString)>,
    e: &MergedEnv,
    exec_out: Option<Vec<u8>>,
    launch: &Launch,
) -> Result<(), Error> {
    let key = OsStr::new(&e.key);
    match e.mode {
        EnvMode::Set | EnvMode::Literal => {
            set_var(env, key, e.value.clone().unwrap_or_default().into());
        }
        EnvMode::Exec => {
            let mut bytes = exec_out.unwrap_or_default();
            while bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            if bytes.contains(&0) {
                return Err(exec_error(
                    &e.origin,
                    format!("environ {}", e.key),
                    e.command.as_deref().unwrap_or_default(),
                    "printed a NUL byte (not allowed in an environment value)".to_owned(),
                ));
            }
            set_var(env, key, OsString::from_vec(bytes));
        }
        EnvMode::Inherit => match launch.caller_env.iter().find(|(k, _)| k == key) {
            Some((_, v)) => set_var(env, key, v.clone()),
            None => unset_var(env, key),
        },
        EnvMode::Unset => unset_var(env, key),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_new_takes_the_process_environment() {
        let l = Launch::new(vec!["prog".into(), "".into()]);
        assert_eq!(l.argv, vec![OsString::from("prog"), OsString::new()]);
        let path = std::env::var_os("PATH").unwrap();
        assert!(l.caller_env.iter().any(|(k, v)| k == "PATH" && *v == path));
        assert!(l.env_overrides.is_empty() && l.chdir.is_none());
    }

    #[test]
    fn mounts_sort_by_depth() {
        assert_eq!(depth(Path::new("/")), 1);
        assert_eq!(depth(Path::new("/a/b")), 3);
        let m = Mount::Symlink {
            target: "x".into(),
            dest: "/a".into(),
        };
        assert_eq!(dest_of(&m), Path::new("/a"));
    }
}
