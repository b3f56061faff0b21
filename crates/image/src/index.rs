//! The store's index: which reference names which manifest, config and layers.
//!
//! One JSON document (`index.json`), rewritten atomically under `index.lock`, so that a
//! crash mid-update leaves the previous index intact and concurrent writers never lose each
//! other's entries.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result, json_error};
use crate::fsutil::write_atomic;

const VERSION: u32 = 1;

/// One stored image, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the image manifest (for a multi-arch image: this platform's manifest).
    pub manifest: String,
    pub config: String,
    /// Uncompressed layer digests (OCI diff_ids), base layer first.
    pub layers: Vec<String>,
    /// Sum of the uncompressed layer sizes, in bytes.
    pub size: u64,
    /// Where the image came from: `pull`, `import`.
    pub source: String,
    /// Seconds since the epoch when it was stored.
    pub stored_at: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// Normalized reference (or `sha256:...` for unnamed imports) to record.
    pub images: BTreeMap<String, ImageRecord>,
    /// Owner (an app, an instance) to the exact image it uses: gc keeps these even after
    /// their name is removed or re-pulled to another manifest.
    #[serde(default)]
    pub pins: BTreeMap<String, Pin>,
}

/// An image held by an owner: the name it was pinned under and the record at that time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub reference: String,
    pub record: ImageRecord,
}

impl Index {
    pub fn parse(data: &[u8], path: &Path) -> Result<Index> {
        let index: Index =
            serde_json::from_slice(data).map_err(|e| json_error(path.display().to_string(), &e))?;
        if index.version != VERSION {
            return Err(Error::Invalid {
                what: path.display().to_string(),
                message: format!(
                    "index version {} (this build reads {VERSION})",
                    index.version
                ),
            });
        }
        Ok(index)
    }
}

/// An advisory lock on a file in the store; released on drop.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] Flock<File>);

pub fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    let arg = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    Flock::lock(file, arg)
        .map(Lock)
        .map_err(|(_, errno)| Error::Io {
            path: path.to_path_buf(),
            error: errno.into(),
        })
}

/// Reads and rewrites `index.json` under its lock.
#[derive(Debug, Clone)]
pub struct IndexFile {
    pub path: PathBuf,
    pub lock_path: PathBuf,
}

impl IndexFile {
    pub fn read(&self) -> Result<Index> {
        match std::fs::read(&self.path) {
            Ok(data) => Index::parse(&data, &self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index {
                version: VERSION,
                images: BTreeMap::new(),
                pins: BTreeMap::new(),
            }),
            Err(e) => Err(Error::Io {
                path: self.path.clone(),
                error: e,
            }),
        }
    }

    /// Applies `change` to the current index and writes the result atomically; nothing is
    /// written when `change` fails.
    pub fn update<T>(&self, change: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = lock(&self.lock_path, true)?;
        let mut index = self.read()?;
        let out = change(&mut index)?;
        let data = serde_json::to_vec_pretty(&index).map_err(|e| json_error("index", &e))?;
        write_atomic(&self.path, &data)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(m: &str) -> ImageRecord {
        ImageRecord {
            manifest: m.into(),
            config: "c".into(),
            layers: vec!["l".into()],
            size: 1,
            source: "pull".into(),
            stored_at: 0,
        }
    }

    #[test]
    fn update_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let file = IndexFile {
            path: dir.path().join("index.json"),
            lock_path: dir.path().join("index.lock"),
        };
        file.update(|i| {
            i.images.insert("a".into(), record("m1"));
            Ok(())
        })
        .unwrap();
        let failed: Result<()> = file.update(|i| {
            i.images.clear();
            Err(Error::NotFound {
                reference: "x".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(file.read().unwrap().images["a"], record("m1"));
        std::fs::write(&file.path, b"{not json").unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(err.contains("index.json") && !err.contains('\n'), "{err}");
    }
}
