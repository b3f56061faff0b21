//! Where Cairn keeps its files and what `cairn.toml` says.
//!
//! Every other crate asks this one for a location instead of building paths itself, so
//! that `CAIRN_ROOT` (tests, parallel runs) and the `[paths]` overrides apply everywhere.
//! It does no I/O beyond reading `cairn.toml`.
#![forbid(unsafe_code)]

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot find a home directory: HOME is not set")]
    NoHome,
}

/// The three roots plus the parsed configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `/etc/cairn`: configuration (cairn.toml, apps, trusted keys).
    pub config_dir: PathBuf,
    /// `/var/lib/cairn`: state (nodes, images, databases).
    pub state_dir: PathBuf,
    /// `/run/cairn`: sockets and instances.
    pub run_dir: PathBuf,
    pub registries: Registries,
    pub cgroup: CgroupSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Registries that may be reached over plain HTTP (`host:port`); no other is.
    #[serde(default)]
    pub insecure: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupSettings {
    /// Directory under which per-launch cgroups are made when the caller's own cgroup is
    /// not writable (a delegated subtree for unprivileged users). For cgroup v1 this is a
    /// path relative to each controller's mount, for v2 an absolute path.
    pub root: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    paths: PathsSection,
    #[serde(default)]
    registries: Registries,
    #[serde(default)]
    cgroup: CgroupSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsSection {
    state: Option<PathBuf>,
    run: Option<PathBuf>,
}

/// Environment facts that decide the default locations, gathered once so that the
/// decision itself is a pure function (and testable).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub cairn_root: Option<PathBuf>,
    pub euid: u32,
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            cairn_root: var("CAIRN_ROOT"),
            euid: current_euid(),
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
        }
    }
}

fn current_euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The default roots, before cairn.toml overrides.
pub fn default_dirs(env: &Env) -> Result<(PathBuf, PathBuf, PathBuf), Error> {
    let prefix = |p: &str| -> PathBuf {
        match &env.cairn_root {
            Some(root) => root.join(p.trim_start_matches('/')),
            None => PathBuf::from(p),
        }
    };
    if env.euid == 0 {
        return Ok((
            prefix("/etc/cairn"),
            prefix("/var/lib/cairn"),
            prefix("/run/cairn"),
        ));
    }
    if let Some(root) = &env.cairn_root {
        // Unprivileged under CAIRN_ROOT: the same layout inside the root, so that tests
        // read the same paths whoever runs them.
        return Ok((
            root.join("etc/cairn"),
            root.join("var/lib/cairn"),
            root.join("run/cairn"),
        ));
    }
    let home = env.home.clone().ok_or(Error::NoHome)?;
    let config = env
        .xdg_config_home
        .clone()
        .unwrap_or_else(|| home.join(".config"))
        .join("cairn");
    let state = env
        .xdg_state_home
        .clone()
        .unwrap_or_else(|| home.join(".local/state"))
        .join("cairn");
    let run = match &env.xdg_runtime_dir {
        Some(dir) => dir.join("cairn"),
        None => state.join("run"),
    };
    Ok((config, state, run))
}

impl Config {
    /// Locations for this process, with `cairn.toml` applied.
    pub fn load() -> Result<Config, Error> {
        Config::load_with(&Env::from_process())
    }

    pub fn load_with(env: &Env) -> Result<Config, Error> {
        let (config_dir, state_dir, run_dir) = default_dirs(env)?;
        let path = config_dir.join("cairn.toml");
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<File>(&text).map_err(|e| Error::Parse {
                path: path.clone(),
                message: one_line(&e.to_string()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(err) => return Err(Error::Read { path, err }),
        };
        let rooted = |p: PathBuf| match &env.cairn_root {
            Some(root) if p.is_absolute() => root.join(p.strip_prefix("/").unwrap_or(&p)),
            _ => p,
        };
        Ok(Config {
            state_dir: file.paths.state.map(rooted).unwrap_or(state_dir),
            run_dir: file.paths.run.map(rooted).unwrap_or(run_dir),
            config_dir,
            registries: file.registries,
            cgroup: file.cgroup,
        })
    }

    /// Default directory for nodes created without an explicit parent path.
    pub fn nodes_dir(&self) -> PathBuf {
        self.state_dir.join("nodes")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("cairn.toml")
    }

    /// Cairn's one keyring (`cairn key`): node seals and signed confdb schemas.
    pub fn keys_dir(&self) -> PathBuf {
        self.config_dir.join("keys")
    }

    /// Registry credentials written by `cairn image login` (docker's config.json layout, 0600).
    pub fn registry_auth_file(&self) -> PathBuf {
        self.config_dir.join("registry-auth.json")
    }

    /// Per-registry trusted CAs: `certs.d/<host:port>/*.crt`.
    pub fn registry_certs_dir(&self) -> PathBuf {
        self.config_dir.join("certs.d")
    }

    /// The admin socket of the daemon.
    pub fn admin_socket(&self) -> PathBuf {
        self.run_dir.join("cairn.sock")
    }

    /// The daemon's socket for registered app `name` (served when its config plugs views).
    pub fn app_socket(&self, name: &str) -> PathBuf {
        app_socket(&self.run_dir, name)
    }

    /// True when `path` is inside this configuration's roots (used by tests and `rm` guards).
    pub fn owns(&self, path: &Path) -> bool {
        [&self.config_dir, &self.state_dir, &self.run_dir]
            .iter()
            .any(|root| path.starts_with(root))
    }
}

/// The daemon's socket for app `name` below run directory `run_dir`:
/// `<run>/apps/NAME.sock` (the daemon binds it, launches bind it into the app's sandbox).
pub fn app_socket(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("apps").join(format!("{name}.sock"))
}

/// A node's own file, relative to the node's directory.
pub const NODE_FILE: &str = "etc/cairn/node.yaml";

/// The one rule for "is this directory a node": it holds a [`NODE_FILE`]. Family discovery
/// (cairn-node) and every walk over a node's files (cairn-pkg: verify, seals) use it, so
/// that a walk stops exactly where a descendant node begins.
pub fn is_node(dir: &Path) -> bool {
    dir.join(NODE_FILE).is_file()
}

/// Whether `name` may name an app or a VM: such names become file, socket and command names,
/// so they keep to lowercase letters, digits and dashes (not leading), at most 64 bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Writes a whole file so that readers see the old content or the new, never a part of it
/// (Cairn's rule for every state file): a temporary file in the same directory, given
/// `mode`, fsync'd, then renamed over `path`. The temporary file is removed on failure.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// toml's errors span several lines (a caret drawing); Cairn's errors are one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_keep_to_the_alphabet() {
        for good in ["a", "my-app", "x9", &"a".repeat(64)] {
            assert!(is_safe_name(good), "{good}");
        }
        for bad in ["", "-a", "A", "a/b", "a.b", "a b", &"a".repeat(65)] {
            assert!(!is_safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn root_uses_system_dirs() {
        let env = Env {
            euid: 0,
            ..Env::default()
        };
        let (c, s, r) = default_dirs(&env).unwrap();
        assert_eq!(
            (c, s, r),
            (
                "/etc/cairn".into(),
                "/var/lib/cairn".into(),
                "/run/cairn".into()
            )
        );
    }

    #[test]
    fn cairn_root_prefixes_everything() {
        let env = Env {
            euid: 1000,
            cairn_root: Some("/tmp/x".into()),
            ..Env::default()
        };
        let (c, s, r) = default_dirs(&env).unwrap();
        assert_eq!(c, PathBuf::from("/tmp/x/etc/cairn"));
        assert_eq!(s, PathBuf::from("/tmp/x/var/lib/cairn"));
        assert_eq!(r, PathBuf::from("/tmp/x/run/cairn"));
    }

    #[test]
    fn write_atomic_replaces_whole_files_with_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        write_atomic(&file, b"one", 0o600).unwrap();
        write_atomic(&file, b"two", 0o640).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Nothing else is left in the directory, and a missing directory is an error.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("no/such/f"), b"x", 0o600).is_err());
    }

    #[test]
    fn user_gets_xdg_dirs() {
        let env = Env {
            euid: 1000,
            home: Some("/home/u".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Env::default()
        };
        let (c, s, r) = default_dirs(&env).unwrap();
        assert_eq!(c, PathBuf::from("/home/u/.config/cairn"));
        assert_eq!(s, PathBuf::from("/home/u/.local/state/cairn"));
        assert_eq!(r, PathBuf::from("/run/user/1000/cairn"));
    }

    #[test]
    fn toml_overrides_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            euid: 0,
            cairn_root: Some(dir.path().into()),
            ..Env::default()
        };
        std::fs::create_dir_all(dir.path().join("etc/cairn")).unwrap();
        std::fs::write(
            dir.path().join("etc/cairn/cairn.toml"),
            "[registries]\ninsecure = [\"127.0.0.1:5000\"]\n[paths]\nstate = \"/srv/state\"\n",
        )
        .unwrap();
        let cfg = Config::load_with(&env).unwrap();
        assert_eq!(cfg.registries.insecure, vec!["127.0.0.1:5000".to_string()]);
        assert_eq!(cfg.state_dir, dir.path().join("srv/state"));

        std::fs::write(dir.path().join("etc/cairn/cairn.toml"), "[registry]\nx=1\n").unwrap();
        let err = Config::load_with(&env).unwrap_err().to_string();
        assert!(
            err.contains("cairn.toml") && err.contains("registry"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
