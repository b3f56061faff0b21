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
        let alive = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .and_then(owner_id)
            .is_some_and(|id| id == name);
        if !alive {
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
        assert!(inst.upper().is_dir() && inst.work().is_dir());
        let d = inst.dir.clone();
        inst.remove().unwrap();
        assert!(!d.exists());
    }
}
