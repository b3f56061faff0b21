//! Driving the real apt for one node: resolution, download and search.
//!
//! apt sees a private configuration (`APT_CONFIG`) whose status file is synthesized by the
//! caller: the ancestors' packages marked held (so resolution counts them as present and
//! never plans to change them) plus the node's own. apt only ever simulates and downloads;
//! it never runs dpkg.

use crate::error::{Error, Result};
use crate::layout::{NodePaths, write_atomic};
use std::path::{Path, PathBuf};
use std::process::Command;

/// apt set up for one node.
#[derive(Debug)]
pub struct Apt {
    conf: PathBuf,
    status: PathBuf,
}

/// The synthesized status can hold the host's whole package list: it is rebuilt for every
/// command, so it is not left behind to take space in the node.
impl Drop for Apt {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.status);
    }
}

/// One package apt wants to install or upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub version: String,
    /// The installed version being replaced, for upgrades.
    pub old_version: Option<String>,
}

/// What a simulated apt run would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub installs: Vec<Planned>,
    pub removals: Vec<String>,
}

impl Apt {
    /// Writes the node's apt configuration and the synthesized status file.
    pub fn prepare(paths: &NodePaths, status: &str) -> Result<Apt> {
        let dir = paths.state().join("apt");
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "state",
        ] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(Error::io(&d))?;
        }
        let status_path = dir.join("status");
        write_atomic(&status_path, status.as_bytes(), 0o644)?;
        let conf = dir.join("apt.conf");
        write_atomic(&conf, config_text(&dir, &paths.sources()).as_bytes(), 0o644)?;
        Ok(Apt {
            conf,
            status: status_path,
        })
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("APT_CONFIG", &self.conf)
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE");
        cmd
    }

    fn run(&self, tool: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
        let mut cmd = self.command(tool);
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let out = cmd.output().map_err(|source| Error::Spawn {
            tool: tool.into(),
            err: source,
        })?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: format!("{tool} {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: apt_errors(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Refreshes the package lists from the node's repositories.
    pub fn update(&self) -> Result<()> {
        self.run("apt-get", &["-q", "update"], None).map(|_| ())
    }

    /// Simulates `apt-get ARGS` (install or upgrade) and returns the plan.
    pub fn simulate(&self, args: &[&str]) -> Result<Plan> {
        let mut full = vec!["-s", "-q", "-y", "--no-install-recommends"];
        full.extend_from_slice(args);
        Ok(parse_plan(&self.run("apt-get", &full, None)?))
    }

    /// Downloads `name=version` of each planned package into `dest` (verified by apt
    /// against the repository's checksums) and returns the archive paths in plan order.
    pub fn download(&self, plan: &[Planned], dest: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dest).map_err(Error::io(dest))?;
        let specs: Vec<String> = plan
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        let mut args = vec!["-q", "download"];
        args.extend(specs.iter().map(String::as_str));
        self.run("apt-get", &args, Some(dest))?;
        let files: Vec<PathBuf> = std::fs::read_dir(dest)
            .map_err(Error::io(dest))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        plan.iter()
            .map(|p| {
                let prefix = format!("{}_", p.name);
                files
                    .iter()
                    .find(|f| {
                        f.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                    })
                    .cloned()
                    .ok_or_else(|| Error::Tool {
                        tool: "apt-get download".into(),
                        status: "ok".into(),
                        stderr: format!("no archive for {} was downloaded", p.name),
                    })
            })
            .collect()
    }

    /// `apt-cache search WORD`: `(name, short description)`.
    pub fn search(&self, word: &str) -> Result<Vec<(String, String)>> {
        let out = self.run("apt-cache", &["search", "--", word], None)?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(" - "))
            .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
            .collect())
    }

    /// `apt-cache policy` candidate version of a package, if any repository has it.
    pub fn candidate(&self, name: &str) -> Result<Option<String>> {
        let out = self.run("apt-cache", &["policy", "--", name], None)?;
        Ok(out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(|v| v.trim().to_string())
            .filter(|v| v != "(none)"))
    }
}

/// Keeps apt's `E:` lines (the reason) and drops its chatter.
fn apt_errors(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
    let chosen = if errors.is_empty() {
        stderr.lines().collect()
    } else {
        errors
    };
    chosen.join(" ").trim().to_string()
}

/// Everything apt reads is redirected into the node; host keyrings stay usable so that
/// signed repositories are checked as usual (`signed-by=` works too). apt's binary caches
/// are off: they would cost megabytes per node to save milliseconds.
fn config_text(dir: &Path, sources: &Path) -> String {
    let d = dir.display();
    format!(
        r#"Dir "/";
Dir::Etc "{d}/etc";
Dir::Etc::sourcelist "{sources}";
Dir::Etc::sourceparts "{d}/etc/sources.list.d";
Dir::Etc::parts "{d}/etc/apt.conf.d";
Dir::Etc::preferences "{d}/etc/preferences";
Dir::Etc::preferencesparts "{d}/etc/preferences.d";
Dir::Etc::trusted "/etc/apt/trusted.gpg";
Dir::Etc::trustedparts "/etc/apt/trusted.gpg.d";
Dir::State "{d}/state";
Dir::State::lists "{d}/lists";
Dir::State::status "{d}/status";
Dir::Cache "{d}/cache";
Dir::Cache::archives "{d}/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Log "{d}/state";
APT::Sandbox::User "root";
Debug::NoLocking "true";
Acquire::Languages "none";
APT::Install-Recommends "false";
"#,
        sources = sources.display()
    )
}

/// Parses `Inst name [old] (new ...)` and `Remv name [ver]` lines of `apt-get -s`.
pub fn parse_plan(output: &str) -> Plan {
    let mut plan = Plan::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("Inst ") {
            let mut words = rest.split_whitespace();
            let Some(name) = words.next() else { continue };
            let name = name.split(':').next().unwrap_or(name).to_string();
            let rest: String = words.collect::<Vec<_>>().join(" ");
            let old_version = rest
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .map(|(v, _)| v.to_string());
            let version = rest
                .split_once('(')
                .and_then(|(_, r)| r.split_whitespace().next())
                .map(|v| v.trim_end_matches(')').to_string());
            if let Some(version) = version {
                plan.installs.push(Planned {
                    name,
                    version,
                    old_version,
                });
            }
        } else if let Some(name) = line
            .strip_prefix("Remv ")
            .and_then(|rest| rest.split_whitespace().next())
        {
            plan.removals
                .push(name.split(':').next().unwrap_or(name).to_string());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_simulation_output() {
        let out = "NOTE: simulation\nInst libgreet (1.0 localhost [all])\n\
                   Inst greet [1.0] (2:1.1-1 repo [amd64])\nRemv old:amd64 [3]\n\
                   Conf greet (2:1.1-1 repo [amd64])\n";
        let plan = parse_plan(out);
        assert_eq!(
            plan.installs,
            vec![
                Planned {
                    name: "libgreet".into(),
                    version: "1.0".into(),
                    old_version: None
                },
                Planned {
                    name: "greet".into(),
                    version: "2:1.1-1".into(),
                    old_version: Some("1.0".into())
                },
            ]
        );
        assert_eq!(plan.removals, vec!["old".to_string()]);
    }

    #[test]
    fn keeps_only_error_lines() {
        assert_eq!(
            apt_errors("W: x\nE: broken\nE: held\n"),
            "E: broken E: held"
        );
        assert_eq!(apt_errors("oops\n"), "oops");
    }

    proptest! {
        #[test]
        fn plan_lines_round_trip(
            name in "[a-z0-9][a-z0-9+.-]{1,15}",
            version in "[0-9][0-9a-z.+~:-]{0,10}",
            old in proptest::option::of("[0-9][0-9a-z.+~-]{0,10}"),
        ) {
            let line = match &old {
                Some(o) => format!("Inst {name} [{o}] ({version} repo [all])"),
                None => format!("Inst {name} ({version} repo [all])"),
            };
            let plan = parse_plan(&line);
            prop_assert_eq!(plan.installs, vec![Planned { name, version, old_version: old }]);
        }
    }
}
