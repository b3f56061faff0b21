//! The init side: a pid 1 (the sandbox's reaper, a kept sandbox's holder, a VM guest's
//! init) inherits every orphan and must reap them all. Everything here is async-signal-safe
//! and allocates nothing: the sandbox's pid 1 is a clone of a possibly multi-threaded
//! process.

use libc::pid_t;

use crate::child::exit_code;
use crate::signals::SignalSet;

/// Reaps every child that has ended, without blocking; the exit code of `target` if it was
/// one of them.
pub fn ended(target: Option<pid_t>) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid <= 0 {
            return None;
        }
        // A stop (the program traced or stopped) is not an exit.
        let exited = libc::WIFEXITED(status) || libc::WIFSIGNALED(status);
        if Some(pid) == target && exited {
            return Some(exit_code(status));
        }
    }
}

/// As pid 1 with `set` blocked (it must hold SIGCHLD): passes the signals of `set` to
/// `program` (see [`crate::Received::should_forward`]) and reaps every child until
/// `program` exits; returns its exit code.
pub fn until_exit(program: pid_t, set: &SignalSet, shared_tty: bool) -> i32 {
    loop {
        let got = set.wait();
        if got.should_forward(shared_tty) {
            // SAFETY: signalling our own child, not reaped yet (so the pid is still its).
            unsafe { libc::kill(program, got.signal) };
        }
        if got.signal != libc::SIGCHLD {
            continue;
        }
        if let Some(code) = ended(Some(program)) {
            return code;
        }
    }
}

/// As pid 1 with `set` blocked: runs nothing, reaps orphans, and returns on SIGTERM,
/// SIGINT, SIGHUP or SIGQUIT (when pid 1 then exits the kernel kills the rest of its pid
/// namespace).
pub fn until_stopped(set: &SignalSet) {
    loop {
        match set.wait().signal {
            libc::SIGCHLD => {
                ended(None);
            }
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => return,
            _ => {}
        }
    }
}

/// Blocking reaping (SIGCHLD not blocked, signals handled elsewhere) until `target` exits;
/// its exit code, 255 when there is nothing left to wait for.
pub fn blocking_until(target: pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got == target && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            return exit_code(status);
        }
        if got < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
}

/// Blocking reaping until no child is left.
pub fn all() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}
