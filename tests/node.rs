//! End-to-end tests of `cairn node` and of how `cairn run` treats bad node files: one clear
//! error line naming the file and the entry, and nothing launched.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod support;

use predicates::prelude::*;
use std::path::Path;
use support::{World, rewrite_node, write};

/// Asserts a failure with exactly one line on stderr containing every `needle`, and no output.
fn fails_with(assert: assert_cmd::assert::Assert, needles: &[&str]) {
    let assert = assert.code(1).stdout("");
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing from: {stderr}");
    }
}

/// `cairn run` of a marker-writing program must fail before launching anything.
fn run_refused(w: &World, leaf: &Path, needles: &[&str]) {
    let marker = w.path("launched");
    let script = format!("touch {}", marker.display());
    fails_with(
        w.cairn()
            .args(["run", "--node"])
            .arg(leaf)
            .args(["--", "/bin/sh", "-c", &script])
            .assert(),
        needles,
    );
    assert!(!marker.exists(), "the program was launched");
    fails_with(
        w.cairn().args(["node", "check"]).arg(leaf).assert(),
        needles,
    );
}

#[test]
fn create_makes_a_node_and_refuses_clashes() {
    let w = World::new();
    let sys = w.node("nodes/sys", "sys", "system");
    assert!(sys.join("etc/cairn/node.yaml").is_file());
    // Same path again, bad alias, alias already in the family.
    w.cairn()
        .args(["node", "create"])
        .arg(&sys)
        .args(["--alias", "other"])
        .assert()
        .failure();
    fails_with(
        w.cairn()
            .args(["node", "create"])
            .arg(w.path("nodes/sys/x"))
            .args(["--alias", "bad alias!"])
            .assert(),
        &["bad alias!"],
    );
    fails_with(
        w.cairn()
            .args(["node", "create"])
            .arg(w.path("nodes/sys/dup"))
            .args(["--alias", "sys"])
            .assert(),
        &["sys"],
    );
    assert!(!w.path("nodes/sys/dup").exists() && !w.path("nodes/sys/x").exists());
    // Admin template writes a node-admin.yaml too.
    let admin = w.node("nodes/sys/adm", "adm", "admin");
    assert!(admin.join("etc/cairn/node-admin.yaml").is_file());
}

#[test]
fn ls_tree_and_config_show_the_family() {
    let w = World::new();
    w.node("nodes/sys", "sys", "system");
    w.node("nodes/sys/mid", "mid", "leaf");
    let leaf = w.node("nodes/sys/mid/leaf", "leaf", "leaf");

    let out = w
        .cairn()
        .args(["node", "ls", "--json"])
        .arg(w.path("nodes"))
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let aliases: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases.len(), 3, "{v}");
    for a in ["sys", "mid", "leaf"] {
        assert!(aliases.contains(&a), "{a} missing: {v}");
    }
    w.cairn()
        .args(["node", "ls"])
        .arg(w.path("nodes"))
        .assert()
        .success()
        .stdout(predicate::str::contains("ALIAS"));

    let out = w
        .cairn()
        .args(["node", "tree"])
        .arg(&leaf)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let (s, m, l) = (
        text.find("sys").unwrap(),
        text.find("mid").unwrap(),
        text.find("leaf").unwrap(),
    );
    assert!(s < m && m < l, "{text}");

    // Merged config names where each value came from.
    let out = w
        .cairn()
        .args(["node", "config", "--json"])
        .arg(&leaf)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let _: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        text.contains(&leaf.join("etc/cairn/node.yaml").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(
            &w.path("nodes/sys/etc/cairn/node.yaml")
                .display()
                .to_string()
        ),
        "{text}"
    );
    w.cairn()
        .args(["node", "config"])
        .arg(&leaf)
        .assert()
        .success()
        .stdout(predicate::str::contains("node.yaml"));
    w.cairn()
        .args(["node", "check"])
        .arg(&leaf)
        .assert()
        .success();
}

#[test]
fn rm_is_atomic_and_guards_children() {
    let w = World::new();
    let sys = w.node("nodes/sys", "sys", "system");
    let leaf = w.node("nodes/sys/app", "app", "leaf");
    fails_with(
        w.cairn().args(["node", "rm"]).arg(&sys).assert(),
        &["recursive"],
    );
    assert!(leaf.exists());
    fails_with(
        w.cairn()
            .args(["node", "rm"])
            .arg(w.path("nodes/sys/usr"))
            .assert(),
        &["not a node"],
    );
    w.cairn().args(["node", "rm"]).arg(&leaf).assert().success();
    assert!(!leaf.exists());
    w.cairn()
        .args(["node", "rm", "--recursive"])
        .arg(&sys)
        .assert()
        .success();
    assert!(!sys.exists());
    // Nothing hidden left behind by the rename-then-delete.
    let left: Vec<_> = std::fs::read_dir(w.path("nodes")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn malformed_yaml_is_refused_with_file_and_line() {
    let w = World::new();
    let leaf = w.family();
    let file = leaf.join("etc/cairn/node.yaml");
    rewrite_node(&leaf, "exports:\n  - { mode: public, mount: /x\n");
    run_refused(&w, &leaf, &[&file.display().to_string()]);
}

#[test]
fn unknown_key_is_refused() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(&leaf, "config:\n  hostnme: x\n");
    run_refused(&w, &leaf, &["node.yaml:5", "hostnme"]);
}

#[test]
fn unknown_export_mode_is_refused_with_the_choices() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(
        &leaf,
        "exports:\n  - { mode: pubic, mount: /x, path: $NODE_PATH/var }\n",
    );
    run_refused(&w, &leaf, &["node.yaml:5", "pubic", "public", "restricted"]);
}

#[test]
fn missing_export_source_is_refused_unless_optional() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(
        &leaf,
        "exports:\n  - { mode: restricted, mount: /opt/x, path: /does/not/exist }\n",
    );
    run_refused(&w, &leaf, &["node.yaml:5", "/does/not/exist"]);
    rewrite_node(
        &leaf,
        "exports:\n  - { mode: restricted, mount: /opt/x, path: /does/not/exist, optional: true }\n",
    );
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "/bin/true"])
        .assert()
        .success();
}

#[test]
fn unknown_variable_is_refused() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(
        &leaf,
        "environ:\n  - { mode: set, key: X, value: \"$NOPE\" }\n",
    );
    run_refused(&w, &leaf, &["node.yaml:5", "NOPE"]);
}

#[test]
fn sticky_namespace_and_capability_restrictions() {
    let w = World::new();
    let leaf = w.family();
    // The system template unshares the network; a descendant cannot share it again.
    rewrite_node(&leaf, "config:\n  share: { net: true }\n");
    run_refused(&w, &leaf, &["node.yaml:5", "net"]);
    // The system template drops every capability; a descendant cannot add one back.
    rewrite_node(&leaf, "config:\n  capabilities: { add: [CAP_NET_ADMIN] }\n");
    run_refused(&w, &leaf, &["node.yaml:5", "NET_ADMIN"]);
}

#[test]
fn environ_modes_and_variables() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(
        &leaf,
        concat!(
            "environ:\n",
            "  - { mode: set, key: GREETING, value: \"hi from $LEAF_ALIAS in ${NODE_ALIAS}\" }\n",
            "  - { mode: literal, key: RAW, value: \"$NOT_EXPANDED\" }\n",
            "  - { mode: exec, key: FROM_CMD, command: \"echo computed\" }\n",
            "  - { mode: inherit, key: CAIRN_PASS }\n",
            "  - { mode: unset, key: LANG }\n",
        ),
    );
    let out = w
        .cairn()
        .env("CAIRN_PASS", "passed")
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "/usr/bin/env"])
        .assert()
        .success();
    let env = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for want in [
        "GREETING=hi from app in app\n",
        "RAW=$NOT_EXPANDED\n",
        "FROM_CMD=computed\n",
        "CAIRN_PASS=passed\n",
    ] {
        assert!(env.contains(want), "{want:?} missing: {env}");
    }
    assert!(!env.lines().any(|l| l.starts_with("LANG=")), "{env}");
}

#[test]
fn exec_and_symlink_exports() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(
        &leaf,
        concat!(
            "exports:\n",
            "  - { mode: exec, mount: /etc/motd, command: \"echo welcome $LEAF_ALIAS\" }\n",
            "  - { mode: symlink, mount: /app, path: /nodes/app/var }\n",
            "  - { mode: public, mount: /nodes/app/var, path: $NODE_PATH/var }\n",
        ),
    );
    let out = w
        .cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "cat /etc/motd; readlink /app; echo x > /etc/motd || echo ro",
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(text, "welcome app\n/nodes/app/var\nro\n");
}

#[test]
fn admin_file_beats_normal_files() {
    let w = World::new();
    let leaf = w.family();
    rewrite_node(&leaf, "config:\n  hostname: from-normal\n");
    write(
        &leaf.join("etc/cairn/node-admin.yaml"),
        "config:\n  hostname: from-admin\n",
    );
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "cat", "/proc/sys/kernel/hostname"])
        .assert()
        .success()
        .stdout("from-admin\n");
}

#[test]
fn help_and_usage_errors() {
    let w = World::new();
    w.cairn()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage"));
    w.cairn().arg("no-such-command").assert().code(2);
    w.cairn().args(["run", "--node"]).assert().code(2);
    fails_with(
        w.cairn()
            .args(["run", "--node"])
            .arg(w.path("nope"))
            .args(["--", "/bin/true"])
            .assert(),
        &["nope"],
    );
}
