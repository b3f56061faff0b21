//! `cairn run --node LEAF [--env K=V]... [--chdir DIR] [--confdb-plug V]... [--memory SIZE]
//! [--pids N] [--cpu-max Q/P] [--] PROGRAM [ARGS...]`
//!
//! The hot path: the arguments become a [`cairn_model::Request`] that `cairn-launch` runs.
//! Everything here runs before the sandbox forks, so it must stay single-threaded and cheap.

use clap::Args;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The leaf node whose family forms the sandbox.
    #[arg(long, value_name = "LEAF")]
    pub node: PathBuf,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// Print the equivalent bubblewrap command line instead of running (for benchmarks).
    #[arg(long, hide = true)]
    pub print_bwrap: bool,
    /// The program and its arguments, passed exactly as given.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<OsString>,
}

/// What a launch request adds to its target, as every launching command spells it (the
/// encoder is `cairn_model::Request::to_args`; a test holds the two together).
#[derive(Debug, Args, Default)]
pub struct LaunchArgs {
    /// Set an environment variable for the program (beats the nodes' or the app's).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Give the program access to a confdb view (through a daemon session's socket).
    #[arg(long = "confdb-plug", value_name = "VIEW")]
    pub confdb_plug: Vec<String>,
    /// Memory limit (e.g. 256M); the tighter of this and the family's applies.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Process limit; the tighter of this and the family's applies.
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// CPU limit as QUOTA/PERIOD in microseconds (50000/100000 = half a CPU).
    #[arg(long = "cpu-max", value_name = "QUOTA/PERIOD", value_parser = parse_cpu_max)]
    pub cpu_max: Option<(u64, u64)>,
}

impl LaunchArgs {
    /// The request for `target` with `args`, carrying these options.
    pub fn request(self, target: cairn_model::Target, args: Vec<OsString>) -> cairn_model::Request {
        cairn_model::Request {
            target,
            args,
            env: self.env,
            chdir: self.chdir,
            plugs: self.confdb_plug,
            limits: cairn_model::Limits {
                memory_max: self.memory,
                pids_max: self.pids,
                cpu_max: self.cpu_max,
            },
        }
    }
}

/// `K=V` as every `--env` option takes it.
pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    cairn_model::parse_size(s).map_err(|e| e.to_string())
}

fn parse_cpu_max(s: &str) -> Result<(u64, u64), String> {
    cairn_model::launch::parse_cpu_max(s)
        .ok_or_else(|| format!("expected QUOTA/PERIOD in microseconds, got {s:?}"))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let request = args
        .launch
        .request(cairn_model::Target::Node(args.node.clone()), args.command);
    let config = cairn_config::Config::load()?;
    if args.print_bwrap {
        let spec = cairn_launch::node_spec(&config, &args.node, &request)?;
        println!("{}", super::bwrap::command_line(&spec)?);
        return Ok(ExitCode::SUCCESS);
    }
    Ok(super::exit_code(cairn_launch::run(&config, &request)?))
}
