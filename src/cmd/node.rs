//! `cairn node`: placeholder until node trees land.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Not available yet.
    Status,
}

pub fn run(_command: NodeCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
