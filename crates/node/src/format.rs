//! The on-disk shape of `node.yaml` and `node-admin.yaml` (serde types only).
//!
//! Kept apart from the internal model so that the file format can evolve (or be versioned)
//! without touching the merge logic. Every value the user can get wrong carries its span, so
//! that semantic errors name the line. Enumerations are plain strings here and parsed later,
//! which gives errors that list the accepted values.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `etc/cairn/node.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeFile {
    pub node: Spanned<NodeSection>,
    #[serde(default)]
    pub config: Option<ConfigSection>,
    #[serde(default)]
    pub exports: Option<Vec<Spanned<ExportEntry>>>,
    #[serde(default)]
    pub environ: Option<Vec<Spanned<EnvEntry>>>,
}

/// `etc/cairn/node-admin.yaml`: the same sections minus the node's identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    #[serde(default)]
    pub config: Option<ConfigSection>,
    #[serde(default)]
    pub exports: Option<Vec<Spanned<ExportEntry>>>,
    #[serde(default)]
    pub environ: Option<Vec<Spanned<EnvEntry>>>,
}

/// Only the identity, for listings that need nothing else.
#[derive(Debug, Deserialize)]
pub(crate) struct IdentityOnly {
    pub node: NodeSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSection {
    pub alias: Spanned<String>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub info: Option<String>,
}

pub(crate) type Str = Option<Spanned<String>>;
pub(crate) type Flag = Option<Spanned<bool>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigSection {
    pub share: Option<ShareSection>,
    pub hostname: Str,
    pub chdir: Str,
    pub umask: Str,
    pub path: Str,
    pub ldpath: Str,
    pub die_with_parent: Flag,
    pub new_session: Flag,
    pub inherit_env: Flag,
    pub capabilities: Option<CapsSection>,
    pub seccomp: Str,
    pub cgroup: Option<CgroupSection>,
    pub user: Option<UserSection>,
    pub verify: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareSection {
    pub net: Flag,
    pub pid: Flag,
    pub ipc: Flag,
    pub uts: Flag,
    pub user: Flag,
    pub cgroup: Flag,
    pub time: Flag,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapsSection {
    #[serde(default)]
    pub drop: Vec<Spanned<String>>,
    #[serde(default)]
    pub add: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CgroupSection {
    pub memory_max: Str,
    pub pids_max: Str,
    pub cpu_max: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserSection {
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportEntry {
    pub mode: Spanned<String>,
    pub mount: Spanned<String>,
    pub path: Str,
    pub command: Str,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvEntry {
    pub mode: Spanned<String>,
    pub key: Spanned<String>,
    pub value: Str,
    pub command: Str,
}
