//! What long operations report while they work; the binary turns it into a progress bar
//! on a terminal and plain lines otherwise.

use std::path::Path;

/// Phases of an install, upgrade or removal, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Download,
    Unpack,
    Configure,
    Remove,
}

impl Phase {
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Download => "downloading",
            Phase::Unpack => "unpacking",
            Phase::Configure => "configuring",
            Phase::Remove => "removing",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Another command holds the node's package lock; this one waits for it.
    WaitingForLock { node: &'a Path },
    /// An interrupted transaction was found and undone before this command started.
    RolledBack { node: &'a Path },
    /// `done` of `total` items of `phase` finished; `item` is the one starting now.
    Step {
        phase: Phase,
        done: usize,
        total: usize,
        item: &'a str,
    },
}

/// The callback type every long operation takes.
pub type Progress<'p> = &'p mut dyn FnMut(Event<'_>);
