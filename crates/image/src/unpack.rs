//! Unpacking one layer tar (plain, gzip or zstd) into a directory in overlayfs form.
//!
//! The layer is written into a temporary directory beside the store's layers and only
//! renamed into place by [`Unpacked::commit`], so a rejected or corrupted layer leaves
//! nothing behind. OCI whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character
//! device `NAME`; `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory when
//! unpacking as root, `user.overlay.opaque=y` when rootless (mount the layers with
//! overlayfs' `userxattr` option then).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::hostile::{Action, EntryKind, EntryMeta, Hostile, Reason, check_entry, hostile};
use crate::tarstream::{Member, WalkError, walk};

/// How the unpacker may act on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Not real root: no device nodes, no ownership changes, `user.` overlay xattrs.
    pub rootless: bool,
}

impl UnpackOptions {
    /// Rootless unless uid 0 of the initial user namespace: uid 0 inside a user namespace
    /// cannot set `trusted.*` xattrs nor make device nodes either.
    pub fn for_this_process() -> UnpackOptions {
        let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        UnpackOptions {
            rootless: !nix::unistd::geteuid().is_root() || !is_initial_uid_map(&uid_map),
        }
    }

    /// The xattr that marks an opaque directory for overlayfs.
    pub fn opaque_xattr(&self) -> &'static str {
        if self.rootless {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }
}

/// The initial user namespace maps every id to itself: `0 0 4294967295`. An unreadable map
/// (no /proc) counts as initial, leaving the decision to the effective uid.
pub fn is_initial_uid_map(uid_map: &str) -> bool {
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    fields.is_empty() || fields == ["0", "0", "4294967295"]
}

/// Layer compression, recognised by magic bytes (media types are not always truthful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `source` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(source: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, source);
    let kind = detect_compression(buffered.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

/// A layer unpacked into a temporary directory, not yet in the store.
#[derive(Debug)]
pub struct Unpacked {
    dir: tempfile::TempDir,
    /// Digest of the uncompressed tar (the OCI `diff_id`).
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
}

impl Unpacked {
    /// Moves the layer to `dest`; when another process committed the same layer first, keeps
    /// theirs (same content, by digest).
    ///
    /// The layer's data is flushed to disk first (syncfs): after a power cut, a directory
    /// under `layers/` is always complete, since later pulls trust it by name.
    pub fn commit(self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Ok(());
        }
        let dir = File::open(self.dir.path()).at(self.dir.path())?;
        nix::unistd::syncfs(&dir).map_err(|e| Error::Io {
            path: self.dir.path().to_path_buf(),
            error: e.into(),
        })?;
        let tmp = self.dir.keep();
        match fs::rename(&tmp, dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.exists() => crate::fsutil::remove_tree(&tmp),
            Err(e) => {
                let _ = crate::fsutil::remove_tree(&tmp);
                Err(Error::Io {
                    path: dest.to_path_buf(),
                    error: e,
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Unpacks the (possibly compressed) layer read from `source` into a new temporary directory
/// under `tmp_root`. `label` names the layer in errors.
pub fn unpack_layer(
    source: &mut dyn Read,
    tmp_root: &Path,
    label: &str,
    options: UnpackOptions,
) -> Result<Unpacked> {
    let dir = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(tmp_root)
        .at(tmp_root)?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).at(dir.path())?;
    let unpack_err = |path: &str, e: io::Error| Error::Unpack {
        layer: label.to_string(),
        path: path.to_string(),
        message: e.to_string(),
    };
    let decoder = decompress(source).map_err(|e| unpack_err("", e))?;
    let mut hashing = HashingReader::new(decoder);
    let mut writer = LayerWriter {
        root: dir.path().to_path_buf(),
        options,
        dirs: Vec::new(),
        known_dirs: std::collections::HashSet::new(),
    };
    let walked = walk(&mut hashing, |member, content| {
        writer.apply(member, content)
    });
    match walked {
        Ok(()) => {}
        Err(WalkError::Io(e)) => return Err(unpack_err("", e)),
        Err(WalkError::Hostile(entry)) | Err(WalkError::Visitor(EntryError::Hostile(entry))) => {
            return Err(Error::HostileLayer {
                layer: label.to_string(),
                entry,
            });
        }
        Err(WalkError::Visitor(EntryError::Io(path, e))) => return Err(unpack_err(&path, e)),
    }
    writer.finish_dirs().map_err(|(p, e)| unpack_err(&p, e))?;
    let (diff_id, size) = hashing.finish().map_err(|e| unpack_err("", e))?;
    Ok(Unpacked { dir, diff_id, size })
}

enum EntryError {
    Hostile(Hostile),
    Io(String, io::Error),
}

struct LayerWriter {
    root: PathBuf,
    options: UnpackOptions,
    /// Directory modes and times, applied last so that read-only directories can be filled.
    dirs: Vec<(PathBuf, u32, u64)>,
    /// Directories already checked (not symlinks) in this layer: saves a stat per path
    /// component per entry. Cleared below any directory an entry replaces.
    known_dirs: std::collections::HashSet<PathBuf>,
}

impl LayerWriter {
    fn apply(&mut self, member: &Member, content: &mut dyn Read) -> Result<(), EntryError> {
        let meta = EntryMeta {
            path: member.path.clone(),
            link: member.link.clone(),
            kind: member.kind,
            xattr_names: member.xattrs.iter().map(|(k, _)| k.clone()).collect(),
        };
        let action = check_entry(&meta, self.options.rootless).map_err(EntryError::Hostile)?;
        let io_err = |rel: &Path| {
            let shown = rel.display().to_string();
            move |e: io::Error| EntryError::Io(shown, e)
        };
        match action {
            Action::Skip => Ok(()),
            Action::Opaque { dir } => {
                let full = self.prepare(&member.path, &dir, true)?;
                if !full.is_dir() {
                    fs::create_dir(&full).map_err(io_err(&dir))?;
                    self.dirs.push((full.clone(), 0o755, member.mtime));
                }
                set_xattr(&full, self.options.opaque_xattr(), b"y").map_err(io_err(&dir))
            }
            Action::Whiteout { path } => {
                let full = self.prepare(&member.path, &path, false)?;
                make_node(&full, nix::sys::stat::SFlag::S_IFCHR, 0, (0, 0)).map_err(io_err(&path))
            }
            Action::Create { path, link } => {
                let full = self.prepare(&member.path, &path, member.kind == EntryKind::Dir)?;
                self.create(member, content, &full, link.as_deref())
                    .map_err(io_err(&path))
            }
        }
    }

    /// Creates missing parents (refusing to pass through symlinks) and clears whatever is at
    /// `rel`, unless both it and the new entry are directories.
    fn prepare(&mut self, raw: &[u8], rel: &Path, keep_dir: bool) -> Result<PathBuf, EntryError> {
        let mut current = self.root.clone();
        let components: Vec<_> = rel.components().collect();
        for (i, component) in components.iter().enumerate() {
            current.push(component);
            let last = i + 1 == components.len();
            if !last && self.known_dirs.contains(&current) {
                continue;
            }
            match fs::symlink_metadata(&current) {
                Ok(m) if last => {
                    if !(keep_dir && m.is_dir()) {
                        if m.is_dir() {
                            self.known_dirs.retain(|d| !d.starts_with(&current));
                        }
                        crate::fsutil::remove_any(&current, &m)
                            .map_err(|e| EntryError::Io(rel.display().to_string(), e))?;
                    }
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(EntryError::Hostile(hostile(raw, Reason::ThroughSymlink)));
                }
                Ok(m) if m.is_dir() => {
                    self.known_dirs.insert(current.clone());
                }
                Ok(_) => {
                    let e =
                        io::Error::new(io::ErrorKind::NotADirectory, "a parent is not a directory");
                    return Err(EntryError::Io(rel.display().to_string(), e));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !last => {
                    fs::create_dir(&current)
                        .map_err(|e| EntryError::Io(rel.display().to_string(), e))?;
                    self.known_dirs.insert(current.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(EntryError::Io(rel.display().to_string(), e)),
            }
        }
        Ok(current)
    }

    fn create(
        &mut self,
        m: &Member,
        content: &mut dyn Read,
        full: &Path,
        link: Option<&Path>,
    ) -> io::Result<()> {
        match m.kind {
            EntryKind::Dir => {
                if !full.is_dir() {
                    fs::create_dir(full)?;
                }
                self.dirs.push((full.to_path_buf(), m.mode, m.mtime));
                self.finish_owner(full, m)?;
                return Ok(());
            }
            EntryKind::File => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(full)?;
                // One write per file for most files (io::copy alone writes 8 KiB at a time).
                let capacity = m.size.clamp(8 * 1024, 1024 * 1024) as usize;
                io::copy(
                    &mut io::BufReader::with_capacity(capacity, content),
                    &mut file,
                )?;
                self.finish_owner(full, m)?;
                file.set_permissions(fs::Permissions::from_mode(m.mode))?;
                file.set_modified(mtime(m.mtime))?;
                return Ok(());
            }
            EntryKind::Symlink => {
                use std::os::unix::ffi::OsStrExt;
                let target = std::ffi::OsStr::from_bytes(m.link.as_deref().unwrap_or_default());
                std::os::unix::fs::symlink(target, full)?;
                return self.finish_owner(full, m);
            }
            EntryKind::Hardlink => {
                let rel = link.ok_or_else(|| io::Error::other("hard link without target"))?;
                let source = self.root.join(rel);
                let meta = self.linkable(rel)?;
                if meta.is_dir() {
                    return Err(io::Error::other("hard link to a directory"));
                }
                // std's hard_link does not follow a symlink source (linkat without FOLLOW).
                return fs::hard_link(&source, full);
            }
            EntryKind::CharDevice => {
                make_node(full, nix::sys::stat::SFlag::S_IFCHR, m.mode, m.device)?
            }
            EntryKind::BlockDevice => {
                make_node(full, nix::sys::stat::SFlag::S_IFBLK, m.mode, m.device)?
            }
            EntryKind::Fifo => make_node(full, nix::sys::stat::SFlag::S_IFIFO, m.mode, (0, 0))?,
        }
        self.finish_owner(full, m)?;
        fs::set_permissions(full, fs::Permissions::from_mode(m.mode))
    }

    /// The hard-link source must already be in this layer, reached without symlinks.
    fn linkable(&self, rel: &Path) -> io::Result<fs::Metadata> {
        let mut current = self.root.clone();
        let mut meta = None;
        for component in rel.components() {
            current.push(component);
            let m = fs::symlink_metadata(&current)?;
            if meta.is_some_and(|p: fs::Metadata| p.file_type().is_symlink()) {
                return Err(io::Error::other("hard link target goes through a symlink"));
            }
            meta = Some(m);
        }
        meta.ok_or_else(|| io::Error::other("empty hard link target"))
    }

    /// Ownership and xattrs (as root; a rootless unpack keeps the caller's ownership).
    fn finish_owner(&self, full: &Path, m: &Member) -> io::Result<()> {
        if self.options.rootless {
            return Ok(());
        }
        let id =
            |v: u64| u32::try_from(v).map_err(|_| io::Error::other(format!("id {v} out of range")));
        std::os::unix::fs::lchown(full, Some(id(m.uid)?), Some(id(m.gid)?))?;
        for (name, value) in &m.xattrs {
            let name = String::from_utf8_lossy(name);
            set_xattr(full, &name, value)?;
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), (String, io::Error)> {
        self.dirs.sort_by(|a, b| b.0.cmp(&a.0));
        self.dirs.dedup_by(|a, b| a.0 == b.0);
        for (path, mode, time) in &self.dirs {
            let fail = |e| (path.display().to_string(), e);
            let dir = File::open(path).map_err(fail)?;
            dir.set_permissions(fs::Permissions::from_mode(*mode))
                .map_err(fail)?;
            dir.set_modified(mtime(*time)).map_err(fail)?;
        }
        Ok(())
    }
}

fn mtime(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn make_node(
    path: &Path,
    kind: nix::sys::stat::SFlag,
    mode: u32,
    (major, minor): (u32, u32),
) -> io::Result<()> {
    let perm = nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777);
    let dev = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
    nix::sys::stat::mknod(path, kind, perm, dev).map_err(io::Error::from)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let c_name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setting xattr {name}: {e}"),
        ));
    }
    Ok(())
}

/// One extended attribute of `path` (not following a symlink), whatever its size (export
/// copies them, tests and `inspect` show opaque directories).
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let c_name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    loop {
        // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks the size.
        let size =
            unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: strings as above; buf is writable for buf.len() bytes.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        // Grown between the two calls: ask again.
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_namespace_is_recognised() {
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        assert!(is_initial_uid_map(""));
        assert!(!is_initial_uid_map("         0       1000          1\n"));
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"usr/"), Compression::None);
    }
}
