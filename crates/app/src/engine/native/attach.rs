//! Attach mode: calls attach to an instance's one long-running process.
//!
//! The keeper (`cairn app keep`, detached) runs the target in a fresh sandbox from a child
//! process (the runner), with the target's stdin, stdout and stderr on three pipes the
//! keeper holds, and serves `attach.sock` in the instance directory. A call connects and
//! hands over its own stdin, stdout and stderr (SCM_RIGHTS) and waits for the keeper's
//! acknowledgement; from then on:
//!
//! - what the call's stdin gives goes to the target's stdin (several attached calls are
//!   interleaved by read; a call's end of input is not the target's: others may follow);
//! - the target's stdout and stderr are written to every attached call's stdout and stderr,
//!   separately. Output is read only while a call is attached: what the target writes with
//!   nobody attached waits in the pipe (64 KiB, then the target blocks), so the first call
//!   sees the target's output from its start. A later call sees output from when it
//!   attaches (no replay);
//! - a signal the call receives (INT, TERM, HUP, QUIT, USR1, USR2, WINCH, CONT) is passed to
//!   the target, as for a fresh call;
//! - when the target exits, every attached call returns its exit status (128+N for signal
//!   N). The instance is removed first, so the next call starts a new one; a call that
//!   connected while the keeper was ending gets no acknowledgement and starts a new one
//!   too. A call that goes away (even `kill -9`) just detaches.
//!
//! The target's stdin, stdout and stderr are pipes, never a terminal: it outlives any one
//! caller, so it cannot have a caller's TTY as its controlling terminal.
//!
//! The socket only accepts the keeper's own user (peer credentials) or root. The calls do
//! not copy data: the keeper writes to their descriptors directly, so a call is one
//! process waiting for a status. A caller whose output pipe is full holds the target's
//! output for everybody, as a pipe would.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use cairn_process::{Child, FORWARDED, Parent, Signals};
use cairn_sandbox::SandboxSpec;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, sockopt};

use crate::config::Mode;
use crate::error::Error;
use crate::instance::{self, AppLock, State};

/// The keeper's socket, in the instance directory.
pub const SOCKET: &str = "attach.sock";

/// What makes the keeper pass a signal to the target (`cairn app stop` sends SIGTERM).
const KEEPER_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn io(path: &Path, e: impl Into<std::io::Error>) -> Error {
    Error::io(path, e.into())
}

// ---------------------------------------------------------------- the call

/// Attaches this call to the instance in `dir` (`what` names it in errors); returns the
/// target's exit status once it exits, or `None` when the keeper did not take the call
/// (it was ending: the caller starts a new instance).
pub fn call(dir: &Path, what: &str) -> Result<Option<i32>, Error> {
    let path = dir.join(SOCKET);
    let fail = |reason: String| Error::Instance {
        what: what.to_string(),
        reason,
    };
    let Ok(mut sock) = UnixStream::connect(&path) else {
        return Ok(None);
    };
    let fds = [0, 1, 2];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"a")],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io(&path, e))?;
    // The keeper acknowledges the call once it is attached; EOF first means it was ending.
    let mut ack = [0u8; 1];
    if !matches!(sock.read(&mut ack), Ok(1)) {
        return Ok(None);
    }
    // The target runs in its keeper's session, not on this terminal: every signal is passed.
    let signals = Signals::block(&FORWARDED).map_err(|e| io(&path, e))?;
    let mut status = [0u8; 4];
    let mut got = 0;
    loop {
        let mut fds = [
            pollfd(sock.as_raw_fd()),
            pollfd(signals.as_fd().as_raw_fd()),
        ];
        poll(&mut fds).map_err(|e| io(&path, e))?;
        if fds[1].revents != 0
            && let Some(got) = signals.read()
        {
            // A lost signal (keeper gone) shows as the missing status below.
            let _ = sock.write_all(&got.signal.to_ne_bytes());
        }
        if fds[0].revents != 0 {
            let n = sock.read(&mut status[got..]).unwrap_or(0);
            if n == 0 {
                return Err(fail(
                    "ended without an exit status (its keeper died)".into(),
                ));
            }
            got += n;
            if got == status.len() {
                return Ok(Some(i32::from_ne_bytes(status)));
            }
        }
    }
}

// ---------------------------------------------------------------- the keeper

/// One attached call: its socket and the descriptors it handed over.
struct Client {
    sock: UnixStream,
    /// `None` after its end of input.
    stdin: Option<OwnedFd>,
    /// `None` once writing failed (closed pipe): the call still gets the status.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// The keeper of attach instance `dir`: starts the target of `spec`, says `ready` (state
/// written, socket listening), relays until the target exits, tells every attached call its
/// status, removes the instance. Returns the target's status.
pub fn serve(
    app_dir: &Path,
    dir: &Path,
    spec: &SandboxSpec,
    ready: &mut dyn FnMut(),
) -> Result<i32, Error> {
    let sock_path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).map_err(|e| io(&sock_path, e))?;
    let signals = Signals::block(&KEEPER_SIGNALS).map_err(|e| io(dir, e))?;
    let (in_read, in_write) = pipe(dir)?;
    let (out_read, out_write) = pipe(dir)?;
    let (err_read, err_write) = pipe(dir)?;
    let runner = spawn_runner(spec, [&in_read, &out_write, &err_write], &signals)?;
    drop((in_read, out_write, err_write));
    let runner = Child::forked(runner).map_err(|e| io(dir, e))?;
    let state = State::new(Mode::Attach, std::process::id() as i32, Vec::new());
    state.write(dir)?;
    ready();
    let mut relay = Relay {
        listener,
        signals,
        runner,
        status: None,
        target_in: in_write,
        out: Some(out_read),
        err: Some(err_read),
        clients: Vec::new(),
    };
    let status = relay.run();
    // Gone before any call hears the status: a call that follows starts a new instance,
    // and one that connected meanwhile is not acknowledged (it starts one too).
    let Relay {
        listener, clients, ..
    } = relay;
    let removed =
        AppLock::acquire(app_dir).and_then(|_lock| instance::remove_if_owned(dir, &state));
    drop(listener);
    for mut client in clients.into_iter().flatten() {
        let _ = client.sock.write_all(&status.to_ne_bytes());
    }
    removed.map(|()| status)
}

/// Forks the runner: the target's sandbox with `stdio` as its stdin, stdout and stderr,
/// killed with the keeper. The keeper is single-threaded (it forks before anything else).
fn spawn_runner(spec: &SandboxSpec, stdio: [&OwnedFd; 3], signals: &Signals) -> Result<i32, Error> {
    // SAFETY: getpid cannot fail.
    let keeper = unsafe { libc::getpid() };
    // SAFETY: the keeper process is single-threaded here; the child only sets up its
    // descriptors, runs the sandbox and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io(
            Path::new("fork"),
            std::io::Error::last_os_error(),
        ));
    }
    if pid > 0 {
        return Ok(pid);
    }
    if cairn_process::die_with_parent(libc::SIGKILL, Parent::Pid(keeper)).is_err() {
        // SAFETY: the keeper is gone (or the prctl failed): leave at once.
        unsafe { libc::_exit(1) };
    }
    signals.restore_in_child();
    for (fd, target) in stdio.into_iter().zip(0..) {
        // SAFETY: duplicating a descriptor we hold onto a standard one.
        unsafe { libc::dup2(fd.as_raw_fd(), target) };
    }
    // The keeper's descriptors (socket, pipe ends, report channel) are not the runner's.
    // SAFETY: closing every descriptor above stderr; the OwnedFds of the keeper's copy of
    // this process are never used again here (the child leaves with _exit).
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    let code = match cairn_sandbox::run(spec) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cairn: {e}");
            1
        }
    };
    // SAFETY: leaving the forked child without running the keeper's destructors.
    unsafe { libc::_exit(code) }
}

struct Relay {
    listener: UnixListener,
    signals: Signals,
    /// Watched (its pidfd) until reaped, when `status` is set.
    runner: Child,
    status: Option<i32>,
    target_in: OwnedFd,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// `None` for a call detached during the current round.
    clients: Vec<Option<Client>>,
}

/// Which descriptor a poll entry watches.
#[derive(Clone, Copy)]
enum Slot {
    Listener,
    Signals,
    Runner,
    Out,
    Err,
    Sock(usize),
    Stdin(usize),
}

impl Relay {
    /// Relays until the target has exited and its output is drained; returns its status.
    fn run(&mut self) -> i32 {
        loop {
            if let Some(status) = self.status
                && self.out.is_none()
                && self.err.is_none()
            {
                return status;
            }
            let (mut fds, slots) = self.poll_set();
            if poll(&mut fds).is_err() {
                continue;
            }
            for (fd, slot) in fds.iter().zip(slots) {
                if fd.revents != 0 {
                    self.handle(slot);
                }
            }
            self.clients.retain(Option::is_some);
        }
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Slot>) {
        let mut fds = vec![pollfd(self.listener.as_raw_fd())];
        let mut slots = vec![Slot::Listener];
        fds.push(pollfd(self.signals.as_fd().as_raw_fd()));
        slots.push(Slot::Signals);
        if self.status.is_none() {
            fds.push(pollfd(self.runner.as_fd().as_raw_fd()));
            slots.push(Slot::Runner);
        }
        // Output waits in its pipe while nobody is attached, unless the target is done.
        let read_output = !self.clients.is_empty() || self.status.is_some();
        for (pipe, slot) in [(&self.out, Slot::Out), (&self.err, Slot::Err)] {
            if let (Some(fd), true) = (pipe, read_output) {
                fds.push(pollfd(fd.as_raw_fd()));
                slots.push(slot);
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let Some(c) = c else { continue };
            fds.push(pollfd(c.sock.as_raw_fd()));
            slots.push(Slot::Sock(i));
            if let Some(fd) = &c.stdin {
                fds.push(pollfd(fd.as_raw_fd()));
                slots.push(Slot::Stdin(i));
            }
        }
        (fds, slots)
    }

    fn handle(&mut self, slot: Slot) {
        match slot {
            Slot::Listener => {
                if let Ok((sock, _)) = self.listener.accept()
                    && let Some(client) = register(sock)
                {
                    self.clients.push(Some(client));
                }
            }
            Slot::Signals => {
                if let Some(got) = self.signals.read() {
                    self.signal(got.signal);
                }
            }
            Slot::Runner => self.reap(),
            Slot::Out => self.pump(true),
            Slot::Err => self.pump(false),
            Slot::Sock(i) => {
                let mut buf = [0u8; 64];
                let Some(client) = &mut self.clients[i] else {
                    return;
                };
                match client.sock.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        for chunk in buf[..n].chunks_exact(4) {
                            let mut sig = [0u8; 4];
                            sig.copy_from_slice(chunk);
                            self.signal(i32::from_ne_bytes(sig));
                        }
                    }
                    // Gone (or broken): detach it; the target goes on.
                    _ => self.detach(i),
                }
            }
            Slot::Stdin(i) => {
                let mut buf = vec![0u8; 65536];
                let Some(client) = &mut self.clients[i] else {
                    return;
                };
                let n = client
                    .stdin
                    .as_ref()
                    .map_or(0, |fd| read_fd(fd.as_raw_fd(), &mut buf));
                if n == 0 {
                    client.stdin = None;
                } else {
                    // The target may have closed its stdin: its input is then dropped.
                    let _ = write_fd(self.target_in.as_raw_fd(), &buf[..n]);
                }
            }
        }
    }

    /// Passes a forwarded signal to the runner, which passes it into the sandbox.
    fn signal(&self, sig: i32) {
        if self.status.is_none() && sig > 0 && sig < 65 {
            let _ = self.runner.signal(sig);
        }
    }

    /// The runner has exited: its status is the target's.
    fn reap(&mut self) {
        if let Ok(Some(code)) = self.runner.try_wait() {
            self.status = Some(code);
        }
    }

    /// Copies what the target wrote on stdout (`true`) or stderr to every attached call.
    fn pump(&mut self, stdout: bool) {
        let pipe = if stdout { &mut self.out } else { &mut self.err };
        let Some(fd) = pipe.as_ref() else { return };
        let mut buf = vec![0u8; 65536];
        let n = read_fd(fd.as_raw_fd(), &mut buf);
        if n == 0 {
            *pipe = None;
            return;
        }
        for client in self.clients.iter_mut().flatten() {
            let dest = if stdout {
                &mut client.stdout
            } else {
                &mut client.stderr
            };
            if let Some(fd) = dest
                && write_fd(fd.as_raw_fd(), &buf[..n]).is_err()
            {
                *dest = None;
            }
        }
    }

    /// Drops call `i` (its slot is emptied; removed after this round of events).
    fn detach(&mut self, i: usize) {
        self.clients[i] = None;
    }
}

/// Accepts a call: same user (or root), then its three descriptors.
fn register(sock: UnixStream) -> Option<Client> {
    let cred = socket::getsockopt(&sock, sockopt::PeerCredentials).ok()?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid() != me && cred.uid() != 0 {
        return None;
    }
    // The call sends right after connecting; a silent peer must not stall the keeper.
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: descriptors just received are ours to own.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    sock.set_read_timeout(None).ok()?;
    let mut fds = fds.into_iter();
    let (stdin, stdout, stderr) = (fds.next()?, fds.next()?, fds.next()?);
    (&sock).write_all(b"A").ok()?;
    Some(Client {
        sock,
        stdin: Some(stdin),
        stdout: Some(stdout),
        stderr: Some(stderr),
    })
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2) without a timeout; EINTR is an empty round.
fn poll(fds: &mut [libc::pollfd]) -> std::io::Result<()> {
    // SAFETY: a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            fds.iter_mut().for_each(|f| f.revents = 0);
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// One read; 0 on end of input or error (both end what is read from there).
fn read_fd(fd: RawFd, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return n.max(0) as usize;
    }
}

fn write_fd(fd: RawFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writing from our buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

fn pipe(dir: &Path) -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io(dir, e))
}
