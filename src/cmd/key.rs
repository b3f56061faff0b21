//! `cairn key`: not built yet (see the README's feature table).

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Not available yet.
    Status,
}

pub fn run(_command: KeyCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cairn key` is not available in this build yet")
}
