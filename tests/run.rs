//! End-to-end tests of `cairn run`: a real `cairn` binary launching real sandboxes built from node
//! families, probed from inside. They run as root and again as an unprivileged user
//! (scripts/test), so nothing here may assume either.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod support;

use predicates::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::World;

/// Runs `sh -c SCRIPT` in the family of `leaf` and returns the assert handle.
fn sh(world: &World, leaf: &std::path::Path, script: &str) -> assert_cmd::assert::Assert {
    world
        .cairn()
        .args(["run", "--node"])
        .arg(leaf)
        .args(["--", "/bin/sh", "-c", script])
        .assert()
}

fn stdout_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn argv_reaches_the_program_exactly() {
    let w = World::new();
    let leaf = w.family();
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args([
            "--",
            "/bin/sh",
            "-c",
            r#"for a; do printf '[%s]' "$a"; done"#,
            "sh",
        ])
        .args(["a b", "", "%x", "@y", "--flag", "--", "-v", "$HOME", "*"])
        .assert()
        .success()
        .stdout("[a b][][%x][@y][--flag][--][-v][$HOME][*]");
}

#[test]
fn program_without_double_dash_and_path_lookup() {
    let w = World::new();
    let leaf = w.family();
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["echo", "-n", "hi"])
        .assert()
        .success()
        .stdout("hi");
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "no-such-program-xyz"])
        .assert()
        .code(127)
        .stderr(predicate::str::contains("no-such-program-xyz"));
}

#[test]
fn exit_status_passes_through() {
    let w = World::new();
    let leaf = w.family();
    sh(&w, &leaf, "exit 42").code(42);
    sh(&w, &leaf, "exit 0").code(0);
    // Death by signal N is reported as 128+N.
    sh(&w, &leaf, "kill -TERM $$").code(143);
    sh(&w, &leaf, "kill -KILL $$").code(137);
}

#[test]
fn stdio_is_passed_through_as_separate_streams() {
    let w = World::new();
    let leaf = w.family();
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "/bin/sh", "-c", "tr a-z A-Z; echo to-err >&2"])
        .write_stdin("piped through\n")
        .assert()
        .success()
        .stdout("PIPED THROUGH\n")
        .stderr("to-err\n");
}

#[test]
fn environment_starts_empty_and_takes_overrides() {
    let w = World::new();
    let leaf = w.family();
    let out = w
        .cairn()
        .env("CAIRN_TEST_LEAK", "host-value")
        .args(["run", "--env", "EXTRA=x y", "--node"])
        .arg(&leaf)
        .args(["--", "/usr/bin/env"])
        .assert()
        .success();
    let env = stdout_of(&out);
    assert!(
        !env.contains("CAIRN_TEST_LEAK"),
        "host environment leaked: {env}"
    );
    assert!(env.contains("EXTRA=x y\n"), "{env}");
    assert!(
        env.lines().any(|l| l.starts_with("PATH=")),
        "no PATH: {env}"
    );
}

#[test]
fn hostname_pid_and_network_namespaces() {
    let w = World::new();
    let leaf = w.family();
    sh(&w, &leaf, "cat /proc/sys/kernel/hostname")
        .success()
        .stdout("app\n");
    // The program is pid 2: pid 1 is Cairn's reaper, and nothing of the host is visible.
    let out = sh(&w, &leaf, "echo $$; ls /proc | grep -c '^[0-9]'").success();
    let text = stdout_of(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("2"), "{text}");
    let count: u32 = lines.next().unwrap_or("0").parse().unwrap();
    assert!(count <= 4, "host processes visible: {count}");
    // New network namespace: loopback only, and it is up.
    let out = sh(
        &w,
        &leaf,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    )
    .success();
    assert_eq!(stdout_of(&out), "lo\n");
    sh(
        &w,
        &leaf,
        "cat /sys/class/net/lo/operstate 2>/dev/null || echo unknown",
    )
    .success()
    .stdout(predicate::str::contains("unknown").or(predicate::str::contains("up")));
}

#[test]
fn host_paths_not_exported_are_invisible() {
    let w = World::new();
    let leaf = w.family();
    let secret = w.path("host-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let script = format!("test -e '{}' && echo visible; ls /", secret.display());
    let out = sh(&w, &leaf, &script).success();
    let text = stdout_of(&out);
    assert!(!text.contains("visible"), "{text}");
    for hidden in ["root", "home", "srv", "boot", "work"] {
        assert!(
            !text.lines().any(|l| l == hidden),
            "/{hidden} visible: {text}"
        );
    }
    sh(&w, &leaf, "cat /etc/shadow").failure();
}

#[test]
fn restricted_exports_are_read_only_and_public_writable() {
    let w = World::new();
    let leaf = w.family();
    sh(&w, &leaf, "touch /usr/cairn-probe")
        .failure()
        .stderr(predicate::str::contains("Read-only"));
    sh(&w, &leaf, "touch /nodes/app/usr/probe").failure();
    sh(
        &w,
        &leaf,
        "echo data > /nodes/app/var/probe && cat /nodes/app/var/probe",
    )
    .success()
    .stdout("data\n");
    // The public export is the node's own directory on the host.
    assert_eq!(
        std::fs::read_to_string(leaf.join("var/probe")).unwrap(),
        "data\n"
    );
    // The root itself is read-only: only explicit writable exports can be written.
    sh(&w, &leaf, "mkdir /newdir").failure();
}

#[test]
fn private_exports_only_for_the_leaf_and_anonymous_ones_are_fresh() {
    let w = World::new();
    w.node("nodes/sys", "sys", "system");
    let mid = w.node("nodes/sys/mid", "mid", "leaf");
    std::fs::create_dir_all(mid.join("secret")).unwrap();
    std::fs::write(mid.join("secret/key"), "k").unwrap();
    support::rewrite_node(
        &mid,
        "exports:\n  - { mode: private, mount: /nodes/mid/secret, path: $NODE_PATH/secret }\n  - { mode: anonymous, mount: /scratch }\n",
    );
    let leaf = w.node("nodes/sys/mid/leaf", "leaf", "leaf");
    sh(&w, &mid, "cat /nodes/mid/secret/key")
        .success()
        .stdout("k");
    sh(
        &w,
        &leaf,
        "test -e /nodes/mid/secret/key && echo visible || echo hidden",
    )
    .success()
    .stdout("hidden\n");
    sh(
        &w,
        &leaf,
        "test -d /scratch && touch /scratch/f && ls /scratch",
    )
    .success()
    .stdout("f\n");
    sh(&w, &leaf, "ls -A /scratch").success().stdout("");
}

#[test]
fn seccomp_capabilities_and_no_new_privs() {
    let w = World::new();
    let leaf = w.family();
    let out = sh(
        &w,
        &leaf,
        "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
    )
    .success();
    let status = stdout_of(&out);
    for (key, want) in [
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("");
        assert!(line.ends_with(want), "{key}: {line} (all: {status})");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn dangerous_syscalls_and_ioctls_fail() {
    let w = World::new();
    let leaf = w.family();
    // Each probe prints the errno it got; EPERM (1) means the filter stopped it. TIOCSTI on a
    // pipe would give ENOTTY (25) without the filter, unshare(CLONE_NEWUSER) would succeed.
    let probes = [
        (
            "tiocsti",
            r#"my $c="x"; ioctl(STDIN, 0x5412, $c) ? print "ok" : print $!+0"#,
        ),
        (
            "tioclinux",
            r#"my $c="x"; ioctl(STDIN, 0x541C, $c) ? print "ok" : print $!+0"#,
        ),
        (
            "ptrace",
            r#"syscall(101, 0, 0, 0, 0) == -1 ? print $!+0 : print "ok""#,
        ),
        (
            "keyctl",
            r#"syscall(250, 0, 0, 0, 0, 0) == -1 ? print $!+0 : print "ok""#,
        ),
        (
            "bpf",
            r#"syscall(321, 0, 0, 0) == -1 ? print $!+0 : print "ok""#,
        ),
        (
            "mount",
            r#"my ($s, $t, $f) = ("none", "/tmp", "tmpfs"); syscall(165, $s, $t, $f, 0, 0) == -1 ? print $!+0 : print "ok""#,
        ),
        (
            "unshare-user",
            r#"syscall(272, 0x10000000) == -1 ? print $!+0 : print "ok""#,
        ),
    ];
    for (name, code) in probes {
        w.cairn()
            .args(["run", "--node"])
            .arg(&leaf)
            .args(["--", "/usr/bin/perl", "-e", code])
            .write_stdin("")
            .assert()
            .success()
            .stdout(predicate::eq("1").name(name));
    }
}

#[test]
fn cgroup_limits_stop_fork_bombs_and_memory_hogs() {
    let w = World::new();
    w.node("nodes/sys", "sys", "system");
    let leaf = w.node("nodes/sys/app", "app", "leaf");
    support::rewrite_node(
        &leaf,
        "config:\n  cgroup: { memory_max: 48M, pids_max: 24 }\n",
    );
    // Fork bomb: 100 forks asked for; the cgroup's pids.max stops them (perl survives a failed
    // fork, unlike dash, so it can count).
    let out = w
        .cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "/usr/bin/perl", "-e"])
        .arg(r#"my $n = 0; for (1..100) { my $p = fork(); last unless defined $p; if ($p == 0) { sleep 5; exit 0 } $n++ } print $n"#)
        .assert()
        .success();
    let forked: u32 = stdout_of(&out).trim().parse().unwrap();
    assert!(
        (1..24).contains(&forked),
        "{forked} forks succeeded under pids_max 24"
    );
    // `--pids` narrows the family's limit, and asking for more does not widen it.
    let bomb = r#"my $n = 0; for (1..100) { my $p = fork(); last unless defined $p; if ($p == 0) { sleep 5; exit 0 } $n++ } print $n"#;
    for (asked, below) in [("8", 8), ("1000", 24)] {
        let out = w
            .cairn()
            .args(["run", "--pids", asked, "--node"])
            .arg(&leaf)
            .args(["--", "/usr/bin/perl", "-e", bomb])
            .assert()
            .success();
        let forked: u32 = stdout_of(&out).trim().parse().unwrap();
        assert!(
            (1..below).contains(&forked),
            "{forked} forks succeeded with --pids {asked} under pids_max 24"
        );
    }
    // Memory hog: killed by the OOM killer inside its cgroup (SIGKILL = 137), host unharmed.
    w.cairn()
        .args(["run", "--node"])
        .arg(&leaf)
        .args([
            "--",
            "/usr/bin/perl",
            "-e",
            r#"my $x = "a" x (256*1024*1024); print "survived""#,
        ])
        .assert()
        .code(137)
        .stdout("");
}

/// True when some host process has `marker` in its command line.
fn process_with_marker(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

fn wait_until_gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !process_with_marker(marker) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn nothing_outlives_the_run() {
    let w = World::new();
    let leaf = w.family();
    // A background child left behind by the program dies with the sandbox.
    sh(&w, &leaf, "sleep 987.25 & echo started")
        .success()
        .stdout("started\n");
    assert!(
        wait_until_gone("987.25"),
        "a sandboxed process outlived cairn run"
    );

    // Killing cairn itself (SIGKILL: no chance to clean up) still takes the sandbox down.
    let mut child = w
        .cairn_std()
        .args(["run", "--node"])
        .arg(&leaf)
        .args(["--", "/bin/sh", "-c", "echo ready; exec sleep 986.5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until_gone("986.5"),
        "the sandbox outlived a killed cairn"
    );
}

#[test]
fn signals_are_forwarded_to_the_program() {
    let w = World::new();
    let leaf = w.family();
    let mut child = w
        .cairn_std()
        .args(["run", "--node"])
        .arg(&leaf)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; sleep 30 & wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn chdir_option_and_missing_chdir() {
    let w = World::new();
    let leaf = w.family();
    w.cairn()
        .args(["run", "--chdir", "/nodes/app/var", "--node"])
        .arg(&leaf)
        .args(["--", "pwd"])
        .assert()
        .success()
        .stdout("/nodes/app/var\n");
    w.cairn()
        .args(["run", "--chdir", "/does/not/exist", "--node"])
        .arg(&leaf)
        .args(["--", "pwd"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/does/not/exist"));
}

#[test]
fn leaf_template_keeps_private_data_from_descendants() {
    let w = World::new();
    w.node("nodes/sys", "sys", "system");
    let mid = w.node("nodes/sys/mid", "mid", "leaf");
    let child = w.node("nodes/sys/mid/child", "child", "leaf");
    std::fs::write(mid.join("local/token"), "t").unwrap();
    sh(&w, &mid, "cat /nodes/mid/local/token")
        .success()
        .stdout("t");
    let out = sh(
        &w,
        &child,
        "ls -R /nodes/mid; cat /nodes/mid/local/token 2>/dev/null || echo absent",
    )
    .success();
    let text = stdout_of(&out);
    assert!(text.ends_with("absent\n"), "private data readable: {text}");
    assert!(
        !text.lines().any(|l| l == "token"),
        "private data listed: {text}"
    );
}

#[test]
fn real_root_without_user_namespace_cannot_write_kernel_interfaces() {
    if !support::is_root() {
        support::skip("sharing the host's user namespace needs root");
        return;
    }
    let w = World::new();
    let sys = w.node("nodes/sys", "sys", "system");
    let yaml = sys.join("etc/cairn/node.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let shared = text.replacen("config:\n", "config:\n  share: { user: true }\n", 1);
    assert_ne!(text, shared, "the system template has no config section");
    std::fs::write(&yaml, shared).unwrap();
    let leaf = w.node("nodes/sys/app", "app", "leaf");
    // The program is the real uid 0 (capabilities dropped), the owner of every sysctl file.
    // Writing the hostname (of its own UTS namespace) back would be harmless, and it must
    // still be refused: the kernel interfaces of /proc are read-only.
    sh(
        &w,
        &leaf,
        "id -u; (cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname) 2>/dev/null && echo wrote; exit 0",
    )
    .success()
    .stdout("0\n");
    // Opening for writing and writing nothing triggers nothing, even if it were allowed.
    sh(
        &w,
        &leaf,
        "if [ -e /proc/sysrq-trigger ]; then (: > /proc/sysrq-trigger) 2>/dev/null && echo wrote; fi; exit 0",
    )
    .success()
    .stdout("");
}

#[test]
fn demo_builds_a_family_and_runs_in_it() {
    let w = World::new();
    let out = w.cairn().arg("demo").assert().success();
    let text = stdout_of(&out);
    assert!(
        text.starts_with(
            "hello from hello, inside a sandbox built from the nodes: demo-system hello platform"
        ),
        "{text}"
    );
    assert!(text.contains("network interfaces: lo \n"), "{text}");
    // A second run reuses the family, and a program can be given.
    w.cairn()
        .args(["demo", "--", "cat", "/proc/sys/kernel/hostname"])
        .assert()
        .success()
        .stdout("hello\n");
}
