//! `cairn app register|ls|info|rm|ps|stop|run|exec`, and the launch of a registered app
//! when `cairn` is called through an app's symlink (multi-call: `NAME ARGS...`).
//!
//! The launch is a hot path like `cairn run`: no clap, no logging set-up, and the app's
//! arguments are never looked at; they become a request for `cairn-launch`.

use anyhow::Context;
use cairn_app::{AppConfig, Apps, Engine, Mode};
use cairn_model::Target;
use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Make NAME a host command that runs TARGET inside an image or a node family.
    Register(Box<RegisterArgs>),
    /// List registered apps.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show an app's merged configuration.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an app: its command, config, fragments, image pins and instances.
    Rm { name: String },
    /// List instances: fresh calls running (ID = the launcher's pid, or CAIRN_INSTANCE) and
    /// kept resume/attach instances.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Stop an app's instances, or one of them (NAME@ID): SIGTERM to a fresh call's target;
    /// a kept instance is ended and removed.
    Stop {
        #[arg(value_name = "NAME[@ID]")]
        instance: String,
    },
    /// Run an app's target with ARGS, exactly as its host command does.
    Run {
        name: String,
        #[command(flatten)]
        launch: super::run::LaunchArgs,
        /// The arguments after the target, passed exactly.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run PROGRAM in a fresh sandbox of an app's environment instead of its target.
    Exec {
        name: String,
        #[command(flatten)]
        launch: super::run::LaunchArgs,
        /// The program and its arguments, passed exactly.
        #[arg(last = true, required = true, value_name = "PROGRAM")]
        command: Vec<OsString>,
    },
    /// Internal: the detached keeper of a resume or attach instance (started by a call).
    #[command(hide = true)]
    Keep {
        name: String,
        id: String,
        #[command(flatten)]
        launch: super::run::LaunchArgs,
        /// The first call's arguments (attach: the target's).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    pub name: String,
    /// The image the app runs in (top layers).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// A base image below the image's layers.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Extra layer images between base and image (bottom first).
    #[arg(long = "layer", value_name = "REF")]
    pub layers: Vec<String>,
    /// Run in this node family instead of an image.
    #[arg(long, value_name = "LEAF")]
    pub node: Option<PathBuf>,
    /// Run in this micro-VM (see `cairn vm pull`); implies engine vm.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// Size of the vm's writable overlay (e.g. 512M, 1G).
    #[arg(long, value_name = "SIZE")]
    pub overlay_size: Option<String>,
    /// The program to run (`/` = the image's entrypoint).
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// Where the host command goes (default /usr/local/bin/NAME, ~/.local/bin/NAME).
    #[arg(long, value_name = "PATH")]
    pub app_path: Option<PathBuf>,
    /// Default: vm with --vm, native otherwise.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    #[arg(long, value_enum, default_value = "fresh")]
    pub mode: ModeArg,
    #[arg(long = "env", value_name = "K=V", value_parser = super::run::parse_env)]
    pub env: Vec<(String, String)>,
    /// Engine argument (native: --share-net).
    #[arg(long = "run-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
    /// A tar archive unpacked into each instance before launch.
    #[arg(long = "include-tar", value_name = "FILE")]
    pub include_tar: Vec<PathBuf>,
    /// A host file or directory copied into each instance at the same path.
    #[arg(long = "include-path", value_name = "PATH")]
    pub include_path: Vec<PathBuf>,
    /// A confdb view the app plugs (VIEW[:custodian]).
    #[arg(long = "confdb-plug", value_name = "VIEW")]
    pub confdb_plug: Vec<String>,
    /// Replace an existing app or command file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EngineArg {
    Native,
    Podman,
    Vm,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Fresh,
    Resume,
    Attach,
}

pub fn run(command: AppCommand) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    let apps = Apps::new(&config);
    match command {
        AppCommand::Register(args) => register(&config, &apps, *args)?,
        AppCommand::Ls { json } => {
            let list = apps.list()?;
            if json {
                print_json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|a| match &a.config {
                        Some(c) => vec![a.name.clone(), source(c), path_text(&c.target)],
                        None => vec![
                            a.name.clone(),
                            format!("error: {}", a.error.clone().unwrap_or_default()),
                            String::new(),
                        ],
                    })
                    .collect::<Vec<_>>();
                print_table(&["NAME", "SOURCE", "TARGET"], &rows);
            }
        }
        AppCommand::Info { name, json } => {
            let app = apps.load(&name)?;
            if json {
                print_json(&app)?;
            } else {
                print!("{}", cairn_app::config::to_yaml(&app)?);
            }
        }
        AppCommand::Rm { name } => {
            apps.remove(&name, &current_exe()?)?;
            reload_daemon(&config);
        }
        AppCommand::Ps { json } => {
            let list = cairn_app::instance::running(&apps.instances)?;
            if json {
                print_json(&list)?;
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let rows = list
                    .iter()
                    .map(|r| {
                        vec![
                            r.app.clone(),
                            r.id.to_string(),
                            cairn_app::instance::mode_name(r.mode).to_string(),
                            r.pid.to_string(),
                            age(now.saturating_sub(r.started)),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(&["APP", "ID", "MODE", "PID", "STARTED"], &rows);
            }
        }
        AppCommand::Stop { instance } => {
            let (name, id) = match instance.split_once('@') {
                Some((name, id)) => {
                    if id.parse::<u32>().is_err() {
                        cairn_app::instance::check_id(id)?;
                    }
                    (name, Some(id))
                }
                None => (instance.as_str(), None),
            };
            cairn_config::check_name(cairn_config::NameKind::App, name)?;
            for id in cairn_app::instance::stop(&apps.instances, name, id)? {
                eprintln!("stopped {name}@{id}");
            }
        }
        AppCommand::Run { name, launch, args } => {
            return launch_request(&config, launch.request(Target::App(name), args));
        }
        AppCommand::Exec {
            name,
            launch,
            command,
        } => return launch_request(&config, launch.request(Target::AppExec(name), command)),
        AppCommand::Keep {
            name,
            id,
            launch,
            args,
        } => {
            return launch_request(
                &config,
                launch.request(Target::Keep { app: name, id }, args),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

/// A running daemon serves an app's socket from its config: tell it that the apps changed
/// (as SIGHUP would), so that a plugged app works at once. No daemon: nothing to tell.
fn reload_daemon(config: &cairn_config::Config) {
    let admin = config.admin_socket();
    if std::os::unix::net::UnixStream::connect(&admin).is_err() {
        return;
    }
    if let Err(e) = cairn_api::Client::new(&admin).and_then(|c| c.reload_apps()) {
        eprintln!("cairn: warning: the daemon did not reload the apps: {e} (send it SIGHUP)");
    }
}

fn source(c: &AppConfig) -> String {
    match (&c.image, &c.node) {
        (Some(i), _) => format!("image {i}"),
        (None, Some(n)) => format!("node {}", n.display()),
        _ => String::new(),
    }
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn current_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the cairn binary")
}

fn register(cairn: &cairn_config::Config, apps: &Apps, args: RegisterArgs) -> anyhow::Result<()> {
    let env = cairn_config::Env::from_process();
    let app_path = match args.app_path {
        Some(p) => p,
        None => cairn_app::default_app_path(&args.name, &env)?,
    };
    let config = AppConfig {
        image: args.image,
        base: args.base,
        layers: args.layers,
        node: args.node,
        engine: match args.engine {
            Some(EngineArg::Native) => Engine::Native,
            Some(EngineArg::Podman) => Engine::Podman,
            Some(EngineArg::Vm) => Engine::Vm,
            None if args.vm.is_some() => Engine::Vm,
            None => Engine::Native,
        },
        vm: args.vm,
        overlay_size: args.overlay_size,
        target: Some(args.target),
        app_path: Some(app_path.clone()),
        include_tar: args.include_tar,
        include_path: args.include_path,
        mode: match args.mode {
            ModeArg::Fresh => Mode::Fresh,
            ModeArg::Resume => Mode::Resume,
            ModeArg::Attach => Mode::Attach,
        },
        run_args: args.run_args,
        env: args.env.into_iter().collect(),
        confdb_plug: args.confdb_plug,
        hooks: Default::default(),
    };
    if let Some(leaf) = &config.node {
        let ctx = cairn_node::VarContext::from_process();
        cairn_node::load_family(leaf, &ctx)
            .with_context(|| format!("app {}: node {}", args.name, leaf.display()))?;
    }
    let previous = apps.load(&args.name).ok();
    apps.register(&args.name, &config, &current_exe()?, args.force)?;
    reload_daemon(cairn);
    let was_podman = previous.is_some_and(|p| p.engine == Engine::Podman);
    if was_podman
        && config.engine != Engine::Podman
        && let Err(e) = cairn_app::engine::podman::forget(&args.name)
    {
        eprintln!("cairn: warning: {e}");
    }
    if config.engine == Engine::Podman {
        // Loading now spares the first launch; whatever fails here is retried (and
        // reported) by the launches themselves.
        match cairn_app::engine::podman::prepare(apps, &args.name, &config) {
            Ok(true) => eprintln!("loaded {}'s image into podman", args.name),
            Ok(false) => {}
            Err(e) => eprintln!("cairn: warning: {e} (the first launch tries again)"),
        }
    }
    eprintln!("registered {} as {}", args.name, app_path.display());
    Ok(())
}

/// Multi-call entry: when argv[0] names a registered app (and is not `cairn`), launches it
/// and returns its status; `None` lets the normal command line take over.
pub fn multi_call() -> Option<ExitCode> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    if name == "cairn" {
        return None;
    }
    let config = cairn_config::Config::load().ok()?;
    if !Apps::new(&config).is_registered(&name) {
        return None;
    }
    let request = cairn_model::Request::app(&name, argv.collect());
    Some(match cairn_launch::run(&config, &request) {
        Ok(code) => super::exit_code(code),
        Err(err) => {
            crate::output::print_error(&err.into());
            ExitCode::from(1)
        }
    })
}

/// Runs a request made by a subcommand of `cairn app`.
fn launch_request(
    config: &cairn_config::Config,
    request: cairn_model::Request,
) -> anyhow::Result<ExitCode> {
    Ok(super::exit_code(cairn_launch::run(config, &request)?))
}
