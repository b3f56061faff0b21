//! Real-sandbox tests (no mocks): each case launches this same binary inside a sandbox as a
//! probe (`<binary> probe <what> ...`) and checks what it reports or how it exits.
//!
//! `harness = false`: the cases run one after another on the main thread, because the runtime
//! forks and forking a multi-threaded test harness is unsound. Run as root, the suite then
//! re-runs itself as the unprivileged user `cairntest` (created if missing) with a delegated
//! cgroup, so both the root and the rootless paths are exercised. Prints "N passed, M failed"
//! and exits non-zero on failure; cases that cannot run say "skipped: <reason>".

#![allow(clippy::unwrap_used)] // a test binary: a failed unwrap is a failed case

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::os::fd::FromRawFd;

use cairn_sandbox::{
    Capability, CgroupLimits, Kept, Mount, Namespaces, SandboxSpec, SeccompPolicy, UserIds,
};

const TEST_USER: &str = "cairntest";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        probe::main(&args[2..]);
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let ctx = Context::new();
    let mut results = Results::default();
    for (name, case) in cases() {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        results.run(name, || case(&ctx));
    }
    let mut failed = results.failed;
    println!(
        "{} ({}): {} passed, {} failed, {} skipped",
        if ctx.root { "root" } else { "rootless" },
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        results.passed,
        results.failed,
        results.skipped
    );
    if ctx.root && std::env::var_os("CAIRN_SANDBOX_NO_ROOTLESS").is_none() && filter.is_none() {
        failed += rootless_rerun(&ctx);
    }
    let _ = fs::remove_dir_all(&ctx.probe_dir);
    std::process::exit(i32::from(failed > 0));
}

type Case = fn(&Context) -> Outcome;

enum Outcome {
    Pass,
    Skip(String),
}

use Outcome::{Pass, Skip};

fn cases() -> Vec<(&'static str, Case)> {
    vec![
        ("argv_exact", argv_exact),
        ("exit_status", exit_status),
        ("signal_status", signal_status),
        ("env_exact", env_exact),
        ("host_paths_invisible", host_paths_invisible),
        ("readonly_binds", readonly_binds),
        (
            "bind_sources_below_tmp_and_symlinks",
            bind_sources_below_tmp_and_symlinks,
        ),
        (
            "tmpfs_fresh_and_root_readonly",
            tmpfs_fresh_and_root_readonly,
        ),
        ("files_and_dirs", files_and_dirs),
        ("hostname", hostname),
        ("net_only_lo_up", net_only_lo_up),
        ("pid1_reaper_and_ps", pid1_reaper_and_ps),
        ("tiocsti_denied", tiocsti_denied),
        ("default_seccomp_denies", default_seccomp_denies),
        ("seccomp_profile", seccomp_profile),
        ("capabilities_empty_and_nnp", capabilities_empty_and_nnp),
        ("capabilities_kept", capabilities_kept),
        ("user_ids", user_ids),
        ("time_namespace", time_namespace),
        ("chdir_and_umask", chdir_and_umask),
        ("command_not_found", command_not_found),
        ("missing_bind_source", missing_bind_source),
        ("setup_error_reported", setup_error_reported),
        ("signal_forwarding", signal_forwarding),
        ("nothing_left_running", nothing_left_running),
        ("dev_minimal", dev_minimal),
        (
            "mqueue_and_file_over_host_bind",
            mqueue_and_file_over_host_bind,
        ),
        ("stdin_passes", stdin_passes),
        ("overlay_root", overlay_root),
        ("only_std_fds_inherited", only_std_fds_inherited),
        ("fork_bomb_contained", fork_bomb_contained),
        ("memory_hog_killed", memory_hog_killed),
        (
            "cgroup_unavailable_is_clear_error",
            cgroup_unavailable_is_clear_error,
        ),
        ("kept_sandbox_entered", kept_sandbox_entered),
        ("kept_sandbox_privileges", kept_sandbox_privileges),
    ]
}

// ---------------------------------------------------------------- harness

#[derive(Default)]
struct Results {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Results {
    fn run(&mut self, name: &str, f: impl FnOnce() -> Outcome + std::panic::UnwindSafe) {
        let start = Instant::now();
        match std::panic::catch_unwind(f) {
            Ok(Pass) => {
                self.passed += 1;
                println!("ok      {name} ({} ms)", start.elapsed().as_millis());
            }
            Ok(Skip(reason)) => {
                self.skipped += 1;
                println!("skipped: {name}: {reason}");
            }
            Err(_) => {
                self.failed += 1;
                println!("FAILED  {name}");
            }
        }
    }
}

struct Context {
    root: bool,
    /// Directory holding a world-readable copy of this binary, bound at /probe.
    probe_dir: PathBuf,
    /// Delegated cgroup parent for rootless runs (relative to each v1 controller mount).
    cgroup_parent: Option<PathBuf>,
}

impl Context {
    fn new() -> Context {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let exe = std::env::current_exe().unwrap();
        let probe_dir = PathBuf::from(format!("/tmp/cairn-probe-{}", std::process::id()));
        fs::create_dir_all(&probe_dir).unwrap();
        fs::set_permissions(&probe_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let copy = probe_dir.join("probe");
        if exe != copy {
            fs::copy(&exe, &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cgroup_parent = std::env::var_os("CAIRN_TEST_CGROUP_PARENT").map(PathBuf::from);
        Context {
            root,
            probe_dir,
            cgroup_parent,
        }
    }

    /// A sandbox with the host's /usr, the probe, /proc, /dev and /tmp; everything unshared.
    fn spec(&self, probe_args: &[&str]) -> SandboxSpec {
        let mut argv: Vec<OsString> = vec!["/probe/probe".into(), "probe".into()];
        argv.extend(probe_args.iter().map(OsString::from));
        SandboxSpec {
            argv,
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            namespaces: Namespaces::default(),
            user: UserIds::default(),
            hostname: Some("cairn-test".into()),
            mounts: vec![
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
                    target: "usr/lib".into(),
                    dest: "/lib".into(),
                },
                Mount::Symlink {
                    target: "usr/lib64".into(),
                    dest: "/lib64".into(),
                },
                Mount::Bind {
                    source: self.probe_dir.clone(),
                    dest: "/probe".into(),
                    readonly: true,
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
            ],
            chdir: None,
            umask: None,
            die_with_parent: true,
            new_session: true,
            capabilities: Vec::new(),
            seccomp: SeccompPolicy::Default,
            cgroup: CgroupLimits {
                parent: self.cgroup_parent.clone(),
                ..Default::default()
            },
        }
    }
}

/// Runs the sandbox with stdout captured (fd 1 pointed at a temp file for the duration).
fn run_captured(spec: &SandboxSpec) -> (Result<i32, cairn_sandbox::Error>, String) {
    let mut out = tempfile::tempfile().unwrap();
    std::io::stdout().flush().unwrap();
    // SAFETY: dup/dup2 on valid descriptors; fd 1 is restored below.
    let saved = unsafe { libc::dup(1) };
    // SAFETY: as above.
    unsafe { libc::dup2(out.as_raw_fd(), 1) };
    let result = cairn_sandbox::run(spec);
    // SAFETY: restoring fd 1 from our saved copy.
    unsafe { libc::dup2(saved, 1) };
    // SAFETY: closing the saved copy, which is ours and not used again.
    unsafe { libc::close(saved) };
    let mut text = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut text).unwrap();
    (result, text)
}

/// Like `run_captured`, for a program entering a kept sandbox.
fn enter_captured(kept: &Kept, spec: &SandboxSpec) -> (Result<i32, cairn_sandbox::Error>, String) {
    let mut out = tempfile::tempfile().unwrap();
    std::io::stdout().flush().unwrap();
    // SAFETY: dup/dup2 on valid descriptors; fd 1 is restored below.
    let saved = unsafe { libc::dup(1) };
    // SAFETY: as above.
    unsafe { libc::dup2(out.as_raw_fd(), 1) };
    let result = cairn_sandbox::enter(kept, spec);
    // SAFETY: restoring fd 1 from our saved copy.
    unsafe { libc::dup2(saved, 1) };
    // SAFETY: closing the saved copy, which is ours and not used again.
    unsafe { libc::close(saved) };
    let mut text = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut text).unwrap();
    (result, text)
}

/// A kept sandbox of `spec` held by a forked keeper process (this harness is
/// single-threaded, so forking it is sound); stopped (SIGTERM to the keeper) on drop.
struct KeptSandbox {
    keeper: libc::pid_t,
    kept: Kept,
}

impl KeptSandbox {
    fn start(spec: &SandboxSpec) -> KeptSandbox {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        std::io::stdout().flush().unwrap();
        // SAFETY: the harness is single-threaded; the child only runs `keep` and exits.
        let keeper = unsafe { libc::fork() };
        if keeper == 0 {
            // SAFETY: the child's copy of the read end.
            unsafe { libc::close(fds[0]) };
            let mut ready = |k: &Kept| {
                let line = format!("{} {}\n", k.pid, k.start_time);
                // SAFETY: writing our buffer to the pipe's write end.
                unsafe { libc::write(fds[1], line.as_ptr().cast(), line.len()) };
                // SAFETY: closing the write end: EOF for the parent.
                unsafe { libc::close(fds[1]) };
            };
            let code = match cairn_sandbox::keep(spec, &mut ready) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("keep: {e}");
                    70
                }
            };
            // SAFETY: leaving the forked child without running the harness's cleanup.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: the parent's copy of the write end.
        unsafe { libc::close(fds[1]) };
        // SAFETY: we own the read end.
        let mut read = unsafe { fs::File::from_raw_fd(fds[0]) };
        let mut line = String::new();
        read.read_to_string(&mut line).unwrap();
        let (pid, start) = line.trim().split_once(' ').expect("keeper not ready");
        KeptSandbox {
            keeper,
            kept: Kept {
                pid: pid.parse().unwrap(),
                start_time: start.parse().unwrap(),
                cgroup: Vec::new(),
            },
        }
    }

    /// SIGTERM to the keeper (forwarded to pid 1); returns the keeper's exit status.
    fn stop(&self) -> i32 {
        // SAFETY: signalling and reaping our own child.
        unsafe { libc::kill(self.keeper, libc::SIGTERM) };
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(self.keeper, &mut status, 0) };
        libc::WEXITSTATUS(status)
    }
}

fn run_ok(spec: &SandboxSpec) -> (i32, String) {
    let (result, out) = run_captured(spec);
    match result {
        Ok(code) => (code, out),
        Err(e) => panic!("run failed: {e}"),
    }
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

// ---------------------------------------------------------------- cases

fn argv_exact(ctx: &Context) -> Outcome {
    let args = ["a b", "", "%x", "@y", "--", "-n", "ünï"];
    let mut probe = vec!["argv"];
    probe.extend(args);
    let (code, out) = run_ok(&ctx.spec(&probe));
    assert_eq!(code, 0);
    let expected: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(lines(&out), expected);
    Pass
}

fn exit_status(ctx: &Context) -> Outcome {
    assert_eq!(run_ok(&ctx.spec(&["exit", "42"])).0, 42);
    assert_eq!(run_ok(&ctx.spec(&["exit", "0"])).0, 0);
    Pass
}

fn signal_status(ctx: &Context) -> Outcome {
    assert_eq!(run_ok(&ctx.spec(&["raise", "9"])).0, 137);
    assert_eq!(run_ok(&ctx.spec(&["raise", "15"])).0, 143);
    let mut no_pidns = ctx.spec(&["raise", "9"]);
    no_pidns.namespaces.pid = false;
    no_pidns.namespaces.time = false;
    no_pidns.mounts.retain(|m| !matches!(m, Mount::Proc { .. }));
    assert_eq!(run_ok(&no_pidns).0, 137);
    // A time namespace without a pid namespace still needs a fork (it applies to children):
    // the plain reaper in between must pass the status through.
    no_pidns.namespaces.time = true;
    assert_eq!(run_ok(&no_pidns).0, 137);
    no_pidns.argv = vec![
        "/probe/probe".into(),
        "probe".into(),
        "exit".into(),
        "42".into(),
    ];
    assert_eq!(run_ok(&no_pidns).0, 42);
    Pass
}

fn env_exact(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["env"]);
    spec.env = vec![
        ("PATH".into(), "/usr/bin".into()),
        ("SPACED".into(), "a b  c".into()),
        ("EMPTY".into(), "".into()),
        ("EQ".into(), "x=y".into()),
    ];
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0);
    assert_eq!(
        lines(&out),
        ["EMPTY=", "EQ=x=y", "PATH=/usr/bin", "SPACED=a b  c"]
    );
    Pass
}

fn host_paths_invisible(ctx: &Context) -> Outcome {
    let secret = tempfile::tempdir().unwrap();
    fs::write(secret.path().join("secret"), "s").unwrap();
    let secret_path = secret.path().join("secret");
    let paths = [
        secret_path.to_str().unwrap(),
        "/etc/hostname",
        "/root",
        "/home",
        "/work",
        "/var",
    ];
    let mut probe = vec!["exists"];
    probe.extend(paths);
    let (code, out) = run_ok(&ctx.spec(&probe));
    assert_eq!(code, 0);
    for p in paths {
        assert_eq!(value(&out, p), "no", "{p} visible: {out}");
    }
    // The control: an exported path is visible.
    let (_, out) = run_ok(&ctx.spec(&["exists", "/usr/bin", "/probe/probe"]));
    assert_eq!(value(&out, "/usr/bin"), "yes");
    assert_eq!(value(&out, "/probe/probe"), "yes");
    Pass
}

/// Sets an xattr on a host directory (the opaque marker overlayfs reads).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// An overlay of two layers as the root: the top layer wins, an opaque directory hides the
/// base's content, writes land in the upper directory and the layers stay untouched. As root
/// it also runs without a user namespace with trusted xattrs (how a root image store works).
fn overlay_root(ctx: &Context) -> Outcome {
    let variants: &[(bool, &str)] = if ctx.root {
        &[
            (true, "user.overlay.opaque"),
            (false, "trusted.overlay.opaque"),
        ]
    } else {
        &[(true, "user.overlay.opaque")]
    };
    for &(userns, xattr) in variants {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        for sub in ["base/etc", "base/data", "top/etc", "top/data"] {
            fs::create_dir_all(d(sub)).unwrap();
        }
        fs::write(d("base/etc/motd"), "base").unwrap();
        fs::write(d("base/etc/base-only"), "kept").unwrap();
        fs::write(d("base/data/old"), "old").unwrap();
        fs::write(d("top/etc/motd"), "top").unwrap();
        set_xattr(&d("top/data"), xattr, b"y");
        // Each launch gets its own upper directory, as each app instance does.
        let launch = |n: usize, probe: &[&str]| {
            let (upper, work) = (d(&format!("upper{n}")), d(&format!("work{n}")));
            fs::create_dir(&upper).unwrap();
            fs::create_dir(&work).unwrap();
            let mut spec = ctx.spec(probe);
            spec.namespaces.user = userns;
            spec.mounts.insert(
                0,
                Mount::Overlay {
                    lower: vec![d("top"), d("base")],
                    upper,
                    work,
                    dest: "/".into(),
                    userxattr: userns,
                },
            );
            run_ok(&spec)
        };
        let (code, out) = launch(0, &["cat", "/etc/motd", "/etc/base-only"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(value(&out, "/etc/motd"), "top", "{xattr}");
        assert_eq!(value(&out, "/etc/base-only"), "kept");
        let (_, out) = launch(1, &["exists", "/data/old"]);
        assert_eq!(
            value(&out, "/data/old"),
            "no",
            "opaque dir ignored with {xattr}"
        );
        let (_, out) = launch(2, &["write", "/newfile"]);
        assert_eq!(value(&out, "/newfile"), "ok");
        assert_eq!(fs::read_to_string(d("upper2/newfile")).unwrap(), "written");
        assert!(!d("top/newfile").exists() && !d("base/newfile").exists());
    }
    Pass
}

fn world_writable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn readonly_binds(ctx: &Context) -> Outcome {
    let host = world_writable_tempdir();
    let mut spec = ctx.spec(&["write", "/ro/f", "/rw/f", "/usr/cairn-test"]);
    spec.mounts.push(Mount::Bind {
        source: host.path().into(),
        dest: "/ro".into(),
        readonly: true,
    });
    spec.mounts.push(Mount::Bind {
        source: host.path().into(),
        dest: "/rw".into(),
        readonly: false,
    });
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0);
    assert_eq!(value(&out, "/ro/f"), "EROFS");
    assert_eq!(value(&out, "/usr/cairn-test"), "EROFS");
    assert_eq!(value(&out, "/rw/f"), "ok");
    assert_eq!(
        fs::read_to_string(host.path().join("f")).unwrap(),
        "written"
    );
    Pass
}

fn bind_sources_below_tmp_and_symlinks(ctx: &Context) -> Outcome {
    // The root tmpfs covers /tmp inside the sandbox: sources there must still be the host's.
    let host = world_writable_tempdir();
    fs::create_dir(host.path().join("real")).unwrap();
    fs::write(host.path().join("real/data"), "host data").unwrap();
    std::os::unix::fs::symlink(host.path().join("real"), host.path().join("link")).unwrap();
    let mut spec = ctx.spec(&["cat", "/a/data", "/b/data"]);
    spec.mounts.push(Mount::Bind {
        source: host.path().join("real"),
        dest: "/a".into(),
        readonly: true,
    });
    spec.mounts.push(Mount::Bind {
        source: host.path().join("link"),
        dest: "/b".into(),
        readonly: true,
    });
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(value(&out, "/a/data"), "host data");
    assert_eq!(value(&out, "/b/data"), "host data");
    Pass
}

fn tmpfs_fresh_and_root_readonly(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["write", "/tmp/mark", "/newfile", "/etc-new/x"]));
    assert_eq!(code, 0);
    assert_eq!(value(&out, "/tmp/mark"), "ok");
    assert_eq!(value(&out, "/newfile"), "EROFS");
    let (_, out) = run_ok(&ctx.spec(&["exists", "/tmp/mark"]));
    assert_eq!(
        value(&out, "/tmp/mark"),
        "no",
        "tmpfs kept data across launches"
    );
    Pass
}

fn files_and_dirs(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["cat", "/etc/passwd", "/tmp/inside/f", "/lnk/passwd"]);
    spec.mounts.push(Mount::File {
        dest: "/etc/passwd".into(),
        contents: b"root:x:0:0".to_vec(),
    });
    spec.mounts.push(Mount::Dir {
        dest: "/tmp/inside".into(),
        mode: 0o700,
    });
    spec.mounts.push(Mount::File {
        dest: "/tmp/inside/f".into(),
        contents: b"staged".to_vec(),
    });
    spec.mounts.push(Mount::Symlink {
        target: "/etc".into(),
        dest: "/lnk".into(),
    });
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(value(&out, "/etc/passwd"), "root:x:0:0");
    assert_eq!(value(&out, "/tmp/inside/f"), "staged");
    assert_eq!(value(&out, "/lnk/passwd"), "root:x:0:0");
    // Files are read-only, on the root tmpfs and on a writable tmpfs alike.
    spec.argv = vec![
        "/probe/probe".into(),
        "probe".into(),
        "write".into(),
        "/etc/passwd".into(),
        "/tmp/inside/f".into(),
        "/tmp/inside/other".into(),
    ];
    let (_, out) = run_ok(&spec);
    assert_eq!(value(&out, "/etc/passwd"), "EROFS");
    assert_eq!(value(&out, "/tmp/inside/f"), "EROFS");
    assert_eq!(value(&out, "/tmp/inside/other"), "ok");
    Pass
}

fn hostname(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["hostname"]));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "cairn-test");
    Pass
}

fn net_only_lo_up(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["ifaces"]));
    assert_eq!(code, 0);
    assert_eq!(lines(&out), ["lo up"]);
    // Control: sharing the host network shows the host's interfaces.
    let mut shared = ctx.spec(&["ifaces"]);
    shared.namespaces.net = false;
    let (_, out) = run_ok(&shared);
    assert!(
        lines(&out).len() > 1 || !out.contains("lo up"),
        "host has only lo? {out}"
    );
    Pass
}

fn pid1_reaper_and_ps(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["ps"]));
    assert_eq!(code, 0);
    assert_eq!(value(&out, "self"), "2");
    assert_eq!(value(&out, "parent"), "1");
    assert_eq!(value(&out, "pids"), "1 2");
    Pass
}

fn tiocsti_denied(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["tiocsti"]));
    assert_eq!(code, 0);
    assert_eq!(value(&out, "TIOCSTI"), "EPERM");
    assert_eq!(value(&out, "TIOCLINUX"), "EPERM");
    // Control: without the filter, TIOCSTI on our own controlling pty works (when the host
    // allows legacy TIOCSTI at all).
    let legacy = fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").unwrap_or_default();
    let mut open = ctx.spec(&["tiocsti"]);
    open.seccomp = SeccompPolicy::Unconfined;
    let (_, out) = run_ok(&open);
    if legacy.trim() == "1" {
        assert_eq!(value(&out, "TIOCSTI"), "ok");
    } else {
        return Skip(format!("control part: legacy_tiocsti is {legacy:?}"));
    }
    Pass
}

/// Kept caps make the control meaningful: without the filter these calls would succeed.
fn syscall_spec(ctx: &Context, seccomp: SeccompPolicy) -> SandboxSpec {
    let mut spec = ctx.spec(&["syscalls"]);
    spec.capabilities = vec![Capability(21), Capability(19)]; // CAP_SYS_ADMIN, CAP_SYS_PTRACE
    spec.seccomp = seccomp;
    spec
}

fn default_seccomp_denies(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&syscall_spec(ctx, SeccompPolicy::Default));
    assert_eq!(code, 0, "status {code}, output {out:?}");
    for name in [
        "ptrace",
        "keyctl",
        "bpf",
        "mount",
        "unshare_user",
        "clone_user",
        "personality",
        "add_key",
        "setns",
    ] {
        assert_eq!(value(&out, name), "EPERM", "{name}: {out}");
    }
    assert_eq!(value(&out, "clone3"), "ENOSYS");
    assert_eq!(value(&out, "personality_query"), "ok");
    assert_eq!(value(&out, "unshare_uts"), "ok");
    let (_, open) = run_ok(&syscall_spec(ctx, SeccompPolicy::Unconfined));
    for name in ["ptrace", "mount", "unshare_user", "clone3", "personality"] {
        assert_ne!(
            value(&open, name),
            value(&out, name),
            "{name} same without filter: {open}"
        );
    }
    Pass
}

fn seccomp_profile(ctx: &Context) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.json");
    fs::write(
        &profile,
        r#"{"default": "allow", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "errno", "errno": 13}]}"#,
    )
    .unwrap();
    let mut spec = ctx.spec(&["mkdir", "/tmp/d"]);
    spec.seccomp = SeccompPolicy::Profile(profile.clone());
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0);
    assert_eq!(value(&out, "/tmp/d"), "EACCES");
    fs::write(
        &profile,
        r#"{"default": "allow", "syscalls": [{"names": ["nosuch"], "action": "kill"}]}"#,
    )
    .unwrap();
    let err = run_captured(&spec).0.unwrap_err().to_string();
    assert!(err.contains("unknown syscall \"nosuch\""), "{err}");
    Pass
}

fn capabilities_empty_and_nnp(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["status"]));
    assert_eq!(code, 0);
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(value(&out, key), "0000000000000000", "{key}: {out}");
    }
    assert_eq!(value(&out, "NoNewPrivs"), "1");
    assert_eq!(value(&out, "Seccomp"), "2");
    Pass
}

fn capabilities_kept(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["status"]);
    spec.capabilities = vec![Capability(10)]; // CAP_NET_BIND_SERVICE
    let (_, out) = run_ok(&spec);
    assert_eq!(value(&out, "CapBnd"), "0000000000000400");
    assert_eq!(value(&out, "CapEff"), "0000000000000400");
    // A non-root program keeps none, even of the kept set.
    spec.user = UserIds {
        uid: 1000,
        gid: 1000,
    };
    let (_, out) = run_ok(&spec);
    assert_eq!(value(&out, "CapEff"), "0000000000000000");
    assert_eq!(value(&out, "CapBnd"), "0000000000000400");
    Pass
}

fn user_ids(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["ids"]);
    spec.user = UserIds {
        uid: 1000,
        gid: 1001,
    };
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0);
    assert_eq!(value(&out, "uid"), "1000 1000 1000");
    assert_eq!(value(&out, "gid"), "1001 1001 1001");
    let (_, out) = run_ok(&ctx.spec(&["ids"]));
    assert_eq!(value(&out, "uid"), "0 0 0");
    if ctx.root {
        // Root without a user namespace switches ids after set-up.
        let mut plain = ctx.spec(&["ids"]);
        plain.namespaces.user = false;
        plain.user = UserIds {
            uid: 1000,
            gid: 1001,
        };
        let (_, out) = run_ok(&plain);
        assert_eq!(value(&out, "uid"), "1000 1000 1000");
        assert_eq!(value(&out, "groups"), "");
    }
    Pass
}

fn time_namespace(ctx: &Context) -> Outcome {
    let host = fs::read_link("/proc/self/ns/time").unwrap();
    let (_, out) = run_ok(&ctx.spec(&["timens"]));
    assert_ne!(value(&out, "time"), host.to_str().unwrap());
    let mut shared = ctx.spec(&["timens"]);
    shared.namespaces.time = false;
    let (_, out) = run_ok(&shared);
    assert_eq!(value(&out, "time"), host.to_str().unwrap());
    Pass
}

fn chdir_and_umask(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["cwd"]);
    spec.chdir = Some("/usr/bin".into());
    spec.umask = Some(0o027);
    let (_, out) = run_ok(&spec);
    assert_eq!(value(&out, "cwd"), "/usr/bin");
    assert_eq!(value(&out, "umask"), "27");
    let (_, out) = run_ok(&ctx.spec(&["cwd"]));
    assert_eq!(value(&out, "cwd"), "/");
    assert_eq!(value(&out, "umask"), "22");
    Pass
}

fn command_not_found(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&[]);
    spec.argv = vec!["no-such-command".into()];
    assert_eq!(run_ok(&spec).0, 127);
    // PATH lookup happens inside the sandbox: `probe` is found only through /probe.
    spec.argv = vec!["probe".into(), "probe".into(), "exit".into(), "7".into()];
    spec.env = vec![("PATH".into(), "/nowhere:/probe".into())];
    assert_eq!(run_ok(&spec).0, 7);
    spec.env = vec![("PATH".into(), "/usr/bin".into())];
    assert_eq!(run_ok(&spec).0, 127);
    Pass
}

fn missing_bind_source(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["exit", "0"]);
    spec.mounts.push(Mount::Bind {
        source: "/srv/cairn-missing".into(),
        dest: "/nodes/a/usr".into(),
        readonly: true,
    });
    let err = run_captured(&spec).0.unwrap_err().to_string();
    assert_eq!(
        err,
        "sandbox: bind /srv/cairn-missing on /nodes/a/usr: No such file or directory (os error 2)"
    );
    Pass
}

fn setup_error_reported(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["exit", "0"]);
    spec.chdir = Some("/nope".into());
    let err = run_captured(&spec).0.unwrap_err().to_string();
    assert_eq!(err, "sandbox: chdir /nope: No such file or directory");
    Pass
}

fn signal_forwarding(ctx: &Context) -> Outcome {
    let me = std::process::id();
    let mut killer = Command::new("/bin/sh")
        .args(["-c", &format!("sleep 0.5; kill -TERM {me}")])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (code, _) = run_ok(&ctx.spec(&["sleep", "20"]));
    killer.wait().unwrap();
    assert_eq!(code, 143);
    assert!(start.elapsed() < Duration::from_secs(10));
    Pass
}

/// A kept sandbox: entries share its namespaces and root (a file one writes in its /tmp, a
/// tmpfs of the sandbox's own mount namespace, is seen by the next), each entry is a new
/// process below its pid 1, arguments and statuses pass as in `run`, and after a stop the
/// sandbox cannot be entered and its pid 1 is gone.
fn kept_sandbox_entered(ctx: &Context) -> Outcome {
    let base = ctx.spec(&["exit", "0"]);
    let keeper = KeptSandbox::start(&base);
    let with = |args: &[&str]| SandboxSpec {
        argv: ctx.spec(args).argv,
        ..base.clone()
    };
    let (code, out) = enter_captured(&keeper.kept, &with(&["write", "/tmp/state"]));
    assert_eq!((code.unwrap(), out.as_str()), (0, "/tmp/state=ok\n"));
    let (code, out) = enter_captured(&keeper.kept, &with(&["cat", "/tmp/state"]));
    assert_eq!((code.unwrap(), out.as_str()), (0, "/tmp/state=written\n"));
    let (code, out) = enter_captured(&keeper.kept, &with(&["ps"]));
    assert_eq!(code.unwrap(), 0);
    let me: u32 = value(&out, "self").parse().unwrap();
    assert!(me > 1, "{out}");
    assert_eq!(value(&out, "pids"), format!("1 {me}"), "{out}");
    let args = ["a b", "", "%x", "@y", "--help"];
    let mut probe = vec!["argv"];
    probe.extend(args);
    let (code, out) = enter_captured(&keeper.kept, &with(&probe));
    assert_eq!(code.unwrap(), 0);
    let expected: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(lines(&out), expected);
    assert_eq!(
        enter_captured(&keeper.kept, &with(&["exit", "42"]))
            .0
            .unwrap(),
        42
    );
    assert_eq!(
        enter_captured(&keeper.kept, &with(&["raise", "9"]))
            .0
            .unwrap(),
        137
    );
    let (code, out) = enter_captured(&keeper.kept, &with(&["hostname"]));
    assert_eq!((code.unwrap(), out.trim()), (0, "cairn-test"));
    assert!(keeper.kept.is_alive());
    assert_eq!(keeper.stop(), 0);
    assert!(!keeper.kept.is_alive());
    let gone = enter_captured(&keeper.kept, &with(&["exit", "0"])).0;
    assert!(
        matches!(gone, Err(cairn_sandbox::Error::Gone { .. })),
        "{gone:?}"
    );
    Pass
}

/// An entered program gets the same privilege steps as a fresh one: no capabilities,
/// no_new_privs, the seccomp filter, the spec's working directory.
fn kept_sandbox_privileges(ctx: &Context) -> Outcome {
    let base = ctx.spec(&["exit", "0"]);
    let keeper = KeptSandbox::start(&base);
    let mut spec = ctx.spec(&["status"]);
    let (code, out) = enter_captured(&keeper.kept, &spec);
    assert_eq!(code.unwrap(), 0);
    assert_eq!(value(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(value(&out, "CapBnd"), "0000000000000000", "{out}");
    assert_eq!(value(&out, "NoNewPrivs"), "1", "{out}");
    assert_eq!(value(&out, "Seccomp"), "2", "{out}");
    spec.argv = ctx.spec(&["cwd"]).argv;
    spec.chdir = Some("/probe".into());
    let (code, out) = enter_captured(&keeper.kept, &spec);
    assert_eq!(code.unwrap(), 0);
    assert_eq!(value(&out, "cwd"), "/probe", "{out}");
    assert_eq!(keeper.stop(), 0);
    Pass
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

fn nothing_left_running(ctx: &Context) -> Outcome {
    let marker = format!("cairn-leak-{}", std::process::id());
    let (code, _) = run_ok(&ctx.spec(&["daemon", &marker]));
    assert_eq!(code, 0);
    assert!(
        processes_with(&marker).is_empty(),
        "left running: {:?}",
        processes_with(&marker)
    );
    // Control: without a pid namespace and die-with-parent, the daemon would survive.
    let mut loose = ctx.spec(&["daemon", &marker]);
    loose.namespaces.pid = false;
    loose.namespaces.time = false;
    loose.mounts.retain(|m| !matches!(m, Mount::Proc { .. }));
    loose.die_with_parent = false;
    run_ok(&loose);
    // The daemon may still be starting when the program has exited: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let survivors = processes_with(&marker);
    assert!(
        !survivors.is_empty(),
        "control: the daemon did not even start"
    );
    for pid in survivors {
        // SAFETY: killing the control's daemon.
        unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
    }
    Pass
}

fn dev_minimal(ctx: &Context) -> Outcome {
    let (code, out) = run_ok(&ctx.spec(&["dev"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        value(&out, "entries"),
        "core fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(value(&out, "null"), "ok");
    assert_eq!(value(&out, "zero"), "0");
    assert_eq!(value(&out, "pty"), "ok");
    Pass
}

fn mqueue_and_file_over_host_bind(ctx: &Context) -> Outcome {
    let host = world_writable_tempdir();
    let mut spec = ctx.spec(&["fstype", "/dev/mqueue", "/tmp", "/"]);
    spec.mounts.push(Mount::Mqueue {
        dest: "/dev/mqueue".into(),
    });
    spec.mounts.push(Mount::Bind {
        source: host.path().into(),
        dest: "/data".into(),
        readonly: false,
    });
    spec.mounts.push(Mount::File {
        dest: "/data/generated".into(),
        contents: b"g".to_vec(),
    });
    let (code, out) = run_ok(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(value(&out, "/dev/mqueue"), "19800202");
    assert_eq!(value(&out, "/tmp"), "1021994"); // TMPFS_MAGIC
    assert_eq!(value(&out, "/"), "1021994");
    // The file was placed over the writable host bind without writing into the host dir.
    let host_entries: Vec<_> = fs::read_dir(host.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        host_entries,
        vec![std::ffi::OsString::from("generated")],
        "only the mount point"
    );
    assert_eq!(
        fs::read(host.path().join("generated")).unwrap(),
        b"",
        "contents leaked to host"
    );
    Pass
}

fn only_std_fds_inherited(ctx: &Context) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cairn-fd-marker");
    fs::write(&marker, "x").unwrap();
    let path = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
    // SAFETY: opening a file without O_CLOEXEC on purpose, closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2);
    let (result, out) = run_captured(&ctx.spec(&["fds"]));
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    assert_eq!(result.unwrap(), 0);
    assert!(!out.contains("cairn-fd-marker"), "leaked: {out}");
    assert_eq!(value(&out, "count"), "3", "{out}");
    Pass
}

fn stdin_passes(ctx: &Context) -> Outcome {
    let mut input = tempfile::tempfile().unwrap();
    input.write_all(b"through stdin").unwrap();
    input.rewind().unwrap();
    // SAFETY: swapping fd 0 around the run and restoring it.
    let saved = unsafe { libc::dup(0) };
    // SAFETY: as above.
    unsafe { libc::dup2(input.as_raw_fd(), 0) };
    let (result, out) = run_captured(&ctx.spec(&["stdin"]));
    // SAFETY: restoring fd 0.
    unsafe { libc::dup2(saved, 0) };
    // SAFETY: closing the saved copy, which is ours and not used again.
    unsafe { libc::close(saved) };
    assert_eq!(result.unwrap(), 0);
    assert_eq!(out, "through stdin");
    Pass
}

fn cgroup_dirs_of(name_prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![
        PathBuf::from("/sys/fs/cgroup/pids"),
        PathBuf::from("/sys/fs/cgroup/memory"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name().to_string_lossy().starts_with(name_prefix) {
                    found.push(path.clone());
                }
                if path.components().count() < 9 {
                    stack.push(path);
                }
            }
        }
    }
    found
}

fn fork_bomb_contained(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["forkbomb", "200"]);
    spec.cgroup.pids_max = Some(20);
    let (result, out) = run_captured(&spec);
    match result {
        Ok(code) => {
            assert_eq!(code, 0, "{out}");
            let forks: u32 = value(&out, "forks").parse().unwrap();
            assert!(forks < 20, "forks={forks}");
            assert!(forks > 5, "forks={forks}: limit far too low?");
        }
        Err(e) if !ctx.root && ctx.cgroup_parent.is_none() => {
            return Skip(format!("no delegated cgroup: {e}"));
        }
        Err(e) => panic!("{e}"),
    }
    let prefix = format!("cairn-{}-", std::process::id());
    assert!(
        cgroup_dirs_of(&prefix).is_empty(),
        "cgroup left behind: {:?}",
        cgroup_dirs_of(&prefix)
    );
    // Control: without the limit the same program forks them all.
    let (code, out) = run_ok(&ctx.spec(&["forkbomb", "40"]));
    assert_eq!(code, 0);
    assert_eq!(value(&out, "forks"), "40");
    Pass
}

fn memory_hog_killed(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["hog", "1024"]);
    spec.cgroup.memory_max = Some(64 << 20);
    let (result, out) = run_captured(&spec);
    match result {
        Ok(code) => assert_eq!(code, 137, "{out}"),
        Err(e) if !ctx.root && ctx.cgroup_parent.is_none() => {
            return Skip(format!("no delegated cgroup: {e}"));
        }
        Err(e) => panic!("{e}"),
    }
    // Control: a small allocation under the limit completes.
    let mut small = ctx.spec(&["hog", "16"]);
    small.cgroup.memory_max = Some(64 << 20);
    assert_eq!(run_ok(&small).0, 0);
    Pass
}

fn cgroup_unavailable_is_clear_error(ctx: &Context) -> Outcome {
    let mut spec = ctx.spec(&["exit", "0"]);
    spec.cgroup.pids_max = Some(10);
    spec.cgroup.parent = Some("/cairn-no-such-parent/x".into());
    let err = run_captured(&spec).0.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "sandbox: cannot create cgroup /sys/fs/cgroup/pids/cairn-no-such-parent/x/cairn-"
        ),
        "{err}"
    );
    assert!(
        err.ends_with(
            "(delegate a writable cgroup to this user or set `[cgroup] root` in cairn.toml)"
        ),
        "{err}"
    );
    assert!(!err.contains('\n'));
    if !ctx.root {
        // Rootless with no delegation: the caller's own cgroup is not writable.
        let mut own = ctx.spec(&["exit", "0"]);
        own.cgroup = CgroupLimits {
            pids_max: Some(10),
            ..Default::default()
        };
        let err = run_captured(&own).0.unwrap_err().to_string();
        assert!(
            err.contains("Permission denied") && err.contains("delegate"),
            "{err}"
        );
    }
    Pass
}

// ---------------------------------------------------------------- rootless re-run

/// As root: create the test user and a delegated cgroup, then run this suite as that user.
fn rootless_rerun(ctx: &Context) -> u32 {
    if Command::new("id")
        .arg(TEST_USER)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        let ok = Command::new("useradd")
            .args(["-m", TEST_USER])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: rootless suite: cannot create user {TEST_USER}");
            return 0;
        }
    }
    let parent = delegate_cgroup();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", TEST_USER, "--"])
        .arg(ctx.probe_dir.join("probe"));
    cmd.env("CAIRN_SANDBOX_NO_ROOTLESS", "1");
    cmd.current_dir("/");
    if let Some(p) = &parent {
        cmd.env("CAIRN_TEST_CGROUP_PARENT", p);
    }
    let status = cmd.status();
    if let Some(p) = parent {
        for ctrl in ["memory", "pids"] {
            let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctrl).join(&p));
        }
    }
    match status {
        Ok(s) if s.success() => 0,
        other => {
            println!("rootless suite failed: {other:?}");
            1
        }
    }
}

/// A v1 cgroup below our own memory cgroup, present in the memory and pids hierarchies under
/// the same relative path, owned by the test user.
fn delegate_cgroup() -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mem = own.lines().find_map(|l| {
        l.strip_prefix("4:memory:").or_else(|| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            (c == "memory").then_some(path)
        })
    })?;
    let rel = PathBuf::from(mem.trim_start_matches('/'))
        .join(format!("cairntest-{}", std::process::id()));
    for ctrl in ["memory", "pids"] {
        let dir = Path::new("/sys/fs/cgroup").join(ctrl).join(&rel);
        fs::create_dir_all(&dir).ok()?;
        let status = Command::new("chown")
            .args(["-R", TEST_USER])
            .arg(&dir)
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    Some(rel)
}

// ---------------------------------------------------------------- the probe

mod probe {
    use std::ffi::CString;
    use std::fs;
    use std::io::{Read, Write};

    fn errno_name(e: i32) -> String {
        match e {
            0 => "ok".into(),
            libc::EPERM => "EPERM".into(),
            libc::EROFS => "EROFS".into(),
            libc::EACCES => "EACCES".into(),
            libc::ENOSYS => "ENOSYS".into(),
            libc::ENOENT => "ENOENT".into(),
            libc::EINVAL => "EINVAL".into(),
            libc::EFAULT => "EFAULT".into(),
            other => format!("errno{other}"),
        }
    }

    fn last_errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn rc(r: libc::c_long) -> String {
        if r < 0 {
            errno_name(last_errno())
        } else {
            "ok".into()
        }
    }

    /// True only inside a test sandbox: the probe makes calls (mount, ...) that must never
    /// reach the host, so it refuses to run anywhere else.
    fn sandboxed() -> bool {
        // SAFETY: a read-only prctl.
        let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1;
        nnp && fs::metadata("/probe/probe").is_ok()
    }

    pub fn main(args: &[String]) -> ! {
        let what = args.first().map(String::as_str).unwrap_or("");
        if !sandboxed() {
            eprintln!("probe: refusing to run outside a test sandbox");
            std::process::exit(3);
        }
        let rest = &args[args.len().min(1)..];
        let mut out = String::new();
        let code = match what {
            "argv" => {
                for a in rest {
                    out += &format!("{a:?}\n");
                }
                0
            }
            "exit" => rest[0].parse().unwrap(),
            "raise" => {
                // SAFETY: raising a signal on ourselves.
                unsafe { libc::raise(rest[0].parse().unwrap()) };
                99
            }
            "env" => {
                let mut vars: Vec<String> = std::env::vars_os()
                    .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                    .collect();
                vars.sort();
                for v in vars {
                    out += &v;
                    out += "\n";
                }
                0
            }
            "exists" => {
                for p in rest {
                    let yes = fs::symlink_metadata(p).is_ok();
                    out += &format!("{p}={}\n", if yes { "yes" } else { "no" });
                }
                0
            }
            "write" => {
                for p in rest {
                    let r = fs::write(p, "written");
                    let e = r.err().and_then(|e| e.raw_os_error()).unwrap_or(0);
                    out += &format!("{p}={}\n", errno_name(e));
                }
                0
            }
            "cat" => {
                for p in rest {
                    let text = fs::read_to_string(p).unwrap_or_else(|e| format!("error {e}"));
                    out += &format!("{p}={text}\n");
                }
                0
            }
            "mkdir" => {
                for p in rest {
                    let e = fs::create_dir(p)
                        .err()
                        .and_then(|e| e.raw_os_error())
                        .unwrap_or(0);
                    out += &format!("{p}={}\n", errno_name(e));
                }
                0
            }
            "fstype" => {
                for p in rest {
                    let c = CString::new(p.as_str()).unwrap();
                    // SAFETY: zeroed statfs is a valid out-parameter.
                    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
                    // SAFETY: valid path and out-parameter.
                    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
                    let v = if r == 0 {
                        format!("{:x}", st.f_type)
                    } else {
                        errno_name(last_errno())
                    };
                    out += &format!("{p}={v}\n");
                }
                0
            }
            "fds" => {
                let mut n = 0;
                for entry in fs::read_dir("/proc/self/fd").unwrap().flatten() {
                    let target = fs::read_link(entry.path()).unwrap_or_default();
                    // Skip the directory handle this listing itself uses.
                    if !target.to_string_lossy().contains("/fd") {
                        n += 1;
                        out += &format!(
                            "fd {} {}\n",
                            entry.file_name().to_string_lossy(),
                            target.display()
                        );
                    }
                }
                out += &format!("count={n}\n");
                0
            }
            "hostname" => {
                out = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
                0
            }
            "ifaces" => ifaces(&mut out),
            "ps" => {
                let mut pids: Vec<u32> = fs::read_dir("/proc")
                    .unwrap()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect();
                pids.sort();
                let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                out += &format!("pids={}\n", list.join(" "));
                out += &format!(
                    "self={}\nparent={}\n",
                    std::process::id(),
                    std::os::unix::process::parent_id()
                );
                0
            }
            "tiocsti" => tiocsti(&mut out),
            "syscalls" => syscalls(&mut out),
            "status" => {
                let status = fs::read_to_string("/proc/self/status").unwrap();
                for line in status.lines() {
                    if let Some((k, v)) = line.split_once(':')
                        && (k.starts_with("Cap") || k == "NoNewPrivs" || k == "Seccomp")
                    {
                        out += &format!("{k}={}\n", v.trim());
                    }
                }
                0
            }
            "ids" => {
                let (mut r, mut e, mut s) = (0, 0, 0);
                // SAFETY: out-parameters for the current ids.
                unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
                out += &format!("uid={r} {e} {s}\n");
                // SAFETY: as above.
                unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
                out += &format!("gid={r} {e} {s}\n");
                let mut groups = [0 as libc::gid_t; 64];
                // SAFETY: buffer of 64 gids.
                let n = unsafe { libc::getgroups(64, groups.as_mut_ptr()) };
                let list: Vec<String> = groups[..n.max(0) as usize]
                    .iter()
                    .map(|g| g.to_string())
                    .collect();
                out += &format!("groups={}\n", list.join(" "));
                0
            }
            "timens" => {
                let link = fs::read_link("/proc/self/ns/time").unwrap();
                out += &format!("time={}\n", link.display());
                0
            }
            "cwd" => {
                // SAFETY: umask read-and-restore.
                let mask = unsafe { libc::umask(0) };
                out += &format!(
                    "cwd={}\numask={mask:o}\n",
                    std::env::current_dir().unwrap().display()
                );
                0
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(rest[0].parse().unwrap()));
                0
            }
            "daemon" => {
                // A detached grandchild that would outlive the program without the pid ns.
                // Deliberately not waited for: it must outlive this process.
                #[allow(clippy::zombie_processes)]
                std::process::Command::new("/probe/probe")
                    .args(["probe", "sleep", "30", &rest[0]])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                0
            }
            "dev" => dev(&mut out),
            "stdin" => {
                std::io::stdin().read_to_string(&mut out).unwrap();
                0
            }
            "forkbomb" => forkbomb(rest[0].parse().unwrap(), &mut out),
            "hog" => {
                let mb: usize = rest[0].parse().unwrap();
                let mut chunks = Vec::new();
                for _ in 0..mb {
                    let mut v = vec![0u8; 1 << 20];
                    for i in (0..v.len()).step_by(4096) {
                        v[i] = 1;
                    }
                    chunks.push(v);
                }
                out += &format!("allocated={}\n", chunks.len());
                0
            }
            other => {
                eprintln!("probe: unknown {other}");
                2
            }
        };
        std::io::stdout().write_all(out.as_bytes()).unwrap();
        std::io::stdout().flush().unwrap();
        std::process::exit(code)
    }

    fn ifaces(out: &mut String) -> i32 {
        let dev = fs::read_to_string("/proc/net/dev").unwrap();
        for line in dev.lines().skip(2) {
            let name = line.split(':').next().unwrap().trim().to_string();
            // SAFETY: a throwaway socket for SIOCGIFFLAGS.
            let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            // SAFETY: zeroed ifreq is valid.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            // SAFETY: SIOCGIFFLAGS fills req.
            unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
            // SAFETY: reading the union member SIOCGIFFLAGS set.
            let flags = unsafe { req.ifr_ifru.ifru_flags } as i32;
            let up = if flags & libc::IFF_UP != 0 {
                "up"
            } else {
                "down"
            };
            *out += &format!("{name} {up}\n");
        }
        0
    }

    fn tiocsti(out: &mut String) -> i32 {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two fds; the other arguments may be null.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // Make it our controlling terminal so that only the filter can stop TIOCSTI.
        // SAFETY: setsid has no memory arguments.
        unsafe { libc::setsid() };
        // SAFETY: TIOCSCTTY on our own terminal takes an integer.
        unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) };
        let c = b'x';
        // SAFETY: TIOCSTI reads one byte.
        let r = unsafe { libc::ioctl(slave, libc::TIOCSTI, &c) };
        *out += &format!("TIOCSTI={}\n", rc(r.into()));
        let sub = 0u8;
        // SAFETY: TIOCLINUX reads a subcode byte.
        let r = unsafe { libc::ioctl(slave, libc::TIOCLINUX, &sub) };
        let e = if r < 0 {
            errno_name(last_errno())
        } else {
            "ok".into()
        };
        *out += &format!("TIOCLINUX={e}\n");
        0
    }

    fn syscalls(out: &mut String) -> i32 {
        // SAFETY: each call is harmless whether it succeeds or fails (we are in a sandbox).
        unsafe {
            // In a child: a traced probe would stop on every signal.
            let pid = libc::fork();
            if pid == 0 {
                let r = libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::_exit(if r == 0 { 0 } else { last_errno() });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            *out += &format!("ptrace={}\n", errno_name(libc::WEXITSTATUS(status)));
            let mut line = |name: &str, r: libc::c_long| *out += &format!("{name}={}\n", rc(r));
            line(
                "keyctl",
                libc::syscall(
                    libc::SYS_keyctl,
                    0, /* KEYCTL_GET_KEYRING_ID */
                    -3i64,
                    0,
                ),
            );
            let desc = CString::new("cairn-test").unwrap();
            let ktype = CString::new("user").unwrap();
            line(
                "add_key",
                libc::syscall(
                    libc::SYS_add_key,
                    ktype.as_ptr(),
                    desc.as_ptr(),
                    b"x".as_ptr(),
                    1,
                    -3i64,
                ),
            );
            line(
                "bpf",
                libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0),
            );
            let tmp = CString::new("/tmp").unwrap(); // the sandbox's /tmp (see `sandboxed`)
            let tmpfs = CString::new("tmpfs").unwrap();
            line(
                "mount",
                libc::mount(
                    tmpfs.as_ptr(),
                    tmp.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    std::ptr::null(),
                )
                .into(),
            );
            line("setns", libc::setns(-1, 0).into());
            line("personality_query", libc::personality(0xffff_ffff).into());
            line(
                "personality",
                libc::personality(0x0040000 /* ADDR_NO_RANDOMIZE */).into(),
            );
            // Each in a child so success does not change this process.
            for (name, flags) in [
                ("unshare_user", libc::CLONE_NEWUSER),
                ("unshare_uts", libc::CLONE_NEWUTS),
            ] {
                let pid = libc::fork();
                if pid == 0 {
                    let r = libc::unshare(flags);
                    libc::_exit(if r == 0 { 0 } else { last_errno() });
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                let e = libc::WEXITSTATUS(status);
                *out += &format!("{name}={}\n", errno_name(e));
            }
            let r = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
            );
            if r == 0 {
                libc::_exit(0);
            }
            if r > 0 {
                libc::waitpid(r as i32, std::ptr::null_mut(), 0);
            }
            *out += &format!("clone_user={}\n", rc(r));
            let mut args = [0u64; 11];
            args[4] = libc::SIGCHLD as u64; // exit_signal
            let r = libc::syscall(
                libc::SYS_clone3,
                args.as_mut_ptr(),
                std::mem::size_of_val(&args),
            );
            if r == 0 {
                libc::_exit(0);
            }
            if r > 0 {
                libc::waitpid(r as i32, std::ptr::null_mut(), 0);
            }
            *out += &format!("clone3={}\n", rc(r));
        }
        0
    }

    fn dev(out: &mut String) -> i32 {
        let mut names: Vec<String> = fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        *out += &format!("entries={}\n", names.join(" "));
        let null = fs::write("/dev/null", "x").map(|_| "ok").unwrap_or("fail");
        *out += &format!("null={null}\n");
        let mut zero = [1u8; 4];
        fs::File::open("/dev/zero")
            .unwrap()
            .read_exact(&mut zero)
            .unwrap();
        *out += &format!("zero={}\n", zero.iter().map(|b| u32::from(*b)).sum::<u32>());
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty through the sandbox's own devpts.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        *out += &format!("pty={}\n", if r == 0 { "ok" } else { "fail" });
        0
    }

    fn forkbomb(max: u32, out: &mut String) -> i32 {
        let mut forks = 0;
        for _ in 0..max {
            // SAFETY: the child only sleeps and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: sleep is async-signal-safe and has no memory arguments.
                unsafe { libc::sleep(5) };
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(0) };
            }
            if pid < 0 {
                break;
            }
            forks += 1;
        }
        *out += &format!("forks={forks}\n");
        0
    }
}
