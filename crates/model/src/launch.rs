//! One launch, as every part of Cairn asks for it: what to run, where, with which confdb
//! plugs, environment and limits.
//!
//! A [`Request`] is run in-process by `cairn-launch`, or handed to a new `cairn` process
//! with [`Request::command`] where a fresh process is needed (the daemon's hooks, package
//! maintainer scripts, an app's keeper): the one place that writes Cairn's own command line,
//! so the binary's parser and this encoder are tested against each other.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where a launch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node family: the program runs in the sandbox the family describes
    /// (`cairn run --node LEAF -- PROGRAM ARGS`).
    Node(PathBuf),
    /// A registered app's own target with the arguments (`cairn app run NAME -- ARGS`,
    /// what its host command does).
    App(String),
    /// A command in a fresh sandbox of an app's environment instead of its target
    /// (`cairn app exec NAME -- PROGRAM ARGS`): hooks of image apps, remote exec.
    AppExec(String),
    /// The keeper that holds kept instance `id` of app `app` (`cairn app keep`, hidden).
    Keep { app: String, id: String },
}

/// cgroup limits a request adds; a launch takes the tighter of these and its nodes' own
/// (a caller can narrow what a family allows, never widen it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// CFS quota and period, in microseconds.
    pub cpu_max: Option<(u64, u64)>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// One launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub target: Target,
    /// For [`Target::Node`] and [`Target::AppExec`] the program and its arguments; for
    /// [`Target::App`] and [`Target::Keep`] the arguments after the app's target. Passed
    /// exactly: never parsed as options.
    pub args: Vec<OsString>,
    /// Variables set for the program over what the nodes or the app set.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (node launches).
    pub chdir: Option<PathBuf>,
    /// confdb views for a node launch (a daemon session). Apps plug what their config
    /// says, through their own socket.
    pub plugs: Vec<String>,
    pub limits: Limits,
}

impl Request {
    fn new(target: Target, args: Vec<OsString>) -> Request {
        Request {
            target,
            args,
            env: Vec::new(),
            chdir: None,
            plugs: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// `PROGRAM ARGS` in the family of `leaf`.
    pub fn node(leaf: impl Into<PathBuf>, program_and_args: Vec<OsString>) -> Request {
        Request::new(Target::Node(leaf.into()), program_and_args)
    }

    /// App `name`'s target with `args`.
    pub fn app(name: &str, args: Vec<OsString>) -> Request {
        Request::new(Target::App(name.to_string()), args)
    }

    /// `PROGRAM ARGS` in a fresh sandbox of app `name`'s environment.
    pub fn app_exec(name: &str, program_and_args: Vec<OsString>) -> Request {
        Request::new(Target::AppExec(name.to_string()), program_and_args)
    }

    /// The keeper of instance `id` of app `name`, whose process starts with `args`.
    pub fn keep(name: &str, id: &str, args: Vec<OsString>) -> Request {
        Request::new(
            Target::Keep {
                app: name.to_string(),
                id: id.to_string(),
            },
            args,
        )
    }

    /// `PROGRAM ARGS` run through `sh -c COMMAND` (hooks).
    pub fn shell_args(command: &str) -> Vec<OsString> {
        ["sh", "-c", command].map(OsString::from).into()
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Request {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The arguments of the `cairn` command line that runs this request.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = match &self.target {
            Target::Node(leaf) => vec!["run".into(), "--node".into(), leaf.into()],
            Target::App(name) => vec!["app".into(), "run".into(), name.into()],
            Target::AppExec(name) => vec!["app".into(), "exec".into(), name.into()],
            Target::Keep { app, id } => {
                vec!["app".into(), "keep".into(), app.into(), id.into()]
            }
        };
        for (k, v) in &self.env {
            argv.push("--env".into());
            argv.push(format!("{k}={v}").into());
        }
        if let Some(dir) = &self.chdir {
            argv.push("--chdir".into());
            argv.push(dir.into());
        }
        for plug in &self.plugs {
            argv.push("--confdb-plug".into());
            argv.push(plug.into());
        }
        if let Some(bytes) = self.limits.memory_max {
            argv.push("--memory".into());
            argv.push(bytes.to_string().into());
        }
        if let Some(pids) = self.limits.pids_max {
            argv.push("--pids".into());
            argv.push(pids.to_string().into());
        }
        if let Some((quota, period)) = self.limits.cpu_max {
            argv.push("--cpu-max".into());
            argv.push(format!("{quota}/{period}").into());
        }
        argv.push("--".into());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// The re-exec of Cairn (`exe`, normally this very binary) that runs this request in a
    /// new process; the caller adds stdio and spawns it.
    pub fn command(&self, exe: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(self.to_args());
        cmd
    }
}

/// Parses `QUOTA/PERIOD` (microseconds) as `--cpu-max` takes it.
pub fn parse_cpu_max(text: &str) -> Option<(u64, u64)> {
    let (quota, period) = text.split_once('/')?;
    let quota: u64 = quota.parse().ok()?;
    let period: u64 = period.parse().ok()?;
    (quota > 0 && period > 0).then_some((quota, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_come_last_after_a_separator() {
        let mut r = Request::node("/n/leaf", vec!["sh".into(), "--help".into()]);
        r.env.push(("A".into(), "b=c".into()));
        r.plugs.push("acme/network/observe-device".into());
        r.limits.pids_max = Some(10);
        let argv: Vec<String> = r
            .to_args()
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(
            argv,
            [
                "run",
                "--node",
                "/n/leaf",
                "--env",
                "A=b=c",
                "--confdb-plug",
                "acme/network/observe-device",
                "--pids",
                "10",
                "--",
                "sh",
                "--help"
            ]
        );
        let keep = Request::keep("web", "default", vec!["-x".into()]).to_args();
        assert_eq!(
            keep,
            ["app", "keep", "web", "default", "--", "-x"].map(OsString::from)
        );
    }

    #[test]
    fn cpu_max_needs_two_positive_numbers() {
        assert_eq!(parse_cpu_max("50000/100000"), Some((50000, 100000)));
        for bad in ["", "1", "0/1", "1/0", "a/b", "-1/2"] {
            assert_eq!(parse_cpu_max(bad), None, "{bad}");
        }
    }
}
