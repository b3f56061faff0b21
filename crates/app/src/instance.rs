//! Instance directories under `<run>/instances/APP/`: who owns each, which are stale, and
//! `cairn app ps` / `stop`.
//!
//! Two kinds of directory live there:
//! - `PID-STARTTIME/` (`upper`, `work`): an anonymous fresh call. The owner's pid and start
//!   time are in the name itself, so the directory is never seen without its owner and a
//!   reused pid does not keep a dead launch's directory alive.
//! - `ID/` (`CAIRN_INSTANCE=ID`, or `default` for resume and attach): a named instance, with
//!   `state.json` ([`State`]) naming its mode and the process whose life is the instance's
//!   (pid and start time): the launcher of a fresh call, the kept sandbox's pid 1 (resume),
//!   the attach relay (attach). Kept instances also hold `upper`, `work` and, for attach,
//!   `attach.sock`.
//!
//! Creating, checking and removing named instances happens under a `flock` of the app's
//! directory ([`AppLock`]): two concurrent first calls cannot start two keepers, and a
//! directory still being set up (no `state.json` yet) is only ever seen by its creator. A
//! named directory whose process is gone (crash, `kill -9`, reboot) is stale: the next call,
//! `ps` or `stop` removes it (and the cgroup directories it recorded). Nothing of an instance
//! is mounted on the host: its overlay lives in the sandbox's own mount namespace and goes
//! when the last process in it does.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use cairn_process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::error::Error;

/// The instance name resume and attach use without `CAIRN_INSTANCE`.
pub const DEFAULT_ID: &str = "default";

const STATE_FILE: &str = "state.json";

/// How long `stop` waits for an instance's process to end after SIGTERM (then SIGKILL).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One call's directory; removed by [`Instance::remove`] or when dropped.
#[derive(Debug)]
pub struct Instance {
    pub dir: PathBuf,
}

impl Instance {
    /// Creates this process's anonymous instance of the app whose instances live in
    /// `app_dir`, removing stale ones first (when no other launch holds the app's lock).
    pub fn create(app_dir: &Path) -> Result<Instance, Error> {
        let me = owner_id(std::process::id()).unwrap_or_default();
        if let Some(_lock) = AppLock::try_acquire(app_dir)? {
            sweep(app_dir, Some(&me))?;
        }
        let dir = app_dir.join(&me);
        if dir.exists() {
            remove_tree(&dir)?;
        }
        make_layers(&dir)?;
        Ok(Instance { dir })
    }

    /// Creates named instance `id` for one fresh call of `app`: refused while another call
    /// uses the same id; a stale one is removed first.
    pub fn create_named(app_dir: &Path, app: &str, id: &str) -> Result<Instance, Error> {
        let _lock = AppLock::acquire(app_dir)?;
        sweep(app_dir, None)?;
        let dir = app_dir.join(id);
        if let Some(state) = State::read(&dir) {
            return Err(busy(app, id, &state));
        }
        make_layers(&dir)?;
        let me = std::process::id() as i32;
        let instance = Instance { dir };
        State::new(Mode::Fresh, me, Vec::new()).write(&instance.dir)?;
        Ok(instance)
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn remove(self) -> Result<(), Error> {
        let dir = self.dir.clone();
        std::mem::forget(self);
        remove_tree(&dir)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// `upper` and `work` of a new instance directory.
pub fn make_layers(dir: &Path) -> Result<(), Error> {
    for sub in ["upper", "work"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// Why instance `app@id`, which `state` describes, cannot be used by this call.
pub fn busy(app: &str, id: &str, state: &State) -> Error {
    Error::Instance {
        what: format!("{app}@{id}"),
        reason: match state.mode {
            Mode::Fresh => format!(
                "is in use by another call (pid {}); a fresh instance runs one call at a time",
                state.pid
            ),
            mode => format!(
                "is kept in mode {} (stop it first: cairn app stop {app}@{id})",
                mode_name(mode)
            ),
        },
    }
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Fresh => "fresh",
        Mode::Resume => "resume",
        Mode::Attach => "attach",
    }
}

/// Checks a `CAIRN_INSTANCE` value: `[a-z0-9][a-z0-9_.-]*`, at most 64 characters.
pub fn check_id(id: &str) -> Result<(), Error> {
    let mut bytes = id.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && id.len() <= 64 {
        Ok(())
    } else {
        Err(Error::InstanceId { id: id.to_string() })
    }
}

/// An exclusive `flock` of an app's instance directory (created if missing), held until
/// dropped. The lock is on an open descriptor, so a crashed holder releases it.
#[derive(Debug)]
pub struct AppLock {
    _file: File,
}

impl AppLock {
    /// Waits for the lock.
    pub fn acquire(app_dir: &Path) -> Result<AppLock, Error> {
        let file = open_dir(app_dir)?;
        file.lock().map_err(|e| Error::io(app_dir, e))?;
        Ok(AppLock { _file: file })
    }

    /// The lock if nobody holds it now.
    pub fn try_acquire(app_dir: &Path) -> Result<Option<AppLock>, Error> {
        let file = open_dir(app_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(AppLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(app_dir, e)),
        }
    }
}

fn open_dir(dir: &Path) -> Result<File, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    File::open(dir).map_err(|e| Error::io(dir, e))
}

/// What a named instance's `state.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub mode: Mode,
    /// The process whose life is the instance's (see the module doc).
    pub pid: i32,
    /// `pid`'s start time (clock ticks since boot): a reused pid is not this process.
    pub start_time: u64,
    /// Cgroup directories of a kept sandbox (entered calls join them; removed with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<PathBuf>,
    /// Creation time, seconds since the epoch.
    pub started: u64,
}

impl State {
    /// The state of process `pid`, now.
    pub fn new(mode: Mode, pid: i32, cgroup: Vec<PathBuf>) -> State {
        State {
            mode,
            pid,
            start_time: cairn_process::start_time(pid).unwrap_or_default(),
            cgroup,
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        }
    }

    /// The state in `dir`, `None` when missing or unreadable (a directory being set up, or
    /// the remains of a crash).
    pub fn read(dir: &Path) -> Option<State> {
        let text = std::fs::read(dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_vec(self).map_err(|e| Error::io(&path, e.into()))?;
        crate::registry::write_atomic(&path, &text)
    }

    pub fn is_alive(&self) -> bool {
        self.kept().is_alive()
    }

    /// The kept sandbox to enter (resume).
    pub fn kept(&self) -> cairn_sandbox::Kept {
        cairn_sandbox::Kept {
            pid: self.pid,
            start_time: self.start_time,
            cgroup: self.cgroup.clone(),
        }
    }

    /// Same process (the state was not replaced by a newer instance's).
    pub fn same_owner(&self, other: &State) -> bool {
        self.pid == other.pid && self.start_time == other.start_time
    }
}

/// Removes named instance `dir` if it still belongs to `owner` (caller holds the lock).
pub fn remove_if_owned(dir: &Path, owner: &State) -> Result<(), Error> {
    match State::read(dir) {
        Some(state) if state.same_owner(owner) => remove_named(dir, &state),
        _ => Ok(()),
    }
}

/// Removes a named instance's directory and its cgroup directories (empty once its
/// processes are gone; a busy one is left to its keeper, which removes it too).
fn remove_named(dir: &Path, state: &State) -> Result<(), Error> {
    for cg in state.cgroup.iter().rev() {
        let _ = std::fs::remove_dir(cg);
    }
    remove_tree(dir)
}

/// Removes stale instances of one app: anonymous ones with a dead owner (but not `me`) and
/// named ones whose process is gone or that never got a state. The caller holds the lock.
pub fn sweep(app_dir: &Path, me: Option<&str>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(app_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(app_dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if Some(name) == me || name.starts_with('.') {
            continue;
        }
        let dir = entry.path();
        match State::read(&dir) {
            Some(state) if state.is_alive() => {}
            Some(state) => remove_named(&dir, &state)?,
            None if live_owner(name).is_some() => {}
            None => remove_tree(&dir)?,
        }
    }
    Ok(())
}

/// How `ps` names an instance: the launcher's pid (anonymous fresh calls) or its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum InstanceId {
    Pid(u32),
    Named(String),
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceId::Pid(pid) => write!(f, "{pid}"),
            InstanceId::Named(id) => f.write_str(id),
        }
    }
}

/// A live instance, as `cairn app ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Running {
    pub app: String,
    pub id: InstanceId,
    pub mode: Mode,
    /// The process whose life is the instance's (see the module doc).
    pub pid: u32,
    /// `pid`'s start time (clock ticks since boot), so that `stop` signals that process only.
    #[serde(skip)]
    pub start_time: u64,
    /// Seconds since the epoch.
    pub started: u64,
    pub dir: PathBuf,
}

/// Every live instance below `instances` (`<run>/instances`), by app then id; stale ones
/// are removed on the way when their app's lock is free.
pub fn running(instances: &Path) -> Result<Vec<Running>, Error> {
    let mut out = Vec::new();
    let apps = match std::fs::read_dir(instances) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(instances, e)),
    };
    for app in apps.flatten() {
        let Some(name) = app.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let app_dir = app.path();
        if let Some(_lock) = AppLock::try_acquire(&app_dir)? {
            sweep(&app_dir, None)?;
        }
        let Ok(entries) = std::fs::read_dir(&app_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(dir_name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some(r) = live(&name, &dir_name, entry.path()) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| (&a.app, a.id.to_string()).cmp(&(&b.app, b.id.to_string())));
    Ok(out)
}

/// The live instance in directory `dir` named `dir_name`, if it is one.
fn live(app: &str, dir_name: &str, dir: PathBuf) -> Option<Running> {
    if let Some(state) = State::read(&dir) {
        return state.is_alive().then(|| Running {
            app: app.to_string(),
            id: InstanceId::Named(dir_name.to_string()),
            mode: state.mode,
            pid: state.pid as u32,
            start_time: state.start_time,
            started: state.started,
            dir,
        });
    }
    let (pid, start_time) = live_owner(dir_name)?;
    Some(Running {
        app: app.to_string(),
        id: InstanceId::Pid(pid),
        mode: Mode::Fresh,
        pid,
        start_time,
        started: started_at(pid).unwrap_or_default(),
        dir,
    })
}

/// Stops `app`'s instances, or only instance `id` (a name, or the launcher pid of an
/// anonymous call). Fresh calls get SIGTERM (forwarded to their target; each launcher
/// removes its instance). Kept instances get SIGTERM, up to 10 s to end (then SIGKILL), and
/// are removed before this returns. Returns the ids stopped.
pub fn stop(instances: &Path, app: &str, id: Option<&str>) -> Result<Vec<String>, Error> {
    let app_dir = instances.join(app);
    let mut stopped = Vec::new();
    for r in running(instances)? {
        if r.app != app || id.is_some_and(|id| id != r.id.to_string()) {
            continue;
        }
        match r.mode {
            Mode::Fresh => {
                let owner = Child::adopt(r.pid as libc::pid_t, r.start_time);
                if owner.is_none_or(|owner| owner.signal(libc::SIGTERM).is_err()) {
                    continue;
                }
            }
            Mode::Resume | Mode::Attach => stop_kept(&app_dir, &r.dir)?,
        }
        stopped.push(r.id.to_string());
    }
    if stopped.is_empty() {
        let what = match id {
            Some(id) => format!("{app}@{id}"),
            None => app.to_string(),
        };
        return Err(Error::NotRunning { what });
    }
    Ok(stopped)
}

/// Stops every kept (resume, attach) instance of `app`; `Ok` when there was none.
pub fn stop_all_kept(instances: &Path, app: &str) -> Result<(), Error> {
    let app_dir = instances.join(app);
    for r in running(instances)? {
        if r.app == app && r.mode != Mode::Fresh {
            stop_kept(&app_dir, &r.dir)?;
        }
    }
    Ok(())
}

/// SIGTERM to a kept instance's process, wait for it to end, remove what is left.
fn stop_kept(app_dir: &Path, dir: &Path) -> Result<(), Error> {
    let Some(state) = State::read(dir) else {
        return Ok(());
    };
    if let Some(owner) = Child::adopt(state.pid, state.start_time) {
        owner.stop(STOP_GRACE);
    }
    let _lock = AppLock::acquire(app_dir)?;
    remove_if_owned(dir, &state)
}

/// The pid and start time of an anonymous instance directory name whose owner still runs.
fn live_owner(name: &str) -> Option<(u32, u64)> {
    let (pid, start) = name.split_once('-')?;
    let (pid, start) = (pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?);
    (owner_id(pid)? == name).then_some((pid, start))
}

/// `PID-STARTTIME` of a live process, `None` when it is gone.
fn owner_id(pid: u32) -> Option<String> {
    let start = cairn_process::start_time(pid as i32)?;
    Some(format!("{pid}-{start}"))
}

/// When process `pid` started, in seconds since the epoch (boot time + its start ticks).
fn started_at(pid: u32) -> Option<u64> {
    let ticks = cairn_process::start_time(pid as i32)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(boot + ticks / u64::try_from(hz).ok().filter(|&h| h > 0)?)
}

/// Removes a tree, also below directories overlayfs left without permissions (its
/// work/work is mode 000). What disappears meanwhile (a concurrent removal) is fine.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let gone = |e: &std::io::Error| e.kind() == ErrorKind::NotFound;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let result = if meta.is_dir() {
        if meta.permissions().mode() & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            remove_tree(&entry.path())?;
        }
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if !gone(&e) => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_instances_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        let dead = app.join("999999999-1");
        std::fs::create_dir_all(dead.join("work/work")).unwrap();
        let init = owner_id(1).unwrap();
        std::fs::create_dir_all(app.join(&init)).unwrap();
        // A named instance whose process is gone, one never set up, and a live one.
        let gone = app.join("gone");
        std::fs::create_dir_all(&gone).unwrap();
        let mut state = State::new(Mode::Resume, std::process::id() as i32, Vec::new());
        state.start_time += 1;
        state.write(&gone).unwrap();
        std::fs::create_dir_all(app.join("halfway/upper")).unwrap();
        let kept = app.join("kept");
        std::fs::create_dir_all(&kept).unwrap();
        State::new(Mode::Resume, std::process::id() as i32, Vec::new())
            .write(&kept)
            .unwrap();
        let inst = Instance::create(&app).unwrap();
        assert!(!dead.exists() && !gone.exists() && !app.join("halfway").exists());
        assert!(app.join(&init).exists() && kept.exists());
        let live = running(dir.path()).unwrap();
        let ids: Vec<String> = live.iter().map(|r| r.id.to_string()).collect();
        let me = std::process::id().to_string();
        assert_eq!(ids, ["1", me.as_str(), "kept"]);
        assert_eq!(live[2].mode, Mode::Resume);
        assert!(live[0].started > 0);
        assert!(inst.upper().is_dir() && inst.work().is_dir());
        let d = inst.dir.clone();
        inst.remove().unwrap();
        assert!(!d.exists());
    }

    #[test]
    fn named_fresh_instances_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        let first = Instance::create_named(&app, "app", "x").unwrap();
        let err = Instance::create_named(&app, "app", "x").unwrap_err();
        assert!(err.to_string().contains("app@x is in use"), "{err}");
        assert!(Instance::create_named(&app, "app", "y").is_ok());
        first.remove().unwrap();
        assert!(Instance::create_named(&app, "app", "x").is_ok());
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "0", "a-b_c.d", &"x".repeat(64)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "-a", ".a", "a/b", "a b", "é", &"x".repeat(65)] {
            let err = check_id(bad).unwrap_err().to_string();
            assert!(err.contains("invalid instance id"), "{err}");
        }
    }

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let held = AppLock::acquire(dir.path()).unwrap();
        assert!(AppLock::try_acquire(dir.path()).unwrap().is_none());
        drop(held);
        assert!(AppLock::try_acquire(dir.path()).unwrap().is_some());
    }
}
