//! The `cairn` binary: argument parsing, logging, and the mapping of errors to exit codes.
//!
//! Each top-level command lives in `cmd/<name>.rs` with its own clap types and a `run`
//! function; this file only dispatches. Exit status: 0 success, 1 failure, 2 bad usage,
//! or the launched program's own status for `cairn run` and app launches.

mod cmd;
mod output;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsStr;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Run applications on edge and embedded Linux devices"
)]
struct Cli {
    #[command(flatten)]
    log: LogFlags,
    #[command(subcommand)]
    command: Command,
}

/// Logging flags, global to every subcommand.
#[derive(Debug, Args)]
struct LogFlags {
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// `cairn run` on its own: the launch hot path parses with this small parser instead of
/// building the whole command tree (every subcommand's definition) first.
#[derive(Debug, Parser)]
#[command(name = "run", bin_name = "cairn run", about = RUN_ABOUT)]
struct RunCli {
    #[command(flatten)]
    run: cmd::run::RunArgs,
    #[command(flatten)]
    log: LogFlags,
}

const RUN_ABOUT: &str = "Run a program in a node family's sandbox.";

#[derive(Debug, Subcommand)]
enum Command {
    #[command(about = RUN_ABOUT)]
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
    nss_files_only();
    // A VM's init (PID 1, /init, the kernel's cairn.guest marker): serve the host, power off.
    if cairn_vm::guest::is_guest() {
        cairn_vm::guest::init();
    }
    // Called through an app's symlink: launch it, before clap could take any argument.
    if let Some(code) = cmd::app::multi_call() {
        return code;
    }
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new("run")) {
        let cli = match RunCli::try_parse_from(std::env::args_os().skip(1)) {
            Ok(cli) => cli,
            Err(e) => return usage_error(e),
        };
        output::init_logging(cli.log.verbose, cli.log.quiet);
        return finish(cmd::run::run(cli.run));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    output::init_logging(cli.log.verbose, cli.log.quiet);
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
    finish(result)
}

/// clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::from(if e.use_stderr() { 2 } else { 0 })
}

/// The command's own exit code, or 1 with its error on one line.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(1)
        }
    }
}

/// The binary is linked statically against glibc (.cargo/config.toml), and a static glibc
/// still `dlopen`s the NSS modules /etc/nsswitch.conf names (systemd, sss, ldap, mdns):
/// built against the shared libc, they crash a static process. So every lookup a library
/// might make (hosts for registries above all) uses glibc's built-in sources only: the
/// /etc files and DNS. Cairn's own user and group lookups read /etc/passwd and /etc/group.
/// Runs first, while the process is single-threaded.
fn nss_files_only() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
    {
        unsafe extern "C" {
            fn __nss_configure_lookup(
                dbname: *const std::ffi::c_char,
                service_line: *const std::ffi::c_char,
            ) -> std::ffi::c_int;
        }
        const DATABASES: [(&std::ffi::CStr, &std::ffi::CStr); 9] = [
            (c"passwd", c"files"),
            (c"group", c"files"),
            (c"initgroups", c"files"),
            (c"shadow", c"files"),
            (c"gshadow", c"files"),
            (c"hosts", c"files dns"),
            (c"networks", c"files dns"),
            (c"protocols", c"files"),
            (c"services", c"files"),
        ];
        for (db, line) in DATABASES {
            // SAFETY: both are NUL-terminated static strings; glibc copies what it keeps, and
            // no other thread exists yet. A failure (unknown database) leaves glibc's default.
            unsafe { __nss_configure_lookup(db.as_ptr(), line.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::{Limits, Request, Target};

    /// The request the binary's parser makes of a command line, for each launching command.
    fn parsed(argv: Vec<std::ffi::OsString>) -> Request {
        let cli = Cli::try_parse_from(std::iter::once("cairn".into()).chain(argv))
            .unwrap_or_else(|e| panic!("{e}"));
        use cmd::app::AppCommand;
        match cli.command {
            Command::Run(r) => r.launch.request(Target::Node(r.node), r.command),
            Command::App(AppCommand::Run { name, launch, args }) => {
                launch.request(Target::App(name), args)
            }
            Command::App(AppCommand::Exec {
                name,
                launch,
                command,
            }) => launch.request(Target::AppExec(name), command),
            Command::App(AppCommand::Keep {
                name,
                id,
                launch,
                args,
            }) => launch.request(Target::Keep { app: name, id }, args),
            other => panic!("not a launch: {other:?}"),
        }
    }

    /// `Request::to_args` (what callers re-exec) and the binary's parser agree on every
    /// field, arguments that look like options included.
    #[test]
    fn requests_survive_the_command_line() {
        let args: Vec<std::ffi::OsString> =
            ["--help", "", "-c", "--", "a b"].map(Into::into).into();
        for target in [
            Target::Node("/n/leaf".into()),
            Target::App("web".into()),
            Target::AppExec("web".into()),
            Target::Keep {
                app: "web".into(),
                id: "default".into(),
            },
        ] {
            let mut request = Request {
                target,
                args: args.clone(),
                env: vec![("K".into(), "v=w".into()), ("E".into(), String::new())],
                chdir: Some("/work".into()),
                plugs: vec!["acme/network/observe-device".into()],
                limits: Limits {
                    memory_max: Some(256 << 20),
                    pids_max: Some(64),
                    cpu_max: Some((50_000, 100_000)),
                },
            };
            assert_eq!(parsed(request.to_args()), request);
            request.env.clear();
            request.chdir = None;
            request.plugs.clear();
            request.limits = Limits::default();
            assert_eq!(parsed(request.to_args()), request);
        }
    }
}
