//! Where Cairn keeps its files and what `cairn.toml` says, plus the few rules every crate
//! shares: the name rule ([`check_name`]), one-line messages ([`one_line`]), whole-file
//! writes ([`write_atomic`]) and the JSON merge and diff walks ([`json`]).
//!
//! Every other crate asks this one for a location instead of building paths itself, so
//! that `CAIRN_ROOT` (tests, parallel runs) and the `[paths]` overrides apply everywhere.
//! It does no I/O beyond reading `cairn.toml` (and [`write_atomic`] when called); it is the
//! bottom crate, so it depends on nothing heavier than serde.
#![forbid(unsafe_code)]

pub mod json;
mod name;

pub use name::{NameError, NameKind, check_name};

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

    /// The given roots with an empty `cairn.toml` (callers that are handed their roots,
    /// like the daemon's tests).
    pub fn with_dirs(config_dir: &Path, state_dir: &Path, run_dir: &Path) -> Config {
        Config {
            config_dir: config_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            registries: Registries::default(),
            cgroup: CgroupSettings::default(),
        }
    }

    /// Default directory for nodes created without an explicit parent path.
    pub fn nodes_dir(&self) -> PathBuf {
        self.state_dir.join("nodes")
    }

    /// App configs: `NAME.yaml` and `NAME.d/*.yaml`.
    pub fn apps_dir(&self) -> PathBuf {
        self.config_dir.join("apps")
    }

    /// Per-instance directories of running apps, `APP/ID`.
    pub fn instances_dir(&self) -> PathBuf {
        self.run_dir.join("instances")
    }

    /// The OCI image store.
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Pulled VMs, one directory each.
    pub fn vms_dir(&self) -> PathBuf {
        self.state_dir.join("vms")
    }

    /// Instance directories of `cairn vm run` calls.
    pub fn vm_run_dir(&self) -> PathBuf {
        self.run_dir.join("vm-run")
    }

    /// The confdb database directory.
    pub fn confdb_dir(&self) -> PathBuf {
        self.state_dir.join("confdb")
    }

    /// The confdb trust store: the accounts whose signed schemas are accepted.
    pub fn trust_dir(&self) -> PathBuf {
        self.config_dir.join("conf/trust")
    }

    /// The daemon's socket for registered app `app` (served when its config plugs views).
    pub fn app_socket(&self, app: &str) -> PathBuf {
        app_socket(&self.run_dir, app)
    }

    /// The daemon's session sockets (`cairn run --confdb-plug`).
    pub fn sessions_dir(&self) -> PathBuf {
        sessions_dir(&self.run_dir)
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
        admin_socket(&self.run_dir)
    }

    /// True when `path` is inside this configuration's roots (used by tests and `rm` guards).
    pub fn owns(&self, path: &Path) -> bool {
        [&self.config_dir, &self.state_dir, &self.run_dir]
            .iter()
            .any(|root| path.starts_with(root))
    }
}

/// The daemon's admin socket below run directory `run_dir`: `<run>/cairn.sock`. (The
/// daemon's sockets are named from the run directory alone, so that its socket layer needs
/// no whole configuration.)
pub fn admin_socket(run_dir: &Path) -> PathBuf {
    run_dir.join("cairn.sock")
}

/// `<run>/sessions`: sockets of `cairn run --confdb-plug` sessions.
pub fn sessions_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("sessions")
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

/// Cairn's errors are one line: a parser's or a program's message that spans several (a
/// caret drawing, a wrapped text) is joined with single spaces, without blank lines, the
/// gutter lines of a drawing (starting with `|`) and a final period.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_folds_and_drops_drawings() {
        assert_eq!(one_line("a\n  b.\n"), "a b");
        assert_eq!(one_line("x  y\t z"), "x y z");
        let toml = "TOML parse error at line 1, column 2\n  |\n1 | [registry]\n  |  ^^^^^^^^\nunknown field `registry`\n";
        assert_eq!(
            one_line(toml),
            "TOML parse error at line 1, column 2 1 | [registry] unknown field `registry`"
        );
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn paths_stay_under_their_roots() {
        let c = Config::with_dirs(Path::new("/c"), Path::new("/s"), Path::new("/r"));
        assert_eq!(c.apps_dir(), Path::new("/c/apps"));
        assert_eq!(c.trust_dir(), Path::new("/c/conf/trust"));
        assert_eq!(c.images_dir(), Path::new("/s/images"));
        assert_eq!(c.app_socket("vpn"), Path::new("/r/apps/vpn.sock"));
        for p in [
            c.config_file(),
            c.keys_dir(),
            c.nodes_dir(),
            c.instances_dir(),
            c.vms_dir(),
            c.vm_run_dir(),
            c.confdb_dir(),
            c.sessions_dir(),
            c.admin_socket(),
        ] {
            assert!(c.owns(&p), "{}", p.display());
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
