//! End-to-end tests of `cairn conf` and `cairn daemon` (the real binary): keys, trust and
//! signing on files; schemas, get/set/unset/watch/history/rollback through a running
//! daemon; app sockets, reload on SIGHUP, sd_notify, graceful stop.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;
use support::World;
use support::daemon::{Daemon, add_schema, admin_socket, run_dir, signed_schema, wait_for};

const DEVICE: &str = "acme/network/control-device";
const TUNNEL: &str = "acme/network/control-tunnel";

fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a failing command and returns its one stderr line.
fn error_of(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn without_a_daemon_commands_say_how_to_start_it() {
    let world = World::new();
    let err = error_of(world.cairn().args(["conf", "get", DEVICE]));
    assert!(
        err.starts_with(&format!(
            "cairn: cannot reach the daemon at {}: ",
            admin_socket(&world).display()
        )),
        "{err}"
    );
    assert!(err.ends_with("(start it with `cairn daemon`)"), "{err}");
}

#[test]
fn conf_commands_end_to_end() {
    let world = World::new();
    let signed = signed_schema(&world);
    let daemon = Daemon::start(&world);
    let out = stdout_of(world.cairn().args(["conf", "schema", "add"]).arg(&signed));
    assert!(
        out.starts_with("added schema acme/network (views: control-device,"),
        "{out}"
    );
    let out = stdout_of(world.cairn().args(["conf", "schema", "ls"]));
    assert!(
        out.lines().nth(1).unwrap().starts_with("acme/network"),
        "{out}"
    );
    let out = stdout_of(world.cairn().args(["conf", "schema", "ls", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["views"].as_array().unwrap().len(), 8);
    let out = stdout_of(
        world
            .cairn()
            .args(["conf", "schema", "show", "acme/network"]),
    );
    assert!(out.contains("control-tunnel:"), "{out}");

    // set / get and the output forms.
    world
        .cairn()
        .args([
            "conf",
            "set",
            DEVICE,
            "id=ca155b32",
            "server-url=http://127.0.0.1:8000",
        ])
        .assert()
        .success();
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", DEVICE, "server-url"])),
        "http://127.0.0.1:8000\n"
    );
    let doc = stdout_of(world.cairn().args(["conf", "get", DEVICE, "-d"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&doc).unwrap(),
        serde_json::json!({"server-url": "http://127.0.0.1:8000"})
    );
    world
        .cairn()
        .args(["conf", "set", "acme/network/control-interfaces"])
        .arg(r#"stats.eth0={"n-sent": 130, "n-received": 127}"#)
        .arg(r#"stats.wlan0={"n-sent": 131, "n-received": 148}"#)
        .assert()
        .success();
    let out = stdout_of(world.cairn().args([
        "conf",
        "get",
        "acme/network/observe-interfaces",
        "packets-sent",
    ]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"eth0": 130, "wlan0": 131})
    );
    // --with binds a placeholder.
    let out = stdout_of(world.cairn().args([
        "conf",
        "get",
        "acme/network/observe-interfaces",
        "-d",
        "--with",
        "name=eth0",
    ]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["packets-sent"],
        serde_json::json!({"eth0": 130}),
        "{doc}"
    );
    // -s keeps strings, -t insists on JSON.
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "-s", "interface=5"])
        .assert()
        .success();
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", TUNNEL, "interface"])),
        "5\n"
    );
    let err = error_of(
        world
            .cairn()
            .args(["conf", "set", TUNNEL, "-t", "interface=eth0"]),
    );
    assert!(
        err.starts_with("cairn: cannot set \"interface\": value \"eth0\" is not JSON (-t)"),
        "{err}"
    );
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "interface!", "peers=[\"10.0.0.1\"]"])
        .assert()
        .success();
    assert_eq!(
        error_of(world.cairn().args(["conf", "get", TUNNEL, "interface"])),
        "cairn: cannot get \"interface\" through acme/network/control-tunnel: no data"
    );
    assert_eq!(
        stdout_of(
            world
                .cairn()
                .args(["conf", "get", TUNNEL, "interface", "--default", "eth9"])
        ),
        "eth9\n"
    );
    world
        .cairn()
        .args(["conf", "unset", TUNNEL, "peers"])
        .assert()
        .success();

    // Error texts name the key, the view and the reason.
    assert_eq!(
        error_of(world.cairn().args(["conf", "get", DEVICE, "foo"])),
        "cairn: cannot get \"foo\" through acme/network/control-device: no matching rule"
    );
    assert_eq!(
        error_of(world.cairn().args(["conf", "set", DEVICE, "id=5"])),
        "cairn: cannot set \"id\" through acme/network/control-device: expected string at device.uuid, got 5"
    );
    let err = error_of(world.cairn().args([
        "conf",
        "set",
        "acme/network/control-interfaces",
        "config.eth0={\"x\": 1}",
    ]));
    assert_eq!(
        err,
        "cairn: cannot set \"config.eth0\" through acme/network/control-interfaces: unexpected field \"x\" at interfaces.eth0.config (expected one of: interface-type, ip-address)"
    );
    let err = error_of(world.cairn().args(["conf", "set", DEVICE, "oops"]));
    assert_eq!(
        err,
        "cairn: cannot set \"oops\": expected KEY=VALUE or KEY! (to unset)"
    );

    // history and rollback.
    let out = stdout_of(
        world
            .cairn()
            .args(["conf", "history", "acme/network", "--json"]),
    );
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = history.as_array().unwrap().first().unwrap()["revision"]
        .as_u64()
        .unwrap();
    let out =
        stdout_of(
            world
                .cairn()
                .args(["conf", "rollback", "acme/network", &first.to_string()]),
        );
    assert!(
        out.starts_with(&format!("rolled acme/network back to revision {first}")),
        "{out}"
    );
    assert_eq!(
        error_of(
            world
                .cairn()
                .args(["conf", "get", "acme/network/observe-interfaces"])
        ),
        "cairn: cannot get through acme/network/observe-interfaces: no data"
    );
    let out = stdout_of(world.cairn().args(["conf", "history", "acme/network"]));
    assert!(out.starts_with("REVISION"), "{out}");

    // Graceful stop removes the socket.
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    assert!(!admin_socket(&world).exists());
}

#[test]
fn watch_prints_one_line_per_commit() {
    let world = World::new();
    let signed = signed_schema(&world);
    let _daemon = Daemon::start(&world);
    add_schema(&world, &signed);
    let mut watch = world
        .cairn_std()
        .args(["conf", "watch", TUNNEL, "peers"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["revision"], serde_json::Value::Null);
    world
        .cairn()
        .args([
            "conf",
            "set",
            TUNNEL,
            "peers=[\"10.0.0.1\"]",
            "interface=eth0",
        ])
        .assert()
        .success();
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "interface=eth1"])
        .assert()
        .success(); // not watched
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "peers=[\"10.0.0.2\"]"])
        .assert()
        .success();
    let a: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(a["data"], serde_json::json!({"peers": ["10.0.0.1"]}));
    assert_eq!(b["data"], serde_json::json!({"peers": ["10.0.0.2"]}));
    assert!(b["revision"].as_u64().unwrap() > a["revision"].as_u64().unwrap());
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn apps_use_their_socket_and_reload_on_sighup() {
    let world = World::new();
    let signed = signed_schema(&world);
    let apps = world.config_dir().join("apps");
    support::write(
        &apps.join("reporting.yaml"),
        "confdb-plug: [acme/network/observe-tunnel]\n",
    );
    let daemon = Daemon::start(&world);
    add_schema(&world, &signed);
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "peers=[\"10.0.0.1\"]"])
        .assert()
        .success();

    // Inside a sandbox there is no admin socket, only CAIRN_SOCKET.
    let reporting = run_dir(&world).join("apps/reporting.sock");
    let elsewhere = World::new();
    let as_app = |args: &[&str]| {
        let mut cmd = elsewhere.cairn();
        cmd.env("CAIRN_SOCKET", &reporting).args(args);
        cmd
    };
    assert_eq!(
        stdout_of(&mut as_app(&[
            "conf",
            "get",
            "acme/network/observe-tunnel",
            "-d"
        ])),
        "{\n  \"peers\": [\n    \"10.0.0.1\"\n  ]\n}\n"
    );
    assert_eq!(
        error_of(&mut as_app(&["conf", "get", TUNNEL])),
        "cairn: permission denied: app \"reporting\" has no plug for view acme/network/control-tunnel"
    );
    assert_eq!(
        error_of(&mut as_app(&["conf", "schema", "ls"])),
        "cairn: permission denied: app \"reporting\" cannot list schemas (administrators only)"
    );

    // SIGHUP: a new app gets its socket, a removed one loses it.
    support::write(
        &apps.join("vpn.yaml"),
        "confdb-plug: [acme/network/control-tunnel:custodian]\n",
    );
    std::fs::remove_file(apps.join("reporting.yaml")).unwrap();
    daemon.signal("HUP");
    let vpn = run_dir(&world).join("apps/vpn.sock");
    wait_for("the vpn socket", || vpn.exists());
    wait_for("the reporting socket to go", || !reporting.exists());
    let mut cmd = elsewhere.cairn();
    cmd.env("CAIRN_SOCKET", &vpn)
        .args(["conf", "set", TUNNEL, "peers=[\"10.0.0.9\"]"]);
    cmd.assert().success();
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", TUNNEL, "peers", "-d"])),
        "{\n  \"peers\": [\n    \"10.0.0.9\"\n  ]\n}\n"
    );
}

#[test]
fn daemon_tells_systemd_when_ready_and_stopping() {
    let world = World::new();
    let notify = world.path("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let daemon = Daemon::start_with(&world, |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify)
            .env("WATCHDOG_USEC", "200000");
    });
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = listener.recv(&mut buf).unwrap();
        std::str::from_utf8(&buf[..n]).unwrap().trim().to_string()
    };
    assert_eq!(next(), "READY=1");
    // The watchdog is fed at half its period.
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    assert!(daemon.stop().success());
    let mut last = next();
    while last == "WATCHDOG=1" {
        last = next();
    }
    assert_eq!(last, "STOPPING=1");
}

#[test]
fn daemon_prints_its_openapi_document() {
    let world = World::new();
    let out = stdout_of(world.cairn().args(["daemon", "--openapi"]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(doc["paths"]["/v1/views/{account}/{schema}/{view}/watch"].is_object());
}

#[test]
fn custodian_hooks_of_sandboxed_apps_run_through_cairn_run() {
    let world = World::new();
    let leaf = world.family();
    let signed = signed_schema(&world);
    // The hook runs inside the app's sandbox, with the variables passed in.
    let hook = r#"data=$(cat); case "$data" in *6.6.6.6*) echo "banned by $CAIRN_APP for $CAIRN_VIEW" >&2; exit 1;; esac; printf '%s' "$data" | sed 's/eth9/eth0/'"#;
    support::write(
        &world.config_dir().join("apps/vpn.yaml"),
        &format!(
            "node: {}\nconfdb-plug: [acme/network/control-tunnel:custodian]\nhooks:\n  change-view: '{}'\n",
            leaf.display(),
            hook.replace('\'', "''")
        ),
    );
    let _daemon = Daemon::start(&world);
    add_schema(&world, &signed);
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "interface=eth9"])
        .assert()
        .success();
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", TUNNEL, "interface"])),
        "eth0\n"
    );
    assert_eq!(
        error_of(
            world
                .cairn()
                .args(["conf", "set", TUNNEL, "peers=[\"6.6.6.6\"]"])
        ),
        "cairn: cannot set \"peers\" through acme/network/control-tunnel: rejected by custodian \"vpn\": banned by vpn for acme/network/control-tunnel"
    );
}

#[test]
fn run_with_confdb_plug_gives_the_program_its_session_socket() {
    let world = World::new();
    let leaf = world.family();
    let signed = signed_schema(&world);
    let _daemon = Daemon::start(&world);
    add_schema(&world, &signed);
    world
        .cairn()
        .args(["conf", "set", TUNNEL, "peers=[\"10.0.0.1\"]"])
        .assert()
        .success();
    // Inside, `cairn` (on PATH) finds the session socket by itself and gets exactly the plug.
    let run = |args: &[&str]| {
        let mut cmd = world.cairn();
        cmd.args(["run", "--node"])
            .arg(&leaf)
            .args([
                "--confdb-plug",
                "acme/network/observe-tunnel",
                "--",
                "cairn",
            ])
            .args(args);
        cmd
    };
    assert_eq!(
        stdout_of(&mut run(&[
            "conf",
            "get",
            "acme/network/observe-tunnel",
            "peers",
            "-d"
        ])),
        "{\n  \"peers\": [\n    \"10.0.0.1\"\n  ]\n}\n"
    );
    let err = error_of(&mut run(&["conf", "get", TUNNEL]));
    assert!(
        err.starts_with("cairn: permission denied: app \"session-")
            && err.ends_with("\" has no plug for view acme/network/control-tunnel"),
        "{err}"
    );
    // The session is closed with the run: its socket is gone.
    let sessions = run_dir(&world).join("sessions");
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The registries-poc apps (control, vpn, reporting) as image apps: each gets its own
/// daemon socket and the `cairn` binary in its sandbox, reaches exactly its plugged views,
/// and the vpn app's custodian hook runs inside the vpn image's sandbox.
#[test]
fn registries_poc_apps_run_as_image_apps_with_their_plugs() {
    if !support::is_root() {
        return support::skip("image apps need root");
    }
    let world = World::new();
    let signed = signed_schema(&world);
    support::import_layout(
        &world,
        &support::write_busybox_layout(&world.path("layout")),
    );
    // The hook proves where it runs: the image's variable and the sandbox's hostname.
    let hook = r#"data=$(cat); case "$data" in *6.6.6.6*) echo "banned by $CAIRN_APP in $(cat /proc/sys/kernel/hostname) (image: $FROM_IMAGE)" >&2; exit 1;; esac; printf '%s' "$data" | sed 's/eth9/eth0/'"#;
    let register = |name: &str, plugs: &[&str]| {
        let mut cmd = world.cairn();
        cmd.args(["app", "register", name, "--image", "local/busybox:1"])
            .args(["--target", "/bin/sh", "--app-path"])
            .arg(world.path(&format!("bin/{name}")));
        for plug in plugs {
            cmd.args(["--confdb-plug", plug]);
        }
        cmd.assert().success();
    };
    register(
        "control",
        &[
            "acme/network/control-device",
            "acme/network/control-interfaces",
            "acme/network/control-tunnel",
        ],
    );
    register(
        "vpn",
        &[
            "acme/network/control-tunnel:custodian",
            "acme/network/observe-interfaces",
        ],
    );
    register(
        "reporting",
        &["acme/network/observe-tunnel", "acme/network/observe-device"],
    );
    support::write(
        &world.config_dir().join("apps/vpn.d/hooks.yaml"),
        &format!("hooks:\n  change-view: '{}'\n", hook.replace('\'', "''")),
    );
    let app = |name: &str, script: &str| {
        let mut cmd = assert_cmd::Command::new(world.path(&format!("bin/{name}")));
        cmd.env("CAIRN_ROOT", world.root()).args(["-c", script]);
        cmd
    };

    // Without the daemon there is no socket to give: one line, before anything starts.
    assert_eq!(
        error_of(&mut app("control", "true")),
        format!(
            "cairn: app control plugs confdb views, but the daemon serves no socket for it at {} (start `cairn daemon`)",
            run_dir(&world).join("apps/control.sock").display()
        )
    );

    let _daemon = Daemon::start(&world);
    add_schema(&world, &signed);
    // control: the socket and the binary are there, and its writes land.
    let out = stdout_of(&mut app(
        "control",
        "ls /run/cairn/ && echo \"$CAIRN_SOCKET\" && command -v cairn && cairn conf set acme/network/control-device id=ca155b32 server-url=http://127.0.0.1:8000 && cairn conf set acme/network/control-interfaces config.eth0.interface-type=ethernet config.eth0.ip-address=172.16.0.3",
    ));
    assert_eq!(
        out,
        "bin\ncairn.sock\n/run/cairn/cairn.sock\n/run/cairn/bin/cairn\n"
    );
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", DEVICE, "server-url"])),
        "http://127.0.0.1:8000\n"
    );
    // The vpn custodian's hook runs in the vpn image's sandbox: it rewrites and rejects.
    app(
        "control",
        "cairn conf set acme/network/control-tunnel interface=eth9",
    )
    .assert()
    .success();
    assert_eq!(
        stdout_of(world.cairn().args(["conf", "get", TUNNEL, "interface"])),
        "eth0\n"
    );
    assert_eq!(
        error_of(&mut app(
            "control",
            "cairn conf set acme/network/control-tunnel 'peers=[\"6.6.6.6\"]'"
        )),
        "cairn: cannot set \"peers\" through acme/network/control-tunnel: rejected by custodian \"vpn\": banned by vpn in vpn (image: yes)"
    );
    app(
        "control",
        "cairn conf set acme/network/control-tunnel 'peers=[\"192.168.21.3\"]'",
    )
    .assert()
    .success();
    // reporting reads what it plugs, and nothing else.
    assert_eq!(
        stdout_of(&mut app(
            "reporting",
            "cairn conf get acme/network/observe-tunnel peers && cairn conf get acme/network/observe-device id"
        )),
        "[\n  \"192.168.21.3\"\n]\nca155b32\n"
    );
    assert_eq!(
        error_of(&mut app(
            "reporting",
            "cairn conf get acme/network/control-device"
        )),
        "cairn: permission denied: app \"reporting\" has no plug for view acme/network/control-device"
    );
    // vpn, through its own socket, reads the interfaces as its observe plug shows them.
    app(
        "control",
        "cairn conf set acme/network/control-interfaces stats.eth0.n-sent=9",
    )
    .assert()
    .success();
    assert_eq!(
        stdout_of(&mut app(
            "vpn",
            "cairn conf get acme/network/observe-interfaces packets-sent.eth0"
        )),
        "9\n"
    );
    // A node app plugs through its own socket the same way.
    let leaf = world.family();
    world
        .cairn()
        .args(["app", "register", "node-reporting", "--node"])
        .arg(&leaf)
        .args([
            "--target",
            "/bin/sh",
            "--confdb-plug",
            "acme/network/observe-device",
        ])
        .arg("--app-path")
        .arg(world.path("bin/node-reporting"))
        .assert()
        .success();
    // Registering told the running daemon: the socket is there at once, no SIGHUP.
    assert!(run_dir(&world).join("apps/node-reporting.sock").exists());
    assert_eq!(
        stdout_of(&mut app(
            "node-reporting",
            "echo $CAIRN_SOCKET; cairn conf get acme/network/observe-device id"
        )),
        "/run/cairn/cairn.sock\nca155b32\n"
    );
    // A command in the app's environment (`cairn app exec`) is plugged the same way.
    assert_eq!(
        stdout_of(world.cairn().args([
            "app",
            "exec",
            "reporting",
            "--",
            "/bin/sh",
            "-c",
            "cairn conf get acme/network/observe-device id"
        ])),
        "ca155b32\n"
    );
}
