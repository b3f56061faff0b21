//! A launch in a node family: the family's spec, its seals, the request's additions.

use std::path::Path;

use cairn_model::{ConfdbPlug, Request};
use cairn_sandbox::SandboxSpec;

use crate::error::Error;

/// The sandbox spec of a node launch of `request` in the family of `leaf`, as it would
/// run (seals checked, the request's variables, limits and cgroup parent applied), without
/// confdb plugs (they need the daemon) — also what `cairn run --print-bwrap` prints.
pub fn node_spec(
    config: &cairn_config::Config,
    leaf: &Path,
    request: &Request,
) -> Result<SandboxSpec, Error> {
    let mut spec = family_spec(config, leaf, request)?;
    cairn_app::engine::apply_context(&mut spec, &additions(config, request, None));
    Ok(spec)
}

/// The family's spec with the request's program, variables and working directory.
fn family_spec(
    config: &cairn_config::Config,
    leaf: &Path,
    request: &Request,
) -> Result<SandboxSpec, Error> {
    let ctx = cairn_node::VarContext::from_process();
    let family = cairn_node::load_family(leaf, &ctx)?;
    let merged = family.merged()?;
    crate::seals::check(&family, &merged, config)?;
    let mut launch = cairn_node::Launch::new(request.args.clone());
    launch.env_overrides = request.env.clone();
    launch.chdir = request.chdir.clone();
    Ok(family.spec_from(&merged, &launch)?)
}

/// What a node launch adds to its family's spec: the request's limits, the configured cgroup
/// parent, the plug. (The variables and working directory are already in the family's spec:
/// `env_overrides` beat environ.)
fn additions(
    config: &cairn_config::Config,
    request: &Request,
    confdb: Option<ConfdbPlug>,
) -> cairn_app::LaunchContext {
    cairn_app::LaunchContext {
        cgroup_parent: config.cgroup.root.clone(),
        confdb,
        limits: request.limits,
        ..Default::default()
    }
}

/// Runs a node launch; `app_plug` is a registered node app's own socket, otherwise the
/// request's plugs open a daemon session for this launch.
pub(crate) fn run(
    config: &cairn_config::Config,
    leaf: &Path,
    request: &Request,
    app_plug: Option<ConfdbPlug>,
) -> Result<i32, Error> {
    let mut spec = family_spec(config, leaf, request)?;
    // The daemon is asked for the session before the sandbox forks: the client's runtime
    // is gone by then, so the fork happens in a single-threaded process.
    let mut session = None;
    let plug = match app_plug {
        Some(plug) => Some(plug),
        None if request.plugs.is_empty() => None,
        None => {
            // The binary first: a session opened before a failure here would stay open.
            let exe = crate::current_exe()?;
            let opened = cairn_api::open_session(&config.admin_socket(), leaf, &request.plugs)?;
            let plug = ConfdbPlug {
                socket: opened.socket.clone(),
                exe,
            };
            session = Some(opened);
            Some(plug)
        }
    };
    cairn_app::engine::apply_context(&mut spec, &additions(config, request, plug));
    let result = cairn_sandbox::run(&spec);
    if let Some(Err(e)) = session.map(cairn_api::Session::close) {
        tracing::warn!("cannot close the confdb session: {e}");
    }
    result.map_err(|err| Error::Run {
        node: leaf.to_path_buf(),
        err,
    })
}
