//! The channels between the host and the guest init: one virtio-serial port per stream
//! plus a control port carrying JSON lines.
//!
//! Streams carry raw bytes with no framing; virtio-serial has no end-of-stream for data the
//! guest sends, so the guest counts what it relayed and [`GuestMessage::Exit`] says how many
//! bytes of stdout and stderr the host must have read before the call is complete. The host
//! ends stdin by shutting down its side of the socket (QEMU then tells the guest the host
//! disconnected, and reads in the guest return end of file).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// Port names, as the guest finds them in `/sys/class/virtio-ports/*/name`.
pub const PORT_CONTROL: &str = "cairn.control";
pub const PORT_STDIN: &str = "cairn.stdin";
pub const PORT_STDOUT: &str = "cairn.stdout";
pub const PORT_STDERR: &str = "cairn.stderr";

/// The kernel command line word that tells the `cairn` binary it is a guest's init.
pub const GUEST_MARKER: &str = "cairn.guest";

/// What the host asks the guest to run. Byte strings, because argv, the environment and
/// paths are not always UTF-8 and must arrive exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The target first, then the caller's arguments.
    pub argv: Vec<Vec<u8>>,
    /// `K=V` entries: the whole environment of the target.
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// Bytes of the tmpfs holding the writable layer over the read-only rootfs.
    pub overlay_size: u64,
    /// The caller has a terminal: the target gets one too.
    #[serde(default)]
    pub tty: Option<Tty>,
}

/// A terminal for the target: a pseudo-terminal in the guest whose output travels on the
/// stdout port (and whose input comes from the stdin port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tty {
    pub size: WindowSize,
    /// stderr is the terminal too (the caller's stderr is one); otherwise its own port.
    pub stderr: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMessage {
    Run(Request),
    /// A signal the host received, for the target.
    Signal(i32),
    /// The caller's terminal changed size.
    Resize(WindowSize),
    /// Everything arrived: the guest may power off.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestMessage {
    /// The target runs: from now on signals reach it.
    Started,
    /// The target ended with `status` (128+N for signal N) after writing `stdout` and
    /// `stderr` bytes.
    Exit {
        status: i32,
        stdout: u64,
        stderr: u64,
    },
    /// The guest could not run the target; one line.
    Error(String),
}

/// Writes one message as one line.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one message; `Ok(None)` at end of file.
pub fn receive<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    parse(&line).map(Some)
}

/// Parses one line (with or without its newline).
pub fn parse<T: for<'de> Deserialize<'de>>(line: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(line))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_are_single_lines() {
        let mut out = Vec::new();
        send(&mut out, &GuestMessage::Error("a\nb".into())).unwrap();
        send(
            &mut out,
            &GuestMessage::Exit {
                status: 42,
                stdout: 4,
                stderr: 0,
            },
        )
        .unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut input = &out[..];
        assert_eq!(
            receive::<GuestMessage>(&mut input).unwrap(),
            Some(GuestMessage::Error("a\nb".into()))
        );
        assert_eq!(
            receive::<GuestMessage>(&mut input).unwrap(),
            Some(GuestMessage::Exit {
                status: 42,
                stdout: 4,
                stderr: 0
            })
        );
        assert_eq!(receive::<GuestMessage>(&mut input).unwrap(), None);
        assert!(parse::<HostMessage>(b"{\"bogus\":1}\n").is_err());
    }

    proptest! {
        /// Any argv, environment and cwd bytes arrive exactly.
        #[test]
        fn requests_round_trip(
            argv in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..5),
            env in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..3),
            cwd in proptest::collection::vec(any::<u8>(), 0..8),
            overlay_size in any::<u64>(),
        ) {
            let tty = (overlay_size % 2 == 0).then_some(Tty {
                size: WindowSize { rows: 24, cols: 80 },
                stderr: true,
            });
            let message = HostMessage::Run(Request { argv, env, cwd, overlay_size, tty });
            let mut out = Vec::new();
            send(&mut out, &message).unwrap();
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(receive::<HostMessage>(&mut &out[..]).unwrap(), Some(message));
        }
    }
}
