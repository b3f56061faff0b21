//! Per-node Debian packages (placeholder while the crate is written).
