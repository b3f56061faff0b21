//! Runs a command in a sandbox shaped like a 3-node family (about 25 mounts), for manual
//! checks and for timing against bubblewrap:
//!
//! `sandbox-run [--net] [--cgroup] [--cpu] [--no-seccomp] [--print-bwrap] -- PROGRAM [ARGS...]`
//!
//! Without `--net` the network namespace is shared (as bwrap without --unshare-net); with it
//! a new one is created. `--cgroup` adds memory and pids limits (a per-launch cgroup),
//! `--cpu` a CPU quota.
//! `--print-bwrap` prints the equivalent bwrap command line instead of running.

use std::ffi::OsString;
use std::path::PathBuf;

use cairn_sandbox::{CgroupLimits, Mount, Namespaces, SandboxSpec, SeccompPolicy};

/// Host directories bound read-only, standing in for the nodes' exports.
const RO_DIRS: [&str; 14] = [
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/zoneinfo",
    "/usr/share/locale",
    "/usr/share/misc",
    "/usr/share/common-licenses",
    "/usr/share/perl5",
    "/usr/lib/locale",
    "/usr/include",
    "/etc/ssl",
    "/etc/alternatives",
    "/etc/apt",
    "/var/lib/dpkg",
    "/var/cache/debconf",
];

fn mounts() -> Vec<Mount> {
    let mut m = vec![
        Mount::Bind {
            source: "/usr".into(),
            dest: "/usr".into(),
            readonly: true,
        },
        Mount::Symlink {
            target: "usr/bin".into(),
            dest: "/bin".into(),
        },
        Mount::Symlink {
            target: "usr/sbin".into(),
            dest: "/sbin".into(),
        },
        Mount::Symlink {
            target: "usr/lib".into(),
            dest: "/lib".into(),
        },
        Mount::Symlink {
            target: "usr/lib64".into(),
            dest: "/lib64".into(),
        },
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
        Mount::File {
            dest: "/etc/passwd".into(),
            contents: b"root:x:0:0::/:/bin/sh\n".to_vec(),
        },
    ];
    for (i, dir) in RO_DIRS.iter().enumerate() {
        m.push(Mount::Bind {
            source: dir.into(),
            dest: PathBuf::from(format!("/nodes/n{}/{}", i % 3, dir.trim_start_matches('/'))),
            readonly: true,
        });
    }
    m.push(Mount::Dir {
        dest: "/nodes/n2/var".into(),
        mode: 0o755,
    });
    m.push(Mount::Tmpfs {
        dest: "/var/tmp".into(),
        mode: 0o1777,
    });
    m
}

fn bwrap_args(net: bool, argv: &[OsString]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if net {
        a.push("--unshare-net".into());
    }
    a.extend(
        [
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--cap-drop",
            "ALL",
        ]
        .map(String::from),
    );
    for m in mounts() {
        match m {
            Mount::Bind { source, dest, .. } => a.extend([
                "--ro-bind".into(),
                source.display().to_string(),
                dest.display().to_string(),
            ]),
            Mount::Symlink { target, dest } => a.extend([
                "--symlink".into(),
                target.display().to_string(),
                dest.display().to_string(),
            ]),
            Mount::Proc { dest } => a.extend(["--proc".into(), dest.display().to_string()]),
            Mount::Dev { dest } => a.extend(["--dev".into(), dest.display().to_string()]),
            Mount::Tmpfs { dest, .. } => a.extend(["--tmpfs".into(), dest.display().to_string()]),
            Mount::File { dest, .. } => a.extend([
                "--ro-bind-data".into(),
                "3".into(),
                dest.display().to_string(),
            ]),
            Mount::Dir { dest, .. } => a.extend(["--dir".into(), dest.display().to_string()]),
            Mount::Mqueue { dest } => a.extend(["--mqueue".into(), dest.display().to_string()]),
            // This example never builds one; bwrap's --overlay would be the equivalent.
            Mount::Overlay { dest, .. } => {
                a.extend(["--tmp-overlay".into(), dest.display().to_string()])
            }
        }
    }
    a.extend(["--remount-ro".into(), "/".into()]);
    a.extend(argv.iter().map(|s| s.to_string_lossy().into_owned()));
    a
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut net = false;
    let mut seccomp = SeccompPolicy::Default;
    let mut print_bwrap = false;
    let mut cgroup = CgroupLimits::default();
    while let Some(first) = args.first().and_then(|a| a.to_str()).map(String::from) {
        args.remove(0);
        match first.as_str() {
            "--net" => net = true,
            "--no-seccomp" => seccomp = SeccompPolicy::Unconfined,
            "--print-bwrap" => print_bwrap = true,
            "--cgroup" => {
                cgroup.memory_max = Some(64 << 20);
                cgroup.pids_max = Some(128);
            }
            "--cpu" => cgroup.cpu_max = Some((50_000, 100_000)),
            "--" => break,
            other => {
                eprintln!("sandbox-run: unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    if args.is_empty() {
        args.push("/bin/true".into());
    }
    if print_bwrap {
        println!("{}", bwrap_args(net, &args).join(" "));
        return;
    }
    let spec = SandboxSpec {
        argv: args,
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        namespaces: Namespaces {
            net,
            time: false,
            ..Namespaces::default()
        },
        hostname: Some("sandbox".into()),
        mounts: mounts(),
        die_with_parent: true,
        new_session: true,
        seccomp,
        cgroup,
        ..Default::default()
    };
    match cairn_sandbox::run(&spec) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
