//! Merge rules along a family: scalars, admin files, cumulation, replacement, privacy.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::ffi::OsString;
use std::path::PathBuf;

use cairn_node::{ExportMode, Launch, Seccomp, Verify, load_family};
use cairn_sandbox::Mount;

#[test]
fn defaults_when_nothing_is_set() {
    let t = tmp();
    let n = node(t.path(), &yaml("solo", ""));
    let fam = load_family(&n, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    let c = &m.config;
    assert!(!c.share.net.value && !c.share.user.value && !c.share.time.value);
    assert_eq!(c.hostname.value, "solo");
    assert_eq!(c.hostname.origin, None);
    assert_eq!(c.chdir.value, PathBuf::from("/"));
    assert_eq!(c.umask.value, 0o022);
    assert!(c.die_with_parent.value && c.new_session.value && !c.inherit_env.value);
    assert!(c.capabilities.is_empty());
    assert_eq!(c.seccomp.value, Seccomp::Default);
    assert_eq!(c.cgroup.memory_max.value, None);
    assert_eq!((c.user.uid.value, c.user.gid.value), (0, 0));
    assert_eq!(c.verify.value, Verify::None);

    let spec = fam
        .to_spec(&Launch {
            argv: vec!["true".into()],
            ..Launch::default()
        })
        .unwrap();
    assert_eq!(spec.namespaces, cairn_sandbox::Namespaces::default());
    assert_eq!(spec.hostname.as_deref(), Some("solo"));
    assert_eq!(spec.chdir, Some(PathBuf::from("/")));
    assert_eq!(spec.umask, Some(0o022));
    assert!(spec.env.is_empty());
    assert!(spec.capabilities.is_empty());
    assert!(spec.cgroup.is_empty());
}

#[test]
fn nearest_node_wins_and_admin_beats_normal() {
    let t = tmp();
    let sys = node(
        t.path(),
        &yaml(
            "sys",
            "config:\n  hostname: sys\n  umask: \"077\"\n  chdir: /sys\n  verify: required\n",
        ),
    );
    admin(
        &sys,
        "config:\n  umask: \"027\"\n  cgroup: { pids_max: 64 }\n",
    );
    let mid = node(
        &t.path().join("mid"),
        &yaml(
            "mid",
            "config:\n  hostname: mid\n  umask: \"002\"\n  cgroup: { pids_max: max }\n",
        ),
    );
    admin(&mid, "config:\n  cgroup: { pids_max: 32 }\n");
    let leaf = node(
        &mid.join("leaf"),
        &yaml(
            "leaf",
            "config:\n  hostname: leaf-$NODE_ALIAS\n  umask: \"000\"\n  cgroup: { pids_max: 1000, memory_max: 64M }\n",
        ),
    );
    let fam = load_family(&leaf, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    let c = &m.config;
    assert_eq!(c.hostname.value, "leaf-leaf");
    let origin = c.hostname.origin.as_ref().unwrap();
    assert_eq!(
        origin.file.to_path_buf(),
        canon(&leaf).join("etc/cairn/node.yaml")
    );
    assert_eq!(origin.line, 5);
    // The system node's admin file beats every node.yaml, even the leaf's.
    assert_eq!(c.umask.value, 0o027);
    assert!(
        c.umask
            .origin
            .as_ref()
            .unwrap()
            .file
            .ends_with("etc/cairn/node-admin.yaml")
    );
    // Among admin files, the nearest wins.
    assert_eq!(c.cgroup.pids_max.value, Some(32));
    assert_eq!(c.cgroup.memory_max.value, Some(64 << 20));
    assert_eq!(c.chdir.value, PathBuf::from("/sys"));
    assert_eq!(c.verify.value, Verify::Required);
}

#[test]
fn path_and_ldpath_cumulate_leaf_first() {
    let t = tmp();
    node(
        t.path(),
        &yaml(
            "sys",
            "config:\n  path: /usr/bin:/bin\n  ldpath: /usr/lib\n",
        ),
    );
    let mid = node(
        &t.path().join("mid"),
        &yaml("mid", "config:\n  path: /nodes/$NODE_ALIAS/bin\n"),
    );
    let leaf = node(
        &mid.join("leaf"),
        &yaml(
            "leaf",
            "config:\n  path: /nodes/$NODE_ALIAS/bin\n  ldpath: /nodes/$NODE_ALIAS/lib\n",
        ),
    );
    let fam = load_family(&leaf, &ctx()).unwrap();
    let spec = fam.to_spec(&Launch::default()).unwrap();
    let get = |k: &str| {
        spec.env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("PATH"),
        Some(OsString::from(
            "/nodes/leaf/bin:/nodes/mid/bin:/usr/bin:/bin"
        ))
    );
    assert_eq!(
        get("LD_LIBRARY_PATH"),
        Some(OsString::from("/nodes/leaf/lib:/usr/lib"))
    );
}

#[test]
fn exports_cumulate_and_children_replace_mount_points() {
    let t = tmp();
    let sys = node(
        t.path(),
        &yaml(
            "sys",
            "exports:\n  - { mode: restricted, mount: /data, path: /tmp }\n  - { mode: tmpfs, mount: /tmp }\n  - { mode: private, mount: /secret, path: /tmp }\n",
        ),
    );
    let leaf = node(
        &sys.join("leaf"),
        &yaml(
            "leaf",
            "exports:\n  - { mode: public, mount: /data/, path: var }\n  - { mode: private-restricted, mount: /mine, path: . }\n",
        ),
    );
    std::fs::create_dir_all(leaf.join("var")).unwrap();
    let fam = load_family(&leaf, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    let mounts: Vec<_> = m
        .exports
        .iter()
        .map(|e| (e.mode, e.mount.clone()))
        .collect();
    assert_eq!(
        mounts,
        vec![
            (ExportMode::Public, PathBuf::from("/data")),
            (ExportMode::Tmpfs, PathBuf::from("/tmp")),
            (ExportMode::PrivateRestricted, PathBuf::from("/mine")),
        ],
        "the parent's private export is not seen by its child"
    );
    assert_eq!(m.exports[0].path, Some(canon(&leaf).join("var")));
    assert!(m.exports[0].origin.file.starts_with(canon(&leaf)));

    // Loaded as the leaf itself, the system node's private export applies.
    let fam = load_family(&sys, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    assert!(
        m.exports
            .iter()
            .any(|e| e.mount == std::path::Path::new("/secret"))
    );
}

#[test]
fn optional_missing_sources_are_skipped() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: restricted, mount: /opt, path: /no/such/dir, optional: true }\n  - { mode: exec, mount: /etc/x, command: \"exit 1\", optional: true }\n  - { mode: tmpfs, mount: /tmp }\n",
        ),
    );
    let fam = load_family(&n, &ctx()).unwrap();
    fam.check().unwrap();
    let spec = fam.to_spec(&Launch::default()).unwrap();
    assert_eq!(
        spec.mounts,
        vec![Mount::Tmpfs {
            dest: "/tmp".into(),
            mode: 0o1777
        }]
    );
}

#[test]
fn mounts_are_ordered_parents_first() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "exports:\n  - { mode: tmpfs, mount: /a/b/c }\n  - { mode: tmpfs, mount: /z }\n  - { mode: tmpfs, mount: /a/b }\n  - { mode: tmpfs, mount: /a }\n  - { mode: tmpfs, mount: /y }\n",
        ),
    );
    let fam = load_family(&n, &ctx()).unwrap();
    let spec = fam.to_spec(&Launch::default()).unwrap();
    let dests: Vec<_> = spec
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Tmpfs { dest, .. } => dest.to_string_lossy().into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dests, ["/z", "/a", "/y", "/a/b", "/a/b/c"]);
}

#[test]
fn environ_modes_and_overrides() {
    let t = tmp();
    let sys = node(
        t.path(),
        &yaml(
            "sys",
            "config:\n  inherit_env: true\nenviron:\n  - { mode: set, key: GREETING, value: \"hi $USER\" }\n  - { mode: set, key: REPLACED, value: parent }\n  - { mode: set, key: OVERRIDDEN, value: node }\n",
        ),
    );
    let leaf = node(
        &sys.join("leaf"),
        &yaml(
            "leaf",
            "environ:\n  - { mode: literal, key: PATTERN, value: \"$NOT_EXPANDED\" }\n  - { mode: exec, key: BUILD, command: \"printf 'id-42\\\\n\\\\n'\" }\n  - { mode: inherit, key: TERM }\n  - { mode: inherit, key: ABSENT }\n  - { mode: unset, key: SECRET }\n  - { mode: set, key: REPLACED, value: child }\n",
        ),
    );
    let fam = load_family(&leaf, &ctx()).unwrap();
    let launch = Launch {
        argv: vec!["env".into()],
        env_overrides: vec![("OVERRIDDEN".into(), "cli".into())],
        chdir: Some("/work".into()),
        caller_env: vec![
            ("TERM".into(), "xterm".into()),
            ("SECRET".into(), "s3cr3t".into()),
            ("ABSENT".into(), "caller".into()),
            ("OTHER".into(), "kept".into()),
        ],
    };
    let spec = fam.to_spec(&launch).unwrap();
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    env.sort();
    let expect: Vec<(String, String)> = [
        ("ABSENT", "caller"),
        ("BUILD", "id-42"),
        ("GREETING", "hi alice"),
        ("OTHER", "kept"),
        ("OVERRIDDEN", "cli"),
        ("PATTERN", "$NOT_EXPANDED"),
        ("REPLACED", "child"),
        ("TERM", "xterm"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expect);
    assert_eq!(spec.chdir, Some(PathBuf::from("/work")));

    // Without inherit_env, `inherit` of an absent variable leaves it unset.
    std::fs::write(sys.join("etc/cairn/node.yaml"), yaml("sys", "")).unwrap();
    let fam = load_family(&leaf, &ctx()).unwrap();
    let launch = Launch {
        caller_env: vec![("TERM".into(), "vt100".into())],
        ..Launch::default()
    };
    let spec = fam.to_spec(&launch).unwrap();
    let keys: Vec<_> = spec
        .env
        .iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    assert!(
        !keys.contains(&"ABSENT".to_owned()) && !keys.contains(&"OTHER".to_owned()),
        "{keys:?}"
    );
    assert!(spec.env.contains(&("TERM".into(), "vt100".into())));
}

#[test]
fn variables_refer_to_the_file_owner_and_the_leaf() {
    let t = tmp();
    let sys = node(
        t.path(),
        &yaml(
            "sys",
            "exports:\n  - { mode: symlink, mount: /who/$NODE_ALIAS, path: \"$LEAF_ALIAS-$NODE_NAME-$UID-$$\" }\n",
        ),
    );
    let leaf = node(
        &sys.join("leaf"),
        &yaml(
            "leaf",
            "exports:\n  - { mode: symlink, mount: /who/$NODE_ALIAS, path: \"${LEAF_NAME}:$NODE_PATH\" }\n",
        ),
    );
    let fam = load_family(&leaf, &ctx()).unwrap();
    let spec = fam.to_spec(&Launch::default()).unwrap();
    assert_eq!(
        spec.mounts,
        vec![
            Mount::Symlink {
                target: "leaf-name-sys-1000-$".into(),
                dest: "/who/sys".into()
            },
            Mount::Symlink {
                target: format!("name-leaf:{}", canon(&leaf).display()).into(),
                dest: "/who/leaf".into()
            },
        ]
    );
}

#[test]
fn capabilities_cgroups_user_and_seccomp_reach_the_spec() {
    let t = tmp();
    std::fs::write(t.path().join("profile.json"), "{}").unwrap();
    let sys = node(
        t.path(),
        &yaml(
            "sys",
            "config:\n  share: { net: true, uts: true }\n  capabilities: { drop: [all], add: [CAP_NET_BIND_SERVICE, kill, SYS_TIME] }\n  seccomp: profile.json\n",
        ),
    );
    let leaf = node(
        &sys.join("leaf"),
        &yaml(
            "leaf",
            "config:\n  share: { uts: false }\n  capabilities: { drop: [SYS_TIME] }\n  cgroup: { memory_max: 1G, pids_max: 128, cpu_max: \"50000 100000\" }\n  user: { uid: 1000, gid: 100 }\n  die_with_parent: false\n  new_session: false\n",
        ),
    );
    let fam = load_family(&leaf, &ctx()).unwrap();
    let spec = fam.to_spec(&Launch::default()).unwrap();
    use cairn_sandbox::{Capability, SeccompPolicy};
    assert_eq!(spec.capabilities, vec![Capability(5), Capability(10)]);
    assert!(!spec.namespaces.net && spec.namespaces.uts && spec.namespaces.pid);
    assert_eq!(spec.cgroup.memory_max, Some(1 << 30));
    assert_eq!(spec.cgroup.pids_max, Some(128));
    assert_eq!(spec.cgroup.cpu_max, Some((50_000, 100_000)));
    assert_eq!((spec.user.uid, spec.user.gid), (1000, 100));
    assert!(!spec.die_with_parent && !spec.new_session);
    assert_eq!(
        spec.seccomp,
        SeccompPolicy::Profile(canon(t.path()).join("profile.json"))
    );
}

#[test]
fn merged_serializes_with_provenance() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "config:\n  hostname: box\nexports:\n  - { mode: tmpfs, mount: /tmp }\n",
        ),
    );
    let fam = load_family(&n, &ctx()).unwrap();
    let json = serde_json::to_value(fam.merged().unwrap()).unwrap();
    assert_eq!(json["config"]["hostname"]["value"], "box");
    assert_eq!(json["config"]["hostname"]["origin"]["line"], 5);
    assert!(json["config"]["umask"]["origin"].is_null());
    assert_eq!(json["exports"][0]["mode"], "tmpfs");
    assert_eq!(json["exports"][0]["origin"]["line"], 7);
    let file = json["exports"][0]["origin"]["file"].as_str().unwrap();
    assert!(file.ends_with("etc/cairn/node.yaml"));
}

#[test]
fn unquoted_numbers_are_read_as_written() {
    let t = tmp();
    let n = node(
        t.path(),
        &yaml(
            "a",
            "config:\n  umask: 027\n  cgroup: { pids_max: 64, memory_max: 1048576 }\n",
        ),
    );
    let m = load_family(&n, &ctx()).unwrap().merged().unwrap();
    assert_eq!(m.config.umask.value, 0o027);
    assert_eq!(m.config.cgroup.pids_max.value, Some(64));
    assert_eq!(m.config.cgroup.memory_max.value, Some(1 << 20));
}
