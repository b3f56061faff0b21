//! Cairn's sandbox runtime.
//!
//! Takes a fully resolved [`SandboxSpec`] and runs its program in new namespaces on a
//! tmpfs root assembled from the spec's mounts, with no_new_privs, dropped capabilities,
//! a seccomp filter and cgroup limits; returns the program's exit status.
//!
//! It does not read configuration files, expand variables or know about nodes: that is
//! `cairn-node`'s job. It has no async runtime: it forks, and forking a multi-threaded
//! process is unsound, so callers must launch before starting one.

mod spec;

pub use spec::{CgroupLimits, Capability, Mount, Namespaces, SandboxSpec, SeccompPolicy, UserIds};
