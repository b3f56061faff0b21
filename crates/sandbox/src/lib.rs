//! Cairn's sandbox runtime.
//!
//! Takes a fully resolved [`SandboxSpec`] and runs its program in new namespaces on a
//! tmpfs root assembled from the spec's mounts, with no_new_privs, dropped capabilities,
//! a seccomp filter and cgroup limits; [`run`] returns the program's exit status (128+N
//! when a signal N killed it). Everything is done with direct system calls: no bwrap, no
//! helper binaries.
//!
//! It does not read configuration files, expand variables or know about nodes: that is
//! `cairn-node`'s job. It does not check optional mount sources (a missing bind source is an
//! error here). It has no async runtime: it forks, and forking a multi-threaded process is
//! unsound, so callers must launch before starting threads (the child never allocates, which
//! makes most multi-threaded callers work in practice, but that is not a promise).
//!
//! # Order of set-up, and why
//!
//! In the launching process (all the allocating work, once):
//! 1. cgroup directories and limits (`cgroup`), the mount plan with bind sources checked
//!    (`rootfs`, `dev`), the seccomp programs (`seccomp`), execve's arrays and PATH
//!    candidates;
//! 2. block the forwarded signals and SIGCHLD (`cairn_process::Signals`), then one `clone` with every
//!    namespace flag except time (clone cannot take it).
//!
//! In the set-up child (replays the plan, never allocates):
//! 1. PR_SET_PDEATHSIG, then check the parent is still alive (closes the race);
//! 2. user namespace maps (`userns`): rootless, the child writes them first; as root the
//!    parent writes them right after clone and the child only waits for them before the
//!    mounts (creating files needs mapped ids, the steps before do not);
//! 3. join the cgroup, so everything after is accounted and limited (then unshare the cgroup
//!    namespace so its root is the launch's cgroup);
//! 4. hostname, loopback up (new UTS/net namespaces);
//! 5. mounts: / private, bind sources opened (O_PATH), tmpfs root over /tmp (private to this
//!    mount namespace: no host directory to create or remove), the spec's mounts in order,
//!    root read-only, `pivot_root(".", ".")`, detach the old root (`rootfs`);
//! 6. unshare the time namespace (takes effect for children: the program);
//! 7. with a pid namespace, fork: pid 1 stays as the reaper and forwards signals; pid 2
//!    becomes the program.
//!
//! In the program's process: setsid, bounding set, id switch (root launches), death signal
//! again (reset by fork and id changes), capability sets, no_new_privs, umask, chdir, every
//! fd but 0-2 close-on-exec, signal mask reset, seccomp last (it would otherwise constrain
//! the set-up itself), then execve over the PATH candidates.
//!
//! Failures in the child travel as one line over a close-on-exec pipe: EOF without data
//! means execve succeeded. The launching process does not wait for that report (one wake-up
//! less on the hot path): it forwards signals until the sandbox's pid 1 exits, then reads the
//! pipe. With the pid namespace gone, the cgroup is removed.
//!
//! Kept sandboxes (`keeper`, `enter`): [`keep`] builds the same sandbox but its pid 1 runs
//! no program and holds the namespaces until stopped; [`enter`] runs a program in such a
//! sandbox (setns into its namespaces, fork, the same program steps as above).
//!
//! Speed: the hot path is one clone, about three system calls per mount, a handful per
//! privilege step, and no round trip between parent and child (rootless; as root the parent
//! writes the id maps while the child works on things that do not need them). No host
//! directory is created (creating and removing one costs milliseconds on a busy journal).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod caps;
mod cgroup;
mod dev;
mod enter;
mod error;
mod keeper;
mod process;
mod rootfs;
mod seccomp;
mod spec;
mod sys;
mod userns;

pub use enter::enter;
pub use error::Error;
pub use keeper::{Kept, keep};
pub use process::run;
pub use spec::{Capability, CgroupLimits, Mount, Namespaces, SandboxSpec, SeccompPolicy, UserIds};
