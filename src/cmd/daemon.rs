//! `cairn daemon`: the device daemon in the foreground (see crate `cairn-daemon`).
//!
//! Serves the HTTP/JSON API on `<run>/cairn.sock` and one socket per app with confdb plugs
//! (`<run>/apps/NAME.sock`); SIGHUP re-reads `<config>/apps/*.yaml`, SIGTERM/SIGINT stop it.
//! Under systemd it notifies readiness, feeds the watchdog and logs to journald.

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    if args.openapi {
        println!("{}", cairn_daemon::http::openapi_json());
        return Ok(ExitCode::SUCCESS);
    }
    let config = cairn_config::Config::load()?;
    let _journal = cairn_daemon::logging::journald();
    let options = cairn_daemon::DaemonOptions::from_config(config);
    cairn_daemon::run(options)?;
    Ok(ExitCode::SUCCESS)
}
