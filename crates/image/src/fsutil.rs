//! Small filesystem helpers: removal that works on read-only trees, atomic writes.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Removes a file, symlink, node or whole directory tree at `path`.
pub fn remove_any(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_dir() {
        remove_tree_io(path)
    } else {
        fs::remove_file(path)
    }
}

/// Removes a directory tree, first making read-only directories writable (a rootless user
/// cannot delete inside a 0555 directory of an unpacked layer otherwise).
pub fn remove_tree(path: &Path) -> Result<()> {
    remove_tree_io(path).at(path)
}

fn remove_tree_io(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::set_permissions(
            path,
            fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        )?;
        for entry in fs::read_dir(path)? {
            make_writable(&entry?.path())?;
        }
    }
    Ok(())
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so
/// readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    cairn_config::write_atomic(path, data, 0o600).at(path)
}
