//! podman's stderr carries both the target's stderr and podman's own messages. The relay
//! passes it through as it comes, except podman's own lines at the very start of the
//! stream: the failures worth explaining (no OCI runtime start, missing image) all happen
//! before the target could write anything, and podman exits right after printing them.
//! Those lines are held until the stream ends or shows they were something else; then the
//! launcher either replaces them with one clear error or writes them out unchanged.

use std::io::{self, Write};

/// Lines podman itself writes: its errors and its log lines; and the errors of its init
/// (catatonit, which `--init` runs as the container's pid 1 to start the target).
const PODMAN_PREFIXES: [&[u8]; 3] = [b"Error: ", b"time=\"", b"ERROR (catatonit:"];

/// A podman failure the launcher knows how to explain or handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// crun refuses hybrid cgroups.
    HybridCgroups,
    /// The runtime could not apply the container's rlimits (no CAP_SYS_RESOURCE).
    Rlimit,
    /// The Cairn image is not in podman's storage (removed behind Cairn's back).
    ImageMissing,
    /// The target does not exist in the image.
    TargetMissing,
}

/// Recognises a podman failure in the text podman printed before exiting.
pub fn classify(text: &[u8]) -> Option<Failure> {
    let text = String::from_utf8_lossy(text);
    let error = text
        .lines()
        .find(|l| l.starts_with("Error: ") || l.starts_with("ERROR (catatonit:"))?;
    if error.contains("cgroups in hybrid mode not supported") {
        Some(Failure::HybridCgroups)
    } else if error.contains("rlimit") && error.to_lowercase().contains("operation not permitted") {
        Some(Failure::Rlimit)
    } else if error.contains("image not known") {
        Some(Failure::ImageMissing)
    } else if error.contains("executable file not found")
        || (error.contains("OCI runtime attempted to invoke a command that was not found"))
        || (error.contains("exec: \"") && error.contains("no such file or directory"))
        || error.contains("failed to exec pid1: No such file or directory")
    {
        Some(Failure::TargetMissing)
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing but podman lines (or the start of one) seen so far: holding them.
    Start,
    /// Anything else seen: everything passes through.
    Through,
}

/// The relay's state: what it holds back while the stream may still be podman's own.
#[derive(Debug)]
pub struct Relay {
    held: Vec<u8>,
    phase: Phase,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

impl Relay {
    pub fn new() -> Relay {
        Relay {
            held: Vec::new(),
            phase: Phase::Start,
        }
    }

    /// Passes `data` on to `out`, or holds it while it may still be podman's own failure.
    pub fn feed(&mut self, data: &[u8], out: &mut dyn Write) -> io::Result<()> {
        if self.phase == Phase::Through {
            return out.write_all(data);
        }
        self.held.extend_from_slice(data);
        if !self.may_be_podmans() {
            self.phase = Phase::Through;
            let held = std::mem::take(&mut self.held);
            out.write_all(&held)?;
        }
        out.flush()
    }

    /// The end of the stream: what is still held (empty once anything passed through).
    pub fn finish(self) -> Vec<u8> {
        self.held
    }

    /// Whether everything held can still be podman's failure report: complete lines that
    /// are podman's (an `Error: ` line only when it is a failure podman stops on), then at
    /// most the beginning of one more.
    fn may_be_podmans(&self) -> bool {
        let mut rest = &self.held[..];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let line = &rest[..=end];
            let known_error = (line.starts_with(PODMAN_PREFIXES[0])
                || line.starts_with(PODMAN_PREFIXES[2]))
                && classify(line).is_some();
            let log_line = line.starts_with(PODMAN_PREFIXES[1]) && contains(line, b"level=");
            if !(known_error || log_line) {
                return false;
            }
            rest = &rest[end + 1..];
        }
        PODMAN_PREFIXES.iter().any(|p| {
            let n = p.len().min(rest.len());
            rest[..n] == p[..n]
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RLIMIT: &str = "Error: runc: runc create failed: unable to start container process: \
        error during container init: error setting rlimits for ready process: error setting \
        rlimit type 7: operation not permitted: OCI permission denied\n";

    fn relay(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut r = Relay::new();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out).unwrap();
        }
        (out, r.finish())
    }

    #[test]
    fn podman_failures_are_held_and_recognised() {
        let (out, held) = relay(&[b"Err", &RLIMIT.as_bytes()[3..]]);
        assert!(out.is_empty());
        assert_eq!(classify(&held), Some(Failure::Rlimit));
        let hybrid = b"Error: OCI runtime error: crun: cgroups in hybrid mode not supported, \
            drop all controllers from cgroupv2\n";
        assert_eq!(classify(hybrid), Some(Failure::HybridCgroups));
        let missing = b"time=\"x\" level=warning msg=\"y\"\nError: localhost/cairn-app/a:1: image not known\n";
        let (out, held) = relay(&[missing]);
        assert!(out.is_empty());
        assert_eq!(classify(&held), Some(Failure::ImageMissing));
        let init = b"ERROR (catatonit:6): failed to exec pid1: No such file or directory\n";
        let (out, held) = relay(&[init]);
        assert!(out.is_empty());
        assert_eq!(classify(&held), Some(Failure::TargetMissing));
    }

    #[test]
    fn the_targets_own_stderr_passes_at_once() {
        let (out, held) = relay(&[b"Error: my own message\n", b"more"]);
        assert_eq!(out, b"Error: my own message\nmore");
        assert!(held.is_empty());
        let (out, _) = relay(&[b"E"]);
        assert!(out.is_empty(), "a possible podman line is held");
        let (out, _) = relay(&[b"E", b"x"]);
        assert_eq!(out, b"Ex");
        let (out, _) = relay(&[RLIMIT.as_bytes(), b"later output\n"]);
        assert_eq!(out, [RLIMIT.as_bytes(), b"later output\n"].concat());
    }

    proptest! {
        /// Whatever the chunking, what passes plus what is held is the stream, in order.
        #[test]
        fn nothing_is_lost_or_reordered(
            data in prop::collection::vec(prop_oneof![
                Just(b"Error: ".to_vec()), Just(b"time=\"".to_vec()), Just(b"\n".to_vec()),
                Just(b"level=".to_vec()), Just(b"image not known".to_vec()),
                prop::collection::vec(any::<u8>(), 0..8)], 0..12),
            cut in prop::collection::vec(0usize..64, 0..6),
        ) {
            let stream: Vec<u8> = data.concat();
            let mut cuts: Vec<usize> = cut.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&stream[at..c]);
                at = c;
            }
            chunks.push(&stream[at..]);
            let (out, held) = relay(&chunks);
            prop_assert!(out.is_empty() || held.is_empty());
            prop_assert_eq!([out, held].concat(), stream);
        }
    }
}
