//! A child that dies with its parent: `PR_SET_PDEATHSIG`, and the check that closes its
//! race (the parent may have died before the prctl, and then no signal ever comes).

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use libc::{c_int, pid_t};

/// How a child recognises the parent it dies with.
#[derive(Debug, Clone, Copy)]
pub enum Parent {
    /// By pid, when the child sees it (`getppid`); not across a new pid namespace, where
    /// the parent is outside and `getppid` says 0.
    Pid(pid_t),
    /// By the write end of a pipe whose only read end the parent holds: it reports POLLERR
    /// once the parent is gone. Works across pid namespaces.
    PipeWriter(RawFd),
}

/// Why [`die_with_parent`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentGone {
    /// The parent died before the death signal was set: the child should exit now.
    Already,
    /// prctl failed with this errno.
    Prctl(i32),
}

/// In a child: receive `signal` when the parent (the forking thread, strictly) dies, and
/// make sure it had not died already. Async-signal-safe (for use between fork and exec).
/// The death signal is reset by fork and by id changes: set it again after those.
pub fn die_with_parent(signal: c_int, parent: Parent) -> Result<(), ParentGone> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(ParentGone::Prctl(errno()));
    }
    let gone = match parent {
        Parent::Pid(pid) => {
            // SAFETY: getppid cannot fail.
            let ppid = unsafe { libc::getppid() };
            ppid != pid
        }
        Parent::PipeWriter(fd) => {
            let mut pfd = libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            n > 0 && pfd.revents & libc::POLLERR != 0
        }
    };
    if gone {
        return Err(ParentGone::Already);
    }
    Ok(())
}

/// Makes the child of `command` get `signal` when this thread dies (spawn from the thread
/// that lives as long as the child should, normally the main one). A child whose launcher
/// died before it was set up exits with 128+`signal`, as the signal would have made it.
pub fn die_with_caller(command: &mut Command, signal: c_int) {
    // SAFETY: getpid cannot fail.
    let launcher = unsafe { libc::getpid() };
    let hook = move || match die_with_parent(signal, Parent::Pid(launcher)) {
        Ok(()) => Ok(()),
        // SAFETY: _exit is async-signal-safe and ends this child at once.
        Err(ParentGone::Already) => unsafe { libc::_exit(128 + signal) },
        Err(ParentGone::Prctl(e)) => Err(std::io::Error::from_raw_os_error(e)),
    };
    // SAFETY: the hook only makes async-signal-safe calls (prctl, getppid, _exit) on values
    // computed before the fork, and allocates nothing.
    unsafe { command.pre_exec(hook) };
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Child;
    use std::time::Duration;

    fn pipe() -> [c_int; 2] {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        fds
    }

    fn read_i32(fd: c_int) -> Option<i32> {
        let mut buf = [0u8; 4];
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 4) };
        (n == 4).then(|| i32::from_ne_bytes(buf))
    }

    fn write_i32(fd: c_int, value: i32) {
        // SAFETY: writing from our buffer.
        unsafe { libc::write(fd, value.to_ne_bytes().as_ptr().cast(), 4) };
    }

    /// Forks a middle process that forks a grandchild and then exits; the grandchild calls
    /// die_with_parent (after `delay` ms) and reports 0 (set), 1 (parent already gone) or 2
    /// (prctl failed) on the pipe, then waits to be killed. Returns (grandchild, report).
    /// The forked processes make only async-signal-safe calls (the test harness has threads).
    fn orphan(delay_ms: u32) -> (i32, Option<i32>) {
        let [read, write] = pipe();
        // SAFETY: the children below only call async-signal-safe functions, then _exit.
        let middle = unsafe { libc::fork() };
        assert!(middle >= 0);
        if middle == 0 {
            // SAFETY: getpid cannot fail.
            let me = unsafe { libc::getpid() };
            // SAFETY: as above.
            let grandchild = unsafe { libc::fork() };
            if grandchild == 0 {
                // SAFETY: plain sleeps, no memory.
                unsafe { libc::usleep(delay_ms * 1000) };
                let report = match die_with_parent(libc::SIGKILL, Parent::Pid(me)) {
                    Ok(()) => 0,
                    Err(ParentGone::Already) => 1,
                    Err(ParentGone::Prctl(_)) => 2,
                };
                write_i32(write, report);
                // SAFETY: sleeping until a signal ends it (or 5 s, so nothing is left behind).
                unsafe { libc::sleep(if report == 0 { 30 } else { 5 }) };
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(0) };
            }
            write_i32(write, grandchild);
            if delay_ms == 0 {
                // Give the grandchild time to set its death signal while we live.
                // SAFETY: plain sleep.
                unsafe { libc::usleep(200_000) };
            }
            // SAFETY: leaving the forked child at once.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(write) };
        let grandchild = read_i32(read).unwrap();
        let mut middle_child = Child::forked(middle).unwrap();
        assert_eq!(middle_child.wait().unwrap(), 0);
        let report = read_i32(read);
        // SAFETY: closing our read end.
        unsafe { libc::close(read) };
        (grandchild, report)
    }

    #[test]
    fn a_child_dies_with_its_parent() {
        let (grandchild, report) = orphan(0);
        assert_eq!(report, Some(0));
        // Killed when the middle process exited: its pidfd says so at once.
        let adopted = crate::start_time(grandchild).and_then(|t| Child::adopt(grandchild, t));
        if let Some(adopted) = adopted {
            assert!(adopted.wait_exit(Duration::from_secs(5)), "still alive");
        }
        // Either gone already or a zombie of init: no start time means it has exited.
        assert_eq!(crate::start_time(grandchild), None);
    }

    #[test]
    fn a_parent_dead_before_the_prctl_is_noticed() {
        let (grandchild, report) = orphan(300);
        assert_eq!(report, Some(1));
        if let Some(t) = crate::start_time(grandchild)
            && let Some(adopted) = Child::adopt(grandchild, t)
        {
            adopted.stop(Duration::from_secs(5));
        }
    }
}
