//! The `cairn` binary: argument parsing, logging, and the mapping of errors to exit codes.
//!
//! Each top-level command lives in `cmd/<name>.rs` with its own clap types and a `run`
//! function; this file only dispatches. Exit status: 0 success, 1 failure, 2 bad usage,
//! or the launched program's own status for `cairn run` and app launches.

mod cmd;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Run applications on edge and embedded Linux devices"
)]
struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a program in a node family's sandbox.
    Run(cmd::run::RunArgs),
    /// Create, inspect and remove nodes; manage their packages.
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// Signing keys for node seals.
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// OCI images: pull, import, list, inspect, remove, collect garbage.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Shared configuration through views (confdb).
    #[command(subcommand)]
    Conf(cmd::conf::ConfCommand),
    /// Registered apps: host commands that run inside an image or a node family.
    #[command(subcommand)]
    App(cmd::app::AppCommand),
    /// Run the device daemon in the foreground.
    Daemon(cmd::daemon::DaemonArgs),
    /// Micro-VMs for apps with `--vm`: pull, list, remove, run a command.
    #[command(subcommand)]
    Vm(cmd::vm::VmCommand),
    /// Build a small demo node family under the state directory and run a program in it.
    Demo(cmd::demo::DemoArgs),
}

fn main() -> ExitCode {
    // A VM's init (PID 1, /init, the kernel's cairn.guest marker): serve the host, power off.
    if cairn_vm::guest::is_guest() {
        cairn_vm::guest::init();
    }
    // Called through an app's symlink: launch it, before clap could take any argument.
    if let Some(code) = cmd::app::multi_call() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    output::init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Node(c) => cmd::node::run(c),
        Command::Key(c) => cmd::key::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Conf(c) => cmd::conf::run(c),
        Command::App(c) => cmd::app::run(c),
        Command::Daemon(args) => cmd::daemon::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Vm(c) => cmd::vm::run(c),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(1)
        }
    }
}
