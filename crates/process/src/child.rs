//! A process held by a pidfd: the pid can be reused once the process is gone, the pidfd
//! never follows it.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};

/// A process this one supervises.
///
/// Its own children ([`Child::spawn`], [`Child::forked`]) are waited for and give their exit
/// status; an adopted process ([`Child::adopt`]: someone else's child, found by pid and start
/// time) can be signalled and watched, but its status is its parent's ([`Child::try_wait`]
/// fails with ECHILD). A child that is not waited for stays a zombie until this process
/// ends, as with [`std::process::Child`].
#[derive(Debug)]
pub struct Child {
    pid: pid_t,
    pidfd: OwnedFd,
    /// Ours to reap.
    ours: bool,
    /// Its exit code once reaped.
    code: Option<i32>,
}

/// The pipes of a spawned child (those its [`Command`] asked for).
#[derive(Debug, Default)]
pub struct Pipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Child {
    /// Spawns `command` with no signal blocked and SIGPIPE at its default (std leaves the
    /// caller's mask, which a launcher that forwards signals has blocked) and takes the child
    /// over: from here on it is waited for through this handle only.
    pub fn spawn(command: &mut Command) -> io::Result<(Child, Pipes)> {
        let reset = || {
            crate::signals::reset_for_exec();
            Ok(())
        };
        // SAFETY: reset_for_exec is async-signal-safe and allocates nothing.
        unsafe { command.pre_exec(reset) };
        let mut std_child = command.spawn()?;
        let pipes = Pipes {
            stdin: std_child.stdin.take(),
            stdout: std_child.stdout.take(),
            stderr: std_child.stderr.take(),
        };
        Ok((Child::forked(std_child.id() as pid_t)?, pipes))
    }

    /// Takes over `pid`, a child this process just forked or cloned and has not reaped (so
    /// the pid cannot have been reused). When no pidfd can be opened (no descriptor left),
    /// the child is killed and reaped by pid, which is still its, and the error returned.
    pub fn forked(pid: pid_t) -> io::Result<Child> {
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: signalling our own child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let mut status = 0;
                // SAFETY: reaping our own child into a valid out-parameter.
                while unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
                return Err(e);
            }
        };
        Ok(Child {
            pid,
            pidfd,
            ours: true,
            code: None,
        })
    }

    /// Adopts process `pid` if it is still the one that started at `start_time` (clock ticks
    /// since boot, see [`start_time`]): checked after the pidfd is open, so the handle is
    /// that process even if the pid is reused later. `None` when it is gone.
    pub fn adopt(pid: pid_t, start_time: u64) -> Option<Child> {
        let pidfd = pidfd_open(pid).ok()?;
        (self::start_time(pid) == Some(start_time)).then_some(Child {
            pid,
            pidfd,
            ours: false,
            code: None,
        })
    }

    pub fn pid(&self) -> pid_t {
        self.pid
    }

    /// Sends `signal` through the pidfd (never to a process that reused the pid).
    pub fn signal(&self, signal: c_int) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a pidfd we own, no siginfo and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Its exit code (128+N for signal N) if it has exited, reaping it; `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
        self.wait_with(libc::WNOHANG)
    }

    /// Waits for it to exit and reaps it; its exit code (128+N for signal N).
    pub fn wait(&mut self) -> io::Result<i32> {
        loop {
            if let Some(code) = self.wait_with(0)? {
                return Ok(code);
            }
        }
    }

    fn wait_with(&mut self, flags: c_int) -> io::Result<Option<i32>> {
        if let Some(code) = self.code {
            return Ok(Some(code));
        }
        if !self.ours {
            return Err(io::Error::from_raw_os_error(libc::ECHILD));
        }
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child into a valid out-parameter.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags | libc::__WALL) };
            if rc == self.pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
                self.code = Some(exit_code(status));
                return Ok(self.code);
            }
            if rc == self.pid {
                // Stopped or continued: not an exit.
                continue;
            }
            if rc == 0 {
                return Ok(None);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Only when SIGCHLD is set to SIG_IGN (the kernel then reaps children and
                // their status is lost): a generic failure rather than a hang.
                Some(libc::ECHILD) => {
                    self.code = Some(255);
                    return Ok(self.code);
                }
                _ => return Err(err),
            }
        }
    }

    /// Waits until it has exited (its pidfd is readable), at most `limit`; true if it has.
    /// Does not reap.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        self.code.is_some() || poll_in(&[self.pidfd.as_fd()], Some(limit)).unwrap_or(false)
    }

    /// SIGTERM, up to `grace` to end, then SIGKILL and up to `grace` again (what a service
    /// manager's stop does). True when it ended. Does not reap.
    pub fn stop(&self, grace: Duration) -> bool {
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            if self.signal(signal).is_err() && self.wait_exit(Duration::ZERO) {
                return true;
            }
            if self.wait_exit(grace) {
                return true;
            }
        }
        false
    }

    /// SIGKILL, then reap (ours) or wait for its end (adopted). For every error path.
    pub fn kill(&mut self) {
        if self.code.is_some() {
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        if self.ours {
            let _ = self.wait();
        } else {
            while !self.wait_exit(Duration::from_secs(3600)) {}
        }
    }
}

impl AsFd for Child {
    /// The pidfd: readable once the process has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

/// Makes the child of `command` outlive its caller: a session of its own (no terminal, no
/// signal of the caller's process group) and no descriptor but 0-2 kept across exec, so that
/// what the caller leaked (no close-on-exec) does not stay open for the child's long life.
/// For keepers, and the per-service supervisors to come.
pub fn detach(command: &mut Command) {
    let hook = || {
        // SAFETY: setsid is async-signal-safe and has no memory arguments.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        let cloexec = libc::CLOSE_RANGE_CLOEXEC as c_int;
        // SAFETY: close_range only sets descriptor flags.
        if unsafe { libc::close_range(3, libc::c_uint::MAX, cloexec) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook makes only async-signal-safe calls and allocates nothing.
    unsafe { command.pre_exec(hook) };
}

fn pidfd_open(pid: pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a fresh descriptor (close-on-exec) that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// Waits until one of `fds` is readable (or hung up), at most `limit` (`None`: no limit).
/// True when one is; EINTR counts as an empty round (false, or wait again without limit).
pub(crate) fn poll_in(fds: &[BorrowedFd<'_>], limit: Option<Duration>) -> io::Result<bool> {
    let deadline = limit.map(|l| Instant::now() + l);
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as c_int
            }
        };
        // SAFETY: a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Exit code of a wait status: the code, or 128+N for death by signal N (the shell's way;
/// a pid 1 cannot re-raise a fatal signal on itself, so it exits with this).
pub fn exit_code(status: c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Start time of process `pid` (clock ticks since boot, `/proc/PID/stat` field 22), `None`
/// when there is no such process or it has exited (a zombie). With the pid, it names one
/// process for good. Read into a stack buffer: this is on the path of every entered call.
pub fn start_time(pid: pid_t) -> Option<u64> {
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    parse_start_time(&buf[..len])
}

/// Field 22 of a `/proc/PID/stat` line, unless field 3 (the state) says the process has
/// exited (`Z`ombie, `X` dead). The command name (field 2) may hold spaces and parentheses:
/// the fields restart after the last ')'.
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(42 << 8), 42);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }

    #[test]
    fn real_exits_map_to_code_or_128_plus_signal() {
        let (mut child, _) = Child::spawn(&mut sh("exit 42")).unwrap();
        assert_eq!(child.wait().unwrap(), 42);
        assert_eq!(child.try_wait().unwrap(), Some(42), "the status is kept");
        let (mut child, _) = Child::spawn(&mut sh("kill -TERM $$")).unwrap();
        assert_eq!(child.wait().unwrap(), 128 + libc::SIGTERM);
        let (mut child, _) = Child::spawn(&mut sh("kill -KILL $$")).unwrap();
        assert_eq!(child.wait().unwrap(), 137);
    }

    #[test]
    fn a_running_child_has_no_status_until_killed() {
        let (mut child, _) = Child::spawn(&mut sh("exec sleep 30")).unwrap();
        assert_eq!(child.try_wait().unwrap(), None);
        assert!(!child.wait_exit(Duration::from_millis(50)));
        child.kill();
        assert_eq!(child.try_wait().unwrap(), Some(137));
    }

    #[test]
    fn detached_children_lead_a_session_and_inherit_no_descriptor() {
        let leaked = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: clearing close-on-exec of our own descriptor, to leak it on purpose.
        let rc = unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) };
        assert_eq!(rc, 0);
        let script = format!(
            "cut -d' ' -f6 /proc/$$/stat; test -e /proc/self/fd/{} && echo leaked || echo closed",
            leaked.as_raw_fd()
        );
        let mut cmd = sh(&script);
        cmd.stdout(Stdio::piped());
        detach(&mut cmd);
        let (mut child, pipes) = Child::spawn(&mut cmd).unwrap();
        let mut out = String::new();
        pipes.stdout.unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(child.wait().unwrap(), 0);
        let mut lines = out.lines();
        let sid: i32 = lines.next().unwrap().trim().parse().unwrap();
        assert_eq!(sid, child.pid(), "its own session");
        assert_eq!(lines.next(), Some("closed"));
    }

    #[test]
    fn pipes_are_handed_over() {
        let mut cmd = sh("echo hello");
        cmd.stdout(Stdio::piped());
        let (mut child, pipes) = Child::spawn(&mut cmd).unwrap();
        let mut out = String::new();
        pipes.stdout.unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello\n");
        assert_eq!(child.wait().unwrap(), 0);
    }

    #[test]
    fn adopted_processes_are_signalled_and_watched_but_not_reaped() {
        let mut std_child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = std_child.id() as pid_t;
        let started = start_time(pid).unwrap();
        assert!(
            Child::adopt(pid, started + 1).is_none(),
            "another start time"
        );
        let adopted = Child::adopt(pid, started).unwrap();
        assert_eq!(adopted.pid(), pid);
        assert!(!adopted.wait_exit(Duration::from_millis(50)));
        assert!(adopted.stop(Duration::from_secs(5)));
        let mut adopted = adopted;
        let err = adopted.try_wait().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
        // Its parent (this test, through std) still gets the status.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(std_child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert!(Child::adopt(pid, started).is_none(), "gone once reaped");
    }

    #[test]
    fn start_time_skips_odd_command_names() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_time(line), Some(98765));
        assert_eq!(parse_start_time(b"42 (x"), None);
        let zombie = b"42 (a) Z 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_time(zombie), None);
    }

    #[test]
    fn own_start_time_is_stable_and_dead_pids_have_none() {
        let me = std::process::id() as pid_t;
        let t = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(i32::MAX), None);
    }
}
