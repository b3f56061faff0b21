//! Every kind of bad input gives one line naming the file and line.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

fn one_line(msg: &str) {
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    assert!(!msg.ends_with('.'), "trailing period: {msg}");
}

#[test]
fn unknown_export_mode_names_file_line_and_choices() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: restricted, mount: /usr, path: /usr }\n  - { mode: pubic, mount: /x, path: /tmp }\n",
        ),
    );
    let e = load_err(&n);
    let file = canon(&n).join("etc/cairn/node.yaml");
    assert_eq!(
        e,
        format!(
            "{}:6: unknown export mode \"pubic\" (expected one of: public, restricted, private, private-restricted, anonymous, exec, symlink, tmpfs, proc, dev, mqueue)",
            file.display()
        )
    );
    one_line(&e);
}

#[test]
fn unknown_key_is_rejected_with_line() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml("a", "config:\n  hostname: x\n  hostnmae: y\n"),
    );
    let e = load_err(&n);
    println!("{e}");
    assert!(
        e.contains(
            "node.yaml:6: unknown key \"hostnmae\" (expected one of: share, hostname, chdir,"
        ),
        "{e}"
    );
    one_line(&e);
}

#[test]
fn unknown_top_level_section_is_rejected() {
    let t = tmp();
    let n = node(t.path(), &yaml("a", "exprots: []\n"));
    let e = load_err(&n);
    println!("{e}");
    assert!(
        e.ends_with(
            "node.yaml:4: unknown key \"exprots\" (expected one of: node, config, exports, environ)"
        ),
        "{e}"
    );
}

#[test]
fn malformed_yaml_is_rejected_with_line() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml("a", "exports:\n  - { mode: public, mount: /x\n"),
    );
    let e = load_err(&n);
    println!("{e}");
    assert!(e.contains("node.yaml:"), "{e}");
    one_line(&e);
}

#[test]
fn wrong_type_is_rejected() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml("a", "config:\n  die_with_parent: sometimes\n"),
    );
    let e = load_err(&n);
    println!("{e}");
    assert!(
        e.ends_with("node.yaml:5: invalid boolean (expected true or false)"),
        "{e}"
    );
    one_line(&e);
}

#[test]
fn missing_node_section_is_rejected() {
    let t = tmp();
    let n = node(t.path(), "config:\n  hostname: x\n");
    let e = load_err(&n);
    println!("{e}");
    assert!(e.ends_with("node.yaml:1: missing key \"node\""), "{e}");
}

#[test]
fn unknown_variable_names_file_and_line() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: tmpfs, mount: /tmp }\n  - { mode: public, mount: /nodes/$NODE_ALAIS/var, path: var }\n",
        ),
    );
    let e = load_err(&n);
    let file = canon(&n).join("etc/cairn/node.yaml");
    assert!(
        e.starts_with(&format!(
            "{}:6: unknown variable $NODE_ALAIS",
            file.display()
        )),
        "{e}"
    );
    one_line(&e);
}

#[test]
fn bad_values_are_rejected() {
    let cases = [
        ("config:\n  umask: \"999\"\n", "invalid umask"),
        ("config:\n  hostname: \"a b\"\n", "invalid hostname"),
        ("config:\n  chdir: relative/dir\n", "invalid chdir"),
        (
            "config:\n  capabilities: { drop: [CAP_FLY] }\n",
            "unknown capability \"CAP_FLY\"",
        ),
        ("config:\n  capabilities: { add: [all] }\n", "add: [all]"),
        (
            "config:\n  cgroup: { memory_max: 12X }\n",
            "invalid memory_max",
        ),
        ("config:\n  cgroup: { pids_max: -3 }\n", "invalid pids_max"),
        (
            "config:\n  cgroup: { cpu_max: \"fast\" }\n",
            "invalid cpu_max",
        ),
        (
            "config:\n  verify: maybe\n",
            "unknown verify value \"maybe\" (expected one of: none, required)",
        ),
        (
            "environ:\n  - { mode: sett, key: A, value: b }\n",
            "unknown environ mode \"sett\" (expected one of: set, literal, exec, inherit, unset)",
        ),
        (
            "environ:\n  - { mode: set, key: A }\n",
            "set entry for A needs a `value`",
        ),
        (
            "environ:\n  - { mode: exec, key: A }\n",
            "exec entry for A needs a `command`",
        ),
        (
            "environ:\n  - { mode: unset, key: A, value: x }\n",
            "unset entries take no `value`",
        ),
        (
            "environ:\n  - { mode: set, key: \"A=B\", value: x }\n",
            "invalid environment key",
        ),
        (
            "environ:\n  - { mode: set, key: A, value: x }\n  - { mode: unset, key: A }\n",
            "environment key A is already set at line 5",
        ),
        (
            "exports:\n  - { mode: public, mount: /x }\n",
            "public export of /x needs a `path`",
        ),
        (
            "exports:\n  - { mode: exec, mount: /x }\n",
            "exec export of /x needs a `command`",
        ),
        (
            "exports:\n  - { mode: proc, mount: /proc, path: /proc }\n",
            "proc exports take no `path`",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: relative }\n",
            "invalid export mount point \"relative\"",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: /a/../b }\n",
            "invalid export mount point",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: / }\n",
            "cannot be mounted on /",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: /t }\n  - { mode: tmpfs, mount: /t/ }\n",
            "mount point /t is already exported at line 5",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: \"/t$\" }\n",
            "a $ without a variable name",
        ),
        (
            "exports:\n  - { mode: tmpfs, mount: \"/t${UID\" }\n",
            "unclosed ${",
        ),
    ];
    for (rest, want) in cases {
        let t = tmp();
        let n = node(t.path(), &yaml("a", rest));
        let e = load_err(&n);
        assert!(e.contains(want), "{rest:?}: {e}");
        assert!(e.contains("node.yaml:"), "{rest:?}: {e}");
        one_line(&e);
    }
}

#[test]
fn bad_and_duplicate_aliases_are_rejected() {
    let t = tmp();
    let n = node(t.path(), &yaml("bad/alias", ""));
    assert!(load_err(&n).contains("node.yaml:2: invalid alias \"bad/alias\""));

    let t = tmp();
    node(t.path(), &yaml("same", ""));
    let leaf = node(&t.path().join("x/leaf"), &yaml("same", ""));
    let e = load_err(&leaf);
    assert!(
        e.contains("leaf/etc/cairn/node.yaml:2: alias \"same\" is already used by the node"),
        "{e}"
    );
    one_line(&e);
}

#[test]
fn not_a_node() {
    let t = tmp();
    let e = load_err(t.path());
    assert!(e.ends_with("not a node (no etc/cairn/node.yaml)"), "{e}");
    let e = load_err(&t.path().join("missing"));
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn admin_file_has_no_node_section() {
    let t = tmp();
    let n = node(t.path(), &yaml("a", ""));
    admin(&n, "node:\n  alias: b\n  name: c\n");
    let e = load_err(&n);
    assert!(e.contains("node-admin.yaml:1:"), "{e}");
}

#[test]
fn sticky_namespace_cannot_be_shared_again() {
    let t = tmp();
    node(
        t.path(),
        &yaml("sys", "config:\n  share: { net: true, pid: false }\n"),
    );
    let mid = node(
        &t.path().join("mid"),
        &yaml("mid", "config:\n  share: { net: false }\n"),
    );
    let leaf = node(
        &mid.join("leaf"),
        &yaml("leaf", "config:\n  share:\n    net: true\n"),
    );
    let e = load_err(&leaf);
    assert!(
        e.contains("mid/leaf/etc/cairn/node.yaml:6: share.net: true is not allowed: an ancestor node unshares this namespace"),
        "{e}"
    );
    // pid is unshared explicitly by the system node.
    std::fs::write(
        leaf.join("etc/cairn/node.yaml"),
        yaml("leaf", "config:\n  share: { pid: true }\n"),
    )
    .unwrap();
    assert!(load_err(&leaf).contains("share.pid: true is not allowed"));
    // ipc is unshared by default.
    std::fs::write(
        leaf.join("etc/cairn/node.yaml"),
        yaml("leaf", "config:\n  share: { ipc: true }\n"),
    )
    .unwrap();
    assert!(load_err(&leaf).contains("share.ipc: true is not allowed"));
    // Sharing net again is fine where no ancestor unshares it.
    std::fs::write(mid.join("etc/cairn/node.yaml"), yaml("mid", "")).unwrap();
    std::fs::write(
        leaf.join("etc/cairn/node.yaml"),
        yaml("leaf", "config:\n  share: { net: true }\n"),
    )
    .unwrap();
    assert!(cairn_node::load_family(&leaf, &ctx()).is_ok());
}

#[test]
fn sticky_capability_cannot_be_added_back() {
    let t = tmp();
    node(
        t.path(),
        &yaml(
            "sys",
            "config:\n  capabilities: { drop: [all], add: [NET_BIND_SERVICE, CAP_CHOWN] }\n",
        ),
    );
    let mid = node(
        &t.path().join("mid"),
        &yaml("mid", "config:\n  capabilities: { drop: [chown] }\n"),
    );
    let leaf = node(
        &mid.join("leaf"),
        &yaml("leaf", "config:\n  capabilities:\n    add: [CHOWN]\n"),
    );
    let e = load_err(&leaf);
    assert!(
        e.contains("leaf/etc/cairn/node.yaml:6: capabilities: cannot add CAP_CHOWN: an ancestor node drops it"),
        "{e}"
    );
    // Dropping all and adding back what the parent keeps, in one node, is allowed.
    std::fs::write(
        leaf.join("etc/cairn/node.yaml"),
        yaml(
            "leaf",
            "config:\n  capabilities: { drop: [all], add: [NET_BIND_SERVICE] }\n",
        ),
    )
    .unwrap();
    let fam = cairn_node::load_family(&leaf, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    let caps: Vec<_> = m
        .config
        .capabilities
        .iter()
        .map(|v| v.value.as_str())
        .collect();
    assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
    // A capability no ancestor keeps (the default drops all) cannot be added.
    std::fs::write(
        leaf.join("etc/cairn/node.yaml"),
        yaml("leaf", "config:\n  capabilities: { add: [NET_ADMIN] }\n"),
    )
    .unwrap();
    assert!(load_err(&leaf).contains("cannot add CAP_NET_ADMIN"));
}

#[test]
fn missing_export_source_names_file_and_line() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: tmpfs, mount: /tmp }\n  - { mode: restricted, mount: /data, path: /definitely/not/here }\n",
        ),
    );
    let fam = cairn_node::load_family(&n, &ctx()).unwrap();
    let file = canon(&n).join("etc/cairn/node.yaml");
    let want = format!(
        "{}:6: export /data: source /definitely/not/here does not exist (create it, or add `optional: true`)",
        file.display()
    );
    assert_eq!(fam.check().unwrap_err().to_string(), want);
    let launch = cairn_node::Launch::default();
    assert_eq!(fam.to_spec(&launch).unwrap_err().to_string(), want);
}

#[test]
fn failing_exec_names_file_and_entry() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: exec, mount: /etc/x, command: \"echo nope >&2; exit 3\" }\n",
        ),
    );
    let fam = cairn_node::load_family(&n, &ctx()).unwrap();
    assert!(fam.check().is_ok(), "check does not run commands");
    let e = fam
        .to_spec(&cairn_node::Launch::default())
        .unwrap_err()
        .to_string();
    let file = canon(&n).join("etc/cairn/node.yaml");
    assert_eq!(
        e,
        format!(
            "{}:5: export /etc/x: command \"echo nope >&2; exit 3\" exited with status 3: nope",
            file.display()
        )
    );

    let t2 = tmp();
    let n2 = node(
        t2.path(),
        &yaml(
            "b",
            "environ:\n  - { mode: exec, key: K, command: \"false\" }\n",
        ),
    );
    let fam = cairn_node::load_family(&n2, &ctx()).unwrap();
    let e = fam
        .to_spec(&cairn_node::Launch::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("/etc/cairn/node.yaml:5: environ K: command \"false\" exited with status 1"),
        "{e}"
    );
}

#[test]
fn missing_seccomp_profile_is_an_error() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml("a", "config:\n  seccomp: profiles/strict.json\n"),
    );
    let fam = cairn_node::load_family(&n, &ctx()).unwrap();
    let e = fam.check().unwrap_err().to_string();
    assert!(
        e.contains("node.yaml:5: seccomp profile")
            && e.contains("profiles/strict.json does not exist"),
        "{e}"
    );
}

#[test]
fn mqueue_needs_its_own_ipc_namespace() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "config:\n  share: { ipc: true }\nexports:\n  - { mode: mqueue, mount: /dev/mqueue }\n",
        ),
    );
    let fam = cairn_node::load_family(&n, &ctx()).unwrap();
    assert!(
        fam.check()
            .unwrap_err()
            .to_string()
            .contains("needs a new IPC namespace")
    );
}

#[test]
fn check_node_yaml_validates_one_file() {
    let p = std::path::Path::new("/n/etc/cairn/node.yaml");
    assert!(
        cairn_node::check_node_yaml(
            p,
            yaml("a", "exports:\n  - { mode: proc, mount: /proc }\n").as_bytes()
        )
        .is_ok()
    );
    let e = cairn_node::check_node_yaml(p, b"node: [")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/n/etc/cairn/node.yaml:"), "{e}");
    assert!(cairn_node::check_node_yaml(p, &[0xff, 0xfe]).is_err());
}
