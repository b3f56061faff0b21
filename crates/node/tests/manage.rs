//! Creating, listing and removing nodes, and the templates' files.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};

use cairn_node::{Error, Launch, Template, create_node, list_nodes, load_family, remove_node};
use cairn_sandbox::Mount;

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn create_writes_a_loadable_node() {
    let t = tmp();
    let p = t.path().join("pool/demo");
    let info = create_node(&p, "demo", Template::Leaf).unwrap();
    assert_eq!(info.alias, "demo");
    assert_eq!(info.path, p);
    assert_eq!(info.parent, None);
    assert!(uuid_like(&info.name), "{}", info.name);
    for d in ["etc/cairn/node.yaml", "usr/bin", "usr/lib", "var", "local"] {
        assert!(p.join(d).exists(), "{d}");
    }
    assert_eq!(entries(&t.path().join("pool")), ["demo"]);
    let fam = load_family(&p, &ctx()).unwrap();
    assert_eq!(fam.leaf().name, info.name);
    fam.check().unwrap();
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn create_refuses_existing_paths_bad_and_clashing_aliases() {
    let t = tmp();
    let sys = t.path().join("sys");
    create_node(&sys, "sys", Template::Leaf).unwrap();
    assert!(matches!(
        create_node(&sys, "other", Template::Leaf),
        Err(Error::AlreadyExists { .. })
    ));
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        create_node(&empty, "e", Template::Leaf),
        Err(Error::AlreadyExists { .. })
    ));

    let e = create_node(&sys.join("a/b"), "sys", Template::Leaf).unwrap_err();
    assert!(matches!(e, Error::AliasTaken { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("alias \"sys\" is already used in this family by"),
        "{e}"
    );
    assert!(!sys.join("a").exists(), "a refused create changes nothing");

    let e = create_node(&t.path().join("x"), "no spaces", Template::Leaf).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid alias \"no spaces\" (expected one or more of A-Z a-z 0-9 + _ . @ : -)"
    );
    assert_eq!(entries(t.path()), ["empty", "sys"]);
}

#[test]
fn list_finds_nested_nodes_with_parents() {
    let t = tmp();
    let sys = t.path().join("sys");
    create_node(&sys, "sys", Template::Leaf).unwrap();
    create_node(&sys.join("apps/one"), "one", Template::Leaf).unwrap();
    create_node(&sys.join("apps/one/sub"), "sub", Template::Admin).unwrap();
    create_node(&sys.join("apps/two"), "two", Template::Leaf).unwrap();
    std::fs::create_dir_all(sys.join("apps/.x.cairn-new-123/etc/cairn")).unwrap();
    std::fs::write(
        sys.join("apps/.x.cairn-new-123/etc/cairn/node.yaml"),
        "garbage: [",
    )
    .unwrap();

    let all = list_nodes(t.path()).unwrap();
    let got: Vec<(String, Option<PathBuf>)> = all
        .iter()
        .map(|n| (n.alias.clone(), n.parent.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("sys".to_owned(), None),
            ("one".to_owned(), Some(sys.clone())),
            ("sub".to_owned(), Some(sys.join("apps/one"))),
            ("two".to_owned(), Some(sys.clone())),
        ]
    );
    // Listing below a node still names the parent above the listed directory.
    let below = list_nodes(&sys.join("apps/one")).unwrap();
    assert_eq!(below[0].parent, Some(sys.clone()));
    assert_eq!(below.len(), 2);
    let json = serde_json::to_value(&below).unwrap();
    assert_eq!(json[1]["alias"], "sub");
}

#[test]
fn remove_is_refused_for_non_nodes_and_parents() {
    let t = tmp();
    let sys = t.path().join("sys");
    create_node(&sys, "sys", Template::Leaf).unwrap();
    create_node(&sys.join("apps/one"), "one", Template::Leaf).unwrap();

    assert!(matches!(
        remove_node(&sys.join("apps"), false),
        Err(Error::NotANode { .. })
    ));
    let e = remove_node(&sys, false).unwrap_err();
    assert!(matches!(e, Error::HasChildNodes { .. }), "{e}");
    assert!(sys.join("apps/one/etc/cairn/node.yaml").exists());

    remove_node(&sys.join("apps/one"), false).unwrap();
    assert!(!sys.join("apps/one").exists());
    create_node(&sys.join("apps/two"), "two", Template::Leaf).unwrap();
    remove_node(&sys, true).unwrap();
    assert!(entries(t.path()).is_empty(), "{:?}", entries(t.path()));
}

#[test]
fn system_and_leaf_templates_run_ordinary_programs() {
    let t = tmp();
    let sys = t.path().join("sys");
    create_node(&sys, "sys", Template::System).unwrap();
    let app = sys.join("app");
    create_node(&app, "app", Template::Leaf).unwrap();
    let fam = load_family(&app, &ctx()).unwrap();
    fam.check().unwrap();
    let launch = Launch {
        argv: vec!["ls".into()],
        caller_env: vec![("TERM".into(), "xterm".into())],
        ..Launch::default()
    };
    let spec = fam.to_spec(&launch).unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("app"));
    let env = |k: &str| {
        spec.env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    };
    assert_eq!(
        env("PATH").as_deref(),
        Some("/nodes/app/usr/bin:/usr/local/bin:/usr/bin:/bin")
    );
    assert_eq!(
        env("LD_LIBRARY_PATH").as_deref(),
        Some("/nodes/app/usr/lib")
    );
    assert_eq!(env("HOME").as_deref(), Some("/tmp"));
    assert_eq!(env("TERM").as_deref(), Some("xterm"));
    assert_eq!(env("LANG").as_deref(), Some("C.UTF-8"));
    assert!(spec.mounts.contains(&Mount::Bind {
        source: "/usr".into(),
        dest: "/usr".into(),
        readonly: true
    }));
    assert!(spec.mounts.contains(&Mount::Proc {
        dest: "/proc".into()
    }));
    assert!(spec.mounts.contains(&Mount::Dev {
        dest: "/dev".into()
    }));
    // User names come from a read-only bind of the host's files (no process per launch).
    assert!(spec.mounts.contains(&Mount::Bind {
        source: "/etc/passwd".into(),
        dest: "/etc/passwd".into(),
        readonly: true
    }));
    // /bin is a symlink on merged-/usr hosts, a read-only bind otherwise.
    let bin = std::fs::symlink_metadata("/bin").unwrap();
    let has_bin = spec.mounts.iter().any(|m| match m {
        Mount::Symlink { dest, .. } => dest == Path::new("/bin") && bin.file_type().is_symlink(),
        Mount::Bind {
            dest,
            readonly: true,
            ..
        } => dest == Path::new("/bin") && bin.is_dir(),
        _ => false,
    });
    assert!(has_bin);
    // The node's own directories, and the private one only as the leaf.
    let app = canon(&app);
    assert!(spec.mounts.contains(&Mount::Bind {
        source: app.join("usr"),
        dest: "/nodes/app/usr".into(),
        readonly: true
    }));
    assert!(spec.mounts.contains(&Mount::Bind {
        source: app.join("local"),
        dest: "/nodes/app/local".into(),
        readonly: false
    }));
    // Never the whole of /etc.
    assert!(
        !spec
            .mounts
            .iter()
            .any(|m| matches!(m, Mount::Bind { dest, .. } if dest == Path::new("/etc")))
    );
}

#[test]
fn admin_template_restricts() {
    let t = tmp();
    let p = t.path().join("adm");
    create_node(&p, "adm", Template::Admin).unwrap();
    assert!(p.join("etc/cairn/node-admin.yaml").exists());
    let fam = load_family(&p, &ctx()).unwrap();
    let m = fam.merged().unwrap();
    assert_eq!(m.config.cgroup.pids_max.value, Some(512));
    assert_eq!(m.config.cgroup.memory_max.value, Some(512 << 20));
    assert!(m.config.capabilities.is_empty());
    assert!(!m.config.share.net.value);
    assert!(
        m.config
            .share
            .net
            .origin
            .as_ref()
            .unwrap()
            .file
            .ends_with("node-admin.yaml")
    );
}
