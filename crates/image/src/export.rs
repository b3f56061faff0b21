//! Writing stored images back out as an OCI archive (`oci-archive`, what `podman load`
//! reads), so that another engine runs exactly the filesystem Cairn would mount.
//!
//! The store keeps layers unpacked in overlayfs form, not their original blobs, so each
//! layer is re-packed from its directory: whiteout devices become `.wh.NAME` files and
//! opaque directories get a `.wh..wh..opq` marker again. Entries are written in sorted
//! order with their stored owners, modes and times, so the same layer always packs to the
//! same bytes: podman then keeps a layer shared by several exports (a common base) once.
//!
//! Several stored images can be stacked into one exported image (a base, extra layers, a
//! delta on top): its layers are theirs in order and its config is the top image's.
//!
//! Nothing is staged on disk: each layer is packed twice, once to learn its digest and size
//! (the manifest and the archive's tar headers need them before the content) and once into
//! the archive.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, parse_document};
use crate::store::{ImageStore, Rootfs};
use crate::unpack::get_xattr;

/// Xattrs never exported: overlayfs' own markers, and SELinux labels (the host's policy,
/// not the image's content).
const SKIPPED_XATTRS: [&str; 3] = ["trusted.overlay.", "user.overlay.", "security.selinux"];

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Digest of the exported image's manifest.
    pub manifest: Digest,
    /// Digests of the exported layers (uncompressed tars, so also their diff_ids), base first.
    pub layers: Vec<Digest>,
    /// Bytes of layer data in the archive.
    pub size: u64,
}

impl ImageStore {
    /// Writes one image made of `parts` (bottom first: a base, extra layers, the image) as
    /// an OCI archive to `out`, named `ref_name` (`org.opencontainers.image.ref.name`, which
    /// `podman load` tags the image with). `extra_tars` (uncompressed layer tars, such as an
    /// app's include-tar files) go on top as layers of their own. The config is the top
    /// part's, with its layer list and history rewritten for the stacked layers.
    pub fn export_oci_archive(
        &self,
        parts: &[Rootfs],
        extra_tars: &[PathBuf],
        ref_name: &str,
        out: &mut dyn Write,
    ) -> Result<Exported> {
        let Some(top) = parts.last() else {
            return Err(Error::Invalid {
                what: ref_name.to_string(),
                message: "nothing to export (no image)".into(),
            });
        };
        let mut layers = Vec::new();
        for part in parts {
            for dir in &part.layers {
                let (digest, size) = layer_digest(dir, part.opaque_xattr)?;
                layers.push(LayerBlob {
                    source: Source::Dir {
                        dir: dir.clone(),
                        opaque_xattr: part.opaque_xattr,
                    },
                    digest,
                    size,
                });
            }
        }
        for tar in extra_tars {
            let mut sink = HashingWriter::new(io::sink());
            let mut file = fs::File::open(tar).at(tar)?;
            io::copy(&mut file, &mut sink).at(tar)?;
            let (digest, size, _) = sink.finish().at(tar)?;
            layers.push(LayerBlob {
                source: Source::Tar(tar.clone()),
                digest,
                size,
            });
        }
        let config = self.stacked_config(top, parts, extra_tars, &layers)?;
        let config_digest = Digest::of(&config);
        let manifest = manifest_json(&config_digest, config.len(), &layers);
        let manifest_digest = Digest::of(&manifest);
        let index = index_json(&manifest_digest, manifest.len(), ref_name);

        let written = (|| -> io::Result<()> {
            append_file(out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            append_file(out, &blob_name(&config_digest), &config)?;
            for layer in &layers {
                append_layer(out, layer)?;
            }
            append_file(out, &blob_name(&manifest_digest), &manifest)?;
            append_file(out, "index.json", &index)?;
            out.write_all(&[0u8; 1024])?;
            out.flush()
        })();
        written.map_err(|error| Error::Io {
            path: PathBuf::from(format!("oci-archive of {ref_name}")),
            error,
        })?;
        Ok(Exported {
            manifest: manifest_digest,
            size: layers.iter().map(|l| l.size).sum(),
            layers: layers.into_iter().map(|l| l.digest).collect(),
        })
    }

    /// The top image's config with `rootfs.diff_ids` naming the exported layers, and one
    /// history entry per layer saying which stored image it came from.
    fn stacked_config(
        &self,
        top: &Rootfs,
        parts: &[Rootfs],
        extra_tars: &[PathBuf],
        layers: &[LayerBlob],
    ) -> Result<Vec<u8>> {
        let manifest_digest = Digest::parse(&top.manifest)?;
        let manifest_data = self.read_blob(&manifest_digest)?;
        let crate::manifest::Document::Manifest(manifest) =
            parse_document(&manifest_data, &top.manifest)?
        else {
            return Err(Error::Invalid {
                what: top.manifest.clone(),
                message: "stored manifest is an index".into(),
            });
        };
        let config_digest = Digest::parse(manifest.config().digest().as_ref())?;
        let data = self.read_blob(&config_digest)?;
        let mut config: serde_json::Value = serde_json::from_slice(&data)
            .map_err(|e| crate::error::json_error(config_digest.as_str(), &e))?;
        let Some(object) = config.as_object_mut() else {
            return Err(Error::Invalid {
                what: config_digest.as_str().to_string(),
                message: "image config is not a JSON object".into(),
            });
        };
        let created = object.get("created").cloned();
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        object.insert(
            "rootfs".into(),
            serde_json::json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let origins = parts
            .iter()
            .flat_map(|part| {
                (0..part.layers.len()).map(|i| format!("{} layer {}", part.reference, i + 1))
            })
            .chain(
                extra_tars
                    .iter()
                    .map(|t| format!("include-tar {}", t.display())),
            );
        let history: Vec<serde_json::Value> = origins
            .map(|origin| {
                let mut entry = serde_json::json!({ "created_by": format!("cairn: {origin}") });
                if let Some(created) = &created {
                    entry["created"] = created.clone();
                }
                entry
            })
            .collect();
        object.insert("history".into(), serde_json::Value::Array(history));
        serde_json::to_vec(&config).map_err(|e| crate::error::json_error("exported config", &e))
    }
}

/// One layer to export: where its content comes from and what it packs to.
struct LayerBlob {
    source: Source,
    digest: Digest,
    size: u64,
}

enum Source {
    /// A layer unpacked in the store.
    Dir {
        dir: PathBuf,
        opaque_xattr: &'static str,
    },
    /// A layer tar file, copied as it is.
    Tar(PathBuf),
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn manifest_json(config: &Digest, config_size: usize, layers: &[LayerBlob]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": l.digest.as_str(), "size": l.size}))
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": config_size},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

fn index_json(manifest: &Digest, size: usize, ref_name: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest.as_str(),
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    })
    .to_string()
    .into_bytes()
}

/// The digest and size of the tar [`write_layer`] makes of `dir`.
fn layer_digest(dir: &Path, opaque_xattr: &str) -> Result<(Digest, u64)> {
    let mut sink = HashingWriter::new(io::sink());
    write_layer(dir, opaque_xattr, &mut sink).at(dir)?;
    let (digest, size, _) = sink.finish().at(dir)?;
    Ok((digest, size))
}

/// A regular archive member (the archive's own files: all small, names under 100 bytes).
fn append_file(out: &mut dyn Write, name: &str, data: &[u8]) -> io::Result<()> {
    out.write_all(member_header(name, data.len() as u64)?.as_bytes())?;
    out.write_all(data)?;
    pad(out, data.len() as u64)
}

/// A layer blob member: its tar is packed again straight into the archive, and must come
/// out exactly as long and with the same digest as the first time.
fn append_layer(out: &mut dyn Write, layer: &LayerBlob) -> io::Result<()> {
    out.write_all(member_header(&blob_name(&layer.digest), layer.size)?.as_bytes())?;
    let mut hashing = HashingWriter::new(&mut *out);
    let path = match &layer.source {
        Source::Dir { dir, opaque_xattr } => {
            write_layer(dir, opaque_xattr, &mut hashing)?;
            dir
        }
        Source::Tar(path) => {
            io::copy(&mut fs::File::open(path)?, &mut hashing)?;
            path
        }
    };
    let (digest, size, _) = hashing.finish()?;
    if digest != layer.digest || size != layer.size {
        return Err(io::Error::other(format!(
            "{} changed while it was exported",
            path.display()
        )));
    }
    pad(out, size)
}

fn member_header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

fn pad(out: &mut dyn Write, size: u64) -> io::Result<()> {
    let rest = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..rest as usize])
}

/// Packs the unpacked layer at `dir` as an OCI layer tar (uncompressed) into `out`.
pub fn write_layer(dir: &Path, opaque_xattr: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    let mut packer = Packer {
        root: dir,
        opaque_xattr,
        links: HashMap::new(),
    };
    packer.dir_entries(&mut builder, Path::new(""))?;
    builder.into_inner()?;
    Ok(())
}

struct Packer<'a> {
    root: &'a Path,
    opaque_xattr: &'a str,
    /// (device, inode) of files with several links → the first path packed: later ones
    /// become hard links to it, as in the original layer.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Packer<'_> {
    /// Packs the children of `rel` (relative to the layer root) in name order.
    fn dir_entries(
        &mut self,
        builder: &mut tar::Builder<&mut dyn Write>,
        rel: &Path,
    ) -> io::Result<()> {
        let full = self.root.join(rel);
        let names: io::Result<Vec<_>> = fs::read_dir(&full)
            .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect());
        let mut names =
            names.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child = rel.join(&name);
            self.entry(builder, &child)?;
        }
        Ok(())
    }

    /// Packs one entry (and a directory's children); errors name the file (the output's
    /// own errors keep their kind).
    fn entry(&mut self, builder: &mut tar::Builder<&mut dyn Write>, rel: &Path) -> io::Result<()> {
        let descend = self.entry_at(builder, rel).map_err(|e| {
            let full = self.root.join(rel);
            io::Error::new(e.kind(), format!("{}: {e}", full.display()))
        })?;
        if descend {
            self.dir_entries(builder, rel)?;
        }
        Ok(())
    }

    /// Packs the entry itself; whether it is a directory to descend into.
    fn entry_at(
        &mut self,
        builder: &mut tar::Builder<&mut dyn Write>,
        rel: &Path,
    ) -> io::Result<bool> {
        let full = self.root.join(rel);
        let meta = fs::symlink_metadata(&full)?;
        let kind = meta.file_type();
        let mut header = header_of(&meta);
        if kind.is_char_device() && meta.rdev() == 0 {
            self.whiteout(builder, rel, &meta)?;
            return Ok(false);
        }
        self.xattrs(builder, &full)?;
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, rel, io::empty())?;
            if get_xattr(&full, self.opaque_xattr)?.as_deref() == Some(b"y") {
                let mut marker = header_of(&meta);
                marker.set_mode(0o644);
                builder.append_data(&mut marker, rel.join(".wh..wh..opq"), io::empty())?;
            }
            return Ok(true);
        }
        if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(&full)?;
            builder.append_link(&mut header, rel, target)?;
            return Ok(false);
        }
        if kind.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(&mut header, rel, first)?;
                    return Ok(false);
                }
                self.links.insert(key, rel.to_path_buf());
            }
            header.set_size(meta.len());
            let file = fs::File::open(&full)?;
            builder.append_data(&mut header, rel, file.take(meta.len()))?;
            return Ok(false);
        }
        let entry_type = if kind.is_char_device() {
            tar::EntryType::Char
        } else if kind.is_block_device() {
            tar::EntryType::Block
        } else if kind.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets have no tar form (and an unpack never creates one).
            return Ok(false);
        };
        header.set_entry_type(entry_type);
        if !kind.is_fifo() {
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
        }
        builder.append_data(&mut header, rel, io::empty())?;
        Ok(false)
    }

    /// A 0/0 character device (overlayfs' whiteout) is `.wh.NAME` in an OCI layer.
    fn whiteout(
        &mut self,
        builder: &mut tar::Builder<&mut dyn Write>,
        rel: &Path,
        meta: &fs::Metadata,
    ) -> io::Result<()> {
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other("whiteout without a name"))?;
        let mut marker_name = std::ffi::OsString::from(".wh.");
        marker_name.push(name);
        let marker = rel.with_file_name(marker_name);
        let mut header = header_of(meta);
        header.set_mode(0o644);
        builder.append_data(&mut header, marker, io::empty())
    }

    /// The file's extended attributes (file capabilities, ACLs) as PAX records, except
    /// the skipped ones.
    fn xattrs(&self, builder: &mut tar::Builder<&mut dyn Write>, full: &Path) -> io::Result<()> {
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for name in list_xattrs(full)? {
            if SKIPPED_XATTRS.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            if let Some(value) = get_xattr(full, &name)? {
                records.push((format!("SCHILY.xattr.{name}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }
}

/// A header with the stored owner, mode and time (entry type, size and links set after).
fn header_of(meta: &fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    header
}

/// The names of `path`'s extended attributes (without following a symlink).
fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: c_path is NUL-terminated; buf is writable for buf.len() bytes.
        let n = unsafe { libc::llistxattr(c_path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Entry, layer_tar};
    use crate::unpack::{UnpackOptions, unpack_layer};

    /// Unpacks `entries` the way the store does and returns the unpacked directory.
    fn unpacked(entries: &[Entry], tmp: &Path) -> tempfile::TempDir {
        let tar = layer_tar(entries).unwrap();
        let options = UnpackOptions::for_this_process();
        let layer = unpack_layer(&mut &tar[..], tmp, "test", options).unwrap();
        let dest = tempfile::tempdir_in(tmp).unwrap();
        let target = dest.path().join("layer");
        layer.commit(&target).unwrap();
        dest
    }

    fn members(tar: &[u8]) -> Vec<(String, tar::EntryType, Option<String>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_links_pack_back_to_oci_form() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = unpacked(
            &[
                Entry::Dir {
                    path: "etc".into(),
                    mode: 0o755,
                },
                Entry::File {
                    path: "etc/a".into(),
                    data: b"a\n".to_vec(),
                    mode: 0o640,
                },
                Entry::Hardlink {
                    path: "etc/b".into(),
                    target: "etc/a".into(),
                },
                Entry::Symlink {
                    path: "etc/c".into(),
                    target: "a".into(),
                },
                Entry::Whiteout {
                    path: "etc/gone".into(),
                },
                Entry::Opaque {
                    dir: "var/cache".into(),
                },
            ],
            tmp.path(),
        );
        let layer = dir.path().join("layer");
        let xattr = UnpackOptions::for_this_process().opaque_xattr();
        let mut tar = Vec::new();
        write_layer(&layer, xattr, &mut tar).unwrap();
        let got = members(&tar);
        let names: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/a",
                "etc/b",
                "etc/c",
                "etc/.wh.gone",
                "var",
                "var/cache",
                "var/cache/.wh..wh..opq"
            ]
        );
        assert_eq!(got[2].1, tar::EntryType::Link);
        assert_eq!(got[2].2.as_deref(), Some("etc/a"));
        assert_eq!(got[3].1, tar::EntryType::Symlink);
        let mut again = Vec::new();
        write_layer(&layer, xattr, &mut again).unwrap();
        assert_eq!(tar, again, "packing is deterministic");
    }

    /// A base and a delta stacked and exported, then imported into another store: one
    /// image with both images' layers, the delta's config, and the same files.
    #[test]
    fn stacked_export_imports_back_as_one_image() {
        use crate::testkit::{ImageSpec, busybox_layer};
        use crate::unpack::Compression;
        use crate::{Progress, RuntimeConfig};
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let base = tmp.path().join("base");
        ImageSpec::default()
            .layer(&busybox_layer().unwrap(), Compression::Gzip)
            .unwrap()
            .write_oci_layout(&base, Some("local/base:1"))
            .unwrap();
        let delta_tar = layer_tar(&[
            Entry::Whiteout {
                path: "etc/motd".into(),
            },
            Entry::File {
                path: "etc/delta".into(),
                data: b"delta\n".to_vec(),
                mode: 0o600,
            },
        ])
        .unwrap();
        let delta = tmp.path().join("delta");
        ImageSpec {
            runtime: RuntimeConfig {
                entrypoint: vec!["/bin/sh".into()],
                env: vec!["D=1".into()],
                ..RuntimeConfig::default()
            },
            ..ImageSpec::default()
        }
        .layer(&delta_tar, Compression::None)
        .unwrap()
        .write_oci_layout(&delta, Some("local/delta:1"))
        .unwrap();
        for layout in [&base, &delta] {
            store.import(layout, None, &Progress::Silent).unwrap();
        }
        let parts = [
            store.rootfs("local/base:1").unwrap(),
            store.rootfs("local/delta:1").unwrap(),
        ];
        let include = tmp.path().join("include.tar");
        fs::write(
            &include,
            layer_tar(&[Entry::File {
                path: "inc".into(),
                data: b"inc\n".to_vec(),
                mode: 0o644,
            }])
            .unwrap(),
        )
        .unwrap();
        let archive = tmp.path().join("out.tar");
        let mut out = fs::File::create(&archive).unwrap();
        let exported = store
            .export_oci_archive(&parts, &[include], "local/app:1", &mut out)
            .unwrap();
        drop(out);
        assert_eq!(exported.layers.len(), 3);

        let other = ImageStore::open(&tmp.path().join("other")).unwrap();
        let imported = other.import(&archive, None, &Progress::Silent).unwrap();
        assert_eq!(imported.len(), 1);
        let back = other.rootfs("local/app:1").unwrap();
        assert_eq!(back.manifest, exported.manifest.as_str());
        assert_eq!(back.config, parts[1].config);
        assert_eq!(back.layers.len(), 3);
        let read = |rel: &str| {
            fs::read(
                back.layers
                    .iter()
                    .rev()
                    .map(|l| l.join(rel))
                    .find(|p| p.exists())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(read("bin/busybox"), fs::read("/bin/busybox").unwrap());
        assert_eq!(read("etc/delta"), b"delta\n");
        assert_eq!(read("inc"), b"inc\n");
        let whiteout = fs::symlink_metadata(back.layers[1].join("etc/motd")).unwrap();
        assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
        // Same layers, same bytes: exporting again gives the same image.
        let again = store
            .export_oci_archive(&parts[..1], &[], "local/app:2", &mut io::sink())
            .unwrap();
        assert_eq!(again.layers[0], exported.layers[0]);
    }

    /// File attributes travel as PAX records (any size); overlayfs' markers do not.
    #[test]
    fn xattrs_are_exported_but_overlay_markers_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let set = |path: &Path, name: &str, value: &[u8]| {
            let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            let n = std::ffi::CString::new(name).unwrap();
            // SAFETY: NUL-terminated strings and a valid value slice.
            unsafe {
                libc::lsetxattr(
                    p.as_ptr(),
                    n.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        };
        let big = vec![b'v'; 3000];
        if set(&file, "user.cairn", &big) != 0 {
            eprintln!("skipped: no user xattrs on {}", dir.path().display());
            return;
        }
        assert_eq!(set(&file, "user.overlay.origin", b"y"), 0);
        let mut tar = Vec::new();
        write_layer(dir.path(), "user.overlay.opaque", &mut tar).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap(), Path::new("f"));
        let records: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key().unwrap().to_string(), r.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(records, [("SCHILY.xattr.user.cairn".to_string(), big)]);
    }
}
