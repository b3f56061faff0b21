//! End-to-end tests of `cairn conf` and `cairn daemon` (the real binary): keys, trust and
//! signing on files; schemas, get/set/unset/watch/history/rollback through a running
//! daemon; app sockets, reload on SIGHUP, sd_notify, graceful stop.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::World;

const NETWORK: &str = include_str!("../crates/daemon/tests/network.yaml");
const DEVICE: &str = "acme/network/control-device";
const TUNNEL: &str = "acme/network/control-tunnel";

fn run_dir(world: &World) -> PathBuf {
    world.path("run/cairn")
}

fn admin_socket(world: &World) -> PathBuf {
    run_dir(world).join("cairn.sock")
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// `cairn daemon` as a child; SIGTERM and wait on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(world: &World) -> Daemon {
        Daemon::start_with(world, |_| {})
    }

    fn start_with(world: &World, tweak: impl FnOnce(&mut std::process::Command)) -> Daemon {
        let mut cmd = world.cairn_std();
        cmd.arg("daemon").stdout(Stdio::null());
        tweak(&mut cmd);
        let child = cmd.spawn().unwrap();
        let socket = admin_socket(world);
        wait_for("the daemon's socket", || {
            UnixStream::connect(&socket).is_ok()
        });
        Daemon { child }
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1): the test crate has no libc.
    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            let _ = self.child.wait();
        }
    }
}

/// Creates the `acme` key, trusts it, signs the network schema; returns the signed file.
fn signed_schema(world: &World) -> PathBuf {
    world
        .cairn()
        .args(["conf", "key", "create", "acme"])
        .assert()
        .success();
    let out = world
        .cairn()
        .args(["conf", "key", "export", "acme"])
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    world
        .cairn()
        .args(["conf", "trust", "add", "acme", &public])
        .assert()
        .success();
    let schema = world.path("network.yaml");
    std::fs::write(&schema, NETWORK).unwrap();
    let out = world
        .cairn()
        .args(["conf", "sign"])
        .arg(&schema)
        .args(["--key", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let signed = world.path("network.signed");
    std::fs::write(&signed, out.stdout).unwrap();
    signed
}

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
    world
        .cairn()
        .args(["conf", "schema", "add"])
        .arg(&signed)
        .assert()
        .success();
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
    world
        .cairn()
        .args(["conf", "schema", "add"])
        .arg(&signed)
        .assert()
        .success();
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
    world
        .cairn()
        .args(["conf", "schema", "add"])
        .arg(&signed)
        .assert()
        .success();
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
    world
        .cairn()
        .args(["conf", "schema", "add"])
        .arg(&signed)
        .assert()
        .success();
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
