//! A realistic 3-node family with ~25 exports produces exactly the expected SandboxSpec.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/family3.rs"]
mod family3;

use std::ffi::OsString;
use std::path::PathBuf;

use cairn_node::{Launch, load_family};
use cairn_sandbox::{Capability, CgroupLimits, Mount, Namespaces, SeccompPolicy, UserIds};

#[test]
fn three_node_family_gives_the_exact_spec() {
    let t = common::tmp();
    let (sys, leaf) = family3::build(t.path(), true);
    let sys = common::canon(&sys);
    let mid = sys.join("mid");
    let leaf_dir = mid.join("leaf");
    let fam = load_family(&leaf, &common::ctx()).unwrap();
    let launch = Launch {
        argv: vec!["app".into(), "--flag".into(), "".into(), "%u @x".into()],
        env_overrides: vec![("EXTRA".into(), "1".into())],
        chdir: None,
        caller_env: vec![
            ("TERM".into(), "xterm-256color".into()),
            ("LD_PRELOAD".into(), "x.so".into()),
        ],
    };
    let aliases: Vec<&str> = fam.nodes().iter().map(|n| n.alias.as_str()).collect();
    assert_eq!(aliases, ["sys", "mid", "leaf"]);
    assert_eq!(fam.system().path, sys);
    assert_eq!(fam.leaf().files, vec![leaf_dir.join("etc/cairn/node.yaml")]);
    fam.check().unwrap();
    let spec = fam.to_spec(&launch).unwrap();

    let ro = |src: PathBuf, dest: &str| Mount::Bind {
        source: src,
        dest: dest.into(),
        readonly: true,
    };
    let rw = |src: PathBuf, dest: &str| Mount::Bind {
        source: src,
        dest: dest.into(),
        readonly: false,
    };
    let link = |target: &str, dest: &str| Mount::Symlink {
        target: target.into(),
        dest: dest.into(),
    };
    let expected_mounts = vec![
        ro(sys.join("host/usr"), "/usr"),
        link("usr/bin", "/bin"),
        link("usr/sbin", "/sbin"),
        link("usr/lib", "/lib"),
        link("usr/lib64", "/lib64"),
        Mount::Proc {
            dest: "/proc".into(),
        },
        Mount::Dev {
            dest: "/dev".into(),
        },
        Mount::Tmpfs {
            dest: "/tmp".into(),
            mode: 0o1777,
        },
        ro(sys.join("host/etc/ld.so.cache"), "/etc/ld.so.cache"),
        ro(mid.join("etc/hosts"), "/etc/hosts"),
        ro(sys.join("host/etc/ssl"), "/etc/ssl"),
        Mount::File {
            dest: "/etc/passwd".into(),
            contents: b"root:x:0:0::/root:/bin/sh\n".to_vec(),
        },
        Mount::Mqueue {
            dest: "/dev/mqueue".into(),
        },
        Mount::Tmpfs {
            dest: "/var/cache".into(),
            mode: 0o1777,
        },
        ro(sys.join("usr"), "/nodes/sys/usr"),
        rw(sys.join("var"), "/nodes/sys/var"),
        ro(mid.join("usr"), "/nodes/mid/usr"),
        rw(mid.join("var"), "/nodes/mid/var"),
        ro(leaf_dir.join("usr"), "/nodes/leaf/usr"),
        rw(leaf_dir.join("var"), "/nodes/leaf/var"),
        link("/nodes/leaf/usr", "/nodes/leaf/current"),
        rw(leaf_dir.join("var/local"), "/nodes/leaf/var/local"),
    ];
    for (i, (got, want)) in spec.mounts.iter().zip(&expected_mounts).enumerate() {
        assert_eq!(got, want, "mount {i}");
    }
    assert_eq!(spec.mounts.len(), expected_mounts.len());

    let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    };
    assert_eq!(
        spec.env,
        env(&[
            (
                "PATH",
                "/nodes/leaf/usr/bin:/nodes/mid/usr/bin:/usr/local/bin:/usr/bin:/bin"
            ),
            ("LD_LIBRARY_PATH", "/nodes/mid/usr/lib"),
            ("HOME", "/tmp"),
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm-256color"),
            ("PLATFORM", "mid-n-mid"),
            ("APP", "leaf"),
            ("PS1", "$ "),
            ("EXTRA", "1"),
        ])
    );
    assert_eq!(spec.argv, launch.argv);
    assert_eq!(spec.namespaces, Namespaces::default());
    assert_eq!(
        spec.user,
        UserIds {
            uid: 1000,
            gid: 1000
        }
    );
    assert_eq!(spec.hostname.as_deref(), Some("leaf-box"));
    assert_eq!(spec.chdir, Some(PathBuf::from("/nodes/leaf/var")));
    assert_eq!(spec.umask, Some(0o027));
    assert!(spec.die_with_parent);
    assert!(spec.new_session);
    assert_eq!(spec.capabilities, vec![Capability(10)]);
    assert_eq!(spec.seccomp, SeccompPolicy::Default);
    assert_eq!(
        spec.cgroup,
        CgroupLimits {
            memory_max: Some(256 << 20),
            pids_max: Some(256),
            cpu_max: None,
            parent: None
        }
    );
}
