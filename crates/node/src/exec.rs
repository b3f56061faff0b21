//! Running exec commands (`/bin/sh -c`) on the host, all at once, with a deadline.
//!
//! Single-threaded on purpose: the sandbox forks after this, and forking a process that
//! still has helper threads is unsound. Each command runs in its own process group so
//! that a timeout kills the whole pipeline, not just the shell.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long every command of one launch may take together.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// Keep at most this much stderr for error messages.
const STDERR_KEEP: usize = 4096;

struct Job {
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Vec<u8>,
    err: Vec<u8>,
    failed: Option<String>,
}

impl Job {
    fn start(command: &str) -> Job {
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => Job {
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
                child: Some(child),
                out: Vec::new(),
                err: Vec::new(),
                failed: None,
            },
            Err(e) => Job {
                child: None,
                stdout: None,
                stderr: None,
                out: Vec::new(),
                err: Vec::new(),
                failed: Some(format!("could not start /bin/sh: {e}")),
            },
        }
    }

    fn pipes_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    fn kill(&mut self) {
        if let Some(child) = &self.child {
            kill_group(child);
        }
    }

    /// Reaps the child (after its pipes closed, or after it was killed) and sets the result.
    fn finish(&mut self, deadline: Instant, timeout: Duration) -> Result<Vec<u8>, String> {
        if let Some(why) = self.failed.take() {
            return Err(why);
        }
        let Some(mut child) = self.child.take() else {
            return Err("was not started".to_owned());
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&child);
                    let _ = child.wait();
                    return Err(timed_out(timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => return Err(format!("could not be waited for: {e}")),
            }
        };
        if status.success() {
            return Ok(std::mem::take(&mut self.out));
        }
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => "failed".to_owned(),
        };
        let err = String::from_utf8_lossy(&self.err);
        match err.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(first) => Err(format!("{how}: {first}")),
            None => Err(how),
        }
    }
}

/// Kills the command's whole process group (the shell and whatever it started).
fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // The group may already be gone; nothing to do then.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {:.1} s", timeout.as_secs_f64())
}

/// Runs every command concurrently; each result is stdout, or why it failed.
pub(crate) fn run_all(commands: &[&str]) -> Vec<Result<Vec<u8>, String>> {
    run_all_within(commands, TIMEOUT)
}

/// [`run_all`] with a chosen time limit.
pub(crate) fn run_all_within(commands: &[&str], timeout: Duration) -> Vec<Result<Vec<u8>, String>> {
    let deadline = Instant::now() + timeout;
    let mut jobs: Vec<Job> = commands.iter().map(|c| Job::start(c)).collect();
    let expired = !pump(&mut jobs, deadline);
    if expired {
        for j in jobs.iter_mut().filter(|j| j.pipes_open()) {
            j.kill();
            j.stdout = None;
            j.stderr = None;
            j.failed = Some(timed_out(timeout));
            if let Some(mut c) = j.child.take() {
                let _ = c.wait();
            }
        }
    }
    jobs.iter_mut()
        .map(|j| j.finish(deadline, timeout))
        .collect()
}

/// Reads every pipe until all are closed; `false` when the deadline passed first.
fn pump(jobs: &mut [Job], deadline: Instant) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        // (job index, is stdout) of each polled fd, in poll order.
        let mut which = Vec::new();
        let mut fds = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            if let Some(o) = &j.stdout {
                which.push((i, true));
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            }
            if let Some(e) = &j.stderr {
                which.push((i, false));
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
        }
        if fds.is_empty() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for (i, is_out) in ready {
            let j = &mut jobs[i];
            let n = if is_out {
                j.stdout.as_mut().map(|p| p.read(&mut buf))
            } else {
                j.stderr.as_mut().map(|p| p.read(&mut buf))
            };
            match n {
                Some(Ok(0)) | Some(Err(_)) | None => {
                    if is_out {
                        j.stdout = None;
                    } else {
                        j.stderr = None;
                    }
                }
                Some(Ok(n)) => {
                    if is_out {
                        j.out.extend_from_slice(&buf[..n]);
                    } else if j.err.len() < STDERR_KEEP {
                        j.err.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_of_several_commands() {
        let r = run_all(&[
            "echo one",
            "printf two; echo oops >&2",
            "exit 3",
            "echo bad >&2; exit 4",
        ]);
        assert_eq!(r[0], Ok(b"one\n".to_vec()));
        assert_eq!(r[1], Ok(b"two".to_vec()));
        assert_eq!(r[2], Err("exited with status 3".to_owned()));
        assert_eq!(r[3], Err("exited with status 4: bad".to_owned()));
    }

    #[test]
    fn large_output_is_complete() {
        let r = run_all(&["head -c 300000 /dev/zero"]);
        assert_eq!(r[0].as_ref().map(Vec::len), Ok(300_000));
    }

    #[test]
    fn runs_concurrently() {
        let t = Instant::now();
        let r = run_all(&["sleep 0.3", "sleep 0.3", "sleep 0.3"]);
        assert!(r.iter().all(Result::is_ok));
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn timeout_kills_the_whole_pipeline() {
        let t = Instant::now();
        let r = run_all_within(&["sleep 30 | cat", "echo fast"], Duration::from_millis(300));
        assert_eq!(r[0], Err("timed out after 0.3 s".to_owned()));
        assert_eq!(r[1], Ok(b"fast\n".to_vec()));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn signal_is_reported() {
        let r = run_all(&["kill -9 $$"]);
        assert_eq!(r[0], Err("was killed by signal 9".to_owned()));
    }
}
