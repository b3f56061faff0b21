//! Shared helpers for the end-to-end tests: every test gets its own `CAIRN_ROOT` and drives
//! the real `cairn` binary.
#![allow(dead_code)]

pub mod daemon;
pub mod vm;

use std::path::{Path, PathBuf};

/// The binary under test: `CAIRN_BIN` when the rootless runner staged a copy, else cargo's.
pub fn cairn_bin() -> PathBuf {
    match std::env::var_os("CAIRN_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
    }
}

pub fn is_root() -> bool {
    nix_euid() == 0
}

fn nix_euid() -> u32 {
    // /proc/self/status avoids a libc dependency in the test crate.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A fresh Cairn world: its own CAIRN_ROOT, removed when dropped.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .unwrap();
        let world = World { dir };
        std::fs::create_dir_all(world.config_dir()).unwrap();
        if let Some(cg) = std::env::var_os("CAIRN_TEST_CGROUP_ROOT") {
            std::fs::write(
                world.config_dir().join("cairn.toml"),
                format!("[cgroup]\nroot = \"{}\"\n", cg.to_string_lossy()),
            )
            .unwrap();
        }
        world
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root().join("etc/cairn")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// `cairn` with this world's CAIRN_ROOT and a clean environment.
    pub fn cairn(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(cairn_bin());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("CAIRN_ROOT", self.root())
            .env("HOME", self.root());
        cmd
    }

    /// Same as `cairn()` but a std Command (for spawning and signalling).
    pub fn cairn_std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(cairn_bin());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("CAIRN_ROOT", self.root())
            .env("HOME", self.root());
        cmd
    }

    /// Creates a node with `cairn node create` and returns its path.
    pub fn node(&self, rel: &str, alias: &str, template: &str) -> PathBuf {
        let path = self.path(rel);
        self.cairn()
            .args(["node", "create"])
            .arg(&path)
            .args(["--alias", alias, "--template", template])
            .assert()
            .success();
        path
    }

    /// A system node plus a leaf below it: the smallest family that runs host programs.
    pub fn family(&self) -> PathBuf {
        self.node("nodes/sys", "sys", "system");
        self.node("nodes/sys/app", "app", "leaf")
    }
}

/// Writes a file, creating its parents.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Reports a skipped check loudly (a skip must never look like a pass).
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
}

/// Replaces a node's `node.yaml` with `body`, keeping its identity (alias and name).
pub fn rewrite_node(node: &Path, body: &str) {
    let file = node.join("etc/cairn/node.yaml");
    let old = std::fs::read_to_string(&file).unwrap();
    let field = |key: &str| {
        old.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{key}:"))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("no {key} in {}", file.display()))
    };
    let text = format!(
        "node:\n  alias: {}\n  name: {}\n{body}",
        field("alias"),
        field("name")
    );
    write(&file, &text);
}

/// Writes `local/busybox:1` as an OCI layout at `dir`: a static busybox, entrypoint /bin/sh,
/// env FROM_IMAGE=yes.
pub fn write_busybox_layout(dir: &Path) -> PathBuf {
    use cairn_image::{RuntimeConfig, testkit::ImageSpec, unpack::Compression};
    ImageSpec {
        runtime: RuntimeConfig {
            entrypoint: vec!["/bin/sh".into()],
            env: vec!["FROM_IMAGE=yes".into()],
            ..RuntimeConfig::default()
        },
        ..ImageSpec::default()
    }
    .layer(
        &cairn_image::testkit::busybox_layer().unwrap(),
        Compression::Gzip,
    )
    .unwrap()
    .write_oci_layout(dir, Some("local/busybox:1"))
    .unwrap();
    dir.to_path_buf()
}

/// Writes `local/delta:1` as an OCI layout at `dir`, meant to go over busybox: one layer with
/// an opaque /var/cache, a whiteout of /etc/motd and a new /etc/delta.
pub fn write_delta_layout(dir: &Path) -> PathBuf {
    use cairn_image::testkit::{Entry, ImageSpec, layer_tar};
    let tar = layer_tar(&[
        Entry::Opaque {
            dir: "var/cache".into(),
        },
        Entry::Whiteout {
            path: "etc/motd".into(),
        },
        Entry::File {
            path: "etc/delta".into(),
            data: b"delta\n".to_vec(),
            mode: 0o644,
        },
    ])
    .unwrap();
    ImageSpec::default()
        .layer(&tar, cairn_image::unpack::Compression::None)
        .unwrap()
        .write_oci_layout(dir, Some("local/delta:1"))
        .unwrap();
    dir.to_path_buf()
}

/// `cairn image import LAYOUT` into the world's store.
pub fn import_layout(world: &World, layout: &Path) {
    world
        .cairn()
        .args(["image", "import"])
        .arg(layout)
        .assert()
        .success();
}

/// Runs `program` with `args` as nobody (65534, no groups) through setpriv, with an empty
/// environment but `CAIRN_ROOT=root` and a plain PATH: the unprivileged path, from a root test.
pub fn run_as_nobody(
    root: &Path,
    program: &Path,
    args: &[&std::ffi::OsStr],
) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program)
        .args(args)
        .env_clear()
        .env("CAIRN_ROOT", root)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}
