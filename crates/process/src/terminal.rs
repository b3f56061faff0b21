//! The caller's terminal in raw mode while something else (a guest's line discipline, a
//! container's terminal) does the editing and turns ^C into SIGINT.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use crate::signals::Signals;

/// The signals that would end the process with the terminal still raw.
const TERMINATING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// A terminal in raw mode, restored (after its output drains) when dropped. It borrows the
/// [`Signals`] that catch SIGINT, SIGTERM, SIGHUP and SIGQUIT: while it exists those
/// signals are events of the caller's loop, not the end of the process, so the guard is
/// dropped (and the terminal restored) on a signal as on every other path.
#[derive(Debug)]
pub struct RawTerminal<'a> {
    fd: RawFd,
    saved: libc::termios,
    _signals: &'a Signals,
}

impl<'a> RawTerminal<'a> {
    /// Puts `tty` in raw mode; `None` when it is no terminal, or `signals` does not catch
    /// the terminating signals.
    pub fn enter(tty: BorrowedFd<'_>, signals: &'a Signals) -> Option<RawTerminal<'a>> {
        if !TERMINATING.iter().all(|&s| signals.set().contains(s)) {
            return None;
        }
        let fd = tty.as_raw_fd();
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios it is given when it succeeds.
        if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: initialised by the successful tcgetattr.
        let saved = unsafe { saved.assume_init() };
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the termios it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: setting attributes from a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawTerminal {
            fd,
            saved,
            _signals: signals,
        })
    }
}

impl Drop for RawTerminal<'_> {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes tcgetattr gave us; a closed descriptor only
        // makes this fail.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// A fresh pseudo-terminal's slave side.
    fn pty_slave() -> (OwnedFd, OwnedFd) {
        // SAFETY: opening the multiplexer; the descriptor is ours.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(master >= 0);
        // SAFETY: a master we own.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: grantpt and unlockpt on our master.
        assert_eq!(unsafe { libc::grantpt(master.as_raw_fd()) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::unlockpt(master.as_raw_fd()) }, 0);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes at most the buffer's length.
        let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(rc, 0);
        // SAFETY: a NUL-terminated name from ptsname_r.
        let slave = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        assert!(slave >= 0);
        // SAFETY: a descriptor we own.
        (master, unsafe { OwnedFd::from_raw_fd(slave) })
    }

    fn lflag(fd: &OwnedFd) -> libc::tcflag_t {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios.
        let rc = unsafe { libc::tcgetattr(fd.as_raw_fd(), t.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: filled above.
        unsafe { t.assume_init() }.c_lflag
    }

    #[test]
    fn raw_mode_is_restored_on_drop() {
        let (_master, slave) = pty_slave();
        assert_ne!(lflag(&slave) & libc::ICANON, 0);
        let signals = Signals::block(&crate::FORWARDED).unwrap();
        let raw = RawTerminal::enter(slave.as_fd(), &signals).unwrap();
        assert_eq!(lflag(&slave) & (libc::ICANON | libc::ISIG | libc::ECHO), 0);
        drop(raw);
        assert_ne!(lflag(&slave) & libc::ICANON, 0);
        assert_ne!(lflag(&slave) & libc::ISIG, 0);
    }

    #[test]
    fn raw_mode_needs_the_terminating_signals_caught() {
        let (_master, slave) = pty_slave();
        let signals = Signals::block(&[libc::SIGWINCH]).unwrap();
        assert!(RawTerminal::enter(slave.as_fd(), &signals).is_none());
        assert_ne!(lflag(&slave) & libc::ICANON, 0);
        let all = Signals::block(&crate::FORWARDED).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        assert!(
            RawTerminal::enter(devnull.as_fd(), &all).is_none(),
            "no terminal"
        );
    }
}
