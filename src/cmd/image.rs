//! `cairn image`: not built yet (see the README's feature table).

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Not available yet.
    Status,
}

pub fn run(_command: ImageCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cairn image` is not available in this build yet")
}
