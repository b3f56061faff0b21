//! The daemon end to end on real sockets, a real SQLite database and real hook processes:
//! the registries-poc scenario, custodian hooks, observers, sessions, and a kill -9 in the
//! middle of a stream of writes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Api, Root, control_defaults, eventually, start};
use hyper::Method;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const DEVICE: &str = "acme/network/control-device";
const INTERFACES: &str = "acme/network/control-interfaces";
const TUNNEL: &str = "acme/network/control-tunnel";
const TELEMETRY: &str = "acme/network/control-telemetry";

fn denied(app: &str, view: &str) -> String {
    format!("permission denied: app \"{app}\" has no plug for view {view}")
}

#[test]
fn registries_poc_scenario() {
    let root = Root::new();
    root.app(
        "control",
        "image: registry.local/control:1\nconfdb-plug:\n  - acme/network/control-device\n  - acme/network/control-interfaces\n  - acme/network/control-telemetry\n  - acme/network/control-tunnel\n",
    );
    root.app(
        "vpn",
        "confdb-plug: [acme/network/control-tunnel:custodian, acme/network/observe-interfaces]\n",
    );
    root.app(
        "reporting",
        "confdb-plug: [acme/network/observe-device, acme/network/observe-interfaces, acme/network/observe-tunnel, acme/network/observe-telemetry]\n",
    );
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    let info = admin.add_schema(root.signed_network()).unwrap();
    assert_eq!(info["account"], "acme");
    assert_eq!(info["name"], "network");

    // The control app registers the device and writes the defaults.
    let control = Api::on(&root.app_socket("control"));
    let uuid = "ca155b32-2472-4650-afb0-c6f967328afe";
    control
        .set(
            DEVICE,
            json!({"id": uuid, "server-url": "http://127.0.0.1:8000", "registered": 1719407517}),
        )
        .unwrap();
    control.set(INTERFACES, control_defaults()).unwrap();
    control
        .set(
            TUNNEL,
            json!({"interface": "eth0", "peers": ["192.168.21.3", "192.168.151.225"]}),
        )
        .unwrap();
    control
        .set(
            TELEMETRY,
            json!({"monitor-packets-received": false, "monitor-packets-sent": true,
            "monitor-peers": true, "sample-rate": 2}),
        )
        .unwrap();
    // `id` is write-only in control-device: the view shows only the server URL, as in the PoC.
    assert_eq!(
        control.get(DEVICE, &[]).unwrap(),
        json!({"server-url": "http://127.0.0.1:8000"})
    );
    assert_eq!(
        control.get(INTERFACES, &["config"]).unwrap(),
        json!({"config": {"eth0": {"interface-type": "ethernet", "ip-address": "172.16.0.3"},
            "wlan0": {"interface-type": "wifi", "ip-address": "192.168.0.104"}}})
    );
    // Simulated traffic.
    control
        .set(
            INTERFACES,
            json!({"stats.eth0": {"n-sent": 130, "n-received": 127},
            "stats.wlan0": {"n-sent": 131, "n-received": 148}}),
        )
        .unwrap();

    // The vpn app edits the peers of the tunnel it is custodian of.
    let vpn = Api::on(&root.app_socket("vpn"));
    let peers = json!(["192.168.21.3", "192.168.151.225", "192.168.21.7"]);
    vpn.set(TUNNEL, json!({"peers": peers})).unwrap();
    assert_eq!(
        vpn.get(TUNNEL, &["interface"]).unwrap(),
        json!({"interface": "eth0"})
    );

    // The reporting app reads the observe views.
    let reporting = Api::on(&root.app_socket("reporting"));
    assert_eq!(
        reporting
            .get("acme/network/observe-interfaces", &["packets-sent"])
            .unwrap(),
        json!({"packets-sent": {"eth0": 130, "wlan0": 131}})
    );
    assert_eq!(
        reporting
            .get("acme/network/observe-tunnel", &["peers"])
            .unwrap(),
        json!({"peers": peers})
    );
    assert_eq!(
        reporting.get("acme/network/observe-device", &[]).unwrap(),
        json!({"id": uuid, "registered": 1719407517})
    );
    assert_eq!(
        reporting
            .get("acme/network/observe-telemetry", &["sample-rate"])
            .unwrap(),
        json!({"sample-rate": 2})
    );

    // ... and is refused on every control view, for reads and writes.
    assert_eq!(
        reporting.get(DEVICE, &[]).unwrap_err(),
        denied("reporting", DEVICE)
    );
    assert_eq!(
        reporting
            .set(TELEMETRY, json!({"sample-rate": 60}))
            .unwrap_err(),
        denied("reporting", TELEMETRY)
    );
    assert_eq!(
        vpn.get(DEVICE, &["server-url"]).unwrap_err(),
        denied("vpn", DEVICE)
    );
    // A plugged observe view is still read-only: the library's rules say so.
    let err = reporting
        .set("acme/network/observe-tunnel", json!({"peers": []}))
        .unwrap_err();
    assert_eq!(
        err,
        "cannot set \"peers\" through acme/network/observe-tunnel: no matching rule"
    );
    // App sockets cannot administer.
    let err = reporting
        .client
        .call(Method::GET, "/v1/schemas", None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "permission denied: app \"reporting\" cannot list schemas (administrators only)"
    );
    // Nothing the refused calls tried was written.
    assert_eq!(
        admin.get(TELEMETRY, &["sample-rate"]).unwrap(),
        json!({"sample-rate": 2})
    );

    // The library's error texts reach the caller verbatim.
    let err = control.set(DEVICE, json!({"id": 5})).unwrap_err();
    assert!(
        err.starts_with("cannot set \"id\" through acme/network/control-device: "),
        "{err}"
    );
    let err = control.get(DEVICE, &["foo"]).unwrap_err();
    assert_eq!(
        err,
        "cannot get \"foo\" through acme/network/control-device: no matching rule"
    );
}

#[test]
fn schema_routes_list_show_history_and_rollback() {
    let root = Root::new();
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    admin.add_schema(root.signed_network()).unwrap();
    let list = admin.client.call(Method::GET, "/v1/schemas", None).unwrap();
    assert_eq!(list[0]["name"], "network");
    let shown = admin
        .client
        .call(Method::GET, "/v1/schemas/acme/network", None)
        .unwrap();
    assert!(shown["text"].as_str().unwrap().contains("control-tunnel"));
    let r1 = admin.set(TUNNEL, json!({"interface": "eth0"})).unwrap();
    let r2 = admin.set(TUNNEL, json!({"interface": "eth1"})).unwrap();
    assert!(r2 > r1);
    let history = admin
        .client
        .call(Method::GET, "/v1/schemas/acme/network/history", None)
        .unwrap();
    let revisions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert!(
        revisions.contains(&r1) && revisions.contains(&r2),
        "{history}"
    );
    let body = json!({"revision": r1}).to_string().into_bytes();
    let back = admin
        .client
        .call(
            Method::POST,
            "/v1/schemas/acme/network/rollback",
            Some(body),
        )
        .unwrap();
    assert!(back["revision"].as_u64().unwrap() > r2);
    assert_eq!(
        admin.get(TUNNEL, &["interface"]).unwrap(),
        json!({"interface": "eth0"})
    );
    // Unsigned documents are refused with the library's message.
    let err = admin
        .add_schema(common::NETWORK.as_bytes().to_vec())
        .unwrap_err();
    assert!(err.contains("not signed"), "{err}");
    let doc = admin
        .client
        .call(Method::GET, "/v1/openapi.json", None)
        .unwrap();
    assert!(doc["paths"]["/v1/views/{account}/{schema}/{view}"].is_object());
    admin
        .client
        .call(Method::DELETE, "/v1/schemas/acme/network", None)
        .unwrap();
    let err = admin.get(TUNNEL, &[]).unwrap_err();
    assert!(err.contains("acme/network"), "{err}");
}

fn write_script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn custodian_hook_modifies_and_rejects() {
    let root = Root::new();
    let hook = write_script(
        root.dir.path(),
        "vpn-check",
        r#"data=$(cat)
[ "$CAIRN_VIEW" = acme/network/control-tunnel ] || { echo "wrong view $CAIRN_VIEW" >&2; exit 1; }
case "$data" in
  *6.6.6.6*) echo "peer 6.6.6.6 is not allowed" >&2; exit 1;;
  *eth8*) echo '{"interface": 5}'; exit 0;;
esac
printf '%s' "$data" | sed 's/"eth9"/"eth0"/'"#,
    );
    root.app(
        "vpn",
        &format!(
            "confdb-plug: [acme/network/control-tunnel:custodian]\nhooks:\n  change-view: {}\n",
            hook.display()
        ),
    );
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    admin.add_schema(root.signed_network()).unwrap();

    // Modify: the custodian normalises the interface name.
    admin
        .set(TUNNEL, json!({"interface": "eth9", "peers": ["1.2.3.4"]}))
        .unwrap();
    assert_eq!(
        admin.get(TUNNEL, &[]).unwrap(),
        json!({"interface": "eth0", "peers": ["1.2.3.4"]})
    );
    let history_len = || {
        let h = admin
            .client
            .call(Method::GET, "/v1/schemas/acme/network/history", None)
            .unwrap();
        h.as_array().unwrap().len()
    };
    let before = history_len();

    // Reject: nothing is written.
    let err = admin
        .set(TUNNEL, json!({"peers": ["6.6.6.6"]}))
        .unwrap_err();
    assert_eq!(
        err,
        "cannot set \"peers\" through acme/network/control-tunnel: rejected by custodian \"vpn\": peer 6.6.6.6 is not allowed"
    );
    // A modification that breaks the schema is refused too.
    let err = admin.set(TUNNEL, json!({"interface": "eth8"})).unwrap_err();
    assert!(err.contains("acme/network/control-tunnel"), "{err}");
    assert_eq!(history_len(), before);
    assert_eq!(
        admin.get(TUNNEL, &["peers"]).unwrap(),
        json!({"peers": ["1.2.3.4"]})
    );

    // Writes to views the custodian does not hold do not run its hook.
    admin.set(TELEMETRY, json!({"sample-rate": 6.6})).unwrap();
}

#[test]
fn slow_custodian_hook_is_cut_off() {
    let root = Root::new();
    root.app(
        "vpn",
        "confdb-plug: [acme/network/control-tunnel:custodian]\nhooks:\n  change-view: sleep 30\n",
    );
    let mut options = root.options();
    options.hook_timeout = Duration::from_millis(300);
    let _daemon = common::start_with(options);
    let admin = Api::on(&root.admin());
    admin.add_schema(root.signed_network()).unwrap();
    let started = std::time::Instant::now();
    let err = admin.set(TUNNEL, json!({"interface": "eth0"})).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("did not finish within"), "{err}");
    assert!(
        admin.get(TUNNEL, &[]).is_err(),
        "a timed-out transaction must not commit"
    );
}

#[test]
fn observers_are_notified_once_per_commit() {
    let root = Root::new();
    let log = root.dir.path().join("observed.log");
    let hook = write_script(
        root.dir.path(),
        "observe",
        &format!("{{ cat; echo; }} >> {}", log.display()),
    );
    root.app(
        "reporting",
        &format!(
            "confdb-plug: [acme/network/observe-tunnel]\nhooks:\n  observe-view: {}\n",
            hook.display()
        ),
    );
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    admin.add_schema(root.signed_network()).unwrap();

    // A watcher on the tunnel view, as `cairn conf watch` would run.
    let admin_socket = root.admin();
    let watcher = std::thread::spawn(move || {
        let client = cairn_api::Client::new(&admin_socket).unwrap();
        let mut lines = Vec::new();
        client
            .stream_lines("/v1/views/acme/network/control-tunnel/watch", &mut |line| {
                lines.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
                lines.len() < 4
            })
            .unwrap();
        lines
    });
    std::thread::sleep(Duration::from_millis(300));

    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // One commit changing two keys, one of them observed: one notification.
    let r1 = admin
        .set(TUNNEL, json!({"interface": "eth0", "peers": ["10.0.0.1"]}))
        .unwrap();
    eventually("the first notification", || lines() == 1);
    // A commit that the observed view does not show: no notification.
    let r2 = admin.set(TUNNEL, json!({"interface": "eth1"})).unwrap();
    let r3 = admin
        .set(TUNNEL, json!({"peers": ["10.0.0.1", "10.0.0.2"]}))
        .unwrap();
    eventually("the second notification", || lines() == 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(), 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().last().unwrap(),
        r#"{"peers":["10.0.0.1","10.0.0.2"]}"#
    );

    let watched = watcher.join().unwrap();
    assert_eq!(watched[0]["revision"], serde_json::Value::Null);
    let revisions: Vec<u64> = watched[1..]
        .iter()
        .map(|l| l["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, vec![r1, r2, r3]);
    assert_eq!(
        watched[3]["data"],
        json!({"interface": "eth1", "peers": ["10.0.0.1", "10.0.0.2"]})
    );
}

#[test]
fn sessions_grant_their_plugs_until_closed() {
    let root = Root::new();
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    admin.add_schema(root.signed_network()).unwrap();
    admin.set(TUNNEL, json!({"peers": ["10.0.0.1"]})).unwrap();
    let plugs = vec!["acme/network/observe-tunnel".to_string()];
    let session =
        cairn_api::open_session(&root.admin(), std::path::Path::new("/nodes/leaf"), &plugs)
            .unwrap();
    assert!(session.socket.exists());
    let app = Api::on(&session.socket);
    assert_eq!(
        app.get("acme/network/observe-tunnel", &[]).unwrap(),
        json!({"peers": ["10.0.0.1"]})
    );
    let err = app.get(TUNNEL, &[]).unwrap_err();
    assert_eq!(err, denied(&format!("session-{}", session.id), TUNNEL));
    let socket = session.socket.clone();
    session.close().unwrap();
    assert!(!socket.exists());
    let err = Api::on(&socket)
        .get("acme/network/observe-tunnel", &[])
        .unwrap_err();
    assert!(err.starts_with("cannot reach the daemon"), "{err}");
    // Bad requests are refused with a reason.
    let err = cairn_api::open_session(&root.admin(), std::path::Path::new("/n"), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "a session needs at least one plug");
    let bad = vec!["acme/network".to_string()];
    let err = cairn_api::open_session(&root.admin(), std::path::Path::new("/n"), &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected ACCOUNT/SCHEMA/VIEW"), "{err}");
}

#[test]
fn a_second_daemon_refuses_to_start() {
    let root = Root::new();
    let _daemon = start(&root);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(cairn_daemon::Daemon::start(root.options()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "another daemon is already listening on {}",
            root.admin().display()
        )
    );
    // The first one still answers.
    Api::on(&root.admin())
        .client
        .call(Method::GET, "/v1/schemas", None)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// kill -9: the daemon runs as a child process (this test binary re-executed).

const CHILD_ROOT: &str = "CAIRN_DAEMON_TEST_CHILD_ROOT";

/// Not a test of its own: the body of the child daemon process used below.
#[test]
fn child_daemon_process() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else {
        return;
    };
    let root = PathBuf::from(root);
    let options =
        cairn_daemon::DaemonOptions::new(&root.join("etc"), &root.join("state"), &root.join("run"));
    cairn_daemon::run(options).unwrap();
}

#[test]
fn kill_9_during_writes_loses_no_committed_write_and_leaves_no_partial_one() {
    let root = Root::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_daemon_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root.dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the child daemon", || {
        std::os::unix::net::UnixStream::connect(root.admin()).is_ok()
    });
    Api::on(&root.admin())
        .add_schema(root.signed_network())
        .unwrap();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let admin = root.admin();
            std::thread::spawn(move || {
                let api = Api::on(&admin);
                let mut acked = 0u64;
                for k in 1.. {
                    let change = json!({ format!("stats.w{w}"): {"n-sent": k, "n-received": k} });
                    if api.set(INTERFACES, change).is_err() {
                        break;
                    }
                    acked = k;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let acked: Vec<u64> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        acked.iter().all(|&k| k > 0),
        "writers made no progress: {acked:?}"
    );

    // A new daemon on the same state (the old socket is stale) sees every acknowledged
    // write, and each write whole.
    let _daemon = start(&root);
    let admin = Api::on(&root.admin());
    let view = "acme/network/observe-interfaces";
    let data = admin.get(view, &[]).unwrap();
    for (w, &k) in acked.iter().enumerate() {
        let name = format!("w{w}");
        let sent = data["packets-sent"][&name].as_u64().unwrap();
        let received = data["packets-received"][&name].as_u64().unwrap();
        assert_eq!(sent, received, "half a transaction for {name}: {data}");
        assert!(
            sent == k || sent == k + 1,
            "{name}: acknowledged {k}, found {sent}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// SO_PEERCRED on the admin socket: a client process running as `nobody`.

const CHILD_CLIENT: &str = "CAIRN_DAEMON_TEST_CHILD_CLIENT";

/// Not a test of its own: the body of the unprivileged client process used below.
#[test]
fn child_client_process() {
    let Some(socket) = std::env::var_os(CHILD_CLIENT) else {
        return;
    };
    let client = cairn_api::Client::new(std::path::Path::new(&socket)).unwrap();
    match client.call(Method::GET, "/v1/schemas", None) {
        Ok(answer) => println!("ANSWER:ok {answer}"),
        Err(e) => println!("ANSWER:{e}"),
    }
}

#[test]
fn admin_socket_refuses_users_outside_root_and_group_cairn() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root = Root::new();
    std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _daemon = start(&root);
    // The file mode (0660) already keeps others out; open it to reach the credential check.
    std::fs::set_permissions(root.admin(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // The test binary may sit where `nobody` cannot reach it (a checkout under /root).
    let exe = root.dir.path().join("client");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "child_client_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CLIENT, root.admin())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = stdout
        .lines()
        .find_map(|l| l.split_once("ANSWER:").map(|(_, answer)| answer))
        .unwrap_or_else(|| {
            panic!(
                "no answer from the child: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(
        answer,
        format!(
            "permission denied: uid 65534 may not use the admin socket (root, uid {uid} and group cairn only)"
        )
    );
    // Root itself still gets in.
    Api::on(&root.admin())
        .client
        .call(Method::GET, "/v1/schemas", None)
        .unwrap();
}
