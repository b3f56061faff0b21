//! Running `podman run` as the target's stand-in: stdin and stdout are the caller's own
//! descriptors, stderr goes through the [`Relay`], signals sent to the launcher are passed
//! on to podman (which proxies them into the container), and the exit status is podman's
//! (the target's, or 125-127 for podman's own failures).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use cairn_process::{Child, FORWARDED, Signals};

use super::relay::Relay;

/// How one podman run ended: its exit code and the stderr the relay still held.
#[derive(Debug)]
pub struct Ended {
    pub code: i32,
    pub held: Vec<u8>,
}

/// Runs `podman ARGS`, relaying as described in the module doc, until it exits.
pub fn run(podman: &Path, args: &[OsString]) -> std::io::Result<Ended> {
    let signals = Signals::block(&FORWARDED)?;
    let mut command = Command::new(podman);
    command
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    // SIGTERM when the launcher dies (killed, say), which podman passes on to the container
    // as it would the launcher's own.
    cairn_process::die_with_caller(&mut command, libc::SIGTERM);
    let (mut child, pipes) = Child::spawn(&mut command)?;
    let mut stderr = pipes
        .stderr
        .ok_or_else(|| std::io::Error::other("podman's stderr pipe is missing"))?;
    // Spawned with the signals blocked: they stay pending for the supervisor below.
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
    // Podman is in our process group: the kernel's signals (a terminal's ^C, SIGWINCH,
    // hang-up) reached it already.
    let code = cairn_process::supervise(&mut child, &signals, true)?;
    let held = relay.join().unwrap_or_default();
    Ok(Ended { code, held })
}

/// Writes what the relay held to the caller's stderr, unchanged.
pub fn release(held: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(held);
    let _ = err.flush();
}
