//! `cairn run`: placeholder until the sandbox lands.

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
