//! The sandbox's root filesystem: a tmpfs assembled from the spec's mounts, then pivoted into.
//!
//! The launching process turns `spec.mounts` into a flat list of [`Op`]s ([`RootPlan::new`]):
//! it checks bind sources (so a missing one is a clean error before anything forks), works out
//! which parent directories must be created (each once), resolves destinations through the
//! symlinks the spec itself creates, and pre-builds every path as a C string. The child then
//! only replays the list ([`RootPlan::apply`]), one system call per step, without allocating.
//!
//! The tmpfs is mounted over /tmp inside the child's private mount namespace (the host never
//! sees it; no host directory is created or removed, which on a busy journaling filesystem
//! costs milliseconds). Every bind source is opened (O_PATH) before that, so sources resolve
//! exactly as on the host, even below /tmp or through absolute symlinks, and are bound from
//! `/proc/self/fd/N`. At the end the root is made read-only and pivoted into with
//! `pivot_root(".", ".")`, and the old root is detached.
//!
//! Like bubblewrap, a mount point below an earlier writable host bind is created in that
//! host directory when missing (an empty directory or file); below a read-only bind it must
//! already exist. File mounts never write into a bind: their contents go to the root tmpfs
//! and are bound read-only over the destination.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use libc::{c_int, c_ulong};

use crate::dev;
use crate::error::{Error, Fail};
use crate::spec::Mount;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// One replayable step of building the root. Paths are absolute host paths below the scratch
/// directory; `shown` is where the sandbox-visible part starts, for error messages.
#[derive(Debug)]
pub(crate) enum Op {
    /// mkdir, tolerating an existing directory.
    Mkdir {
        path: CString,
        mode: u32,
    },
    /// An empty file to bind a file onto.
    Touch {
        path: CString,
    },
    /// A new filesystem instance (tmpfs, proc, devpts, mqueue).
    Mount {
        what: &'static str,
        fstype: &'static CStr,
        path: CString,
        flags: c_ulong,
        data: CString,
    },
    /// A recursive bind of a host path, optionally made read-only, nosuid and nodev. With a
    /// `slot`, the source is opened before the root is mounted and bound through its fd.
    Bind {
        source: CString,
        path: CString,
        readonly: bool,
        slot: Option<usize>,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    /// Writes a file's contents (mode 0444).
    WriteFile {
        path: CString,
        contents: Vec<u8>,
    },
    Unlink {
        path: CString,
    },
    /// Re-opens an overlay directory onto the descriptor number the mount options name.
    /// The launching process opened it there already (checking it and reserving the
    /// number), but overlayfs refuses directories opened in another mount namespace, so the
    /// child opens it again inside its own, before the scratch root hides /tmp.
    Reopen {
        source: CString,
        fd: c_int,
    },
}

/// The prepared root: the scratch mount point and the steps to replay inside it.
#[derive(Debug)]
pub(crate) struct RootPlan {
    scratch: CString,
    ops: Vec<Op>,
    /// O_PATH descriptors of the bind sources, filled in by the child (no allocation there).
    fds: Vec<Cell<c_int>>,
    /// An overlay covers `/`: the root is the instance's writable upper layer, so it is not
    /// made read-only at the end.
    root_overlay: bool,
    /// Overlay directories opened by the launching process: they reserve the descriptor
    /// numbers the mount options name as `/proc/self/fd/N` (see [`Op::Reopen`]).
    _held: Vec<std::os::fd::OwnedFd>,
}

const ROOT_FLAGS: c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

impl RootPlan {
    /// Checks and flattens `mounts` into steps below `scratch` (which must be absolute).
    #[cfg(test)]
    pub(crate) fn new(mounts: &[Mount], scratch: &Path) -> Result<RootPlan, Error> {
        RootPlan::with_proc_protection(mounts, scratch, false)
    }

    /// Like [`RootPlan::new`]; with `protect_proc`, the kernel interfaces of every procfs
    /// (sysctls, sysrq-trigger, irq, bus) are bound read-only onto themselves. Without a user
    /// namespace the program is the real uid 0, which owns those files: dropping
    /// capabilities alone does not stop it from writing sysctls.
    pub(crate) fn with_proc_protection(
        mounts: &[Mount],
        scratch: &Path,
        protect_proc: bool,
    ) -> Result<RootPlan, Error> {
        let mut b = Builder::new(scratch)?;
        b.protect_proc = protect_proc;
        for mount in mounts {
            b.add(mount)?;
        }
        let fds = (0..b.slots).map(|_| Cell::new(-1)).collect();
        let root_overlay = b.overlays.iter().any(|o| o.dest == Path::new("/"));
        Ok(RootPlan {
            scratch: b.scratch_c,
            ops: b.ops,
            fds,
            root_overlay,
            _held: b.held,
        })
    }

    #[cfg(test)]
    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }

    fn shown<'a>(&self, path: &'a CStr) -> &'a [u8] {
        let bytes = path.to_bytes();
        bytes
            .get(self.scratch.as_bytes().len()..)
            .filter(|s| !s.is_empty())
            .unwrap_or(b"/")
    }

    /// Child side: builds the root and pivots into it. The caller must be in a new mount
    /// namespace with CAP_SYS_ADMIN over it.
    pub(crate) fn apply(&self) -> Result<(), Fail<'_>> {
        let root = c"/";
        // Private first: nothing we mount may propagate back to the host, and pivot_root
        // refuses shared mounts.
        sys::mount(None, root, None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| Fail::new("make / private", b"", e))?;
        self.open_sources()?;
        let scratch = self.scratch.as_c_str();
        sys::mount(
            Some(c"tmpfs"),
            scratch,
            Some(c"tmpfs"),
            ROOT_FLAGS,
            Some(c"mode=0755"),
        )
        .map_err(|e| Fail::new("mount tmpfs root", b"", e))?;
        for op in &self.ops {
            self.apply_op(op)?;
        }
        // Read-only last: only the explicit writable mounts stay writable (an overlay root
        // is one: it was mounted nosuid, nodev already).
        if !self.root_overlay {
            sys::mount_setattr(
                scratch,
                false,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )
            .map_err(|e| Fail::new("make root read-only", b"", e))?;
        }
        sys::chdir(scratch).map_err(|e| Fail::new("chdir to new root", b"", e))?;
        sys::pivot_root(c".", c".").map_err(|e| Fail::new("pivot_root", b"", e))?;
        // The old root now sits on top of the new one at "/": detach it and everything below.
        sys::umount2(c".", libc::MNT_DETACH).map_err(|e| Fail::new("detach old root", b"", e))?;
        sys::chdir(root).map_err(|e| Fail::new("chdir", b"/", e))
    }

    /// Opens every slotted bind source and overlay directory while the host tree is still
    /// fully visible.
    fn open_sources(&self) -> Result<(), Fail<'_>> {
        for op in &self.ops {
            if let Op::Reopen { source, fd } = op {
                let fail = |errno| Fail::new("open overlay directory", source.to_bytes(), errno);
                let opened =
                    sys::open(source, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(fail)?;
                let moved = sys::dup_onto(opened, *fd);
                sys::close(opened);
                moved.map_err(fail)?;
            }
            if let Op::Bind {
                source,
                path,
                slot: Some(slot),
                ..
            } = op
            {
                let fd = sys::open(source, libc::O_PATH, 0).map_err(|errno| Fail {
                    what: "bind",
                    path: source.to_bytes(),
                    dest: Some(self.shown(path)),
                    errno,
                })?;
                self.fds[*slot].set(fd);
            }
        }
        Ok(())
    }

    fn apply_op<'a>(&'a self, op: &'a Op) -> Result<(), Fail<'a>> {
        match op {
            Op::Mkdir { path, mode } => match sys::mkdir(path, *mode) {
                Ok(()) | Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(Fail::new("mkdir", self.shown(path), e)),
            },
            Op::Touch { path } => match sys::mknod_file(path, 0o444) {
                // An existing file (possibly inside a read-only bind) is as good a mount point.
                Ok(()) | Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(Fail::new("create mount point", self.shown(path), e)),
            },
            Op::Mount {
                what,
                fstype,
                path,
                flags,
                data,
            } => sys::mount(Some(fstype), path, Some(fstype), *flags, Some(data))
                .map_err(|e| Fail::new(what, self.shown(path), e)),
            Op::Bind {
                source,
                path,
                readonly,
                slot,
            } => {
                let fd = slot.map(|s| self.fds[s].replace(-1));
                let result = self.bind(source, fd, path, *readonly);
                if let Some(fd) = fd {
                    sys::close(fd);
                }
                result
            }
            Op::Symlink { target, path } => sys::symlink(target, path).map_err(|e| Fail {
                what: "symlink",
                path: self.shown(path),
                dest: Some(target.to_bytes()),
                errno: e,
            }),
            Op::WriteFile { path, contents } => {
                let flags = libc::O_CREAT | libc::O_TRUNC;
                sys::write_file(path, flags, 0o444, contents)
                    .map_err(|e| Fail::new("write file", self.shown(path), e))
            }
            Op::Unlink { path } => {
                sys::unlink(path).map_err(|e| Fail::new("unlink", self.shown(path), e))
            }
            // Done by open_sources, before the root exists.
            Op::Reopen { .. } => Ok(()),
        }
    }

    fn bind<'a>(
        &'a self,
        source: &'a CStr,
        fd: Option<c_int>,
        path: &'a CStr,
        readonly: bool,
    ) -> Result<(), Fail<'a>> {
        let fail = |errno| Fail {
            what: "bind",
            path: source.to_bytes(),
            dest: Some(self.shown(path)),
            errno,
        };
        // Recursive: a non-recursive bind of a mount with locked submounts fails in a user
        // namespace, and the submounts are part of what the node exports.
        let mut fd_path = FdPath::new();
        let from = match fd {
            Some(fd) => fd_path.of(fd),
            None => source,
        };
        sys::mount(Some(from), path, None, libc::MS_BIND | libc::MS_REC, None).map_err(fail)?;
        if readonly {
            // mount_setattr only adds flags, so flags the kernel locked (noexec, atime) are
            // kept, and AT_RECURSIVE covers the submounts too: one call, no statvfs.
            let set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            match sys::mount_setattr(path, true, set) {
                Ok(()) => {}
                Err(libc::ENOSYS) => remount_readonly(from, path).map_err(fail)?,
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }
}

/// `/proc/self/fd/N` as a C string in a stack buffer.
struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    fn new() -> FdPath {
        FdPath { buf: [0; 32] }
    }

    fn of(&mut self, fd: c_int) -> &CStr {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        self.buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 12];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            self.buf[PREFIX.len() + i] = digits[len - 1 - i];
        }
        self.buf[PREFIX.len() + len] = 0;
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd/")
    }
}

/// Pre-5.12 kernels: classic remount, OR-ing in the source's flags the kernel may have locked.
fn remount_readonly(source: &CStr, path: &CStr) -> sys::SysResult<()> {
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: source is NUL-terminated and st is a valid out-parameter.
    if unsafe { libc::statvfs(source.as_ptr(), &mut st) } != 0 {
        return Err(sys::errno());
    }
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | ROOT_FLAGS;
    if st.f_flag & libc::ST_NOEXEC != 0 {
        flags |= libc::MS_NOEXEC;
    }
    sys::mount(None, path, None, flags, None)
}

/// Plan builder: tracks what exists on the new root so each directory is made once.
pub(crate) struct Builder {
    scratch: PathBuf,
    scratch_c: CString,
    ops: Vec<Op>,
    /// Directories that exist (or will) on the new root, as sandbox paths.
    dirs: HashSet<PathBuf>,
    /// Symlinks the spec creates: sandbox path -> target, to resolve later destinations.
    links: Vec<(PathBuf, PathBuf)>,
    /// Destinations of mounts, to know whether a file lands on the root tmpfs or on a mount.
    mounted: Vec<PathBuf>,
    staged: usize,
    /// Bind sources to open before the root is mounted.
    slots: usize,
    /// Overlays so far, to check later mount points below them.
    overlays: Vec<OverlayLayers>,
    /// Open overlay directories (see [`RootPlan`]).
    held: Vec<std::os::fd::OwnedFd>,
    /// See [`RootPlan::with_proc_protection`].
    protect_proc: bool,
}

/// The parts of procfs that change the whole machine; read-only for a real-root program.
const PROC_KERNEL_INTERFACES: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// An overlay's destination and its directories, upper first then lower top first: the
/// order in which a path is looked up.
struct OverlayLayers {
    dest: PathBuf,
    dirs: Vec<PathBuf>,
}

/// Where File mounts that land on a mount are written before being bound into place.
const STAGE_PREFIX: &str = "/.cairn-stage-";

impl Builder {
    fn new(scratch: &Path) -> Result<Builder, Error> {
        let mut dirs = HashSet::new();
        dirs.insert(PathBuf::from("/"));
        Ok(Builder {
            scratch: scratch.to_path_buf(),
            scratch_c: cstring(scratch.as_os_str())?,
            ops: Vec::new(),
            dirs,
            links: Vec::new(),
            mounted: Vec::new(),
            staged: 0,
            slots: 0,
            overlays: Vec::new(),
            held: Vec::new(),
            protect_proc: false,
        })
    }

    /// The host path (below the scratch directory) of a sandbox path.
    fn host(&self, dest: &Path) -> Result<CString, Error> {
        let rel = dest.strip_prefix("/").unwrap_or(dest);
        if rel.as_os_str().is_empty() {
            return cstring(self.scratch.as_os_str());
        }
        cstring(self.scratch.join(rel).as_os_str())
    }

    fn add(&mut self, mount: &Mount) -> Result<(), Error> {
        match mount {
            Mount::Bind {
                source,
                dest,
                readonly,
            } => self.add_bind(source, dest, *readonly),
            Mount::Tmpfs { dest, mode } => {
                let data = format!("mode={:o}", mode & 0o7777);
                self.add_fs(dest, "mount tmpfs", c"tmpfs", ROOT_FLAGS, &data)
            }
            Mount::Proc { dest } => {
                let flags = ROOT_FLAGS | libc::MS_NOEXEC;
                self.add_fs(dest, "mount proc", c"proc", flags, "")?;
                if self.protect_proc {
                    self.protect_proc_interfaces(dest)?;
                }
                Ok(())
            }
            Mount::Mqueue { dest } => {
                let flags = ROOT_FLAGS | libc::MS_NOEXEC;
                self.add_fs(dest, "mount mqueue", c"mqueue", flags, "")
            }
            Mount::Dev { dest } => dev::plan(self, dest),
            Mount::Symlink { target, dest } => {
                let dest = self.resolve(dest)?;
                // The link itself is created, not followed: only its parents matter.
                self.check_below_overlays(dest.parent().unwrap_or(Path::new("/")))?;
                self.parents(&dest)?;
                let op = Op::Symlink {
                    target: cstring(target.as_os_str())?,
                    path: self.host(&dest)?,
                };
                self.ops.push(op);
                self.links.push((dest, target.clone()));
                Ok(())
            }
            Mount::File { dest, contents } => self.add_file(dest, contents),
            Mount::Overlay {
                lower,
                upper,
                work,
                dest,
                userxattr,
            } => self.add_overlay(lower, upper, work, dest, *userxattr),
            Mount::Dir { dest, mode } => {
                let dest = self.resolve(dest)?;
                self.check_below_overlays(&dest)?;
                self.parents(&dest)?;
                let path = self.host(&dest)?;
                self.ops.push(Op::Mkdir {
                    path,
                    mode: mode & 0o7777,
                });
                self.dirs.insert(dest);
                Ok(())
            }
        }
    }

    /// `dest` as the plan will place it (normalised, through the spec's symlinks).
    pub(crate) fn resolved(&self, dest: &Path) -> Result<PathBuf, Error> {
        self.resolve(dest)
    }

    fn add_overlay(
        &mut self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        dest: &Path,
        userxattr: bool,
    ) -> Result<(), Error> {
        if lower.is_empty() {
            return Err(Error::Spec(format!(
                "overlay on {} has no lower layer",
                dest.display()
            )));
        }
        let mut dirs = vec![upper.to_path_buf()];
        dirs.extend(lower.iter().cloned());
        let mut open = |dir: &Path| -> Result<String, Error> {
            let fd = open_overlay_dir(dir, dest)?;
            let name = format!("/proc/self/fd/{}", fd.as_raw_fd());
            self.ops.push(Op::Reopen {
                source: cstring(dir.as_os_str())?,
                fd: fd.as_raw_fd(),
            });
            self.held.push(fd);
            Ok(name)
        };
        let lowerdir = lower
            .iter()
            .map(|l| open(l))
            .collect::<Result<Vec<_>, _>>()?;
        let upperdir = open(upper)?;
        let workdir = open(work)?;
        let mut data = format!(
            "lowerdir={},upperdir={upperdir},workdir={workdir}",
            lowerdir.join(":"),
        );
        if userxattr {
            data.push_str(",userxattr");
        }
        let resolved = self.resolve(dest)?;
        self.check_below_overlays(&resolved)?;
        self.add_fs(&resolved, "mount overlay", c"overlay", ROOT_FLAGS, &data)?;
        self.overlays.push(OverlayLayers {
            dest: resolved,
            dirs,
        });
        Ok(())
    }

    /// Refuses a mount point that passes through a symlink of an earlier overlay's layers:
    /// the set-up child resolves paths from the host's root, so an image's absolute link
    /// would otherwise lead its mkdirs and mounts out to host directories.
    fn check_below_overlays(&self, dest: &Path) -> Result<(), Error> {
        for overlay in &self.overlays {
            let Ok(rest) = dest.strip_prefix(&overlay.dest) else {
                continue;
            };
            let mut sub = PathBuf::new();
            for part in rest.components() {
                sub.push(part);
                let found = overlay
                    .dirs
                    .iter()
                    .find_map(|d| std::fs::symlink_metadata(d.join(&sub)).ok());
                if found.is_some_and(|m| m.file_type().is_symlink()) {
                    return Err(Error::Spec(format!(
                        "mount destination {} passes through a symlink of the overlay on {}",
                        dest.display(),
                        overlay.dest.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn add_bind(&mut self, source: &Path, dest: &Path, readonly: bool) -> Result<(), Error> {
        let dest = self.resolve(dest)?;
        self.check_below_overlays(&dest)?;
        let meta = std::fs::metadata(source).map_err(|err| Error::BindSource {
            src: source.to_path_buf(),
            dest: dest.clone(),
            err,
        })?;
        if meta.is_dir() {
            self.dir(&dest)?;
        } else {
            self.parents(&dest)?;
            self.ops.push(Op::Touch {
                path: self.host(&dest)?,
            });
        }
        let slot = Some(self.slots);
        self.slots += 1;
        let op = Op::Bind {
            source: cstring(source.as_os_str())?,
            path: self.host(&dest)?,
            readonly,
            slot,
        };
        self.ops.push(op);
        self.mounted.push(dest);
        Ok(())
    }

    /// A filesystem instance on a directory: `dev` uses it for its tmpfs, pts and shm too.
    /// Binds the new procfs' kernel interfaces read-only onto themselves. The host's /proc
    /// tells which exist: it is the same kernel.
    fn protect_proc_interfaces(&mut self, dest: &Path) -> Result<(), Error> {
        let dest = self.resolve(dest)?;
        for name in PROC_KERNEL_INTERFACES {
            if Path::new("/proc").join(name).exists() {
                let path = self.host(&dest.join(name))?;
                self.ops.push(Op::Bind {
                    source: path.clone(),
                    path,
                    readonly: true,
                    slot: None,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn add_fs(
        &mut self,
        dest: &Path,
        what: &'static str,
        fstype: &'static CStr,
        flags: c_ulong,
        data: &str,
    ) -> Result<(), Error> {
        let dest = self.resolve(dest)?;
        self.check_below_overlays(&dest)?;
        self.dir(&dest)?;
        let path = self.host(&dest)?;
        self.ops.push(Op::Mount {
            what,
            fstype,
            path,
            flags,
            data: cstring(OsStr::new(data))?,
        });
        self.mounted.push(dest);
        Ok(())
    }

    fn add_file(&mut self, dest: &Path, contents: &[u8]) -> Result<(), Error> {
        let dest = self.resolve(dest)?;
        self.check_below_overlays(&dest)?;
        self.parents(&dest)?;
        let path = self.host(&dest)?;
        if !self.is_on_mount(&dest) {
            // On the root tmpfs: the final read-only remount of the root protects it.
            self.ops.push(Op::WriteFile {
                path,
                contents: contents.to_vec(),
            });
            return Ok(());
        }
        // On a mount (perhaps a writable host bind): never write there; write on the root
        // tmpfs, bind read-only over the destination, then drop the staging name.
        let stage = PathBuf::from(format!("{STAGE_PREFIX}{}", self.staged));
        self.staged += 1;
        let stage_c = self.host(&stage)?;
        self.ops.push(Op::WriteFile {
            path: stage_c.clone(),
            contents: contents.to_vec(),
        });
        self.ops.push(Op::Touch { path: path.clone() });
        self.ops.push(Op::Bind {
            source: stage_c.clone(),
            path,
            readonly: true,
            slot: None,
        });
        self.ops.push(Op::Unlink { path: stage_c });
        self.mounted.push(dest);
        Ok(())
    }

    fn is_on_mount(&self, dest: &Path) -> bool {
        self.mounted.iter().any(|m| dest.starts_with(m))
    }

    /// Pushes a symlink (used by `dev` for its fixed links).
    pub(crate) fn symlink(&mut self, target: &str, dest: &Path) -> Result<(), Error> {
        let op = Op::Symlink {
            target: cstring(OsStr::new(target))?,
            path: self.host(dest)?,
        };
        self.ops.push(op);
        Ok(())
    }

    /// Pushes an empty mount point and a read-write bind of a host file onto it.
    pub(crate) fn bind_file(&mut self, source: &str, dest: &Path) -> Result<(), Error> {
        self.ops.push(Op::Touch {
            path: self.host(dest)?,
        });
        let source = cstring(OsStr::new(source))?;
        let op = Op::Bind {
            source,
            path: self.host(dest)?,
            readonly: false,
            slot: None,
        };
        self.ops.push(op);
        Ok(())
    }

    /// Ensures `dest` and its parents exist as directories.
    pub(crate) fn dir(&mut self, dest: &Path) -> Result<(), Error> {
        self.parents(dest)?;
        if self.dirs.insert(dest.to_path_buf()) {
            let path = self.host(dest)?;
            self.ops.push(Op::Mkdir { path, mode: 0o755 });
        }
        Ok(())
    }

    fn parents(&mut self, dest: &Path) -> Result<(), Error> {
        let missing: Vec<PathBuf> = dest
            .ancestors()
            .skip(1)
            .take_while(|a| !self.dirs.contains(*a))
            .map(Path::to_path_buf)
            .collect();
        for dir in missing.into_iter().rev() {
            let path = self.host(&dir)?;
            self.ops.push(Op::Mkdir { path, mode: 0o755 });
            self.dirs.insert(dir);
        }
        Ok(())
    }

    /// Normalises `dest` and follows the symlinks the spec created earlier, so a mount below
    /// a link lands where the link points inside the sandbox, never on the host.
    fn resolve(&self, dest: &Path) -> Result<PathBuf, Error> {
        let mut path = normalize(dest)?;
        'restart: for _ in 0..40 {
            for (link, target) in &self.links {
                if let Ok(rest) = path.strip_prefix(link) {
                    if rest.as_os_str().is_empty() {
                        // The destination is the link itself: leave it (the step will fail
                        // with EEXIST and say so).
                        return Ok(path);
                    }
                    let base = if target.is_absolute() {
                        target.clone()
                    } else {
                        link.parent().unwrap_or(Path::new("/")).join(target)
                    };
                    path = normalize(&base.join(rest))?;
                    continue 'restart;
                }
            }
            return Ok(path);
        }
        Err(Error::Spec(format!(
            "too many symlinks resolving {}",
            dest.display()
        )))
    }
}

/// Opens an overlay directory (O_PATH, close-on-exec) so that the child can name it by fd.
fn open_overlay_dir(dir: &Path, dest: &Path) -> Result<std::os::fd::OwnedFd, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    if !dir.is_absolute() {
        return Err(Error::Spec(format!(
            "overlay directory {} for {} is not absolute",
            dir.display(),
            dest.display()
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|err| Error::BindSource {
            src: dir.to_path_buf(),
            dest: dest.to_path_buf(),
            err,
        })?;
    Ok(file.into())
}

/// Absolute, without `.`/`..`/duplicate slashes; `..` is refused rather than interpreted.
fn normalize(dest: &Path) -> Result<PathBuf, Error> {
    if !dest.is_absolute() {
        return Err(Error::Spec(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Spec(format!(
                    "mount destination {} contains ..",
                    dest.display()
                )));
            }
        }
    }
    Ok(out)
}

pub(crate) fn cstring(s: &OsStr) -> Result<CString, Error> {
    CString::new(s.as_bytes())
        .map_err(|_| Error::Spec(format!("{} contains a NUL byte", s.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(mounts: &[Mount]) -> RootPlan {
        RootPlan::new(mounts, Path::new("/s")).unwrap()
    }

    fn mkdirs(plan: &RootPlan) -> Vec<String> {
        plan.ops()
            .iter()
            .filter_map(|op| match op {
                Op::Mkdir { path, .. } => Some(path.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fd_paths_are_formatted_without_allocating() {
        let mut p = FdPath::new();
        assert_eq!(p.of(7).to_bytes(), b"/proc/self/fd/7");
        assert_eq!(p.of(1234).to_bytes(), b"/proc/self/fd/1234");
        assert_eq!(p.of(0).to_bytes(), b"/proc/self/fd/0");
    }

    #[test]
    fn parents_are_created_once_in_order() {
        let p = plan(&[
            Mount::Dir {
                dest: "/a/b/c".into(),
                mode: 0o700,
            },
            Mount::Tmpfs {
                dest: "/a/b/d".into(),
                mode: 0o755,
            },
        ]);
        assert_eq!(mkdirs(&p), ["/s/a", "/s/a/b", "/s/a/b/c", "/s/a/b/d"]);
    }

    #[test]
    fn missing_bind_source_names_source_and_dest() {
        let err = RootPlan::new(
            &[Mount::Bind {
                source: "/nonexistent/x".into(),
                dest: "/n/usr".into(),
                readonly: true,
            }],
            Path::new("/s"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sandbox: bind /nonexistent/x on /n/usr: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn file_bind_gets_a_file_mount_point() {
        let p = plan(&[Mount::Bind {
            source: "/etc/hostname".into(),
            dest: "/etc/h".into(),
            readonly: true,
        }]);
        assert!(matches!(p.ops()[1], Op::Touch { .. }), "{:?}", p.ops());
    }

    #[test]
    fn mounts_below_spec_symlinks_follow_them_inside_the_sandbox() {
        let p = plan(&[
            Mount::Symlink {
                target: "usr/lib64".into(),
                dest: "/lib64".into(),
            },
            Mount::Symlink {
                target: "/opt".into(),
                dest: "/abs".into(),
            },
            Mount::Dir {
                dest: "/lib64/x".into(),
                mode: 0o755,
            },
            Mount::Dir {
                dest: "/abs/y".into(),
                mode: 0o755,
            },
        ]);
        let dirs = mkdirs(&p);
        assert!(dirs.contains(&"/s/usr/lib64/x".to_string()), "{dirs:?}");
        assert!(dirs.contains(&"/s/opt/y".to_string()), "{dirs:?}");
    }

    #[test]
    fn file_on_root_is_written_directly_and_file_on_mount_is_staged() {
        let p = plan(&[
            Mount::File {
                dest: "/etc/passwd".into(),
                contents: b"x".to_vec(),
            },
            Mount::Tmpfs {
                dest: "/tmp".into(),
                mode: 0o1777,
            },
            Mount::File {
                dest: "/tmp/f".into(),
                contents: b"y".to_vec(),
            },
        ]);
        let binds = p
            .ops()
            .iter()
            .filter(|op| matches!(op, Op::Bind { readonly: true, .. }))
            .count();
        assert_eq!(binds, 1);
        assert!(p.ops().iter().any(|op| matches!(op, Op::Unlink { .. })));
    }

    #[test]
    fn dotdot_and_relative_destinations_are_refused() {
        for dest in ["/a/../etc", "relative"] {
            let err = RootPlan::new(
                &[Mount::Dir {
                    dest: dest.into(),
                    mode: 0o755,
                }],
                Path::new("/s"),
            );
            assert!(matches!(err, Err(Error::Spec(_))), "{dest}");
        }
    }

    #[test]
    fn overlay_options_and_symlinked_mount_points() {
        let layers = tempfile::tempdir().unwrap();
        let l = |n: &str| layers.path().join(n);
        for d in ["top", "base", "upper", "work"] {
            std::fs::create_dir(l(d)).unwrap();
        }
        std::os::unix::fs::symlink("/etc", l("top/dev")).unwrap();
        let overlay = Mount::Overlay {
            lower: vec![l("top"), l("base")],
            upper: l("upper"),
            work: l("work"),
            dest: "/".into(),
            userxattr: true,
        };
        let p = RootPlan::new(std::slice::from_ref(&overlay), Path::new("/s")).unwrap();
        let Some(Op::Mount { data, path, .. }) = p.ops().get(4) else {
            panic!("{:?}", p.ops());
        };
        let fds: Vec<i32> = p._held.iter().map(|f| f.as_raw_fd()).collect();
        let want = format!(
            "lowerdir=/proc/self/fd/{}:/proc/self/fd/{},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},userxattr",
            fds[0], fds[1], fds[2], fds[3]
        );
        assert_eq!(data.to_str().unwrap(), want);
        assert_eq!(path.to_str().unwrap(), "/s");
        assert!(p.root_overlay);
        let err = RootPlan::new(
            &[
                overlay.clone(),
                Mount::Dev {
                    dest: "/dev".into(),
                },
            ],
            Path::new("/s"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("passes through a symlink"),
            "{err}"
        );
        let ok = RootPlan::new(
            &[
                overlay,
                Mount::Proc {
                    dest: "/proc".into(),
                },
            ],
            Path::new("/s"),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn overlay_with_bad_directories_is_refused() {
        let missing = Mount::Overlay {
            lower: vec!["/nonexistent/l".into()],
            upper: "/tmp".into(),
            work: "/tmp".into(),
            dest: "/".into(),
            userxattr: false,
        };
        let err = RootPlan::new(&[missing], Path::new("/s")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/l"), "{err}");
        let relative = Mount::Overlay {
            lower: vec!["tmp".into()],
            upper: "/tmp".into(),
            work: "/tmp".into(),
            dest: "/".into(),
            userxattr: false,
        };
        let err = RootPlan::new(&[relative], Path::new("/s"));
        assert!(matches!(err, Err(Error::Spec(_))));
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_stays_absolute(parts in proptest::collection::vec("[a-z.]{1,4}", 0..6)) {
            let raw = format!("/{}", parts.join("//"));
            if let Ok(n) = normalize(Path::new(&raw)) {
                prop_assert!(n.is_absolute());
                prop_assert_eq!(normalize(&n).unwrap(), n.clone());
                prop_assert!(!n.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)));
            } else {
                prop_assert!(parts.iter().any(|p| p == ".."));
            }
        }

        #[test]
        fn every_mkdir_parent_is_made_before_its_child(dests in proptest::collection::vec("(/[a-c]){1,4}", 1..8)) {
            let mounts: Vec<Mount> = dests.iter().map(|d| Mount::Dir { dest: d.into(), mode: 0o755 }).collect();
            let p = plan(&mounts);
            let dirs = mkdirs(&p);
            for (i, d) in dirs.iter().enumerate() {
                let parent = Path::new(d).parent().unwrap();
                if parent != Path::new("/s") {
                    let pos = dirs.iter().position(|x| Path::new(x) == parent);
                    prop_assert!(pos.is_some_and(|pos| pos < i), "{d} before its parent in {dirs:?}");
                }
            }
        }
    }
}
