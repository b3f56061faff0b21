//! The Confdb handle against a real SQLite file: signed schemas, reads and writes through
//! views, transactions, concurrency, history and durability.
#![allow(clippy::unwrap_used)]

use cairn_confdb::keys::{self, TrustStore};
use cairn_confdb::{Confdb, Error, ViewId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NETWORK: &str = include_str!("network.yaml");

struct Env {
    _tmp: tempfile::TempDir,
    keys: PathBuf,
    trust: PathBuf,
    db: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let env = Env {
        keys: root.join("keys"),
        trust: root.join("trust"),
        db: root.join("confdb"),
        _tmp: tmp,
    };
    let public = keys::create_key(&env.keys, "acme-key").unwrap();
    TrustStore::add(&env.trust, "acme", &public.to_string()).unwrap();
    env
}

impl Env {
    fn sign(&self, doc: &str) -> Vec<u8> {
        keys::sign_document(&self.keys, "acme-key", doc.as_bytes()).unwrap()
    }

    async fn open(&self) -> Confdb {
        Confdb::open(&self.db, TrustStore::load(&self.trust).unwrap())
            .await
            .unwrap()
    }

    async fn network(&self) -> Confdb {
        let db = self.open().await;
        db.add_schema(&self.sign(NETWORK)).await.unwrap();
        db
    }
}

fn view(s: &str) -> ViewId {
    s.parse().unwrap()
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

async fn set(db: &Confdb, v: &str, changes: &[(&str, Option<Value>)]) -> Result<u64, Error> {
    let changes = changes
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    db.begin(&view(v), changes).await?.commit().await
}

async fn get(db: &Confdb, v: &str, keys: &[&str]) -> Result<Value, Error> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    db.get(&view(v), &keys, &none()).await
}

#[tokio::test]
async fn signed_schemas_are_verified() {
    let env = env();
    let db = env.open().await;
    let unsigned = db.add_schema(NETWORK.as_bytes()).await.unwrap_err();
    assert!(unsigned.to_string().contains("not signed"), "{unsigned}");
    let signed = env.sign(NETWORK);
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("min: 0.1", "min: 0.2");
    let err = db.add_schema(tampered.as_bytes()).await.unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    let other_account = NETWORK.replace("account: acme", "account: evil");
    let err = db.add_schema(&env.sign(&other_account)).await.unwrap_err();
    assert!(
        err.to_string().contains("is not trusted for account evil"),
        "{err}"
    );
    assert!(db.schemas().await.unwrap().is_empty());

    let info = db.add_schema(&signed).await.unwrap();
    assert_eq!(
        (info.account.as_str(), info.name.as_str(), info.revision),
        ("acme", "network", 0)
    );
    assert!(info.views.contains(&"control-device".to_string()));
    assert_eq!(
        db.schema_text("acme", "network").await.unwrap(),
        String::from_utf8(signed).unwrap()
    );
    db.remove_schema("acme", "network").await.unwrap();
    assert!(matches!(
        db.schema_text("acme", "network").await,
        Err(Error::UnknownSchema(_))
    ));
}

#[tokio::test]
async fn trust_added_after_open_is_seen() {
    let env = env();
    let db = env.open().await;
    let other = keys::create_key(&env.keys, "late").unwrap();
    let doc = keys::sign_document(&env.keys, "late", NETWORK.as_bytes()).unwrap();
    assert!(db.add_schema(&doc).await.is_err());
    TrustStore::add(&env.trust, "acme", &other.to_string()).unwrap();
    db.add_schema(&doc).await.unwrap();
}

#[tokio::test]
async fn inconsistent_schema_is_refused_with_the_rule() {
    let env = env();
    let db = env.open().await;
    let broken = NETWORK.replace(
        "storage: device.server-url }",
        "storage: device.server-uri }",
    );
    let err = db.add_schema(&env.sign(&broken)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema acme/network: view control-device rule \"server-url\": storage path \"device.server-uri\" is not in the storage schema"
    );
}

#[tokio::test]
async fn errors_name_key_view_and_reason() {
    let env = env();
    let db = env.network().await;
    let cd = "acme/network/control-device";
    let e = get(&db, cd, &["foo"]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot get \"foo\" through acme/network/control-device: no matching rule"
    );
    let e = set(&db, cd, &[("id", Some(json!(5)))]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set \"id\" through acme/network/control-device: expected string at device.uuid, got 5"
    );
    let e = get(&db, cd, &["server-url"]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot get \"server-url\" through acme/network/control-device: no data"
    );
    let e = db
        .begin(
            &view("acme/network/control-interfaces"),
            vec![(
                "config".into(),
                Some(json!({"eth0": {"interface-type": "wifi", "x": 1}})),
            )],
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unexpected field \"x\" at interfaces.eth0.config"),
        "{e}"
    );
    let e = db
        .begin(
            &view("acme/network/control-tunnel"),
            vec![("peers".into(), Some(json!({"a": 1})))],
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("expected array at tunnel.peers"),
        "{e}"
    );
    let e = set(
        &db,
        "acme/network/control-telemetry",
        &[("sample-rate", Some(json!({"x": 1})))],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("expected number"), "{e}");
    let e = db
        .begin(
            &view("acme/network/control-tunnel"),
            vec![(
                "".into(),
                Some(json!({"interface": "eth0", "config": {"x": 1}})),
            )],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set \"\" through acme/network/control-tunnel: invalid key: empty key"
    );
    let e = get(&db, "acme/network/nope", &[]).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("view acme/network/nope not found"),
        "{e}"
    );
}

#[tokio::test]
async fn unused_data_and_read_only_writes_are_refused() {
    let env = env();
    let db = env.network().await;
    let e = set(
        &db,
        "acme/network/control-tunnel",
        &[
            ("peers", Some(json!(["1.1.1.1"]))),
            ("interface", Some(json!("eth0"))),
        ],
    )
    .await;
    assert!(e.is_ok(), "{e:?}");
    let e = db
        .begin(
            &view("acme/network/control-interfaces"),
            vec![("config.eth0".into(), Some(json!(3)))],
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected map at interfaces.eth0.config"),
        "{e}"
    );
    let tel = view("acme/network/control-telemetry");
    let e = db
        .begin(
            &tel,
            vec![(
                "monitor".into(),
                Some(json!({"peers": true, "x": {"y": 1}})),
            )],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set \"monitor\" through acme/network/control-telemetry: value contains unused data: \"monitor.x.y\""
    );
    db.begin(&tel, vec![("monitor".into(), Some(json!({"peers": true})))])
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(
        db.get(&tel, &["monitor".into()], &none()).await.unwrap(),
        json!({"monitor": {"peers": true}})
    );
    let e = set(
        &db,
        "acme/network/observe-device",
        &[("id", Some(json!("x")))],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set \"id\" through acme/network/observe-device: no matching rule"
    );
}

#[tokio::test]
async fn required_fields_and_null_unsets() {
    let env = env();
    let db = env.network().await;
    let cd = "acme/network/control-device";
    let e = set(&db, cd, &[("server-url", Some(json!("http://x")))])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set \"server-url\" through acme/network/control-device: missing required field uuid at device"
    );
    set(
        &db,
        cd,
        &[
            ("id", Some(json!("u-1"))),
            ("server-url", Some(json!("http://x"))),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        get(&db, cd, &["server-url"]).await.unwrap(),
        json!({"server-url": "http://x"})
    );
    set(&db, cd, &[("server-url", None)]).await.unwrap();
    assert!(matches!(
        get(&db, cd, &["server-url"]).await,
        Err(Error::NoData { .. })
    ));
    let e = set(&db, cd, &[("id", Some(Value::Null))]).await;
    assert!(
        e.is_ok(),
        "unsetting the last field removes the optional map: {e:?}"
    );
    assert_eq!(db.databag("acme", "network").unwrap().1, json!({}));
}

#[tokio::test]
async fn placeholders_with_and_documents_keyed_by_request() {
    let env = env();
    let db = env.network().await;
    set(
        &db,
        "acme/network/control-interfaces",
        &[(
            "stats",
            Some(json!({"eth0": {"n-sent": 12, "n-received": 4}, "wlan0": {"n-sent": 3}})),
        )],
    )
    .await
    .unwrap();
    let oi = view("acme/network/observe-interfaces");
    assert_eq!(
        get(&db, &oi.to_string(), &["packets-sent"]).await.unwrap(),
        json!({"packets-sent": {"eth0": 12, "wlan0": 3}})
    );
    let mut with = BTreeMap::new();
    with.insert("name".to_string(), "wlan0".to_string());
    assert_eq!(
        db.get(&oi, &["packets-sent".into()], &with).await.unwrap(),
        json!({"packets-sent": {"wlan0": 3}})
    );
    assert_eq!(
        db.get(
            &oi,
            &["packets-sent".into(), "packets-received".into()],
            &none()
        )
        .await
        .unwrap(),
        json!({"packets-sent": {"eth0": 12, "wlan0": 3}, "packets-received": {"eth0": 4}})
    );
    assert_eq!(
        db.get(&oi, &[], &none()).await.unwrap(),
        json!({"packets-sent": {"eth0": 12, "wlan0": 3}, "packets-received": {"eth0": 4}})
    );
    with.insert("name".to_string(), "Bad".to_string());
    assert!(db.get(&oi, &[], &with).await.is_err());
}

#[tokio::test]
async fn hooks_see_and_replace_view_data_and_drop_aborts() {
    let env = env();
    let db = env.network().await;
    let ci = view("acme/network/control-interfaces");
    let mut tx = db
        .begin(
            &ci,
            vec![(
                "config.eth0".into(),
                Some(json!({"interface-type": "wifi", "ip-address": "10.0.0.1"})),
            )],
        )
        .await
        .unwrap();
    let seen = tx.view_data(&ci).unwrap();
    assert_eq!(
        seen,
        json!({"config": {"eth0": {"interface-type": "wifi", "ip-address": "10.0.0.1"}}})
    );
    let bad = tx
        .replace_view_data(
            &ci,
            json!({"config": {"eth0": {"interface-type": "modem"}}}),
        )
        .unwrap_err();
    assert!(bad.to_string().contains("not one of the choices"), "{bad}");
    tx.replace_view_data(
        &ci,
        json!({"config": {"eth0": {"interface-type": "ethernet", "ip-address": "10.0.0.9"}}}),
    )
    .unwrap();
    let other = view("acme/other/x");
    assert!(matches!(
        tx.view_data(&other),
        Err(Error::WrongSchema { .. })
    ));
    let rev = tx.commit().await.unwrap();
    assert_eq!(rev, 1);
    assert_eq!(
        db.databag("acme", "network").unwrap().1["interfaces"]["eth0"]["config"]["ip-address"],
        json!("10.0.0.9")
    );

    let tx = db
        .begin(&ci, vec![("config.eth0".into(), None)])
        .await
        .unwrap();
    drop(tx);
    assert_eq!(db.databag("acme", "network").unwrap().0, 1);
    assert!(
        db.databag("acme", "network").unwrap().1["interfaces"]["eth0"]
            .get("config")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_serialize_and_readers_do_not_block() {
    let env = env();
    let db = env.network().await;
    let tel = "acme/network/control-telemetry";
    set(&db, tel, &[("sample-rate", Some(json!(1.0)))])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            // Read-modify-write inside the transaction: the writer lock makes it atomic.
            let mut tx = db.begin(&view(tel), vec![]).await.unwrap();
            let n = tx.view_data(&view(tel)).unwrap()["sample-rate"]
                .as_f64()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.replace_view_data(&view(tel), json!({"sample-rate": n + 1.0}))
                .unwrap();
            tx.commit().await.unwrap()
        }));
    }
    // While a writer holds the lock, reads answer at once from the last commit.
    let reader = db.clone();
    let held = db
        .begin(
            &view(tel),
            vec![("monitor.peers".into(), Some(json!(true)))],
        )
        .await;
    let held = held.unwrap();
    let start = std::time::Instant::now();
    let seen = reader.get(&view(tel), &[], &none()).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(100));
    assert!(
        seen.get("monitor").is_none(),
        "a read saw an uncommitted write"
    );
    held.commit().await.unwrap();
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap());
    }
    revisions.sort();
    let rate = get(&db, tel, &["sample-rate"]).await.unwrap();
    assert_eq!(rate, json!({"sample-rate": 9.0}), "a write was lost");
    revisions.dedup();
    assert_eq!(revisions.len(), 8, "two writers got the same revision");
    assert_eq!(db.history("acme", "network").await.unwrap().len(), 10);
}

#[tokio::test]
async fn history_rollback_events_and_reopen() {
    let env = env();
    let db = env.network().await;
    let mut events = db.subscribe();
    let tun = "acme/network/control-tunnel";
    assert_eq!(
        set(&db, tun, &[("interface", Some(json!("eth0")))])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        set(&db, tun, &[("interface", Some(json!("wlan0")))])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        set(&db, tun, &[("interface", Some(json!("wlan0")))])
            .await
            .unwrap(),
        2,
        "no-op writes make no revision"
    );
    let ev = events.recv().await.unwrap();
    assert_eq!(
        (ev.revision, ev.changed.clone()),
        (1, vec!["tunnel".to_string()])
    );
    let ev = events.recv().await.unwrap();
    assert_eq!(
        (ev.revision, ev.changed.clone()),
        (2, vec!["tunnel.interface".to_string()])
    );
    let affected = db.affected_views(&ev);
    assert_eq!(affected, vec![view(tun)]);
    let history = db.history("acme", "network").await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.revision).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(db.rollback("acme", "network", 1).await.unwrap(), 3);
    assert_eq!(
        get(&db, tun, &["interface"]).await.unwrap(),
        json!({"interface": "eth0"})
    );
    assert!(matches!(
        db.rollback("acme", "network", 42).await,
        Err(Error::NoRevision { .. })
    ));
    db.close().await;
    drop(db);
    let db = env.open().await;
    assert_eq!(
        get(&db, tun, &["interface"]).await.unwrap(),
        json!({"interface": "eth0"})
    );
    assert_eq!(db.schemas().await.unwrap()[0].revision, 3);
    assert_eq!(db.rollback("acme", "network", 0).await.unwrap(), 4);
    assert!(matches!(
        get(&db, tun, &[]).await,
        Err(Error::NoData { .. })
    ));
}

#[tokio::test]
async fn schema_update_keeps_data_and_refuses_misfits() {
    let env = env();
    let db = env.network().await;
    set(
        &db,
        "acme/network/control-tunnel",
        &[("interface", Some(json!("eth0")))],
    )
    .await
    .unwrap();
    let stricter = NETWORK.replace("interface: string", "interface: int");
    let e = db.add_schema(&env.sign(&stricter)).await.unwrap_err();
    assert!(
        e.to_string().contains(
            "existing data does not fit the new schema: expected int at tunnel.interface"
        ),
        "{e}"
    );
    let looser = NETWORK.replace("summary: Network", "summary: Updated network");
    let info = db.add_schema(&env.sign(&looser)).await.unwrap();
    assert_eq!(info.revision, 1);
    assert_eq!(
        get(&db, "acme/network/control-tunnel", &["interface"])
            .await
            .unwrap(),
        json!({"interface": "eth0"})
    );
}

/// The child half of the kill -9 test (run by it, never on its own): commits, reports,
/// then waits to be killed.
#[tokio::test]
#[ignore = "helper process of committed_writes_survive_kill9"]
async fn kill9_child() {
    let Ok(dir) = std::env::var("CONFDB_KILL_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let db = Confdb::open(
        &dir.join("confdb"),
        TrustStore::load(&dir.join("trust")).unwrap(),
    )
    .await
    .unwrap();
    for i in 0..20 {
        let rev = set(
            &db,
            "acme/network/control-tunnel",
            &[("interface", Some(json!(format!("eth{i}"))))],
        )
        .await
        .unwrap();
        println!("committed {rev}");
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn run_killed_child(root: &Path) -> u64 {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "kill9_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONFDB_KILL_CHILD_DIR", root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rev) = line.strip_prefix("committed ") {
            last = rev.parse().unwrap();
            if last == 20 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    last
}

#[tokio::test]
async fn committed_writes_survive_kill9() {
    let env = env();
    env.network().await.close().await;
    let root = env.db.parent().unwrap().to_path_buf();
    let last = run_killed_child(&root);
    assert_eq!(last, 20);
    let db = env.open().await;
    assert_eq!(
        get(&db, "acme/network/control-tunnel", &["interface"])
            .await
            .unwrap(),
        json!({"interface": "eth19"})
    );
    assert_eq!(db.databag("acme", "network").unwrap().0, 20);
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Confdb>();
    send::<cairn_confdb::Transaction>();
    send::<cairn_confdb::CommitEvent>();
}

/// Reads come from memory: thousands per second even in a debug build on a busy machine.
#[tokio::test]
async fn reads_are_cheap() {
    let env = env();
    let db = env.network().await;
    set(
        &db,
        "acme/network/control-tunnel",
        &[
            ("interface", Some(json!("eth0"))),
            ("peers", Some(json!(["1.1.1.1", "2.2.2.2"]))),
        ],
    )
    .await
    .unwrap();
    let v = view("acme/network/control-tunnel");
    let keys = vec!["peers".to_string()];
    let start = std::time::Instant::now();
    for _ in 0..10_000 {
        let got = db.get(&v, &keys, &none()).await.unwrap();
        assert_eq!(got["peers"][1], json!("2.2.2.2"));
    }
    let per_get = start.elapsed() / 10_000;
    assert!(
        per_get < Duration::from_micros(200),
        "a get took {per_get:?}"
    );
}
