//! Running a program inside a kept sandbox ([`crate::keep`]) instead of a new one.
//!
//! The namespaces and the root already exist, so an entry is cheap: no mounts, no id maps.
//! In the launching process (the allocating work): the program's plan (`Program::prepare`,
//! the same as for [`crate::run`]: execve's arrays, PATH candidates, seccomp programs,
//! capability masks), a pidfd of the sandbox's pid 1 checked against its recorded start time,
//! and the sandbox's cgroup join files. Then:
//!
//! 1. fork an entry process; it sets its death signal (checking the launcher is still there),
//!    joins the cgroup, then joins every namespace of pid 1 with one `setns(pidfd, flags)`
//!    (atomic on kernel >= 5.8: all or none). It must be a fresh process: `setns` refuses a
//!    user or mount namespace to a multi-threaded one, and joining a pid namespace only
//!    applies to children anyway;
//! 2. the entry process clones the program with `CLONE_PARENT`: the program is in the pid
//!    namespace and is the launcher's own child, so the launcher waits for it and forwards
//!    signals exactly as for `run`, and its death signal follows the launcher. The entry
//!    process sends the program's pid on a pipe and exits;
//! 3. the program takes the same privilege steps as a fresh sandbox's program
//!    (`Program::start`: session, bounding set, ids, death signal, capabilities,
//!    no_new_privs, umask, chdir, close-on-exec, signal mask, seccomp last, execve).
//!
//! Failures travel as one line on the close-on-exec error pipe, as in `process`. The
//! program's stdin, stdout and stderr are the launcher's. Processes a program leaves behind
//! are reparented to the sandbox's pid 1 and live as long as the kept sandbox.

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use cairn_process::{Child, FORWARDED, Signals};
use libc::{c_int, pid_t};

use crate::cgroup;
use crate::error::{Error, Fail};
use crate::keeper::Kept;
use crate::process::{self, Death, Program};
use crate::spec::SandboxSpec;
use crate::sys;
use crate::userns::{self, Caller};

/// Runs `spec.argv` inside the kept sandbox `kept` and returns its exit status (128+N when
/// killed by signal N). From `spec` only the program's side applies (argv, env, ids, chdir,
/// umask, session, capabilities, seccomp, die_with_parent) and which namespaces to join;
/// mounts, hostname and limits are the kept sandbox's. `spec` must be the spec the sandbox
/// was kept with, apart from those program fields.
pub fn enter(kept: &Kept, spec: &SandboxSpec) -> Result<i32, Error> {
    let caller = Caller::current();
    let mapping = userns::plan(spec.namespaces.user, spec.user, caller)?;
    let program = Program::prepare(spec, &mapping)?;
    // The start time is checked once the pidfd is open: it is that process for good.
    let sandbox = Child::adopt(kept.pid, kept.start_time).ok_or(Error::Gone { pid: kept.pid })?;
    let joins = cgroup::open_joins(&kept.cgroup)?;
    let entry = Entry {
        sandbox,
        flags: setns_flags(spec),
        cgroup_fds: joins.iter().map(AsRawFd::as_raw_fd).collect(),
        program,
        death: if spec.die_with_parent {
            Death::WithLauncher
        } else {
            Death::Never
        },
    };
    match entry.execute() {
        // The sandbox ended while we were entering it (setns found no process).
        Err(Error::Setup(_)) if !kept.is_alive() => Err(Error::Gone { pid: kept.pid }),
        other => other,
    }
}

/// The namespaces a kept sandbox of `spec` has of its own. Joining one's own user namespace
/// is an error (EINVAL), so only unshared ones are named; the mount namespace always is.
fn setns_flags(spec: &SandboxSpec) -> c_int {
    let ns = spec.namespaces;
    [
        (ns.user, libc::CLONE_NEWUSER),
        (ns.pid, libc::CLONE_NEWPID),
        (ns.net, libc::CLONE_NEWNET),
        (ns.ipc, libc::CLONE_NEWIPC),
        (ns.uts, libc::CLONE_NEWUTS),
        (ns.cgroup, libc::CLONE_NEWCGROUP),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(libc::CLONE_NEWNS, |flags, (_, flag)| flags | flag)
}

/// Everything the entry process needs, prepared so that it never allocates.
struct Entry {
    /// The kept sandbox's pid 1 (its pidfd names the namespaces to join).
    sandbox: Child,
    flags: c_int,
    cgroup_fds: Vec<c_int>,
    program: Program,
    death: Death,
}

impl Entry {
    /// Launcher side: fork the entry process, learn the program's pid, wait for the program.
    fn execute(self) -> Result<i32, Error> {
        let (err_read, err_write) = process::pipe()?;
        let (pid_read, pid_write) = process::pipe()?;
        let signals = Signals::block(&FORWARDED).map_err(|err| Error::Sys {
            op: "block signals",
            err,
        })?;
        let entry = match sys::clone(0) {
            Ok(0) => self.child(&err_read, &err_write, &pid_read, &pid_write),
            Ok(pid) => pid,
            Err(e) => {
                return Err(Error::Sys {
                    op: "fork entry process",
                    err: std::io::Error::from_raw_os_error(e),
                });
            }
        };
        drop(err_write);
        drop(pid_write);
        // It exits as soon as the program is forked.
        let _ = process::took_over(entry)?.wait();
        let Some(program) = read_pid(&pid_read) else {
            process::read_report(&err_read)?;
            return Err(Error::Setup("entry process ended without a program".into()));
        };
        let mut program = process::took_over(program)?;
        let code = process::supervise(&mut program, &signals, self.program.shares_tty())?;
        process::read_report(&err_read)?;
        Ok(code)
    }

    /// The entry process. Never returns.
    fn child(
        &self,
        err_read: &OwnedFd,
        err_write: &OwnedFd,
        pid_read: &OwnedFd,
        pid_write: &OwnedFd,
    ) -> ! {
        sys::close(err_read.as_raw_fd());
        sys::close(pid_read.as_raw_fd());
        let err_fd = err_write.as_raw_fd();
        let Err(fail) = self.setup(err_fd, pid_write.as_raw_fd());
        process::report(err_fd, &fail);
        sys::exit(1)
    }

    fn setup(&self, err_fd: c_int, pid_fd: c_int) -> Result<Infallible, Fail<'_>> {
        if !matches!(self.death, Death::Never) {
            process::die_with_parent(err_fd)?;
        }
        cgroup::join(&self.cgroup_fds)?;
        // SAFETY: setns with a pidfd we own and namespace flags; no memory arguments.
        if unsafe { libc::setns(self.sandbox.as_fd().as_raw_fd(), self.flags) } != 0 {
            return Err(Fail::bare(
                "join the kept sandbox's namespaces (setns)",
                sys::errno(),
            ));
        }
        match sys::clone(libc::CLONE_PARENT) {
            Ok(0) => {
                sys::close(pid_fd);
                self.program.start(err_fd, self.death)
            }
            Ok(program) => {
                let _ = sys::write_all(pid_fd, &program.to_ne_bytes());
                sys::exit(0)
            }
            Err(e) => Err(Fail::bare("fork program", e)),
        }
    }
}

/// The program's pid from the entry process; `None` on EOF (the entry failed).
fn read_pid(fd: &OwnedFd) -> Option<pid_t> {
    let mut buf = [0u8; 4];
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: reading into the unfilled part of our buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[len..].as_mut_ptr().cast(),
                buf.len() - len,
            )
        };
        match n {
            0 => return None,
            n if n < 0 && sys::errno() == libc::EINTR => continue,
            n if n < 0 => return None,
            n => len += n as usize,
        }
    }
    Some(pid_t::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Namespaces;

    #[test]
    fn setns_flags_name_only_unshared_namespaces() {
        let mut spec = SandboxSpec::default();
        let all = setns_flags(&spec);
        assert_eq!(all & libc::CLONE_NEWUSER, libc::CLONE_NEWUSER);
        assert_eq!(all & libc::CLONE_NEWNS, libc::CLONE_NEWNS);
        spec.namespaces = Namespaces {
            user: false,
            net: false,
            ..Namespaces::default()
        };
        let some = setns_flags(&spec);
        assert_eq!(some & (libc::CLONE_NEWUSER | libc::CLONE_NEWNET), 0);
        assert_eq!(some & libc::CLONE_NEWPID, libc::CLONE_NEWPID);
    }

    #[test]
    fn entering_a_dead_sandbox_is_gone() {
        let kept = Kept {
            pid: i32::MAX,
            start_time: 1,
            cgroup: Vec::new(),
        };
        let spec = SandboxSpec {
            argv: vec!["/bin/true".into()],
            ..Default::default()
        };
        assert!(matches!(enter(&kept, &spec), Err(Error::Gone { .. })));
    }
}
