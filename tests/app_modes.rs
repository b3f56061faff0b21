//! End-to-end tests of app instance modes (the real binary, as root; images built from
//! Debian's static busybox): resume (calls enter one kept instance), attach (calls attach to
//! the instance's one process), `CAIRN_INSTANCE`, `app ps`/`stop`/`rm`, stale clean-up.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{World, import_layout, is_root, skip, write_busybox_layout};

/// Imports a busybox image as `local/busybox:1` into the world's store.
fn import_busybox(world: &World) {
    import_layout(world, &write_busybox_layout(&world.path("layout")));
}

/// Registers busybox's sh as app `name` in `mode`; returns the command's path.
fn register(world: &World, name: &str, mode: &str) -> PathBuf {
    let app_path = world.path(&format!("bin/{name}"));
    world
        .cairn()
        .args(["app", "register", name, "--image", "local/busybox:1"])
        .args(["--target", "/bin/sh", "--mode", mode])
        .arg("--app-path")
        .arg(&app_path)
        .assert()
        .success();
    app_path
}

/// The app command at `path`, with `CAIRN_INSTANCE=instance` when given.
fn command(world: &World, path: &Path, args: &[&str], instance: Option<&str>) -> Command {
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", "/usr/bin:/bin");
    if let Some(id) = instance {
        cmd.env("CAIRN_INSTANCE", id);
    }
    cmd
}

/// Runs the app with `args` and `stdin`; returns its output.
fn call(world: &World, path: &Path, args: &[&str], stdin: &[u8], id: Option<&str>) -> Output {
    let mut child = command(world, path, args, id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `call` that must succeed; returns stdout.
fn call_ok(world: &World, path: &Path, script: &str, id: Option<&str>) -> String {
    let out = call(world, path, &["-c", script], b"", id);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cairn app ps --json`.
fn ps(world: &World) -> Vec<serde_json::Value> {
    let out = world
        .cairn()
        .args(["app", "ps", "--json"])
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// (id, mode, pid) of each listed instance of `app`.
fn instances(world: &World, app: &str) -> Vec<(String, String, i32)> {
    ps(world)
        .iter()
        .filter(|r| r["app"] == app)
        .map(|r| {
            (
                r["id"].to_string().trim_matches('"').to_string(),
                r["mode"].as_str().unwrap().to_string(),
                r["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect()
}

fn instance_dirs(world: &World, app: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(world.path("run/cairn/instances").join(app))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

fn parent_of(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits (bounded) until process `pid` has exited: a condition, not a fixed delay.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Host pids of processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

/// Waits (bounded) until a process whose command line contains `marker` runs.
fn wait_for_process(marker: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = processes_with(marker);
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no process with {marker:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn term(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Nothing of this world is mounted on the host.
fn assert_nothing_mounted(world: &World) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = world.root().to_string_lossy().into_owned();
    assert!(!mounts.contains(&root), "mounted on the host: {mounts}");
}

/// Kills whatever still runs with this world's `CAIRN_ROOT` when a test ends (a failed
/// test must not leave keepers or calls behind).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let mark = format!("CAIRN_ROOT={}", self.0.display());
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            if environ.split(|&b| b == 0).any(|v| v == mark.as_bytes()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Prints each argument in brackets.
const ARGV_SCRIPT: &str = r#"for a in "$@"; do printf '[%s]\n' "$a"; done"#;

#[test]
fn resume_reuses_one_kept_instance() {
    if !is_root() {
        return skip("resume test needs root (image apps on a root store)");
    }
    let world = World::new();
    let _reaper = Reaper(world.root().to_path_buf());
    import_busybox(&world);
    let app = register(&world, "keep", "resume");

    // The first call creates the instance, the second enters the same one: same pid
    // namespace, same root (a file written by the first is read by the second).
    let ns = "readlink /proc/self/ns/pid";
    let first = call_ok(&world, &app, &format!("echo one > /state; {ns}"), None);
    let second = call_ok(&world, &app, &format!("cat /state; {ns}"), None);
    assert_eq!(second, format!("one\n{first}"));
    let listed = instances(&world, "keep");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (id, mode, keeper) = listed[0].clone();
    assert_eq!((id.as_str(), mode.as_str()), ("default", "resume"));
    // Each call is a new process below the kept pid 1, which is the listed process.
    let out = call_ok(&world, &app, "cat /proc/1/stat; echo $$", None);
    assert!(out.starts_with("1 ("), "{out}");
    assert_ne!(out.lines().last(), Some("1"));
    assert!(alive(keeper));

    // The launch contract: exact arguments, status, stdin, separate streams.
    let args = ["-c", ARGV_SCRIPT, "x", "a b", "", "%x", "@y", "--help"];
    let out = call(&world, &app, &args, b"", None);
    assert_eq!(text(&out.stdout), "[a b]\n[]\n[%x]\n[@y]\n[--help]\n");
    let out = call(&world, &app, &["-c", "exit 42"], b"", None);
    assert_eq!(out.status.code(), Some(42));
    let out = call(&world, &app, &["-c", "kill -9 $$"], b"", None);
    assert_eq!(out.status.code(), Some(137));
    let out = call(&world, &app, &["-c", "cat"], b"piped in\n", None);
    assert_eq!(text(&out.stdout), "piped in\n");
    let out = call(&world, &app, &["-c", "echo out; echo err >&2"], b"", None);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    assert_eq!(instances(&world, "keep").len(), 1);

    // A call's program dies with its caller (kill -9); the kept instance stays.
    let mut caller = command(
        &world,
        &app,
        &["-c", "echo started; exec /bin/busybox sleep 6001"],
        None,
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(caller.stdout.take().unwrap());
    assert_eq!(line(&mut out), "started\n");
    // "started" comes before the exec: wait (bounded) for the sleep itself.
    let sleepers = wait_for_process("sleep\x006001");
    assert_eq!(sleepers.len(), 1, "{sleepers:?}");
    kill9(caller.id() as i32);
    caller.wait().unwrap();
    wait_gone(sleepers[0]);
    assert!(alive(keeper));
    assert_eq!(call_ok(&world, &app, "cat /state", None), "one\n");

    // Signals the caller gets are forwarded: SIGTERM ends the program with 128+15.
    let mut caller = command(
        &world,
        &app,
        &["-c", "echo started; exec /bin/busybox sleep 6002"],
        None,
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(caller.stdout.take().unwrap());
    assert_eq!(line(&mut out), "started\n");
    wait_for_process("sleep\x006002");
    term(caller.id() as i32);
    assert_eq!(caller.wait().unwrap().code(), Some(143));

    // CAIRN_INSTANCE names separate instances.
    call_ok(&world, &app, "echo A > /who", Some("a"));
    call_ok(&world, &app, "echo B > /who", Some("b"));
    assert_eq!(call_ok(&world, &app, "cat /who", Some("a")), "A\n");
    assert_eq!(call_ok(&world, &app, "cat /who", Some("b")), "B\n");
    let out = call_ok(&world, &app, "cat /who 2>/dev/null || echo none", None);
    assert_eq!(out, "none\n");
    let ids: Vec<String> = instances(&world, "keep").into_iter().map(|i| i.0).collect();
    assert_eq!(ids, ["a", "b", "default"]);

    // Stopping one removes it (and only it) before `stop` returns.
    let a_pid = instances(&world, "keep")[0].2;
    world
        .cairn()
        .args(["app", "stop", "keep@a"])
        .assert()
        .success();
    assert!(!alive(a_pid));
    assert_eq!(instance_dirs(&world, "keep"), ["b", "default"]);
    let out = call_ok(
        &world,
        &app,
        "cat /who 2>/dev/null || echo fresh",
        Some("a"),
    );
    assert_eq!(out, "fresh\n");

    // A crashed keeper (kill -9 of the keeper process and the sandbox's pid 1) leaves a
    // stale instance; the next call removes it and starts afresh.
    let b_pid = instances(&world, "keep")[1].2;
    assert_eq!(instances(&world, "keep")[1].0, "b");
    let b_keeper = parent_of(b_pid);
    kill9(b_keeper);
    kill9(b_pid);
    wait_gone(b_pid);
    wait_gone(b_keeper);
    let out = call_ok(
        &world,
        &app,
        "cat /who 2>/dev/null || echo fresh",
        Some("b"),
    );
    assert_eq!(out, "fresh\n");
    assert_nothing_mounted(&world);

    // `app rm` ends and removes every kept instance.
    let pids: Vec<i32> = instances(&world, "keep").into_iter().map(|i| i.2).collect();
    assert_eq!(pids.len(), 3);
    world.cairn().args(["app", "rm", "keep"]).assert().success();
    for pid in pids {
        wait_gone(pid);
    }
    assert!(!world.path("run/cairn/instances/keep").exists());
    assert_nothing_mounted(&world);
}

/// Reads one line of an attached call's stdout.
fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l
}

fn spawn_attached(world: &World, app: &Path, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = command(world, app, args, None)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

#[test]
fn attach_connects_calls_to_one_process() {
    if !is_root() {
        return skip("attach test needs root (image apps on a root store)");
    }
    let world = World::new();
    let _reaper = Reaper(world.root().to_path_buf());
    import_busybox(&world);
    let app = register(&world, "att", "attach");
    let script = r#"printf '[%s]' "$@"; echo; while read l; do [ "$l" = quit ] && exit 7; echo got:$l; echo err:$l >&2; done"#;

    // The first call starts the process with its arguments, exactly.
    let (mut first, mut first_out) = spawn_attached(&world, &app, &["-c", script, "x", "", "%y"]);
    assert_eq!(line(&mut first_out), "[][%y]\n");
    let mut first_in = first.stdin.take().unwrap();
    first_in.write_all(b"a\n").unwrap();
    assert_eq!(line(&mut first_out), "got:a\n");
    let listed = instances(&world, "att");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1.as_str()),
        ("default", "attach")
    );

    // A call killed with -9 just detaches: the process goes on.
    let (mut doomed, _) = spawn_attached(&world, &app, &["ignored"]);
    kill9(doomed.id() as i32);
    doomed.wait().unwrap();

    // A second call attaches: its input reaches the process, the output comes back to
    // every attached call (stdout and stderr apart), and the exit status to all of them.
    let second = call(&world, &app, &["ignored"], b"b\nquit\n", None);
    assert_eq!(second.status.code(), Some(7), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), "got:b\n");
    assert_eq!(text(&second.stderr), "err:b\n");
    assert_eq!(line(&mut first_out), "got:b\n");
    assert_eq!(first.wait().unwrap().code(), Some(7));
    let mut first_err = String::new();
    std::io::Read::read_to_string(&mut first.stderr.take().unwrap(), &mut first_err).unwrap();
    assert_eq!(first_err, "err:a\nerr:b\n");
    assert_eq!(instance_dirs(&world, "att"), Vec::<String>::new());

    // A signal an attached call gets reaches the process: every call returns 128+15.
    let script = "echo up; read l; echo got:$l; exec /bin/busybox sleep 6003";
    let (mut one, mut one_out) = spawn_attached(&world, &app, &["-c", script]);
    assert_eq!(line(&mut one_out), "up\n");
    let (mut two, mut two_out) = spawn_attached(&world, &app, &["ignored"]);
    two.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    // Both attached: the second's input reached the process, its output both calls.
    assert_eq!(line(&mut one_out), "got:hi\n");
    assert_eq!(line(&mut two_out), "got:hi\n");
    wait_for_process("sleep\x006003");
    term(one.id() as i32);
    assert_eq!(one.wait().unwrap().code(), Some(143));
    assert_eq!(two.wait().unwrap().code(), Some(143));

    // `app stop` ends the process (SIGTERM): attached calls return 128+15.
    let (mut waiting, mut waiting_out) = spawn_attached(
        &world,
        &app,
        &["-c", "echo up; exec /bin/busybox sleep 600"],
    );
    assert_eq!(line(&mut waiting_out), "up\n");
    world
        .cairn()
        .args(["app", "stop", "att"])
        .assert()
        .success();
    assert_eq!(waiting.wait().unwrap().code(), Some(143));
    assert_eq!(instance_dirs(&world, "att"), Vec::<String>::new());
    assert_nothing_mounted(&world);
}

#[test]
fn named_fresh_instances_and_bad_ids() {
    if !is_root() {
        return skip("instance test needs root (image apps on a root store)");
    }
    let world = World::new();
    let _reaper = Reaper(world.root().to_path_buf());
    import_busybox(&world);
    let app = register(&world, "fr", "fresh");

    // Bad ids: one line, status 1, nothing created.
    for bad in ["Bad", "a/b", "-x", ".x", &"x".repeat(65)] {
        let out = call(&world, &app, &["-c", "true"], b"", Some(bad));
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("invalid instance id"), "{err}");
    }
    assert_eq!(instance_dirs(&world, "fr"), Vec::<String>::new());

    // A fresh call with CAIRN_INSTANCE=x shows as x while it runs; a second one is refused.
    let mut running = command(
        &world,
        &app,
        &["-c", "echo ready; exec /bin/busybox sleep 600"],
        Some("x"),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(running.stdout.take().unwrap());
    assert_eq!(line(&mut out), "ready\n");
    let listed = instances(&world, "fr");
    assert_eq!(
        listed,
        [("x".to_string(), "fresh".to_string(), running.id() as i32)]
    );
    let refused = call(&world, &app, &["-c", "echo ran"], b"", Some("x"));
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("fr@x is in use"), "{err}");
    assert_eq!(text(&refused.stdout), "");
    world
        .cairn()
        .args(["app", "stop", "fr@x"])
        .assert()
        .success();
    assert_eq!(running.wait().unwrap().code(), Some(143));
    assert_eq!(instance_dirs(&world, "fr"), Vec::<String>::new());

    // Node apps have no instances: resume and attach are refused at registration.
    let leaf = world.family();
    let refused = world
        .cairn()
        .args([
            "app", "register", "nd", "--target", "/bin/sh", "--mode", "resume",
        ])
        .arg("--node")
        .arg(&leaf)
        .arg("--app-path")
        .arg(world.path("bin/nd"))
        .assert()
        .failure();
    let err = text(&refused.get_output().stderr);
    assert!(err.contains("needs an image app"), "{err}");
}

#[test]
fn concurrent_first_calls_start_one_keeper() {
    if !is_root() {
        return skip("resume test needs root (image apps on a root store)");
    }
    let world = World::new();
    let _reaper = Reaper(world.root().to_path_buf());
    import_busybox(&world);
    let app = register(&world, "race", "resume");
    let calls: Vec<Child> = (0..4)
        .map(|_| {
            command(&world, &app, &["-c", "readlink /proc/self/ns/pid"], None)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen: Vec<String> = calls
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            text(&out.stdout)
        })
        .collect();
    seen.dedup();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(instances(&world, "race").len(), 1);
    world.cairn().args(["app", "rm", "race"]).assert().success();
}

/// As an unprivileged user: a rootless store, a kept sandbox in a user namespace, calls
/// entering it (setns into a user namespace the caller owns).
#[test]
fn rootless_resume() {
    fn os<'a>(v: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
        v.iter().map(|s| std::ffi::OsStr::new(*s)).collect()
    }
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        return skip("rootless resume test switches to nobody with setpriv (needs root)");
    }
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let layout = write_busybox_layout(&work.path().join("layout"));
    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    let _reaper = Reaper(root.clone());
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let as_nobody = |program: &Path, args: &[&OsStr]| support::run_as_nobody(&root, program, args);
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let cairn = support::cairn_bin();
    let mut import = os(&["image", "import"]);
    import.push(layout.as_os_str());
    ok(as_nobody(&cairn, &import));
    let app = root.join("bin/rr");
    let mut register = os(&["app", "register", "rr", "--image", "local/busybox:1"]);
    register.extend(os(&[
        "--target",
        "/bin/sh",
        "--mode",
        "resume",
        "--app-path",
    ]));
    register.push(app.as_os_str());
    ok(as_nobody(&cairn, &register));
    let ns = "readlink /proc/self/ns/pid";
    let first = ok(as_nobody(
        &app,
        &os(&["-c", &format!("echo one > /state; {ns}")]),
    ));
    let second = ok(as_nobody(
        &app,
        &os(&["-c", &format!("cat /state; {ns}; id -u")]),
    ));
    assert_eq!(second, format!("one\n{first}0\n"));
    let out = as_nobody(&app, &os(&["-c", "exit 42"]));
    assert_eq!(out.status.code(), Some(42));
    ok(as_nobody(&cairn, &os(&["app", "stop", "rr"])));
    assert!(!root.join("run/cairn/instances/rr/default").exists());
    ok(as_nobody(&cairn, &os(&["app", "rm", "rr"])));
}
