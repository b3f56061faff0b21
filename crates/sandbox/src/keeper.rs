//! Kept sandboxes: namespaces that outlive one program, for programs to [`enter`] later.
//!
//! [`keep`] builds a sandbox exactly as [`run`] does (same plan, same order of set-up), but
//! its pid 1 runs no program: once the root is in place it closes the error pipe (EOF tells
//! the launching process the sandbox is ready) and then only holds the namespaces, reaping
//! the orphans of entered programs, until SIGTERM, SIGINT, SIGHUP or SIGQUIT. When pid 1
//! exits the kernel kills whatever still runs in the pid namespace, and the mount namespace
//! (overlays included) goes with it: nothing is left mounted on the host.
//!
//! A kept sandbox has no time namespace (`unshare(CLONE_NEWTIME)` only applies to children,
//! and pid 1 forks none, so there would be nothing to join); it shares the host's clocks,
//! which a fresh sandbox's time namespace does too, as no offsets are set.
//!
//! The launching process stays as the keeper's parent: it forwards signals to pid 1 and
//! removes the cgroup after it, like [`run`]. Callers that want a detached keeper start it in
//! a process of its own (setsid, stdio on /dev/null).
//!
//! [`enter`]: crate::enter
//! [`run`]: crate::run

use std::path::PathBuf;

use cairn_process::start_time;

use libc::pid_t;

use crate::cgroup::Cgroup;
use crate::error::Error;
use crate::process::Launch;
use crate::spec::SandboxSpec;
use crate::userns::Caller;

/// A kept sandbox, as programs find it to enter it: the host pid of its pid 1 and that
/// process's start time (so a reused pid is never mistaken for it), and its cgroup
/// directories (entered programs join them, so the instance's limits cover them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    pub cgroup: Vec<PathBuf>,
}

impl Kept {
    /// True while `pid` is still the sandbox's pid 1 (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// Builds the sandbox of `spec` and keeps it until its pid 1 is told to stop (a forwarded
/// SIGTERM, SIGINT, SIGHUP or SIGQUIT); returns pid 1's status (0 after such a stop).
/// `on_ready` is called once, with the kept sandbox, when it can be entered. `spec.argv` is
/// not run. Needs a pid namespace (pid 1 is what holds the sandbox).
pub fn keep(spec: &SandboxSpec, on_ready: &mut dyn FnMut(&Kept)) -> Result<i32, Error> {
    if !spec.namespaces.pid {
        return Err(Error::Spec("a kept sandbox needs a pid namespace".into()));
    }
    let placeholder;
    let spec = if spec.argv.is_empty() {
        placeholder = SandboxSpec {
            argv: vec!["/".into()],
            ..spec.clone()
        };
        &placeholder
    } else {
        spec
    };
    let caller = Caller::current();
    let cgroup = Cgroup::create(&spec.cgroup)?;
    let dirs = cgroup
        .as_ref()
        .map(|c| c.dirs().to_vec())
        .unwrap_or_default();
    let mut ready = |pid: pid_t| {
        let kept = Kept {
            pid,
            start_time: start_time(pid).unwrap_or_default(),
            cgroup: dirs.clone(),
        };
        on_ready(&kept);
    };
    let result = Launch::prepare(spec, caller, cgroup.as_ref())
        .and_then(|launch| launch.into_keeper().execute(Some(&mut ready)));
    if let Some(cg) = cgroup {
        cg.remove();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_sandboxes_are_known_by_pid_and_start_time() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(t));
        let kept = Kept {
            pid: me,
            start_time: t,
            cgroup: Vec::new(),
        };
        assert!(kept.is_alive());
        assert!(
            !Kept {
                start_time: t + 1,
                ..kept
            }
            .is_alive()
        );
    }
}
