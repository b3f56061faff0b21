//! Journaled changes to a node's files and database, undone on failure or after a crash.
//!
//! Layout under `var/lib/cairn/pkg/txn/`: `db/` (a copy of the dpkg database and of the
//! node's seal, or `seal.none` when it has none, taken first, so that a command that
//! reseals the node rolls the seal back with the files),
//! `journal.json` (every path about to change, written before the first change),
//! `stage/` (unpacked packages) and `backup/` (files moved out of the way). A file is
//! replaced by two renames, old to `backup/`, staged to its place, so at any instant each
//! path is recoverable from the journal alone. Renaming `txn` away is the commit point.

use crate::error::{Error, Result};
use crate::layout::{
    NodePaths, check_no_symlink_parents, remove_if_exists, remove_tree, write_atomic,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The seal as it was, in the transaction's `db/`; `NO_SEAL` records that there was none.
/// A transaction with neither (written before seals were kept) leaves the seal alone.
const SEAL_COPY: &str = "seal.json";
const NO_SEAL: &str = "seal.none";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// Paths (relative to the node) that are replaced or deleted, in order.
    ops: Vec<JournalOp>,
    /// Directories created by this transaction, parents first.
    dirs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalOp {
    rel: String,
    existed: bool,
}

/// A file change: put `source` (inside the stage) at `rel`, or delete `rel`.
#[derive(Debug, Clone)]
pub enum Change {
    Put { rel: String, source: PathBuf },
    Delete { rel: String },
}

impl Change {
    fn rel(&self) -> &str {
        match self {
            Change::Put { rel, .. } | Change::Delete { rel } => rel,
        }
    }
}

/// An open transaction on one node (the caller holds the node's lock).
#[derive(Debug)]
pub struct Txn {
    paths: NodePaths,
    dir: PathBuf,
}

impl Txn {
    /// Starts a transaction by copying the database aside. The caller has run `repair`.
    pub fn begin(paths: &NodePaths) -> Result<Txn> {
        let dir = paths.txn();
        remove_tree(&dir)?;
        let db = dir.join("db");
        std::fs::create_dir_all(db.join("info")).map_err(Error::io(&db))?;
        copy_file(&paths.status(), &db.join("status"))?;
        for entry in read_dir(&paths.info())? {
            copy_file(&entry, &db.join("info").join(file_name(&entry)))?;
        }
        if paths.seal().exists() {
            copy_file(&paths.seal(), &db.join(SEAL_COPY))?;
        } else {
            write_atomic(&db.join(NO_SEAL), b"", 0o600)?;
        }
        Ok(Txn {
            paths: paths.clone(),
            dir,
        })
    }

    /// Where packages are unpacked before they move into the node.
    pub fn stage_dir(&self) -> PathBuf {
        self.dir.join("stage")
    }

    /// Creates `dirs` (node-relative, parents first) and applies `changes`, journaling first.
    pub fn apply(&mut self, dirs: &[String], changes: &[Change]) -> Result<()> {
        let root = self.paths.root.clone();
        let mut journal = Journal::default();
        for rel in dirs {
            check_no_symlink_parents(&root, rel)?;
            let path = root.join(rel);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(Error::SymlinkInPath { path }),
                Err(_) => journal.dirs.push(rel.clone()),
            }
        }
        for change in changes {
            let rel = change.rel();
            check_no_symlink_parents(&root, rel)?;
            let existed = match std::fs::symlink_metadata(root.join(rel)) {
                Ok(m) if m.is_dir() => {
                    return Err(Error::Io {
                        path: root.join(rel),
                        err: std::io::Error::other("a directory is in the way of a file"),
                    });
                }
                Ok(_) => true,
                Err(_) => false,
            };
            journal.ops.push(JournalOp {
                rel: rel.to_string(),
                existed,
            });
        }
        let text = serde_json::to_vec(&journal).map_err(|e| Error::Io {
            path: self.journal_path(),
            err: std::io::Error::other(e),
        })?;
        write_atomic(&self.journal_path(), &text, 0o600)?;
        for rel in &journal.dirs {
            let path = root.join(rel);
            std::fs::create_dir(&path).map_err(Error::io(&path))?;
        }
        let stall = test_stall_point();
        for (index, (change, op)) in changes.iter().zip(&journal.ops).enumerate() {
            if stall == Some(index) {
                stall_for_tests();
            }
            self.apply_one(change, op.existed)?;
        }
        Ok(())
    }

    fn apply_one(&self, change: &Change, existed: bool) -> Result<()> {
        let dest = self.paths.root.join(change.rel());
        if existed {
            let backup = self.dir.join("backup").join(change.rel());
            if let Some(parent) = backup.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
            }
            std::fs::rename(&dest, &backup).map_err(Error::io(&dest))?;
        }
        if let Change::Put { source, .. } = change {
            std::fs::rename(source, &dest).map_err(Error::io(&dest))?;
        }
        Ok(())
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// Makes the transaction permanent: backups and the database copy are dropped.
    pub fn commit(self) -> Result<()> {
        let done = self.paths.state().join("txn.done");
        remove_tree(&done)?;
        std::fs::rename(&self.dir, &done).map_err(Error::io(&self.dir))?;
        remove_tree(&done)
    }

    /// Undoes everything done since `begin`.
    pub fn rollback(self) -> Result<()> {
        rollback_dir(&self.paths, &self.dir)
    }
}

/// Finishes whatever a killed command left: a committed transaction is cleaned up, an
/// uncommitted one is rolled back. Returns true when a rollback happened.
pub fn repair(paths: &NodePaths) -> Result<bool> {
    remove_tree(&paths.state().join("txn.done"))?;
    let dir = paths.txn();
    if !dir.exists() {
        return Ok(false);
    }
    rollback_dir(paths, &dir)?;
    Ok(true)
}

/// True when an interrupted transaction is waiting for `repair`.
pub fn pending(paths: &NodePaths) -> bool {
    paths.txn().exists()
}

fn rollback_dir(paths: &NodePaths, dir: &Path) -> Result<()> {
    let journal_path = dir.join("journal.json");
    if let Some(text) = crate::layout::read_optional(&journal_path)? {
        let journal: Journal = serde_json::from_str(&text).map_err(|e| Error::Io {
            path: journal_path.clone(),
            err: std::io::Error::other(e),
        })?;
        undo_files(paths, dir, &journal)?;
        restore_db(paths, &dir.join("db"))?;
    }
    restore_seal(paths, &dir.join("db"))?;
    remove_tree(dir)
}

/// Each step is idempotent so that a crash during rollback is repaired by the next one.
fn undo_files(paths: &NodePaths, dir: &Path, journal: &Journal) -> Result<()> {
    for op in journal.ops.iter().rev() {
        let dest = paths.root.join(&op.rel);
        let backup = dir.join("backup").join(&op.rel);
        if std::fs::symlink_metadata(&backup).is_ok() {
            std::fs::rename(&backup, &dest).map_err(Error::io(&dest))?;
        } else if !op.existed {
            remove_if_exists(&dest)?;
        }
    }
    for rel in journal.dirs.iter().rev() {
        let _ = std::fs::remove_dir(paths.root.join(rel));
    }
    Ok(())
}

/// The seal's copy is complete once it exists (written atomically, last in `begin`), so it
/// is restored whether or not file changes were journaled.
fn restore_seal(paths: &NodePaths, snapshot: &Path) -> Result<()> {
    if snapshot.join(SEAL_COPY).exists() {
        copy_file(&snapshot.join(SEAL_COPY), &paths.seal())
    } else if snapshot.join(NO_SEAL).exists() {
        remove_if_exists(&paths.seal())
    } else {
        Ok(())
    }
}

fn restore_db(paths: &NodePaths, snapshot: &Path) -> Result<()> {
    let status = snapshot.join("status");
    if !status.exists() {
        return Ok(());
    }
    copy_file(&status, &paths.status())?;
    let saved = snapshot.join("info");
    for entry in read_dir(&paths.info())? {
        if !saved.join(file_name(&entry)).exists() {
            remove_if_exists(&entry)?;
        }
    }
    for entry in read_dir(&saved)? {
        copy_file(&entry, &paths.info().join(file_name(&entry)))?;
    }
    Ok(())
}

fn file_name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or_default()
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()).map_err(Error::io(dir)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io {
            path: dir.to_path_buf(),
            err: e,
        }),
    }
}

/// Atomic copy keeping the permission bits.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data = match std::fs::read(from) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                path: from.to_path_buf(),
                err: e,
            });
        }
    };
    let mode = std::fs::metadata(from)
        .map_err(Error::io(from))?
        .permissions()
        .mode();
    write_atomic(to, &data, mode & 0o7777)
}

/// `CAIRN_PKG_TEST_STALL_AFTER_FILES=N`: the end-to-end tests stop here after N file
/// changes to kill the process mid-transaction (a real `kill -9`, at a known point).
fn test_stall_point() -> Option<usize> {
    std::env::var("CAIRN_PKG_TEST_STALL_AFTER_FILES")
        .ok()?
        .parse()
        .ok()
}

/// `CAIRN_PKG_TEST_STALL_SECS` (default 120) bounds the stall.
fn stall_for_tests() {
    let secs = std::env::var("CAIRN_PKG_TEST_STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    eprintln!("cairn-pkg: stalled for tests");
    std::thread::sleep(std::time::Duration::from_secs(secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> (tempfile::TempDir, NodePaths) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/cairn")).unwrap();
        std::fs::write(dir.path().join("etc/cairn/node.yaml"), "node: {alias: a}\n").unwrap();
        let paths = NodePaths::open(dir.path()).unwrap();
        paths.ensure_admindir().unwrap();
        (dir, paths)
    }

    fn staged(txn: &Txn, name: &str, body: &str) -> PathBuf {
        let stage = txn.stage_dir();
        std::fs::create_dir_all(&stage).unwrap();
        let p = stage.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn rollback_restores_files_dirs_and_db() {
        let (dir, paths) = node();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/old"), "old").unwrap();
        std::fs::write(root.join("usr/bin/gone"), "gone").unwrap();
        std::fs::write(paths.status(), "Package: x\n").unwrap();
        let mut txn = Txn::begin(&paths).unwrap();
        let a = staged(&txn, "a", "new");
        let b = staged(&txn, "b", "fresh");
        let changes = vec![
            Change::Put {
                rel: "usr/bin/old".into(),
                source: a,
            },
            Change::Put {
                rel: "usr/share/x/new".into(),
                source: b,
            },
            Change::Delete {
                rel: "usr/bin/gone".into(),
            },
        ];
        txn.apply(&["usr/share".into(), "usr/share/x".into()], &changes)
            .unwrap();
        std::fs::write(paths.status(), "Package: y\n").unwrap();
        std::fs::write(paths.info().join("y.list"), "/.\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/old")).unwrap(),
            "new"
        );
        assert!(!root.join("usr/bin/gone").exists());
        txn.rollback().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/old")).unwrap(),
            "old"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/gone")).unwrap(),
            "gone"
        );
        assert!(!root.join("usr/share").exists());
        assert_eq!(
            std::fs::read_to_string(paths.status()).unwrap(),
            "Package: x\n"
        );
        assert!(!paths.info().join("y.list").exists());
        assert!(!paths.txn().exists());
    }

    #[test]
    fn rollback_restores_the_seal_as_it_was() {
        let (_dir, paths) = node();
        let txn = Txn::begin(&paths).unwrap();
        std::fs::write(paths.seal(), "written during the transaction").unwrap();
        txn.rollback().unwrap();
        assert!(!paths.seal().exists(), "there was no seal before");
        std::fs::write(paths.seal(), "old seal").unwrap();
        let txn = Txn::begin(&paths).unwrap();
        std::fs::write(paths.seal(), "new seal").unwrap();
        // A crash: the next command's repair restores it too.
        drop(txn);
        assert!(repair(&paths).unwrap());
        assert_eq!(std::fs::read_to_string(paths.seal()).unwrap(), "old seal");
        let txn = Txn::begin(&paths).unwrap();
        std::fs::write(paths.seal(), "new seal").unwrap();
        txn.commit().unwrap();
        assert_eq!(std::fs::read_to_string(paths.seal()).unwrap(), "new seal");
    }

    #[test]
    fn repair_after_crash_mid_apply_and_commit_keeps_changes() {
        let (dir, paths) = node();
        let root = dir.path();
        std::fs::write(root.join("f"), "old").unwrap();
        let mut txn = Txn::begin(&paths).unwrap();
        let a = staged(&txn, "a", "new");
        txn.apply(
            &[],
            &[Change::Put {
                rel: "f".into(),
                source: a,
            }],
        )
        .unwrap();
        // Simulate a crash: the Txn is dropped without commit or rollback.
        drop(txn);
        assert!(pending(&paths));
        assert!(repair(&paths).unwrap());
        assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "old");
        assert!(!repair(&paths).unwrap());

        let mut txn = Txn::begin(&paths).unwrap();
        let a = staged(&txn, "a", "new");
        txn.apply(
            &[],
            &[Change::Put {
                rel: "f".into(),
                source: a,
            }],
        )
        .unwrap();
        txn.commit().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "new");
        assert!(!pending(&paths));
    }

    #[test]
    fn refuses_to_write_through_symlinks() {
        let (dir, paths) = node();
        std::os::unix::fs::symlink("/tmp", dir.path().join("usr")).unwrap();
        let mut txn = Txn::begin(&paths).unwrap();
        let a = staged(&txn, "a", "x");
        let err = txn.apply(
            &[],
            &[Change::Put {
                rel: "usr/evil".into(),
                source: a,
            }],
        );
        assert!(matches!(err, Err(Error::SymlinkInPath { .. })), "{err:?}");
        txn.rollback().unwrap();
    }
}
