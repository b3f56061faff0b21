//! Errors of a launch, and the allocation-free failure record of the set-up child.
//!
//! The parent builds [`Error`] values directly. The set-up child cannot allocate (it may be
//! a fork of a multi-threaded process), so it describes a failure as a [`Fail`] that borrows
//! its paths from the prepared plan, formats it into a stack buffer and sends that one line
//! to the parent, which turns it into [`Error::Setup`].

use std::fmt::{self, Write as _};
use std::io;
use std::path::PathBuf;

/// Why a launch failed before the program could start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec itself is unusable (empty argv, relative destination, NUL byte, ...).
    #[error("sandbox: invalid spec: {0}")]
    Spec(String),
    /// A bind mount's source is missing on the host.
    #[error("sandbox: bind {} on {}: {err}", src.display(), dest.display())]
    BindSource {
        src: PathBuf,
        dest: PathBuf,
        err: io::Error,
    },
    /// A step inside the set-up child failed; the text names the step, path and reason.
    #[error("sandbox: {0}")]
    Setup(String),
    /// Rootless launches need a user namespace to get the privileges set-up requires.
    #[error(
        "sandbox: running as uid {uid} without a user namespace is not possible (enable the user namespace)"
    )]
    NeedUserNamespace { uid: u32 },
    /// The seccomp profile could not be read or compiled.
    #[error("sandbox: seccomp profile {}: {reason}", path.display())]
    SeccompProfile { path: PathBuf, reason: String },
    /// The built-in seccomp filter could not be compiled (a bug, not bad input).
    #[error("sandbox: seccomp filter: {0}")]
    Seccomp(String),
    /// Limits were requested but no writable cgroup exists to enforce them.
    #[error(
        "sandbox: cannot create cgroup {}: {err} (delegate a writable cgroup to this user or set `[cgroup] root` in cairn.toml)",
        path.display()
    )]
    CgroupUnavailable { path: PathBuf, err: io::Error },
    /// Writing a limit or reading cgroup state failed.
    #[error("sandbox: cgroup {}: {err}", path.display())]
    Cgroup { path: PathBuf, err: io::Error },
    /// The kept sandbox to enter has exited (or its pid now belongs to another process).
    #[error("sandbox: kept sandbox (pid {pid}) is no longer running")]
    Gone { pid: i32 },
    /// A system call of the launching process failed.
    #[error("sandbox: {op}: {err}")]
    Sys { op: &'static str, err: io::Error },
    /// A path-based operation of the launching process failed.
    #[error("sandbox: {op} {}: {err}", path.display())]
    Path {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
}

impl Error {
    pub(crate) fn sys(op: &'static str) -> Error {
        Error::Sys {
            op,
            err: io::Error::last_os_error(),
        }
    }
}

/// A failed set-up step in the child: `what path[ on dest]: strerror(errno)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fail<'a> {
    pub what: &'static str,
    pub path: &'a [u8],
    pub dest: Option<&'a [u8]>,
    pub errno: i32,
}

impl<'a> Fail<'a> {
    pub(crate) fn new(what: &'static str, path: &'a [u8], errno: i32) -> Fail<'a> {
        Fail {
            what,
            path,
            dest: None,
            errno,
        }
    }

    pub(crate) fn bare(what: &'static str, errno: i32) -> Fail<'static> {
        Fail {
            what,
            path: b"",
            dest: None,
            errno,
        }
    }

    /// Writes the one-line message into `buf` (truncated if it does not fit).
    pub(crate) fn format(&self, buf: &mut MsgBuf) {
        let _ = buf.write_str(self.what);
        if !self.path.is_empty() {
            let _ = buf.write_str(" ");
            buf.push_bytes(self.path);
        }
        if let Some(dest) = self.dest {
            let _ = buf.write_str(" on ");
            buf.push_bytes(dest);
        }
        let _ = buf.write_str(": ");
        buf.push_strerror(self.errno);
    }
}

/// A fixed-size text buffer, so the child can format messages without allocating.
pub(crate) struct MsgBuf {
    buf: [u8; 1024],
    len: usize,
}

impl MsgBuf {
    pub(crate) fn new() -> MsgBuf {
        MsgBuf {
            buf: [0; 1024],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Appends the C library's text for `errno` (strerror_r writes into our stack buffer).
    pub(crate) fn push_strerror(&mut self, errno: i32) {
        let mut tmp = [0u8; 128];
        // SAFETY: the buffer is valid for its length; the XSI strerror_r (what libc binds as
        // `strerror_r` on glibc with _GNU_SOURCE unset in Rust) writes a NUL-terminated string.
        let rc = unsafe { libc::strerror_r(errno, tmp.as_mut_ptr().cast(), tmp.len()) };
        let end = tmp.iter().position(|&b| b == 0).unwrap_or(0);
        if rc != 0 || end == 0 {
            let _ = write!(self, "errno {errno}");
        } else {
            self.push_bytes(&tmp[..end]);
        }
    }
}

impl fmt::Write for MsgBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_formats_source_dest_and_reason() {
        let fail = Fail {
            what: "bind",
            path: b"/srv/x",
            dest: Some(b"/nodes/a/usr"),
            errno: libc::ENOENT,
        };
        let mut buf = MsgBuf::new();
        fail.format(&mut buf);
        assert_eq!(
            buf.as_bytes(),
            b"bind /srv/x on /nodes/a/usr: No such file or directory"
        );
    }

    #[test]
    fn msgbuf_truncates_instead_of_overflowing() {
        let mut buf = MsgBuf::new();
        buf.push_bytes(&[b'a'; 2000]);
        assert_eq!(buf.as_bytes().len(), 1024);
    }

    #[test]
    fn bind_source_error_is_one_line() {
        let e = Error::BindSource {
            src: "/srv/x".into(),
            dest: "/nodes/a/usr".into(),
            err: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("sandbox: bind /srv/x on /nodes/a/usr: No such file"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
