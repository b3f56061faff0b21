//! `cairn run --node LEAF [--env K=V]... [--chdir DIR] [--] PROGRAM [ARGS...]`
//!
//! The hot path: load the family, build the spec, launch. Everything here runs before the
//! sandbox forks, so it must stay single-threaded and cheap.

use anyhow::Context;
use clap::Args;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The leaf node whose family forms the sandbox.
    #[arg(long, value_name = "LEAF")]
    pub node: PathBuf,
    /// Set an environment variable for the program (beats the nodes' environ).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Give the program access to a confdb view (through the daemon's per-app socket).
    #[arg(long = "confdb-plug", value_name = "VIEW")]
    pub confdb_plug: Vec<String>,
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

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    let ctx = cairn_node::VarContext::from_process();
    let family = cairn_node::load_family(&args.node, &ctx)?;
    let merged = family.merged()?;
    check_seals(&family, &merged, &config)?;
    let mut launch = cairn_node::Launch::new(args.command);
    launch.env_overrides = args.env;
    launch.chdir = args.chdir;
    let mut spec = family.spec_from(&merged, &launch)?;
    if spec.cgroup.parent.is_none() {
        spec.cgroup.parent = config.cgroup.root.clone();
    }
    if args.print_bwrap {
        println!("{}", super::bwrap::command_line(&spec)?);
        return Ok(ExitCode::SUCCESS);
    }
    // The daemon is asked for the session before the sandbox forks: the client's runtime is
    // gone by then, so the fork happens in a single-threaded process.
    let session = if args.confdb_plug.is_empty() {
        None
    } else {
        let session =
            cairn_api::open_session(&config.admin_socket(), &args.node, &args.confdb_plug)?;
        plug_session(&mut spec, &session)?;
        Some(session)
    };
    let result = cairn_sandbox::run(&spec);
    if let Some(Err(e)) = session.map(cairn_api::Session::close) {
        tracing::warn!("cannot close the confdb session: {e}");
    }
    let code = result.with_context(|| format!("cannot run in {}", args.node.display()))?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Where the `cairn` binary appears inside a sandbox with confdb plugs, so that the program
/// can run `cairn conf ...` (which finds the socket by itself).
const SANDBOX_CAIRN_DIR: &str = "/run/cairn/bin";

/// Gives the sandbox the session's socket at the well-known path, and the `cairn` binary.
fn plug_session(
    spec: &mut cairn_sandbox::SandboxSpec,
    session: &cairn_api::Session,
) -> anyhow::Result<()> {
    use cairn_sandbox::Mount;
    use std::ffi::OsString;
    let socket_path = PathBuf::from(cairn_api::SANDBOX_SOCKET);
    spec.mounts.push(Mount::Bind {
        source: session.socket.clone(),
        dest: socket_path.clone(),
        readonly: false,
    });
    let exe = std::env::current_exe()
        .context("cannot find the cairn binary to export into the sandbox")?;
    spec.mounts.push(Mount::Bind {
        source: exe,
        dest: PathBuf::from(SANDBOX_CAIRN_DIR).join("cairn"),
        readonly: true,
    });
    spec.env.retain(|(k, _)| k != "CAIRN_SOCKET");
    spec.env
        .push((OsString::from("CAIRN_SOCKET"), socket_path.into_os_string()));
    match spec.env.iter_mut().find(|(k, _)| k == "PATH") {
        Some((_, path)) => {
            path.push(":");
            path.push(SANDBOX_CAIRN_DIR);
        }
        None => spec
            .env
            .push((OsString::from("PATH"), OsString::from(SANDBOX_CAIRN_DIR))),
    }
    Ok(())
}

/// `verify: required`: every node at or below the one whose file asks for it must carry a
/// seal that still matches (a missing seal would otherwise be an easy way around the check),
/// and any other sealed node of the family must match too.
fn check_seals(
    family: &cairn_node::Family,
    merged: &cairn_node::Merged,
    config: &cairn_config::Config,
) -> anyhow::Result<()> {
    let verify = &merged.config.verify;
    if verify.value != cairn_node::Verify::Required {
        return Ok(());
    }
    let trusted = config.keys_dir();
    let required_from = verify.origin.as_ref().and_then(|o| {
        family
            .nodes
            .iter()
            .position(|n| n.files.iter().any(|f| f.as_path() == &*o.file))
    });
    for (i, node) in family.nodes.iter().enumerate() {
        let must_be_sealed = required_from.is_some_and(|from| i >= from);
        if must_be_sealed && !node.path.join("etc/cairn/seal.json").exists() {
            let origin = verify
                .origin
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default();
            anyhow::bail!(
                "refusing to run: node {} has no seal, and {origin} says verify: required (seal it with `cairn node seal {} --key K`)",
                node.path.display(),
                node.path.display()
            );
        }
        cairn_pkg::check_seal(&node.path, &trusted).with_context(|| {
            format!(
                "refusing to run: node {} fails its seal check",
                node.path.display()
            )
        })?;
    }
    Ok(())
}
