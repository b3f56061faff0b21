//! Running `podman run` as the target's stand-in: stdin and stdout are the caller's own
//! descriptors, stderr goes through the [`Relay`], signals sent to the launcher are passed
//! on to podman (which proxies them into the container), and the exit status is podman's
//! (the target's, or 125-127 for podman's own failures).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use libc::{c_int, sigset_t};

use super::relay::Relay;

/// What a launch passes on: the same set as the native engine's.
const FORWARDED: [c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGWINCH,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
];

/// How one podman run ended: its exit code and the stderr the relay still held.
#[derive(Debug)]
pub struct Ended {
    pub code: i32,
    pub held: Vec<u8>,
}

/// Runs `podman ARGS`, relaying as described in the module doc, until it exits.
pub fn run(podman: &Path, args: &[OsString]) -> std::io::Result<Ended> {
    let set = wait_set();
    let _blocked = Blocked::new(&set)?;
    // std resets the signal mask in the child, so podman gets the signals it proxies.
    let mut command = Command::new(podman);
    command
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let launcher = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid, _exit).
    unsafe { command.pre_exec(move || die_with_parent(launcher)) };
    let mut child = command.spawn()?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("podman's stderr pipe is missing"))?;
    // Spawned with the signals blocked: they stay pending for the loop below.
    let relay = std::thread::spawn(move || -> Vec<u8> {
        let mut relay = Relay::new();
        let mut out = std::io::stderr().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // A caller that closed its stderr must not stop the target: keep reading.
                    let _ = relay.feed(&buf[..n], &mut out);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = out.flush();
        relay.finish()
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let (sig, from_kernel) = wait_signal(&set);
        // The kernel's signals (a terminal's ^C, SIGWINCH, hang-up) reached podman already:
        // it is in our process group.
        if sig != libc::SIGCHLD && !from_kernel {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
    };
    let held = relay.join().unwrap_or_default();
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(Ended { code, held })
}

/// In podman's process before exec: SIGTERM when the launcher dies (killed, say), which
/// podman passes on to the container as it would the launcher's own; as the native
/// engine's `die_with_parent`.
fn die_with_parent(launcher: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != launcher {
        // The launcher died before the prctl took effect.
        // SAFETY: _exit is async-signal-safe and ends this child at once.
        unsafe { libc::_exit(143) };
    }
    Ok(())
}

/// Writes what the relay held to the caller's stderr, unchanged.
pub fn release(held: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(held);
    let _ = err.flush();
}

fn wait_set() -> sigset_t {
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

/// The wait set blocked in this thread while podman runs; the old mask comes back on drop.
struct Blocked {
    old: sigset_t,
}

impl Blocked {
    fn new(set: &sigset_t) -> std::io::Result<Blocked> {
        let mut old = MaybeUninit::<sigset_t>::uninit();
        // SAFETY: both sets are valid; pthread_sigmask fills `old`.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, old.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(Blocked {
            // SAFETY: initialised by the successful pthread_sigmask.
            old: unsafe { old.assume_init() },
        })
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restoring a mask pthread_sigmask gave us.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Waits for one signal of `set`; returns it and whether the kernel sent it (a terminal).
fn wait_signal(set: &sigset_t) -> (c_int, bool) {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: set is valid and info is a writable siginfo_t.
        let sig = unsafe { libc::sigwaitinfo(set, info.as_mut_ptr()) };
        if sig > 0 {
            // SAFETY: sigwaitinfo filled info.
            let from_kernel = unsafe { info.assume_init() }.si_code == libc::SI_KERNEL;
            return (sig, from_kernel);
        }
        // EINTR (a stop/continue): wait again.
    }
}
