//! Per-node package locks (`flock` on `var/lib/dpkg/lock-cairn`).
//!
//! The node being changed is locked exclusively; the nodes whose databases are only read
//! (ancestors, descendants) are locked shared. Locks are always taken root-first (by path
//! depth), so two commands on different nodes of one family cannot deadlock.

use crate::error::{Error, Result};
use crate::layout::NodePaths;
use crate::progress::Event;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::PathBuf;

/// Held locks; dropping it releases them.
#[derive(Debug)]
pub struct Locks {
    _held: Vec<Flock<File>>,
}

/// Locks `exclusive` (if any) exclusively and every path in `shared` shared, root-first.
pub fn lock_nodes(
    exclusive: Option<&NodePaths>,
    shared: &[NodePaths],
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Locks> {
    let mut wanted: Vec<(PathBuf, bool)> = shared.iter().map(|p| (p.lock(), false)).collect();
    wanted.extend(exclusive.map(|p| (p.lock(), true)));
    wanted.sort_by_key(|(path, _)| path.components().count());
    let mut held = Vec::new();
    for (path, is_exclusive) in wanted {
        if let Some(lock) = lock_one(&path, is_exclusive, progress)? {
            held.push(lock);
        }
    }
    Ok(Locks { _held: held })
}

/// A shared lock on a node the caller may not write (a system node owned by root) is
/// skipped when its lock file cannot be created: nothing can be changing it then.
fn lock_one(
    path: &std::path::Path,
    exclusive: bool,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Option<Flock<File>>> {
    let file = match open_lock_file(path) {
        Ok(file) => file,
        Err(e) if !exclusive && e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                err: e,
            });
        }
    };
    let (try_arg, wait_arg) = if exclusive {
        (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive)
    } else {
        (FlockArg::LockSharedNonblock, FlockArg::LockShared)
    };
    let file = match Flock::lock(file, try_arg) {
        Ok(lock) => return Ok(Some(lock)),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                err: errno.into(),
            });
        }
    };
    let node = path.ancestors().nth(4).unwrap_or(path);
    progress(Event::WaitingForLock { node });
    Flock::lock(file, wait_arg)
        .map(Some)
        .map_err(|(_, errno)| Error::Io {
            path: path.to_path_buf(),
            err: errno.into(),
        })
}

/// Opens the lock file for writing, creating it (and its directory) when needed, or
/// read-only when it exists but is not writable (flock works on either).
fn open_lock_file(path: &std::path::Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path.exists() => {
            File::open(path)
        }
        other => other,
    }
}
