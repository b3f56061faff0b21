//! `cairn daemon`: not built yet (see the README's feature table).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DaemonArgs {}

pub fn run(_args: DaemonArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cairn daemon` is not available in this build yet")
}
