//! `cairn conf`: not built yet (see the README's feature table).

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ConfCommand {
    /// Not available yet.
    Status,
}

pub fn run(_command: ConfCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cairn conf` is not available in this build yet")
}
