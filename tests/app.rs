//! End-to-end tests of `cairn app` and of app launches through their symlinks (the real
//! binary, as root: images built from Debian's static busybox).

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cairn_image::testkit::{Entry, layer_tar};
use support::{World, import_layout, is_root, skip, write_busybox_layout, write_delta_layout};

/// OCI layouts below `dir`: `busybox` and `delta` (see the support module).
fn write_layouts(dir: &Path) -> (PathBuf, PathBuf) {
    (
        write_busybox_layout(&dir.join("busybox")),
        write_delta_layout(&dir.join("delta")),
    )
}

/// Imports a busybox image as `local/busybox:1` into the world's store.
fn import_busybox(world: &World) {
    import_layout(world, &write_busybox_layout(&world.path("layout")));
}

/// The delta over its base: opaque directory and whiteout hide the base's files.
const LAYERS_CHECK: &str =
    "cat /etc/delta; test -e /var/cache/base/old || test -e /etc/motd || echo hidden";

/// Runs the app command at `path` (argv[0] = its file name) with `args` and `stdin`.
fn call(world: &World, path: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(path)
        .args(args)
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn instances(world: &World, app: &str) -> Vec<PathBuf> {
    match fs::read_dir(world.path("run/cairn/instances").join(app)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn image_app_register_launch_and_remove() {
    if !is_root() {
        return skip("image apps test needs root");
    }
    let world = World::new();
    import_busybox(&world);
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
    let host_tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let host_dir = host_tmp.path().join("hostdata");
    support::write(&host_dir.join("conf"), "from host\n");
    let app_path = world.path("bin/hello");
    world
        .cairn()
        .args(["app", "register", "hello", "--image", "local/busybox:1"])
        .args(["--target", "/bin/sh", "--env", "APP_VAR=set"])
        .arg("--app-path")
        .arg(&app_path)
        .arg("--include-tar")
        .arg(&tar_path)
        .arg("--include-path")
        .arg(&host_dir)
        .assert()
        .success();
    assert_eq!(fs::read_link(&app_path).unwrap(), support::cairn_bin());

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

    // Exit status, stdin, separate streams, environment, provisioned files.
    let out = call(&world, &app_path, &["-c", "exit 42"], b"");
    assert_eq!(out.status.code(), Some(42));
    let out = call(&world, &app_path, &["-c", "cat"], b"piped in\n");
    assert_eq!(text(&out.stdout), "piped in\n");
    let out = call(&world, &app_path, &["-c", "echo out; echo err >&2"], b"");
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    let conf = host_dir.join("conf");
    let show = format!(
        "echo $APP_VAR $FROM_IMAGE; cat /opt/inc/file {}",
        conf.display()
    );
    let out = call(&world, &app_path, &["-c", &show], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "set yes\nfrom tar\nfrom host\n");
    assert_eq!(instances(&world, "hello"), Vec::<PathBuf>::new());
    // A root store runs without a user namespace: /proc's sysctls must be read-only (the
    // one tried here is per UTS namespace, harmless if the protection were missing).
    let sysctl = "echo x > /proc/sys/kernel/hostname && echo written";
    let out = call(&world, &app_path, &["-c", sysctl], b"");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A stale instance (dead owner) goes at the next launch.
    let stale = world.path("run/cairn/instances/hello/999999999-1/work/work");
    fs::create_dir_all(&stale).unwrap();
    call(&world, &app_path, &["-c", "true"], b"");
    assert_eq!(instances(&world, "hello"), Vec::<PathBuf>::new());

    // A running instance shows in `app ps`; `app stop` ends it (SIGTERM forwarded to the
    // target) and the launcher removes the instance.
    let mut child = Command::new(&app_path)
        .args(["-c", "echo ready; exec /bin/busybox sleep 600"])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    let ps = world
        .cairn()
        .args(["app", "ps", "--json"])
        .assert()
        .success();
    let ps: serde_json::Value = serde_json::from_slice(&ps.get_output().stdout).unwrap();
    assert_eq!(ps[0]["app"], "hello", "{ps}");
    assert_eq!(ps[0]["id"], child.id(), "{ps}");
    let busy = world
        .cairn()
        .args(["app", "rm", "hello"])
        .assert()
        .failure();
    assert!(text(&busy.get_output().stderr).contains("running"));
    world
        .cairn()
        .args(["app", "stop", &format!("hello@{}", child.id())])
        .assert()
        .success();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(instances(&world, "hello"), Vec::<PathBuf>::new());
    let none = world
        .cairn()
        .args(["app", "stop", "hello"])
        .assert()
        .failure();
    assert!(text(&none.get_output().stderr).contains("no running instance"));

    // Registering again needs --force.
    let again = world
        .cairn()
        .args(["app", "register", "hello", "--image", "local/busybox:1"])
        .args(["--target", "/bin/sh"])
        .arg("--app-path")
        .arg(&app_path)
        .assert()
        .failure();
    assert!(text(&again.get_output().stderr).contains("already registered"));

    let ls = world
        .cairn()
        .args(["app", "ls", "--json"])
        .assert()
        .success();
    assert!(text(&ls.get_output().stdout).contains("\"hello\""));

    // A delta image over a base: layers compose, opaque dirs and whiteouts apply.
    let (_, delta) = write_layouts(&world.path("layouts"));
    world
        .cairn()
        .args(["image", "import"])
        .arg(&delta)
        .assert()
        .success();
    let delta_path = world.path("bin/delta");
    world
        .cairn()
        .args(["app", "register", "delta", "--base", "local/busybox:1"])
        .args(["--image", "local/delta:1", "--target", "/bin/sh"])
        .arg("--app-path")
        .arg(&delta_path)
        .assert()
        .success();
    let out = call(&world, &delta_path, &["-c", LAYERS_CHECK], b"");
    assert_eq!(
        text(&out.stdout),
        "delta\nhidden\n",
        "{}",
        text(&out.stderr)
    );

    world
        .cairn()
        .args(["app", "rm", "hello"])
        .assert()
        .success();
    assert!(fs::symlink_metadata(&app_path).is_err());
    assert!(!world.path("etc/cairn/apps/hello.yaml").exists());
    assert!(!world.path("run/cairn/instances/hello").exists());
    let index = fs::read_to_string(world.path("var/lib/cairn/images/index.json")).unwrap();
    assert!(!index.contains("app:hello"), "{index}");
}

#[test]
fn node_app_runs_like_cairn_run() {
    if !is_root() {
        return skip("node app test needs root");
    }
    let world = World::new();
    let leaf = world.family();
    let app_path = world.path("bin/tool");
    world
        .cairn()
        .args(["app", "register", "tool", "--target", "/bin/sh"])
        .arg("--node")
        .arg(&leaf)
        .arg("--app-path")
        .arg(&app_path)
        .assert()
        .success();
    let out = call(
        &world,
        &app_path,
        &[
            "-c",
            r#"printf '[%s]' "$@"; exit 7"#,
            "x",
            "--help",
            "",
            "@y",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[--help][][@y]");
}

#[test]
fn bad_config_is_one_line_with_file_and_line() {
    let world = World::new();
    let apps = world.config_dir().join("apps");
    let link = world.path("bin/broken");
    support::write(
        &apps.join("broken.yaml"),
        &format!(
            "image: local/x:1\ntarget: /bin/sh\nbogus: 1\napp-path: {}\n",
            link.display()
        ),
    );
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(support::cairn_bin(), &link).unwrap();
    let out = call(&world, &link, &["--help"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:3:", apps.join("broken.yaml").display())),
        "{err}"
    );
    assert!(err.contains("bogus"), "{err}");
    // Even broken, the app can be removed, symlink included.
    world
        .cairn()
        .args(["app", "rm", "broken"])
        .assert()
        .success();
    assert!(!apps.join("broken.yaml").exists());
    assert!(fs::symlink_metadata(&link).is_err());
}

/// As an unprivileged user: a rootless store (user.overlay xattrs) and launches in a user
/// namespace with overlayfs' userxattr option.
#[test]
fn rootless_image_app() {
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        return skip("rootless app test switches to nobody with setpriv (needs root)");
    }
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (busybox, delta) = write_layouts(&work.path().join("layouts"));
    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let as_nobody = |program: &Path, args: &[&OsStr]| support::run_as_nobody(&root, program, args);
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };
    let cairn = support::cairn_bin();
    for layout in [&busybox, &delta] {
        let args = [
            OsStr::new("image"),
            OsStr::new("import"),
            layout.as_os_str(),
        ];
        ok(as_nobody(&cairn, &args));
    }
    let app_path = root.join("bin/rl");
    let mut register: Vec<&OsStr> = ["app", "register", "rl", "--base", "local/busybox:1"]
        .iter()
        .chain(&[
            "--image",
            "local/delta:1",
            "--target",
            "/bin/sh",
            "--app-path",
        ])
        .map(OsStr::new)
        .collect();
    register.push(app_path.as_os_str());
    ok(as_nobody(&cairn, &register));
    let out = ok(as_nobody(
        &app_path,
        &[OsStr::new("-c"), OsStr::new(LAYERS_CHECK)],
    ));
    assert_eq!(text(&out.stdout), "delta\nhidden\n");
    let out = as_nobody(&app_path, &[OsStr::new("-c"), OsStr::new("exit 42")]);
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let left: Vec<_> = fs::read_dir(root.join("run/cairn/instances/rl"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ok(as_nobody(
        &cairn,
        &[OsStr::new("app"), OsStr::new("rm"), OsStr::new("rl")],
    ));
    assert!(fs::symlink_metadata(&app_path).is_err());
}

#[test]
fn vm_apps_refuse_confdb_plugs_at_register() {
    let world = World::new();
    let out = world
        .cairn()
        .args([
            "app", "register", "guest", "--vm", "none", "--target", "/bin/sh",
        ])
        .args(["--confdb-plug", "acme/network/observe-device"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "cairn: app guest: confdb-plug is not available for engine vm (a guest has no way to reach the daemon's socket)\n"
    );
    assert!(!world.config_dir().join("apps/guest.yaml").exists());
}

/// Include paths are visible wherever they are on the host, also below the directories the
/// engine mounts itself (its /tmp tmpfs), and kernel filesystems are refused at register.
#[test]
fn include_paths_below_engine_mounts() {
    if !is_root() {
        return skip("image apps test needs root");
    }
    let world = World::new();
    import_busybox(&world);
    let in_tmp = tempfile::tempdir_in("/tmp").unwrap();
    let tmp_file = in_tmp.path().join("f.txt");
    support::write(&tmp_file, "from tmp\n");
    let tmp_dir = in_tmp.path().join("tree");
    support::write(&tmp_dir.join("deep/g.txt"), "tmp tree\n");
    let in_run = tempfile::tempdir_in("/run").unwrap();
    let run_file = in_run.path().join("r.txt");
    support::write(&run_file, "from run\n");
    // A link is included as what it points to, a copy like the rest: writes through it stay
    // in the instance.
    let link = in_tmp.path().join("link");
    std::os::unix::fs::symlink(&run_file, &link).unwrap();
    let app_path = world.path("bin/inc");
    world
        .cairn()
        .args(["app", "register", "inc", "--image", "local/busybox:1"])
        .args(["--target", "/bin/sh", "--app-path"])
        .arg(&app_path)
        .arg("--include-path")
        .arg(&link)
        .arg("--include-path")
        .arg(&tmp_file)
        .arg("--include-path")
        .arg(&tmp_dir)
        .arg("--include-path")
        .arg(&run_file)
        .assert()
        .success();
    let show = format!(
        "echo changed > {}; cat {} {} {}; echo new > {}; cat {}",
        link.display(),
        tmp_file.display(),
        tmp_dir.join("deep/g.txt").display(),
        run_file.display(),
        tmp_dir.join("new").display(),
        tmp_dir.join("new").display(),
    );
    let out = call(&world, &app_path, &["-c", &show], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "from tmp\ntmp tree\nfrom run\nnew\n",
        "{}",
        text(&out.stderr)
    );
    // Copies: the host's files are unchanged; the engine's /tmp is still writable.
    assert!(!tmp_dir.join("new").exists());
    assert_eq!(fs::read_to_string(&run_file).unwrap(), "from run\n");
    let out = call(
        &world,
        &app_path,
        &["-c", "echo x > /tmp/w && cat /tmp/w"],
        b"",
    );
    assert_eq!(text(&out.stdout), "x\n", "{}", text(&out.stderr));

    // A kept (resume) instance has its own copy too: a change stays for the next call.
    let kept = world.path("bin/kept");
    world
        .cairn()
        .args(["app", "register", "kept", "--image", "local/busybox:1"])
        .args(["--target", "/bin/sh", "--mode", "resume", "--app-path"])
        .arg(&kept)
        .arg("--include-path")
        .arg(&tmp_file)
        .assert()
        .success();
    let append = format!("echo more >> {}", tmp_file.display());
    let out = call(&world, &kept, &["-c", &append], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = call(
        &world,
        &kept,
        &["-c", &format!("cat {}", tmp_file.display())],
        b"",
    );
    assert_eq!(
        text(&out.stdout),
        "from tmp\nmore\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&tmp_file).unwrap(), "from tmp\n");
    world.cairn().args(["app", "rm", "kept"]).assert().success();

    // The sandbox's kernel filesystems take no includes: one line, nothing stored.
    for bad in ["/proc/cpuinfo", "/dev/null", "/sys/kernel", "/"] {
        let out = world
            .cairn()
            .args(["app", "register", "bad", "--image", "local/busybox:1"])
            .args(["--target", "/bin/sh", "--include-path", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = text(&out.stderr);
        let reason = match bad {
            "/" => "the host's whole root cannot be included".to_string(),
            _ => format!(
                "{} belongs to the sandbox (/proc, /sys and /dev take no includes)",
                &bad[..bad[1..].find('/').map_or(bad.len(), |i| i + 1)]
            ),
        };
        assert_eq!(
            err,
            format!("cairn: app bad: include-path {bad}: {reason}\n"),
            "{bad}"
        );
        assert!(!world.config_dir().join("apps/bad.yaml").exists());
    }
}
