//! Merging a family into one configuration, each value annotated with where it came from.
//!
//! Rules: scalars, nearest node wins and any `node-admin.yaml` beats every `node.yaml`;
//! `path`/`ldpath` cumulate leaf first; exports and environ cumulate root first (normal
//! files, then admin files), a later entry for the same mount point or key replacing the
//! earlier one in place; private exports count only in the leaf.

use std::path::PathBuf;

use serde::Serialize;

use crate::caps;
use crate::error::{Error, Origin};
use crate::family::{Family, Node};
use crate::model::{ConfigModel, EnvMode, ExportMode, FileModel, Seccomp, Set, Verify};

/// A merged value and the file/line that set it (`None`: the built-in default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Valued<T> {
    pub value: T,
    pub origin: Option<Origin>,
}

impl<T> Valued<T> {
    fn default_value(value: T) -> Valued<T> {
        Valued {
            value,
            origin: None,
        }
    }
}

/// Which host namespaces the sandbox shares (`true`) instead of getting its own.
#[derive(Debug, Clone, Serialize)]
pub struct MergedShare {
    pub net: Valued<bool>,
    pub pid: Valued<bool>,
    pub ipc: Valued<bool>,
    pub uts: Valued<bool>,
    pub user: Valued<bool>,
    pub cgroup: Valued<bool>,
    pub time: Valued<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedCgroup {
    /// Bytes; `None` = no limit.
    pub memory_max: Valued<Option<u64>>,
    pub pids_max: Valued<Option<u64>>,
    /// Quota and period in microseconds.
    pub cpu_max: Valued<Option<(u64, u64)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedUser {
    pub uid: Valued<u32>,
    pub gid: Valued<u32>,
}

/// The merged `config` section.
#[derive(Debug, Clone, Serialize)]
pub struct MergedConfig {
    pub share: MergedShare,
    pub hostname: Valued<String>,
    pub chdir: Valued<PathBuf>,
    pub umask: Valued<u32>,
    /// Leaf first; joined with `:` into `PATH`.
    pub path: Vec<Valued<String>>,
    /// Leaf first; joined with `:` into `LD_LIBRARY_PATH`.
    pub ldpath: Vec<Valued<String>>,
    pub die_with_parent: Valued<bool>,
    pub new_session: Valued<bool>,
    pub inherit_env: Valued<bool>,
    /// Capabilities the program keeps (`CAP_...` names), each with the line that added it.
    pub capabilities: Vec<Valued<String>>,
    pub seccomp: Valued<Seccomp>,
    pub cgroup: MergedCgroup,
    pub user: MergedUser,
    pub verify: Valued<Verify>,
}

/// One export after merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedExport {
    pub mode: ExportMode,
    pub mount: PathBuf,
    /// Bind modes: the host path; symlink: the link target.
    pub path: Option<PathBuf>,
    pub command: Option<String>,
    pub optional: bool,
    pub origin: Origin,
}

/// One environment entry after merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedEnv {
    pub mode: EnvMode,
    pub key: String,
    pub value: Option<String>,
    pub command: Option<String>,
    pub origin: Origin,
}

/// The whole family merged.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    pub config: MergedConfig,
    pub exports: Vec<MergedExport>,
    pub environ: Vec<MergedEnv>,
}

/// Files in scalar precedence order: admin files nearest first, then normal files nearest
/// first.
fn by_precedence(f: &Family) -> impl Iterator<Item = &FileModel> + Clone {
    let admins = f.nodes.iter().rev().filter_map(|n| n.admin.as_ref());
    admins.chain(f.nodes.iter().rev().map(|n| &n.normal))
}

/// Files in cumulation order: normal files root first, then admin files root first, each
/// with the node it belongs to.
fn by_cumulation(f: &Family) -> impl Iterator<Item = (&Node, &FileModel)> {
    let normal = f.nodes.iter().map(|n| (n, &n.normal));
    normal.chain(
        f.nodes
            .iter()
            .filter_map(|n| n.admin.as_ref().map(|a| (n, a))),
    )
}

fn pick<'f, T: Clone + 'f>(
    files: impl Iterator<Item = &'f FileModel>,
    get: impl Fn(&ConfigModel) -> &Set<T>,
    default: T,
) -> Valued<T> {
    for f in files {
        if let Some((v, line)) = get(&f.config) {
            return Valued {
                value: v.clone(),
                origin: Some(Origin::new(&f.file, *line)),
            };
        }
    }
    Valued::default_value(default)
}

/// A hostname made from an alias (aliases allow a few characters hostnames do not).
fn default_hostname(alias: &str) -> String {
    let mut h: String = alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    h.truncate(64);
    h
}

impl Family {
    /// The merged configuration, exports and environ, with provenance.
    pub fn merged(&self) -> Result<Merged, Error> {
        Ok(Merged {
            config: self.merged_config(),
            exports: self.merged_exports(),
            environ: self.merged_environ(),
        })
    }

    fn merged_config(&self) -> MergedConfig {
        let files = by_precedence(self);
        let share = |k: usize| pick(files.clone(), move |c| &c.share[k], false);
        let cumulative = |get: fn(&ConfigModel) -> &Set<String>| {
            let mut out = Vec::new();
            for n in self.nodes.iter().rev() {
                for f in n.admin.iter().chain(std::iter::once(&n.normal)) {
                    if let Some((v, line)) = get(&f.config) {
                        let origin = Some(Origin::new(&f.file, *line));
                        out.push(Valued {
                            value: v.clone(),
                            origin,
                        });
                    }
                }
            }
            out
        };
        MergedConfig {
            share: MergedShare {
                net: share(0),
                pid: share(1),
                ipc: share(2),
                uts: share(3),
                user: share(4),
                cgroup: share(5),
                time: share(6),
            },
            hostname: pick(
                files.clone(),
                |c| &c.hostname,
                default_hostname(self.nodes.last().map_or("", |n| n.alias.as_str())),
            ),
            chdir: pick(files.clone(), |c| &c.chdir, PathBuf::from("/")),
            umask: pick(files.clone(), |c| &c.umask, 0o022),
            path: cumulative(|c| &c.path),
            ldpath: cumulative(|c| &c.ldpath),
            die_with_parent: pick(files.clone(), |c| &c.die_with_parent, true),
            new_session: pick(files.clone(), |c| &c.new_session, true),
            inherit_env: pick(files.clone(), |c| &c.inherit_env, false),
            capabilities: self
                .caps
                .iter()
                .map(|(c, o)| Valued {
                    value: caps::name(*c),
                    origin: Some(o.clone()),
                })
                .collect(),
            seccomp: pick(files.clone(), |c| &c.seccomp, Seccomp::Default),
            cgroup: MergedCgroup {
                memory_max: pick(files.clone(), |c| &c.memory_max, None),
                pids_max: pick(files.clone(), |c| &c.pids_max, None),
                cpu_max: pick(files.clone(), |c| &c.cpu_max, None),
            },
            user: MergedUser {
                uid: pick(files.clone(), |c| &c.uid, 0),
                gid: pick(files.clone(), |c| &c.gid, 0),
            },
            verify: pick(files, |c| &c.verify, Verify::None),
        }
    }

    fn merged_exports(&self) -> Vec<MergedExport> {
        let leaf = self.nodes.last();
        let mut out: Vec<MergedExport> = Vec::new();
        for (node, f) in by_cumulation(self) {
            let is_leaf = leaf.is_some_and(|l| std::ptr::eq(node, l));
            for e in &f.exports {
                if e.mode.is_private() && !is_leaf {
                    continue;
                }
                let merged = MergedExport {
                    mode: e.mode,
                    mount: e.mount.clone(),
                    path: e.path.clone(),
                    command: e.command.clone(),
                    optional: e.optional,
                    origin: Origin::new(&f.file, e.line),
                };
                // Mount points were cleaned at load: byte equality is path equality.
                match out
                    .iter_mut()
                    .find(|o| o.mount.as_os_str() == e.mount.as_os_str())
                {
                    Some(slot) => *slot = merged,
                    None => out.push(merged),
                }
            }
        }
        out
    }

    fn merged_environ(&self) -> Vec<MergedEnv> {
        let mut out: Vec<MergedEnv> = Vec::new();
        for (_, f) in by_cumulation(self) {
            for e in &f.environ {
                let merged = MergedEnv {
                    mode: e.mode,
                    key: e.key.clone(),
                    value: e.value.clone(),
                    command: e.command.clone(),
                    origin: Origin::new(&f.file, e.line),
                };
                match out.iter_mut().find(|o| o.key == e.key) {
                    Some(slot) => *slot = merged,
                    None => out.push(merged),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_from_alias() {
        assert_eq!(default_hostname("demo"), "demo");
        assert_eq!(default_hostname("a+b@c:d"), "a-b-c-d");
        assert_eq!(default_hostname(&"x".repeat(80)).len(), 64);
    }
}
