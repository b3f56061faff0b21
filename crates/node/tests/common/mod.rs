#![allow(clippy::unwrap_used)]
// Shared helpers for the integration tests: build node families in temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cairn_node::VarContext;

pub fn ctx() -> VarContext {
    VarContext {
        uid: 1000,
        gid: 1000,
        user: "alice".into(),
        home: "/home/alice".into(),
        hostname: "host".into(),
        pid: 4242,
    }
}

/// Writes `dir/etc/cairn/node.yaml` (creating directories).
pub fn node(dir: &Path, yaml: &str) -> PathBuf {
    let etc = dir.join("etc/cairn");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("node.yaml"), yaml).unwrap();
    dir.to_path_buf()
}

pub fn admin(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("etc/cairn/node-admin.yaml"), yaml).unwrap();
}

/// A minimal node.yaml with the given alias and extra sections.
pub fn yaml(alias: &str, rest: &str) -> String {
    format!("node:\n  alias: {alias}\n  name: name-{alias}\n{rest}")
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The error text of a load.
pub fn load_err(leaf: &Path) -> String {
    match cairn_node::load_family(leaf, &ctx()) {
        Ok(_) => panic!("load of {} succeeded", leaf.display()),
        Err(e) => e.to_string(),
    }
}

pub fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}
