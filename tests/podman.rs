//! End-to-end tests of the podman engine: the same app configs as tests/app.rs, launched
//! through real podman (with runc on hybrid-cgroup hosts), as root.
//!
//! podman's image storage is the host's, shared by every test: each test names its apps
//! after its own pid so that parallel runs never touch each other's images.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cairn_image::testkit::{Entry, layer_tar};
use support::{World, import_layout, is_root, skip, write_busybox_layout, write_delta_layout};

/// Imports `local/busybox:1` (entrypoint /bin/sh, env FROM_IMAGE=yes) and, over it,
/// `local/delta:1` (an opaque /var/cache, a whiteout of /etc/motd, a new /etc/delta).
fn import_images(world: &World) {
    import_layout(world, &write_busybox_layout(&world.path("layouts/busybox")));
    import_layout(world, &write_delta_layout(&world.path("layouts/delta")));
}

/// Whether this host can run the podman tests (root and podman installed); says why not.
fn podman_ready(test: &str) -> bool {
    if !is_root() {
        skip(&format!("{test}: the podman engine tests need root"));
        return false;
    }
    let found = Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        skip(&format!("{test}: podman is not installed"));
    }
    found
}

/// A unique app name for this test process.
fn app_name(what: &str) -> String {
    format!("pm-{what}-{}", std::process::id())
}

/// Removes the podman images of the apps it names when dropped, so that a failed test
/// leaves nothing in the host's podman storage.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            // Not podman_images: no assertion may panic while a failed test unwinds. By tag,
            // not by id: apps of other tests may share the image.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "podman images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' \
                     localhost/cairn-app/{name} | grep '^localhost/cairn-app/{name}:' \
                     | xargs -r podman rmi"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs the app command at `path` with `args`, `stdin` piped in, and PATH set to `path_env`.
fn call_with_path(
    world: &World,
    path: &Path,
    args: &[&str],
    stdin: &[u8],
    path_env: &str,
) -> Output {
    let mut child = Command::new(path)
        .args(args)
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", path_env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn call(world: &World, path: &Path, args: &[&str], stdin: &[u8]) -> Output {
    call_with_path(world, path, args, stdin, "/usr/bin:/bin")
}

/// Polls `done` until it holds, for at most a minute (podman stopping a container takes
/// its time on a loaded machine); whether it held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The tags podman stores for app `name`.
fn podman_images(name: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "images",
            "--noheading",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .arg(format!("localhost/cairn-app/{name}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("localhost/cairn-app/{name}:")))
        .map(str::to_string)
        .collect()
}

fn register(world: &World, name: &str, extra: &[&str]) -> PathBuf {
    let app_path = world.path("bin").join(name);
    world
        .cairn()
        .args(["app", "register", name, "--engine", "podman"])
        .args(extra)
        .arg("--app-path")
        .arg(&app_path)
        .assert()
        .success();
    app_path
}

#[test]
fn podman_engine_runs_the_same_app() {
    if !podman_ready("podman_engine_runs_the_same_app") {
        return;
    }
    let world = World::new();
    import_images(&world);
    let tar = layer_tar(&[
        Entry::Dir {
            path: "opt/inc".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "opt/inc/file".into(),
            data: b"from tar\n".to_vec(),
            mode: 0o644,
        },
    ])
    .unwrap();
    let tar_path = world.path("include.tar");
    fs::write(&tar_path, tar).unwrap();
    let host_dir = world.path("hostdata");
    support::write(&host_dir.join("conf"), "from host\n");
    let single = world.path("single.conf");
    support::write(&single, "single\n");
    let name = app_name("main");
    let _cleanup = Cleanup(vec![name.clone()]);
    let app_path = register(
        &world,
        &name,
        &[
            "--image",
            "local/busybox:1",
            "--target",
            "/bin/sh",
            "--env",
            "APP_VAR=set",
            "--include-tar",
            tar_path.to_str().unwrap(),
            "--include-path",
            host_dir.to_str().unwrap(),
            "--include-path",
            single.to_str().unwrap(),
        ],
    );

    // Loaded at register time, under the Cairn-owned name.
    let images = podman_images(&name);
    assert_eq!(images.len(), 1, "{images:?}");

    // Arguments pass exactly: spaces, empty strings, %, @, --help.
    let script = r#"for a in "$@"; do printf '[%s]\n' "$a"; done"#;
    let out = call(
        &world,
        &app_path,
        &["-c", script, "x", "a b", "", "%x", "@y", "--help"],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[a b]\n[]\n[%x]\n[@y]\n[--help]\n");
    assert_eq!(text(&out.stderr), "");

    // Exit status, stdin, separate streams, environment, provisioned files, hostname, no
    // network.
    let out = call(&world, &app_path, &["-c", "exit 42"], b"");
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let out = call(&world, &app_path, &["-c", "cat"], b"piped in\n");
    assert_eq!(text(&out.stdout), "piped in\n", "{}", text(&out.stderr));
    let out = call(&world, &app_path, &["-c", "echo out; echo err >&2"], b"");
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    let show = format!(
        "echo $APP_VAR $FROM_IMAGE; cat /opt/inc/file {} {}; busybox hostname; ls /sys/class/net",
        host_dir.join("conf").display(),
        single.display()
    );
    let out = call(&world, &app_path, &["-c", &show], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("set yes\nfrom tar\nfrom host\nsingle\n{name}\nlo\n")
    );
    // An include-path directory is the instance's own copy: writable, the host's unchanged.
    let conf = host_dir.join("conf").display().to_string();
    let write = format!("echo changed > {conf} && cat {conf}");
    let out = call(&world, &app_path, &["-c", &write], b"");
    assert_eq!(text(&out.stdout), "changed\n", "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(host_dir.join("conf")).unwrap(),
        "from host\n"
    );
    let out = call(&world, &app_path, &["-c", &format!("cat {conf}")], b"");
    assert_eq!(text(&out.stdout), "from host\n", "a fresh copy per call");
    // So is an include-path file.
    let write = format!("echo x > {0} && cat {0}", single.display());
    let out = call(&world, &app_path, &["-c", &write], b"");
    assert_eq!(text(&out.stdout), "x\n", "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&single).unwrap(), "single\n");
    // Still one image: launches never load again.
    assert_eq!(podman_images(&name), images);

    // A running call shows in `app ps`; SIGTERM to the launcher reaches the target.
    let mut child = Command::new(&app_path)
        .args(["-c", "echo ready; exec /bin/busybox sleep 600"])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let ps = world
        .cairn()
        .args(["app", "ps", "--json"])
        .assert()
        .success();
    let ps: serde_json::Value = serde_json::from_slice(&ps.get_output().stdout).unwrap();
    assert_eq!(ps[0]["app"], name.as_str(), "{ps}");
    world
        .cairn()
        .args(["app", "stop", &name])
        .assert()
        .success();
    assert_eq!(child.wait().unwrap().code(), Some(128 + 15));

    // A launcher killed outright takes its container along (podman gets SIGTERM).
    let mut child = Command::new(&app_path)
        .args(["-c", "echo ready; exec /bin/busybox sleep 600"])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let podman: u32 = fs::read_to_string(children)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let label = format!("label=cairn.app={name}");
    let gone = wait_until(|| {
        let ps = Command::new("podman")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .unwrap();
        !Path::new(&format!("/proc/{podman}")).exists() && ps.stdout.is_empty()
    });
    assert!(
        gone,
        "podman {podman} or its container outlived the killed launcher"
    );

    // `app rm` takes the image out of podman's storage.
    world.cairn().args(["app", "rm", &name]).assert().success();
    assert_eq!(podman_images(&name), Vec::<String>::new());
    assert!(fs::symlink_metadata(&app_path).is_err());
}

#[test]
fn podman_engine_runs_a_delta_over_its_base() {
    if !podman_ready("podman_engine_runs_a_delta_over_its_base") {
        return;
    }
    let world = World::new();
    import_images(&world);
    let name = app_name("delta");
    let _cleanup = Cleanup(vec![name.clone()]);
    let app_path = register(
        &world,
        &name,
        &[
            "--base",
            "local/busybox:1",
            "--image",
            "local/delta:1",
            "--target",
            "/bin/sh",
        ],
    );
    let check = "cat /etc/delta; test -e /var/cache/base/old || test -e /etc/motd || echo hidden; \
                 cat /etc/passwd";
    let out = call(&world, &app_path, &["-c", check], b"");
    assert_eq!(
        text(&out.stdout),
        "delta\nhidden\nroot:x:0:0:root:/root:/bin/sh\n",
        "{}",
        text(&out.stderr)
    );
    // Removed behind Cairn's back: the next launch loads it again.
    let images = podman_images(&name);
    let rmi = Command::new("podman")
        .arg("rmi")
        .args(&images)
        .output()
        .unwrap();
    assert!(rmi.status.success(), "{}", text(&rmi.stderr));
    let out = call(&world, &app_path, &["-c", "cat /etc/delta"], b"");
    assert_eq!(text(&out.stdout), "delta\n", "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    // Registered again for the native engine: podman's copy goes.
    world
        .cairn()
        .args([
            "app",
            "register",
            &name,
            "--force",
            "--base",
            "local/busybox:1",
        ])
        .args([
            "--image",
            "local/delta:1",
            "--target",
            "/bin/sh",
            "--app-path",
        ])
        .arg(&app_path)
        .assert()
        .success();
    assert_eq!(podman_images(&name), Vec::<String>::new());
    let out = call(&world, &app_path, &["-c", "cat /etc/delta"], b"");
    assert_eq!(text(&out.stdout), "delta\n", "{}", text(&out.stderr));
    world.cairn().args(["app", "rm", &name]).assert().success();
    assert_eq!(podman_images(&name), Vec::<String>::new());
}

#[test]
fn podman_entrypoint_target_and_host_limit_errors() {
    if !podman_ready("podman_entrypoint_target_and_host_limit_errors") {
        return;
    }
    let world = World::new();
    import_images(&world);
    // target `/`: the image's entrypoint (/bin/sh) gets the arguments.
    let name = app_name("entry");
    let _cleanup = Cleanup(
        ["entry", "missing", "incl", "ulimit", "crun"]
            .map(app_name)
            .to_vec(),
    );
    let app_path = register(
        &world,
        &name,
        &["--image", "local/busybox:1", "--target", "/"],
    );
    let out = call(&world, &app_path, &["-c", "echo via entrypoint"], b"");
    assert_eq!(
        text(&out.stdout),
        "via entrypoint\n",
        "{}",
        text(&out.stderr)
    );

    // A target missing from the image: one clear line, status 1.
    let missing = app_name("missing");
    let missing_path = register(
        &world,
        &missing,
        &["--image", "local/busybox:1", "--target", "/bin/nothere"],
    );
    let out = call(&world, &missing_path, &[], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("target /bin/nothere is not in the image"),
        "{err}"
    );

    // A missing include-path: one line naming it.
    let gone = world.path("gone");
    let incl = app_name("incl");
    let incl_path = register(
        &world,
        &incl,
        &[
            "--image",
            "local/busybox:1",
            "--target",
            "/bin/true",
            "--include-path",
            gone.to_str().unwrap(),
        ],
    );
    let out = call(&world, &incl_path, &[], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(gone.to_str().unwrap()), "{err}");
    world.cairn().args(["app", "rm", &incl]).assert().success();

    // ulimits above what this process may grant: explained, with the fix.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    if cap_eff & (1 << 24) == 0 {
        let high = app_name("ulimit");
        let high_path = register(
            &world,
            &high,
            &[
                "--image",
                "local/busybox:1",
                "--target",
                "/bin/true",
                "--run-arg=--ulimit=nofile=4000000:4000000",
            ],
        );
        let out = call(&world, &high_path, &[], b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
        world.cairn().args(["app", "rm", &high]).assert().success();
    } else {
        skip("ulimit error: this process has CAP_SYS_RESOURCE");
    }
    // crun on a hybrid-cgroup host: explained, with the fix.
    let hybrid = Path::new("/sys/fs/cgroup/unified").is_dir();
    if hybrid && Path::new("/usr/bin/crun").exists() {
        let crun = app_name("crun");
        let crun_path = register(
            &world,
            &crun,
            &[
                "--image",
                "local/busybox:1",
                "--target",
                "/bin/true",
                "--run-arg=--runtime=crun",
            ],
        );
        let out = call(&world, &crun_path, &[], b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("hybrid cgroups") && err.contains("runc"),
            "{err}"
        );
        world.cairn().args(["app", "rm", &crun]).assert().success();
    } else {
        skip("crun error: not a hybrid-cgroup host with crun");
    }
    for app in [name, missing] {
        world.cairn().args(["app", "rm", &app]).assert().success();
    }
}

#[test]
fn podman_missing_is_one_error_line() {
    let world = World::new();
    import_images(&world);
    let name = app_name("nopodman");
    let _cleanup = Cleanup(vec![name.clone()]);
    let app_path = register(
        &world,
        &name,
        &["--image", "local/busybox:1", "--target", "/bin/sh"],
    );
    let empty = tempfile::tempdir().unwrap();
    let out = call_with_path(
        &world,
        &app_path,
        &["-c", "true"],
        b"",
        empty.path().to_str().unwrap(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("engine podman: podman is not installed"),
        "{err}"
    );
    world.cairn().args(["app", "rm", &name]).assert().success();
    if podman_ready("podman_missing_is_one_error_line") {
        assert_eq!(podman_images(&name), Vec::<String>::new());
    }
}

#[test]
fn podman_run_args_that_break_the_launch_are_refused() {
    let world = World::new();
    import_images(&world);
    for bad in ["-d", "--detach", "-it", "--entrypoint=/bin/x", "--rm=false"] {
        let name = app_name("bad");
        let out = world
            .cairn()
            .args(["app", "register", &name, "--engine", "podman"])
            .args(["--image", "local/busybox:1", "--target", "/bin/sh"])
            .arg(format!("--run-arg={bad}"))
            .arg("--app-path")
            .arg(world.path("bin").join(&name))
            .assert()
            .code(1);
        let err = text(&out.get_output().stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("set by the podman engine"), "{bad}: {err}");
        assert!(
            !world
                .path("etc/cairn/apps")
                .join(format!("{name}.yaml"))
                .exists()
        );
        assert!(!world.path("bin").join(&name).exists());
    }
    // resume and attach are not available for podman (yet): said at register.
    let out = world
        .cairn()
        .args([
            "app", "register", "pm-mode", "--engine", "podman", "--mode", "resume",
        ])
        .args(["--image", "local/busybox:1", "--target", "/bin/sh"])
        .assert()
        .code(1);
    let err = text(&out.get_output().stderr);
    assert!(err.contains("not available for engine podman"), "{err}");
}

#[test]
fn podman_tty_only_when_the_caller_has_one() {
    if !podman_ready("podman_tty_only_when_the_caller_has_one") {
        return;
    }
    let world = World::new();
    import_images(&world);
    let name = app_name("tty");
    let _cleanup = Cleanup(vec![name.clone()]);
    let app_path = register(
        &world,
        &name,
        &["--image", "local/busybox:1", "--target", "/bin/sh"],
    );
    let probe = "if test -t 0 && test -t 1; then echo tty; else echo notty; fi";
    let out = call(&world, &app_path, &["-c", probe], b"");
    assert_eq!(text(&out.stdout), "notty\n", "{}", text(&out.stderr));
    // Under a terminal (util-linux `script` gives the call one), the target gets one too.
    // The short pause before the exit: podman's attach to a container's terminal can miss
    // the output of a container that ends at once (seen once in a whole-suite run).
    let command = format!("{} -c '{probe}; sleep 0.3; exit 3'", app_path.display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tty\r\n"),
        "{:?}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stdout).contains("notty"),
        "{:?}",
        text(&out.stdout)
    );
    world.cairn().args(["app", "rm", &name]).assert().success();
}

/// An image app with a confdb plug gets its daemon socket and the `cairn` binary in the
/// podman container too, at the same paths as natively, and reaches only what it plugs.
#[test]
fn podman_app_with_a_confdb_plug_reaches_the_daemon() {
    if !podman_ready("podman_app_with_a_confdb_plug_reaches_the_daemon") {
        return;
    }
    let world = World::new();
    import_images(&world);
    let signed = support::daemon::signed_schema(&world);
    let name = app_name("plug");
    let _cleanup = Cleanup(vec![name.clone()]);
    let app = register(
        &world,
        &name,
        &[
            "--image",
            "local/busybox:1",
            "--target",
            "/bin/sh",
            "--confdb-plug",
            "acme/network/observe-device",
        ],
    );
    let _daemon = support::daemon::Daemon::start(&world);
    support::daemon::add_schema(&world, &signed);
    world
        .cairn()
        .args(["conf", "set", "acme/network/control-device", "id=abc"])
        .assert()
        .success();
    let out = call(
        &world,
        &app,
        &[
            "-c",
            "ls /run/cairn/; echo \"$CAIRN_SOCKET $FROM_IMAGE\"; cairn conf get acme/network/observe-device id; cairn conf get acme/network/control-device id",
        ],
        b"",
    );
    assert_eq!(
        text(&out.stdout),
        "bin\ncairn.sock\n/run/cairn/cairn.sock yes\nabc\n",
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(&format!(
            "permission denied: app \"{name}\" has no plug for view acme/network/control-device"
        )),
        "{}",
        text(&out.stderr)
    );
}
