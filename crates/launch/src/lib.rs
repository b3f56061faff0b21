//! The launch layer: every way Cairn runs a program goes through here.
//!
//! A caller describes the launch as a [`cairn_model::Request`] (a node family, an app's
//! target, a command in an app's environment, or an instance's keeper) and calls [`run`]
//! in-process, or hands the request to a new `cairn` process with
//! [`cairn_model::Request::command`]. The rules every launch follows live here once: the
//! seal check of `verify: required` families, confdb plugs (a daemon session for
//! `cairn run`, the app's own socket for registered apps, in every engine that can take
//! one), the caller's variables and limits, the configured cgroup parent.
//!
//! It does not parse command lines (the binary does) and does not fork itself: the sandbox
//! and the engines do, so [`run`] must be called before any async runtime starts threads
//! (the daemon client used for sessions drops its runtime before returning).

mod error;
mod keeper;
mod node;
mod seals;

use cairn_app::{Apps, LaunchContext};
use cairn_model::{ConfdbPlug, Request, Target};

pub use error::Error;
pub use node::node_spec;

/// Runs `request` under `config` in this process and returns the program's exit status
/// (`128+N` when a signal ended it).
pub fn run(config: &cairn_config::Config, request: &Request) -> Result<i32, Error> {
    match &request.target {
        Target::Node(leaf) => node::run(config, leaf, request, None),
        Target::App(name) => app(config, name, request, false),
        Target::AppExec(name) => app(config, name, request, true),
        Target::Keep { app, id } => keeper::keep(config, app, id, request),
    }
}

/// An app's target, or with `exec` a command in the app's environment.
fn app(
    config: &cairn_config::Config,
    name: &str,
    request: &Request,
    exec: bool,
) -> Result<i32, Error> {
    let apps = Apps::new(config);
    let app = apps.load(name)?;
    cairn_app::validate(name, &app)?;
    let plug = app_plug(config, name, &app)?;
    if let Some(leaf) = &app.node {
        // A node app is a node launch with the app's variables and socket; its target
        // leads the arguments unless a command replaces it.
        let mut node_request = request.clone();
        node_request.env = app
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(request.env.iter().cloned())
            .collect();
        if !exec {
            let target = app.target.clone().unwrap_or_default();
            node_request.args.insert(0, target.into_os_string());
        }
        return node::run(config, leaf, &node_request, plug);
    }
    let ctx = context(config, request, plug, exec);
    cairn_app::launch(&apps, name, &app, request.args.clone(), &ctx).map_err(|err| Error::RunApp {
        name: name.to_string(),
        err,
    })
}

/// What the engines take from a request.
fn context(
    config: &cairn_config::Config,
    request: &Request,
    confdb: Option<ConfdbPlug>,
    exec: bool,
) -> LaunchContext {
    let mut ctx = LaunchContext::from_env(config.cgroup.root.clone());
    ctx.confdb = confdb;
    ctx.exec = exec;
    ctx.env = request.env.clone();
    ctx.chdir = request.chdir.clone();
    ctx.limits = request.limits;
    ctx
}

/// The daemon socket of an app that plugs confdb views: `<run>/apps/NAME.sock`, served by
/// the daemon for every app config with plugs. It must exist: a plugged app without its
/// socket would fail later inside, with less to go on.
fn app_plug(
    config: &cairn_config::Config,
    name: &str,
    app: &cairn_model::AppConfig,
) -> Result<Option<ConfdbPlug>, Error> {
    if app.confdb_plug.is_empty() {
        return Ok(None);
    }
    let socket = config.app_socket(name);
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        return Err(Error::NoAppSocket {
            app: name.to_string(),
            socket,
        });
    }
    Ok(Some(ConfdbPlug {
        socket,
        exe: current_exe()?,
    }))
}

fn current_exe() -> Result<std::path::PathBuf, Error> {
    std::env::current_exe().map_err(|err| Error::Exe { err })
}
