//! The plain description of one sandboxed launch.
//!
//! This is the contract between the layers above (node trees, apps) and the runtime:
//! everything is already resolved (variables expanded, exec exports run, merge done), so
//! the runtime only applies it. Nothing here is read from a file.

use std::ffi::OsString;
use std::path::PathBuf;

/// One launch: what to run, in which namespaces, on which root, under which limits.
#[derive(Debug, Clone, Default)]
pub struct SandboxSpec {
    /// Program and its arguments, passed to execve exactly as given. `argv[0]` is looked up
    /// in the sandbox's `PATH` (from `env`) when it holds no slash.
    pub argv: Vec<OsString>,
    /// The complete environment of the program (nothing is inherited implicitly).
    pub env: Vec<(OsString, OsString)>,
    /// Which namespaces to create. The mount namespace is always new.
    pub namespaces: Namespaces,
    /// Ids the program runs as inside the sandbox.
    pub user: UserIds,
    /// Hostname inside the sandbox; only applied with a new UTS namespace.
    pub hostname: Option<String>,
    /// Mounts applied in order on a fresh tmpfs root, before pivot_root.
    pub mounts: Vec<Mount>,
    /// Working directory of the program inside the sandbox (default `/`).
    pub chdir: Option<PathBuf>,
    /// File mode creation mask of the program (default 0o022).
    pub umask: Option<u32>,
    /// Kill the sandbox when the launching process dies.
    pub die_with_parent: bool,
    /// Start the program in a new session (no controlling terminal: no TIOCSTI injection).
    pub new_session: bool,
    /// Capabilities the program keeps (all others are dropped from every set).
    pub capabilities: Vec<Capability>,
    /// System call filter.
    pub seccomp: SeccompPolicy,
    /// Resource limits applied through a cgroup created for this launch.
    pub cgroup: CgroupLimits,
}

/// `true` means "create a new namespace of this kind" (that is, *unshare* it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    pub user: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    pub time: bool,
}

impl Default for Namespaces {
    /// Everything unshared: least privilege unless a node shares something explicitly.
    fn default() -> Self {
        Namespaces {
            user: true,
            pid: true,
            net: true,
            ipc: true,
            uts: true,
            cgroup: true,
            time: true,
        }
    }
}

/// Ids inside the sandbox. Rootless launches map this uid/gid onto the caller's own ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

/// One step of building the sandbox's root filesystem. Destinations are absolute paths
/// inside the sandbox; missing parent directories are created on the tmpfs root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// Bind a host file or directory. Read-only binds are remounted read-only, nosuid, nodev.
    Bind {
        source: PathBuf,
        dest: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs (also used for anonymous exports: empty, writable, gone after the run).
    Tmpfs { dest: PathBuf, mode: u32 },
    /// A new procfs for the sandbox's pid namespace.
    Proc { dest: PathBuf },
    /// A minimal /dev: null, zero, full, random, urandom, tty bound from the host, plus
    /// pts, shm, fd/stdin/stdout/stderr links.
    Dev { dest: PathBuf },
    /// A POSIX message queue filesystem (needs a new IPC namespace).
    Mqueue { dest: PathBuf },
    /// A symbolic link `dest -> target`.
    Symlink { target: PathBuf, dest: PathBuf },
    /// A read-only file with the given content (exec exports).
    File { dest: PathBuf, contents: Vec<u8> },
    /// An empty directory (a mount point or a parent of one).
    Dir { dest: PathBuf, mode: u32 },
    /// An overlayfs: read-only `lower` layers (TOP FIRST, as overlayfs' `lowerdir=` wants)
    /// under a writable `upper` (with its `work` directory on the same filesystem). At `/` it
    /// becomes the sandbox's root and stays writable (the upper layer is the instance's).
    /// Mounts after it that land below it must not pass through a symlink of the layers.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        dest: PathBuf,
        /// Opaque-directory and metacopy xattrs live in `user.overlay.*` (overlayfs'
        /// `userxattr` option: rootless stores and user namespaces) rather than
        /// `trusted.overlay.*` (a root store mounted without a user namespace).
        userxattr: bool,
    },
}

/// A Linux capability, by its kernel number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(pub u8);

/// Which system call filter the program runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompPolicy {
    /// Deny what container runtimes deny by default (see `seccomp` module for the list).
    #[default]
    Default,
    /// No filter at all.
    Unconfined,
    /// A profile file (JSON, see the `seccomp` module).
    Profile(PathBuf),
}

/// Limits enforced through a per-launch cgroup (v2, or v1 controllers where the host
/// only has those). `None` = no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Bytes.
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// CFS quota and period, in microseconds.
    pub cpu_max: Option<(u64, u64)>,
    /// Where to create the per-launch cgroup; default: below the caller's own cgroup (must
    /// be writable, as with a delegated systemd scope) or Cairn's configured cgroup root.
    pub parent: Option<PathBuf>,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        self.memory_max.is_none() && self.pids_max.is_none() && self.cpu_max.is_none()
    }
}
