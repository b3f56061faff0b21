//! What a program with confdb plugs finds in its sandbox, whatever the engine: the
//! daemon's socket at [`SANDBOX_SOCKET`] (`CAIRN_SOCKET` names it) and the `cairn` binary
//! in [`SANDBOX_BIN_DIR`] on its PATH, so that `cairn conf get ...` works inside.
//!
//! Engines apply the same description their own way: bind mounts in the native sandbox,
//! `-v`/`-e` options for podman. A VM has no way to reach a Unix socket of the host, so the
//! vm engine refuses plugs at validation.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Where the sandbox gets its daemon socket mounted.
pub const SANDBOX_SOCKET: &str = "/run/cairn/cairn.sock";

/// Where the `cairn` binary appears inside a plugged sandbox.
pub const SANDBOX_BIN_DIR: &str = "/run/cairn/bin";

/// One host path made visible inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub readonly: bool,
}

/// The daemon socket a plugged launch uses (an app's own, or a `cairn run` session's),
/// and the `cairn` binary to offer beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfdbPlug {
    pub socket: PathBuf,
    pub exe: PathBuf,
}

impl ConfdbPlug {
    /// The socket (writable: connecting needs it) and the binary (read-only).
    pub fn binds(&self) -> [Bind; 2] {
        [
            Bind {
                source: self.socket.clone(),
                dest: PathBuf::from(SANDBOX_SOCKET),
                readonly: false,
            },
            Bind {
                source: self.exe.clone(),
                dest: PathBuf::from(SANDBOX_BIN_DIR).join("cairn"),
                readonly: true,
            },
        ]
    }

    /// Sets `CAIRN_SOCKET` and appends [`SANDBOX_BIN_DIR`] to PATH in `env` (a PATH that
    /// is not set becomes just that directory).
    pub fn apply_env(&self, env: &mut Vec<(OsString, OsString)>) {
        env.retain(|(k, _)| k != "CAIRN_SOCKET");
        env.push(("CAIRN_SOCKET".into(), SANDBOX_SOCKET.into()));
        let path = env.iter_mut().find(|(k, _)| k == "PATH");
        match path {
            Some((_, value)) => *value = with_bin_dir(Some(value)),
            None => env.push(("PATH".into(), with_bin_dir(None))),
        }
    }
}

/// `PATH` with [`SANDBOX_BIN_DIR`] at its end.
pub fn with_bin_dir(path: Option<&OsStr>) -> OsString {
    match path {
        Some(p) if !p.is_empty() => {
            let mut v = p.to_os_string();
            v.push(":");
            v.push(SANDBOX_BIN_DIR);
            v
        }
        _ => OsString::from(SANDBOX_BIN_DIR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_points_at_the_socket_and_appends_the_binary() {
        let plug = ConfdbPlug {
            socket: "/run/cairn/apps/a.sock".into(),
            exe: "/usr/bin/cairn".into(),
        };
        let mut env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), "/bin".into()),
            ("CAIRN_SOCKET".into(), "/elsewhere".into()),
        ];
        plug.apply_env(&mut env);
        assert!(env.contains(&("PATH".into(), "/bin:/run/cairn/bin".into())));
        assert!(env.contains(&("CAIRN_SOCKET".into(), SANDBOX_SOCKET.into())));
        assert_eq!(env.len(), 2);
        let mut empty = Vec::new();
        plug.apply_env(&mut empty);
        assert!(empty.contains(&("PATH".into(), "/run/cairn/bin".into())));
        assert_eq!(plug.binds()[0].dest, PathBuf::from(SANDBOX_SOCKET));
        assert!(plug.binds()[1].readonly);
    }
}
