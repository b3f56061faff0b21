//! Where the package machinery keeps its files inside a node, and small file helpers.
//!
//! `var/lib/dpkg` is dpkg's own format (so `dpkg --admindir` reads it); everything that is
//! Cairn's own bookkeeping (apt state, transactions) lives under `var/lib/cairn/pkg`.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Paths of one node's package files.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub root: PathBuf,
}

impl NodePaths {
    /// Fails when `root` is not a node directory.
    pub fn open(root: &Path) -> Result<NodePaths> {
        if !cairn_config::is_node(root) {
            return Err(Error::NotANode {
                path: root.to_path_buf(),
            });
        }
        Ok(NodePaths {
            root: root.to_path_buf(),
        })
    }

    pub fn admindir(&self) -> PathBuf {
        self.root.join("var/lib/dpkg")
    }
    pub fn status(&self) -> PathBuf {
        self.admindir().join("status")
    }
    pub fn info(&self) -> PathBuf {
        self.admindir().join("info")
    }
    pub fn lock(&self) -> PathBuf {
        self.admindir().join("lock-cairn")
    }
    pub fn sources(&self) -> PathBuf {
        self.root.join("etc/cairn/sources.list")
    }
    pub fn seal(&self) -> PathBuf {
        self.root.join("etc/cairn/seal.json")
    }
    /// Cairn's own package state: apt lists, downloaded archives, transactions.
    pub fn state(&self) -> PathBuf {
        self.root.join("var/lib/cairn/pkg")
    }
    pub fn txn(&self) -> PathBuf {
        self.state().join("txn")
    }

    /// Creates dpkg's admin directory skeleton so that dpkg tools accept it.
    pub fn ensure_admindir(&self) -> Result<()> {
        for dir in [
            self.info(),
            self.admindir().join("updates"),
            self.admindir().join("triggers"),
        ] {
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        for file in [self.status(), self.admindir().join("available")] {
            if !file.exists() {
                write_atomic(&file, b"", 0o644)?;
            }
        }
        Ok(())
    }
}

/// Writes via a temp file in the same directory, fsync, then rename: readers see the old or
/// the new content, never a mix, even after a crash.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    cairn_config::write_atomic(path, data, mode).map_err(Error::io(path))
}

/// Reads a file that may legitimately be absent.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            err: e,
        }),
    }
}

/// Removes a file or symlink that may already be gone.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_path_buf(),
            err: e,
        }),
        _ => Ok(()),
    }
}

/// Removes a directory tree that may already be gone.
pub fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_path_buf(),
            err: e,
        }),
        _ => Ok(()),
    }
}

/// Hex of bytes (digests, keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ensures that no existing component between `root` and `rel`'s parent is a symlink, so
/// that writing `root/rel` cannot land outside the node.
pub fn check_no_symlink_parents(root: &Path, rel: &str) -> Result<()> {
    let mut current = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::SymlinkInPath { path: current });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Io {
                    path: current,
                    err: e,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_bytes() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }

    #[test]
    fn symlink_parent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("usr/evil")).unwrap();
        assert!(check_no_symlink_parents(dir.path(), "usr/evil/passwd").is_err());
        assert!(check_no_symlink_parents(dir.path(), "usr/evil").is_ok());
        assert!(check_no_symlink_parents(dir.path(), "usr/new/x").is_ok());
    }

    #[test]
    fn atomic_write_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
