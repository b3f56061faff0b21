//! The on-disk store: content-addressed blobs, unpacked layers shared by every image, the
//! reference index, and removal and garbage collection.
//!
//! Layout under the store root (`<state_dir>/images`):
//! `blobs/sha256/<hex>` manifests and configs; `layers/sha256/<diff_id hex>/` one unpacked
//! layer each (compressed layer blobs are not kept: the unpacked tree is the layer);
//! `index.json` references; `tmp/` work in progress; `gc.lock` (shared by pulls and
//! imports, exclusive for gc) and `index.lock`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::index::{ImageRecord, IndexFile, Lock, Pin, lock};
use crate::manifest::{RuntimeConfig, parse_config};
use crate::unpack::UnpackOptions;

#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    index: IndexFile,
    pub(crate) options: UnpackOptions,
}

/// What a launcher needs to mount and start an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rootfs {
    pub reference: String,
    pub manifest: String,
    /// Unpacked layer directories, base layer FIRST (overlayfs' `lowerdir=` wants the
    /// reverse: see [`Rootfs::lowerdir`]).
    pub layers: Vec<PathBuf>,
    pub config: RuntimeConfig,
    /// The xattr this store used for opaque directories: `trusted.overlay.opaque` (mount
    /// normally) or `user.overlay.opaque` (mount with the `userxattr` option).
    pub opaque_xattr: &'static str,
}

impl Rootfs {
    /// The `lowerdir=` value: top layer first, colon-separated.
    pub fn lowerdir(&self) -> String {
        let dirs: Vec<String> = self
            .layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        dirs.join(":")
    }
}

/// One row of `cairn image ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    pub reference: String,
    pub manifest: String,
    pub layers: usize,
    pub size: u64,
    pub source: String,
    pub stored_at: u64,
}

/// `cairn image inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    pub reference: String,
    pub record: ImageRecord,
    pub architecture: String,
    pub os: String,
    pub created: Option<String>,
    pub runtime: RuntimeConfig,
    pub layer_dirs: Vec<PathBuf>,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub blobs: usize,
    pub layers: usize,
    pub temporary: usize,
}

impl ImageStore {
    /// Opens (creating when needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        for sub in ["blobs/sha256", "layers/sha256", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            index: IndexFile {
                path: root.join("index.json"),
                lock_path: root.join("index.lock"),
            },
            options: UnpackOptions::for_this_process(),
        })
    }

    /// The store of this Cairn configuration: `<state_dir>/images`.
    pub fn from_config(config: &cairn_config::Config) -> Result<ImageStore> {
        ImageStore::open(&config.images_dir())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Held for the whole of a pull or import so that gc cannot delete their fresh layers
    /// before the index names them.
    pub(crate) fn work_lock(&self) -> Result<Lock> {
        lock(&self.root.join("gc.lock"), false)
    }

    /// Stores a small blob (manifest, config) after checking its digest.
    pub(crate) fn put_blob(
        &self,
        expected: &Digest,
        data: &[u8],
        what: &'static str,
    ) -> Result<()> {
        expected.verify(what, &Digest::of(data))?;
        let path = self.blob_path(expected);
        if !path.exists() {
            crate::fsutil::write_atomic(&path, data)?;
        }
        Ok(())
    }

    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let data = fs::read(&path).at(&path)?;
        digest.verify("stored blob", &Digest::of(&data))?;
        Ok(data)
    }

    /// Names `reference` → `record` in the index (replacing an older image of that name).
    pub(crate) fn record(&self, reference: &str, record: ImageRecord) -> Result<()> {
        self.index.update(|index| {
            index.images.insert(reference.to_string(), record);
            Ok(())
        })
    }

    /// The index key and record for what a user typed: a reference (normalized the way
    /// pulls store it), a stored key, or a manifest digest or unique hex prefix of one.
    pub fn resolve(&self, reference: &str) -> Result<(String, ImageRecord)> {
        let index = self.index.read()?;
        if let Some(record) = index.images.get(reference) {
            return Ok((reference.to_string(), record.clone()));
        }
        if let Ok(normal) = normalize_reference(reference)
            && let Some(record) = index.images.get(&normal)
        {
            return Ok((normal, record.clone()));
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<_> = index
                .images
                .iter()
                .filter(|(_, r)| r.manifest["sha256:".len()..].starts_with(hex))
                .collect();
            let manifests: BTreeSet<&str> =
                found.iter().map(|(_, r)| r.manifest.as_str()).collect();
            match (found.first(), manifests.len()) {
                (Some((key, record)), 1) => return Ok(((*key).clone(), (*record).clone())),
                (_, 0) => {}
                (_, count) => {
                    return Err(Error::Ambiguous {
                        reference: reference.to_string(),
                        count,
                    });
                }
            }
        }
        Err(Error::NotFound {
            reference: reference.to_string(),
        })
    }

    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let index = self.index.read()?;
        Ok(index
            .images
            .into_iter()
            .map(|(reference, r)| ImageSummary {
                reference,
                manifest: r.manifest,
                layers: r.layers.len(),
                size: r.size,
                source: r.source,
                stored_at: r.stored_at,
            })
            .collect())
    }

    pub fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        let (key, record) = self.resolve(reference)?;
        let config_digest = Digest::parse(&record.config)?;
        let config = parse_config(&self.read_blob(&config_digest)?, &record.config)?;
        let layer_dirs = self.layer_dirs(&record)?;
        Ok(ImageDetails {
            reference: key,
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            created: config.created().clone(),
            runtime: RuntimeConfig::from_config(&config),
            layer_dirs,
            record,
        })
    }

    /// The unpacked layers (base first) and runtime config of a stored image: what an app
    /// launch mounts as overlay lower directories.
    pub fn rootfs(&self, reference: &str) -> Result<Rootfs> {
        let (key, record) = self.resolve(reference)?;
        self.rootfs_of(key, &record)
    }

    fn rootfs_of(&self, reference: String, record: &ImageRecord) -> Result<Rootfs> {
        let config_digest = Digest::parse(&record.config)?;
        let config = parse_config(&self.read_blob(&config_digest)?, &record.config)?;
        Ok(Rootfs {
            reference,
            manifest: record.manifest.clone(),
            layers: self.layer_dirs(record)?,
            config: RuntimeConfig::from_config(&config),
            opaque_xattr: self.options.opaque_xattr(),
        })
    }

    /// Makes `owner` (e.g. `app:aws`) hold the image `reference` names now: gc keeps it until
    /// [`ImageStore::unpin`], whatever later happens to the name. Returns its rootfs.
    pub fn pin(&self, owner: &str, reference: &str) -> Result<Rootfs> {
        let (key, record) = self.resolve(reference)?;
        let rootfs = self.rootfs_of(key.clone(), &record)?;
        self.index.update(|index| {
            index.pins.insert(
                owner.to_string(),
                Pin {
                    reference: key,
                    record,
                },
            );
            Ok(())
        })?;
        Ok(rootfs)
    }

    /// The rootfs `owner` pinned (stable across re-pulls of the name).
    pub fn pinned(&self, owner: &str) -> Result<Rootfs> {
        let index = self.index.read()?;
        let pin = index.pins.get(owner).ok_or_else(|| Error::NotFound {
            reference: format!("pin {owner}"),
        })?;
        self.rootfs_of(pin.reference.clone(), &pin.record)
    }

    /// Drops `owner`'s pin (no error when there is none); its data goes at the next gc.
    pub fn unpin(&self, owner: &str) -> Result<()> {
        self.index.update(|index| {
            index.pins.remove(owner);
            Ok(())
        })
    }

    fn layer_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>> {
        record
            .layers
            .iter()
            .map(|l| {
                let dir = self.layer_path(&Digest::parse(l)?);
                if !dir.is_dir() {
                    return Err(Error::Invalid {
                        what: record.manifest.clone(),
                        message: format!(
                            "layer {l} is missing from the store (pull or import the image again)"
                        ),
                    });
                }
                Ok(dir)
            })
            .collect()
    }

    /// Removes the names that `reference` resolves to (every name of the manifest when given
    /// a digest); blobs and layers go at the next [`ImageStore::gc`].
    pub fn remove(&self, reference: &str) -> Result<Vec<String>> {
        let (key, record) = self.resolve(reference)?;
        let by_digest =
            key != reference && normalize_reference(reference).ok().as_deref() != Some(&key);
        self.index.update(|index| {
            let names: Vec<String> = if by_digest {
                index
                    .images
                    .iter()
                    .filter(|(_, r)| r.manifest == record.manifest)
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                vec![key.clone()]
            };
            for name in &names {
                index.images.remove(name);
            }
            Ok(names)
        })
    }

    /// Deletes every blob and layer no image names, and leftovers of interrupted work.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = lock(&self.root.join("gc.lock"), true)?;
        let index = self.index.read()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for record in index
            .images
            .values()
            .chain(index.pins.values().map(|p| &p.record))
        {
            blobs.insert(hex_of(&record.manifest));
            blobs.insert(hex_of(&record.config));
            layers.extend(record.layers.iter().map(|l| hex_of(l)));
        }
        let mut report = GcReport::default();
        let tmp = self.tmp_dir();
        for (dir, keep, count) in [
            (self.root.join("blobs/sha256"), &blobs, &mut report.blobs),
            (self.root.join("layers/sha256"), &layers, &mut report.layers),
        ] {
            for entry in fs::read_dir(&dir).at(&dir)? {
                let entry = entry.at(&dir)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                // Rename first: a layer disappears at once, never half-deleted under a reader.
                let doomed = tmp.join(format!("gc-{name}"));
                fs::rename(entry.path(), &doomed).at(entry.path())?;
                *count += 1;
            }
        }
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let path = entry.at(&tmp)?.path();
            let is_gc = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gc-"));
            if !is_gc {
                report.temporary += 1;
            }
            let meta = fs::symlink_metadata(&path).at(&path)?;
            crate::fsutil::remove_any(&path, &meta).at(&path)?;
        }
        Ok(report)
    }
}

fn hex_of(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap_or(digest).to_string()
}

/// The canonical form of an image reference (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize_reference(reference: &str) -> Result<String> {
    Ok(parse_reference(reference)?.whole())
}

/// Parses an image reference, the error naming it.
pub(crate) fn parse_reference(reference: &str) -> Result<oci_client::Reference> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| Error::Reference {
            reference: reference.to_string(),
            message: e.to_string(),
        })
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ImageStore {
    /// Unpacks one layer from `source` (compressed or not), checks the blob digest (when
    /// known) and the diff_id, and moves it into place; a failed check leaves nothing.
    pub(crate) fn ingest_layer(
        &self,
        source: &mut dyn std::io::Read,
        blob: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<()> {
        let label = blob.unwrap_or(diff_id).to_string();
        let mut hashing = crate::digest::HashingReader::new(source);
        let unpacked =
            crate::unpack::unpack_layer(&mut hashing, &self.tmp_dir(), &label, self.options)?;
        let (blob_digest, _) = hashing.finish().map_err(|e| Error::Unpack {
            layer: label.clone(),
            path: String::new(),
            message: e.to_string(),
        })?;
        if let Some(expected) = blob {
            expected.verify("layer blob", &blob_digest)?;
        }
        diff_id.verify("layer diff_id", &unpacked.diff_id)?;
        unpacked.commit(&self.layer_path(diff_id))
    }
}
