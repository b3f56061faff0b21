//! Signal forwarding, for the launching process and for the sandbox's pid 1.
//!
//! Both are single-threaded loops over sigwaitinfo with the forwarded signals and SIGCHLD
//! blocked: no handlers, no async-signal-safety concerns, and no lost signals between
//! "check the child" and "wait" (a blocked signal stays pending). A pid namespace's init
//! ignores signals it has no handler for, unless they are blocked: blocking them is what
//! lets pid 1 receive the parent's SIGTERM at all.

use std::mem::MaybeUninit;

use libc::{c_int, pid_t, sigset_t};

use crate::error::Error;
use crate::sys;

/// What `cairn run` passes on to the program.
pub(crate) const FORWARDED: [c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGWINCH,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
];

/// The forwarded signals plus SIGCHLD.
pub(crate) fn wait_set() -> sigset_t {
    let mut set = MaybeUninit::<sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for sig in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
        // SAFETY: the set is initialised and sig is a valid signal number.
        unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
    }
    // SAFETY: initialised by sigemptyset above.
    unsafe { set.assume_init() }
}

/// Blocks the wait set for the duration of a launch, restoring the caller's mask on drop.
pub(crate) struct Blocked {
    old: sigset_t,
}

impl Blocked {
    pub(crate) fn new(set: &sigset_t) -> Result<Blocked, Error> {
        let mut old = MaybeUninit::<sigset_t>::uninit();
        // SAFETY: both sets are valid; sigprocmask fills `old`.
        let rc = unsafe { libc::sigprocmask(libc::SIG_BLOCK, set, old.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::sys("sigprocmask"));
        }
        // SAFETY: initialised by the successful sigprocmask.
        Ok(Blocked {
            old: unsafe { old.assume_init() },
        })
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restoring a mask sigprocmask gave us.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// In the program's process before execve: default SIGPIPE (Rust ignores it) and no mask.
pub(crate) fn reset_for_exec() {
    let mut empty = MaybeUninit::<sigset_t>::uninit();
    // SAFETY: restoring a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(empty.as_mut_ptr()) };
    // SAFETY: the set is initialised; the old mask is not wanted.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) };
}

/// Waits for one signal of `set`; returns it and whether to pass it on.
///
/// With `shared_tty` (no new session) the program is in the caller's foreground process
/// group, so the terminal's own signals (SIGINT from ^C, SIGWINCH, ...: si_code SI_KERNEL)
/// already reached it: forwarding them again would deliver them twice.
fn wait_signal(set: &sigset_t, shared_tty: bool) -> (c_int, bool) {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: set is valid and info is a writable siginfo_t.
        let sig = unsafe { libc::sigwaitinfo(set, info.as_mut_ptr()) };
        if sig > 0 {
            // SAFETY: sigwaitinfo filled info.
            let from_tty = unsafe { info.assume_init() }.si_code == libc::SI_KERNEL;
            let forward = sig != libc::SIGCHLD && !(shared_tty && from_tty);
            return (sig, forward);
        }
        // EINTR (a stop/continue): wait again.
    }
}

/// Exit code of a wait status: the code, or 128+N for death by signal N.
pub(crate) fn exit_code(status: c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

fn try_wait(pid: pid_t) -> Option<c_int> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-parameter.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if rc == pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            return Some(status);
        }
        if rc == pid {
            continue;
        }
        if rc < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if rc < 0 && sys::errno() == libc::ECHILD {
            // Only when the caller set SIGCHLD to SIG_IGN (children are then reaped by the
            // kernel and their status is lost): report a generic failure rather than hang.
            return Some(255 << 8);
        }
        return None;
    }
}

/// Launching process: forwards signals to `child` until it exits; returns its wait status.
pub(crate) fn forward_until_exit(child: pid_t, set: &sigset_t, shared_tty: bool) -> c_int {
    loop {
        if let Some(status) = try_wait(child) {
            return status;
        }
        let (sig, forward) = wait_signal(set, shared_tty);
        if forward {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// The sandbox's reaper (pid 1 of its pid namespace, or a plain parent for a time namespace
/// without one): forwards signals to `program`, reaps every child, and exits with the
/// program's code (128+N for a signal: pid 1 cannot re-raise a fatal signal on itself).
pub(crate) fn reap(program: pid_t, set: &sigset_t, shared_tty: bool) -> ! {
    loop {
        let (sig, forward) = wait_signal(set, shared_tty);
        if forward {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(program, sig) };
        }
        if sig != libc::SIGCHLD {
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-parameter.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
            // A stop (the program traced or stopped) is not an exit.
            let ended = libc::WIFEXITED(status) || libc::WIFSIGNALED(status);
            if pid == program && ended {
                sys::exit(exit_code(status));
            }
            if pid <= 0 {
                break;
            }
        }
    }
}

/// A kept sandbox's pid 1 (see `keeper`): runs nothing, reaps whatever is reparented to it
/// (orphans of entered programs), and exits on SIGTERM, SIGINT, SIGHUP or SIGQUIT, which
/// makes the kernel kill everything left in the pid namespace.
pub(crate) fn hold(set: &sigset_t) -> ! {
    loop {
        let (sig, _) = wait_signal(set, false);
        match sig {
            libc::SIGCHLD => loop {
                let mut status = 0;
                // SAFETY: status is a valid out-parameter.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
                if pid <= 0 {
                    break;
                }
            },
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => sys::exit(0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(42 << 8), 42);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }

    #[test]
    fn wait_set_holds_forwarded_signals_and_sigchld() {
        let set = wait_set();
        for sig in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
            // SAFETY: valid set and signal.
            assert_eq!(unsafe { libc::sigismember(&set, sig) }, 1);
        }
        // SAFETY: valid set and signal.
        assert_eq!(unsafe { libc::sigismember(&set, libc::SIGKILL) }, 0);
    }
}
