//! Signals a launcher passes on to what it runs.
//!
//! A launcher blocks the signals it forwards and reads them: from a signalfd ([`Signals`])
//! when it also waits for other things (a pidfd, sockets), with `sigwaitinfo`
//! ([`SignalSet::wait`]) in a pid 1 that must not allocate. No handlers, so no
//! async-signal-safety concerns and no signal lost between "check the child" and "wait" (a
//! blocked signal stays pending). A pid namespace's init ignores signals it has no handler
//! for unless they are blocked: blocking them is what lets pid 1 receive SIGTERM at all.
//!
//! The mask is per thread: threads started after the block inherit it; one started before
//! would take a process-directed signal with its default action, so block first.

use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, sigset_t};

use crate::child::{Child, poll_in};

/// What a launcher passes on to its program: the terminal's and the service manager's
/// signals, the two left to applications, and SIGCONT (a stopped launcher's program
/// continues with it).
pub const FORWARDED: [c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGWINCH,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
];

/// [`FORWARDED`] and SIGCHLD: what a pid 1 waits for (see [`crate::reap`]).
pub const FORWARDED_WITH_SIGCHLD: [c_int; 9] = {
    let mut set = [libc::SIGCHLD; 9];
    let mut i = 0;
    while i < FORWARDED.len() {
        set[i] = FORWARDED[i];
        i += 1;
    }
    set
};

/// A set of signal numbers (a `sigset_t`).
#[derive(Clone, Copy)]
pub struct SignalSet(sigset_t);

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<c_int> = (1..65).filter(|&s| self.contains(s)).collect();
        f.debug_tuple("SignalSet").field(&members).finish()
    }
}

impl SignalSet {
    pub fn of(signals: &[c_int]) -> SignalSet {
        let mut set = MaybeUninit::<sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        for &sig in signals {
            // SAFETY: the set is initialised; an invalid number only makes sigaddset fail.
            unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
        }
        // SAFETY: initialised by sigemptyset above.
        SignalSet(unsafe { set.assume_init() })
    }

    pub fn contains(&self, sig: c_int) -> bool {
        // SAFETY: a valid set; an invalid number makes sigismember return -1.
        unsafe { libc::sigismember(&self.0, sig) == 1 }
    }

    /// Waits for one signal of the set, which the calling thread must block. Async-signal-
    /// safe: for a pid 1 that must not allocate.
    pub fn wait(&self) -> Received {
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: the set is valid and info is a writable siginfo_t.
            let sig = unsafe { libc::sigwaitinfo(&self.0, info.as_mut_ptr()) };
            if sig > 0 {
                // SAFETY: sigwaitinfo filled info (it was zeroed before, in any case).
                let code = unsafe { info.assume_init() }.si_code;
                return Received {
                    signal: sig,
                    from_kernel: code == libc::SI_KERNEL,
                };
            }
            // EINTR (a stop/continue): wait again.
        }
    }
}

/// One signal received, and whether the kernel sent it (a terminal's ^C, SIGWINCH, a
/// hang-up: si_code SI_KERNEL) rather than a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signal: c_int,
    pub from_kernel: bool,
}

impl Received {
    /// Whether to pass this signal on to a program. With `shared_tty` the program is in the
    /// caller's foreground process group, so the terminal's own signals already reached it:
    /// forwarding them again would deliver them twice. SIGCHLD is the launcher's own.
    pub fn should_forward(&self, shared_tty: bool) -> bool {
        self.signal != libc::SIGCHLD && !(shared_tty && self.from_kernel)
    }
}

/// Signals blocked in this thread and readable from a signalfd, until dropped (the thread's
/// previous mask comes back then; a signal still pending is delivered as usual). Not
/// `Send`: the mask belongs to the thread that blocked it.
pub struct Signals {
    set: SignalSet,
    old: sigset_t,
    fd: OwnedFd,
    _thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").field("set", &self.set).finish()
    }
}

impl Signals {
    /// Blocks `signals` in this thread and opens a non-blocking signalfd for them.
    pub fn block(signals: &[c_int]) -> io::Result<Signals> {
        let set = SignalSet::of(signals);
        let mut old = MaybeUninit::<sigset_t>::uninit();
        // SAFETY: both sets are valid; pthread_sigmask fills `old`.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, old.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: initialised by the successful pthread_sigmask.
        let old = unsafe { old.assume_init() };
        let flags = libc::SFD_CLOEXEC | libc::SFD_NONBLOCK;
        // SAFETY: -1 asks for a new signalfd over a valid set.
        let fd = unsafe { libc::signalfd(-1, &set.0, flags) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // SAFETY: restoring the mask pthread_sigmask gave us.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return Err(err);
        }
        Ok(Signals {
            set,
            old,
            // SAFETY: signalfd returned a fresh descriptor that we now own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            _thread: PhantomData,
        })
    }

    /// The blocked set, as a forked pid 1 waits on it (it inherits the mask).
    pub fn set(&self) -> &SignalSet {
        &self.set
    }

    /// The next pending signal, `None` when there is none now.
    pub fn read(&self) -> Option<Received> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: reading one signalfd_siginfo into a buffer of its size.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n == size as isize {
                // SAFETY: the kernel filled the whole structure (it was zeroed before).
                let info = unsafe { info.assume_init() };
                return Some(Received {
                    signal: info.ssi_signo as c_int,
                    from_kernel: info.ssi_code == libc::SI_KERNEL,
                });
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
    }

    /// In a forked child: the mask as it was before [`Signals::block`] (what a child that
    /// runs something else should start from). Async-signal-safe.
    pub fn restore_in_child(&self) {
        // SAFETY: setting a mask pthread_sigmask gave us; no memory is written.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restoring the mask pthread_sigmask gave us, in the thread that blocked.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// In a program's process before execve: default SIGPIPE (Rust ignores it) and no mask.
/// Async-signal-safe.
pub fn reset_for_exec() {
    // SAFETY: restoring a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let empty = SignalSet::of(&[]);
    // SAFETY: the set is initialised; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty.0, std::ptr::null_mut()) };
}

/// Passes the signals `signals` catches to `child` until it exits; returns its exit code
/// (128+N for signal N). `shared_tty`: see [`Received::should_forward`]. The child's end is
/// seen on its pidfd, so a SIGCHLD taken by another thread cannot stall the loop.
pub fn supervise(child: &mut Child, signals: &Signals, shared_tty: bool) -> io::Result<i32> {
    loop {
        if let Some(code) = child.try_wait()? {
            return Ok(code);
        }
        poll_in(&[signals.as_fd(), child.as_fd()], None)?;
        while let Some(got) = signals.read() {
            if got.should_forward(shared_tty) {
                // It may have exited meanwhile (ESRCH): the next round reaps it.
                let _ = child.signal(got.signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    /// A signal for this thread only (the test harness's other threads do not block it).
    fn raise_here(sig: c_int) {
        // SAFETY: signalling the calling thread.
        unsafe { libc::pthread_kill(libc::pthread_self(), sig) };
    }

    #[test]
    fn sets_hold_what_they_were_given() {
        let set = SignalSet::of(&FORWARDED_WITH_SIGCHLD);
        for sig in FORWARDED {
            assert!(set.contains(sig));
        }
        assert!(set.contains(libc::SIGCHLD));
        assert!(!set.contains(libc::SIGKILL));
        assert!(!SignalSet::of(&FORWARDED).contains(libc::SIGCHLD));
    }

    #[test]
    fn terminal_signals_are_not_forwarded_twice() {
        let tty = Received {
            signal: libc::SIGINT,
            from_kernel: true,
        };
        assert!(!tty.should_forward(true));
        assert!(tty.should_forward(false));
        let kill = Received {
            signal: libc::SIGTERM,
            from_kernel: false,
        };
        assert!(kill.should_forward(true));
        let chld = Received {
            signal: libc::SIGCHLD,
            from_kernel: false,
        };
        assert!(!chld.should_forward(false));
    }

    #[test]
    fn blocked_signals_are_read_from_the_signalfd() {
        let signals = Signals::block(&[libc::SIGUSR2]).unwrap();
        assert_eq!(signals.read(), None);
        raise_here(libc::SIGUSR2);
        let got = signals.read().unwrap();
        assert_eq!(got.signal, libc::SIGUSR2);
        assert!(!got.from_kernel);
        assert_eq!(signals.read(), None);
    }

    #[test]
    fn sigterm_is_forwarded_to_a_child_that_reports_it() {
        let signals = Signals::block(&FORWARDED).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped());
        let (mut child, pipes) = Child::spawn(&mut cmd).unwrap();
        let mut out = BufReader::new(pipes.stdout.unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        raise_here(libc::SIGTERM);
        let code = supervise(&mut child, &signals, true).unwrap();
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert_eq!((code, rest.as_str()), (3, "got TERM\n"));
    }

    #[test]
    fn an_unhandled_forwarded_signal_maps_to_128_plus_n() {
        let signals = Signals::block(&FORWARDED).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo ready; exec sleep 10"])
            .stdout(Stdio::piped());
        let (mut child, pipes) = Child::spawn(&mut cmd).unwrap();
        let mut line = String::new();
        BufReader::new(pipes.stdout.unwrap())
            .read_line(&mut line)
            .unwrap();
        // SIGUSR1, not SIGHUP: a test run under nohup passes SIGHUP ignored to its children.
        raise_here(libc::SIGUSR1);
        assert_eq!(
            supervise(&mut child, &signals, false).unwrap(),
            128 + libc::SIGUSR1
        );
    }
}
