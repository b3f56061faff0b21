//! Cairn's process supervisor: the one place that starts, watches, signals and reaps
//! processes for every engine (the sandbox, podman, the VM host, attach keepers, `cairn app
//! stop`).
//!
//! - [`Child`]: a process held by a pidfd, spawned from a [`std::process::Command`], taken
//!   over after a `fork`/`clone` ([`Child::forked`]), or adopted by pid and start time
//!   ([`Child::adopt`]: signal and watch it, but its status belongs to its parent).
//!   [`exit_code`] is the shell's convention: the code, or 128+N for death by signal N;
//!   [`detach`] starts one that outlives its caller.
//! - [`Signals`]: the usual signals ([`FORWARDED`]) blocked and read from a signalfd, so a
//!   loop can poll them next to its own descriptors; [`supervise`] is the plain loop that
//!   passes them to a child until it exits.
//! - [`die_with_parent`] and [`die_with_caller`]: `PR_SET_PDEATHSIG` and the check that the
//!   parent did not die before it took effect.
//! - The init side ([`reap`]): a pid 1 (the sandbox's reaper, a VM guest) waits for signals
//!   with `sigwaitinfo`, forwards them and reaps every orphan.
//! - [`RawTerminal`]: the caller's terminal in raw mode while a guest or container owns the
//!   line discipline, restored on drop; it can only exist while [`Signals`] catches the
//!   signals that would otherwise end the process with the terminal still raw.
//!
//! It has no async runtime and starts no thread: it is used between `fork` and `exec`, and
//! everything documented as async-signal-safe neither allocates nor locks.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod child;
mod death;
pub mod reap;
mod signals;
mod terminal;

pub use child::{Child, Pipes, detach, exit_code, start_time};
pub use death::{Parent, ParentGone, die_with_caller, die_with_parent};
pub use signals::{
    FORWARDED, FORWARDED_WITH_SIGCHLD, Received, SignalSet, Signals, reset_for_exec, supervise,
};
pub use terminal::RawTerminal;
