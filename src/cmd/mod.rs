//! One module per top-level command.

pub mod app;
pub mod bwrap;
pub mod conf;
pub mod daemon;
pub mod demo;
pub mod image;
pub mod key;
pub mod node;
pub mod pkg;
pub mod run;
pub mod vm;

/// A launched program's status as this process's exit code (statuses are 0-255; `128+N`
/// for a signal).
pub fn exit_code(status: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(status.clamp(0, 255) as u8)
}
