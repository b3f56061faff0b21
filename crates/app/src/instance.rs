//! Per-launch instance directories: `<run>/instances/APP/PID-STARTTIME/{upper,work}`.
//!
//! The owner's pid and start time are in the directory name itself, so a directory is
//! never seen without its owner (no separate owner file to race with), and a reused pid
//! does not keep a dead launch's directory alive.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// One instance's directory; removed by [`Instance::remove`] or when dropped.
#[derive(Debug)]
pub struct Instance {
    pub dir: PathBuf,
}

impl Instance {
    /// Creates this process's instance of the app whose instances live in `app_dir`,
    /// removing stale ones (dead owners) first.
    pub fn create(app_dir: &Path) -> Result<Instance, Error> {
        let me = owner_id(std::process::id()).unwrap_or_default();
        remove_stale(app_dir, &me)?;
        let dir = app_dir.join(&me);
        if dir.exists() {
            remove_tree(&dir)?;
        }
        for sub in ["upper", "work"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
        Ok(Instance { dir })
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

/// A live instance: the app, and the pid of the launching process that owns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Running {
    pub app: String,
    pub id: u32,
    pub dir: PathBuf,
}

/// Every live instance below `instances` (`<run>/instances`), by app then id.
pub fn running(instances: &Path) -> Result<Vec<Running>, Error> {
    let mut out = Vec::new();
    let apps = match std::fs::read_dir(instances) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(instances, e)),
    };
    for app in apps.flatten() {
        let Some(name) = app.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(app.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str().and_then(live_owner) {
                out.push(Running {
                    app: name.clone(),
                    id,
                    dir: entry.path(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.app, a.id).cmp(&(&b.app, b.id)));
    Ok(out)
}

/// Asks the launchers of `app`'s instances (or only instance `id`) to stop: SIGTERM, which
/// they forward into the sandbox; each removes its instance when the target has exited.
/// Returns the ids signalled.
pub fn stop(instances: &Path, app: &str, id: Option<u32>) -> Result<Vec<u32>, Error> {
    let mut stopped = Vec::new();
    for r in running(instances)? {
        if r.app != app || id.is_some_and(|id| id != r.id) {
            continue;
        }
        // SAFETY: kill with a pid we just checked is the instance's live owner.
        if unsafe { libc::kill(r.id as libc::pid_t, libc::SIGTERM) } == 0 {
            stopped.push(r.id);
        }
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

/// The pid of an instance directory name whose owner still runs.
fn live_owner(name: &str) -> Option<u32> {
    let pid = name.split_once('-')?.0.parse::<u32>().ok()?;
    (owner_id(pid)? == name).then_some(pid)
}

/// `PID-STARTTIME` of a live process, `None` when it is gone.
fn owner_id(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid}-{start}"))
}

fn remove_stale(app_dir: &Path, me: &str) -> Result<(), Error> {
    let entries = match std::fs::read_dir(app_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(app_dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == me {
            continue;
        }
        if live_owner(name).is_none() {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a tree, also below directories overlayfs left without permissions (its
/// work/work is mode 000); a missing tree is fine.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.is_dir() {
        if meta.permissions().mode() & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            remove_tree(&entry.path())?;
        }
        std::fs::remove_dir(path).map_err(|e| Error::io(path, e))
    } else {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))
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
        let inst = Instance::create(&app).unwrap();
        assert!(!dead.exists());
        assert!(app.join(&init).exists());
        let live = running(dir.path()).unwrap();
        let ids: Vec<u32> = live.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, std::process::id()]);
        assert!(inst.upper().is_dir() && inst.work().is_dir());
        let d = inst.dir.clone();
        inst.remove().unwrap();
        assert!(!d.exists());
    }
}
