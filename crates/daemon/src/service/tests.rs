//! The service called directly, without HTTP or sockets: authorization, the write pipeline
//! with real hook processes, sessions and watch streams.

use super::testing::{service_and_endpoints, service_with, signed_network};
use super::*;
use futures_util::StreamExt;
use serde_json::json;
use std::path::Path;

const DEVICE: &str = "acme/network/control-device";
const TUNNEL: &str = "acme/network/control-tunnel";
const OBSERVE_TUNNEL: &str = "acme/network/observe-tunnel";
const TELEMETRY: &str = "acme/network/control-telemetry";

fn view(text: &str) -> ViewId {
    text.parse().unwrap()
}

fn app(name: &str, plugs: &[&str], hooks: Hooks) -> App {
    let plugs: Vec<String> = plugs.iter().map(|p| p.to_string()).collect();
    App::new(name, None, &plugs, hooks, AppSource::Config).unwrap()
}

fn change_hook(command: String) -> Hooks {
    Hooks {
        change_view: Some(command),
        ..Hooks::default()
    }
}

async fn with_schema(dir: &Path, apps: Vec<App>) -> Arc<Service> {
    let service = service_with(dir, apps).await;
    let admin = service.grant_admin(&Caller::Admin, "add schemas").unwrap();
    service
        .add_schema(&admin, &signed_network(dir))
        .await
        .unwrap();
    service
}

#[tokio::test]
async fn admin_may_do_everything_and_apps_only_their_plugged_views() {
    let dir = tempfile::tempdir().unwrap();
    let apps = vec![
        app("reporting", &[OBSERVE_TUNNEL], Hooks::default()),
        app(
            "vpn",
            &["acme/network/control-tunnel:custodian"],
            Hooks::default(),
        ),
    ];
    let service = service_with(dir.path(), apps).await;
    let (tunnel, observe) = (view(TUNNEL), view(OBSERVE_TUNNEL));
    let reporting = Caller::App("reporting".into());
    let vpn = Caller::App("vpn".into());

    for v in [&tunnel, &observe] {
        assert_eq!(
            service.authorize(&Caller::Admin, Access::View(v)).unwrap(),
            Role::Admin
        );
    }
    assert_eq!(
        service
            .authorize(&Caller::Admin, Access::Admin("list schemas"))
            .unwrap(),
        Role::Admin
    );
    assert_eq!(
        service
            .authorize(&reporting, Access::View(&observe))
            .unwrap(),
        Role::Plug { custodian: false }
    );
    assert_eq!(
        service.authorize(&vpn, Access::View(&tunnel)).unwrap(),
        Role::Plug { custodian: true }
    );
    let err = service
        .authorize(&reporting, Access::View(&tunnel))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: app \"reporting\" has no plug for view acme/network/control-tunnel"
    );
    let err = service
        .authorize(&vpn, Access::Admin("list schemas"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: app \"vpn\" cannot list schemas (administrators only)"
    );
    // Unknown apps, and the cloud link until it is defined, get nothing.
    for caller in [Caller::App("gone".into()), Caller::Cloud] {
        assert!(service.authorize(&caller, Access::View(&observe)).is_err());
        assert!(
            service
                .authorize(&caller, Access::Admin("add schemas"))
                .is_err()
        );
    }
}

#[tokio::test]
async fn operations_only_take_grants_and_keep_the_library_rules() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_schema(
        dir.path(),
        vec![app("reporting", &[OBSERVE_TUNNEL], Hooks::default())],
    )
    .await;
    let admin = service.grant_view(&Caller::Admin, view(TUNNEL)).unwrap();
    let revision = service
        .set(&admin, vec![("peers".into(), Some(json!(["10.0.0.1"])))])
        .await
        .unwrap();
    assert!(revision > 0);
    let reporting = Caller::App("reporting".into());
    let grant = service
        .grant_view(&reporting, view(OBSERVE_TUNNEL))
        .unwrap();
    assert_eq!(
        service.get(&grant, &[], &BTreeMap::new()).await.unwrap(),
        json!({"peers": ["10.0.0.1"]})
    );
    // A plugged observe view is still read-only: the library's rules say so.
    let err = service
        .set(&grant, vec![("peers".into(), Some(json!([])))])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot set \"peers\" through acme/network/observe-tunnel: no matching rule"
    );
    assert!(service.grant_view(&reporting, view(DEVICE)).is_err());
    assert!(service.grant_admin(&reporting, "read history").is_err());
}

#[tokio::test]
async fn only_custodian_plugs_run_change_view_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("custodian.log");
    // The custodian records each call and normalises the interface name; a plain plug's
    // hook would refuse every write if it ran.
    let custodian = change_hook(format!(
        "data=$(cat); echo \"$CAIRN_VIEW\" >> {}; printf '%s' \"$data\" | sed 's/eth9/eth0/'",
        log.display()
    ));
    let apps = vec![
        app("vpn", &["acme/network/control-tunnel:custodian"], custodian),
        app(
            "plain",
            &[TUNNEL, TELEMETRY],
            change_hook("echo 'not a custodian' >&2; exit 1".into()),
        ),
    ];
    let service = with_schema(dir.path(), apps).await;
    let admin = service.grant_view(&Caller::Admin, view(TUNNEL)).unwrap();
    service
        .set(&admin, vec![("interface".into(), Some(json!("eth9")))])
        .await
        .unwrap();
    assert_eq!(
        service.get(&admin, &[], &BTreeMap::new()).await.unwrap(),
        json!({"interface": "eth0"})
    );
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls(), "acme/network/control-tunnel\n");
    // A write that leaves the custodied view as it is does not ask the custodian.
    let telemetry = service.grant_view(&Caller::Admin, view(TELEMETRY)).unwrap();
    service
        .set(&telemetry, vec![("sample-rate".into(), Some(json!(2)))])
        .await
        .unwrap();
    assert_eq!(calls().lines().count(), 1);

    // A custodian that refuses: nothing is written, the message names the custodian.
    let refusing = change_hook("echo 'peer 6.6.6.6 is banned' >&2; exit 1".into());
    let dir = tempfile::tempdir().unwrap();
    let service = with_schema(
        dir.path(),
        vec![app(
            "vpn",
            &["acme/network/control-tunnel:custodian"],
            refusing,
        )],
    )
    .await;
    let vpn = service
        .grant_view(&Caller::App("vpn".into()), view(TUNNEL))
        .unwrap();
    let err = service
        .set(&vpn, vec![("peers".into(), Some(json!(["6.6.6.6"])))])
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Rejected { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "cannot set \"peers\" through acme/network/control-tunnel: rejected by custodian \"vpn\": peer 6.6.6.6 is banned"
    );
    assert!(service.get(&vpn, &[], &BTreeMap::new()).await.is_err());
}

#[tokio::test]
async fn sessions_grant_their_plugs_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (service, endpoints) = service_and_endpoints(dir.path(), vec![]).await;
    let admin = service
        .grant_admin(&Caller::Admin, "open sessions")
        .unwrap();
    let plugs = vec![OBSERVE_TUNNEL.to_string()];
    let node = SessionFor::Node("/nodes/leaf".into());
    let opened = service.open_session(&admin, node, &plugs).unwrap();
    let session = Caller::Session(opened.id.clone());
    assert_eq!(*endpoints.open.lock().unwrap(), vec![session.clone()]);
    assert_eq!(
        service
            .authorize(&session, Access::View(&view(OBSERVE_TUNNEL)))
            .unwrap(),
        Role::Plug { custodian: false }
    );
    let err = service
        .authorize(&session, Access::View(&view(TUNNEL)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "permission denied: app \"session-{}\" has no plug for view {TUNNEL}",
            opened.id
        )
    );
    // A session of a registered app is served the same way.
    let for_app = SessionFor::App("vpn".into());
    let second = service.open_session(&admin, for_app, &plugs).unwrap();
    assert_ne!(second.id, opened.id);

    service.close_session(&admin, &opened.id).unwrap();
    assert!(
        service
            .authorize(&session, Access::View(&view(OBSERVE_TUNNEL)))
            .is_err()
    );
    assert_eq!(
        *endpoints.open.lock().unwrap(),
        vec![Caller::Session(second.id.clone())]
    );
    let err = service.close_session(&admin, &opened.id).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("session \"{}\" not found", opened.id)
    );

    // Bad requests are refused with a reason, and nothing is served.
    let bad = |identity: SessionFor, plugs: &[&str]| {
        let plugs: Vec<String> = plugs.iter().map(|p| p.to_string()).collect();
        service
            .open_session(&admin, identity, &plugs)
            .unwrap_err()
            .to_string()
    };
    let node = || SessionFor::Node("/n".into());
    assert_eq!(bad(node(), &[]), "a session needs at least one plug");
    assert_eq!(
        bad(SessionFor::Node("rel".into()), &[OBSERVE_TUNNEL]),
        "session node \"rel\" is not an absolute path"
    );
    assert!(
        bad(node(), &["acme/network"]).contains("expected ACCOUNT/SCHEMA/VIEW"),
        "{}",
        bad(node(), &["acme/network"])
    );
    assert!(bad(SessionFor::App("Bad/Name".into()), &[OBSERVE_TUNNEL]).contains("Bad/Name"));
    assert_eq!(endpoints.open.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn reload_serves_new_apps_and_drops_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (service, endpoints) = service_and_endpoints(dir.path(), vec![]).await;
    let apps = dir.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::write(apps.join("reporting.yaml"), "confdb-plug: [a/b/c]\n").unwrap();
    service.reload();
    let reporting = Caller::App("reporting".into());
    assert_eq!(*endpoints.open.lock().unwrap(), vec![reporting.clone()]);
    assert!(
        service
            .authorize(&reporting, Access::View(&view("a/b/c")))
            .is_ok()
    );
    std::fs::remove_file(apps.join("reporting.yaml")).unwrap();
    service.reload();
    assert!(endpoints.open.lock().unwrap().is_empty());
    assert!(
        service
            .authorize(&reporting, Access::View(&view("a/b/c")))
            .is_err()
    );
}

#[tokio::test]
async fn watch_streams_the_current_data_then_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_schema(dir.path(), vec![]).await;
    let admin = service.grant_view(&Caller::Admin, view(TUNNEL)).unwrap();
    let updates = service
        .watch(admin.clone(), vec!["peers".into()], BTreeMap::new())
        .await
        .unwrap();
    let mut updates = Box::pin(updates);
    let first = updates.next().await.unwrap();
    assert_eq!(first.revision, None);
    assert_eq!(first.data, serde_json::Value::Null);
    let r1 = service
        .set(&admin, vec![("peers".into(), Some(json!(["10.0.0.1"])))])
        .await
        .unwrap();
    let next = updates.next().await.unwrap();
    assert_eq!(
        (next.revision, next.data),
        (Some(r1), json!({"peers": ["10.0.0.1"]}))
    );
    // A commit that leaves the watched keys as they are: no update.
    service
        .set(&admin, vec![("interface".into(), Some(json!("eth0")))])
        .await
        .unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(200), updates.next());
    assert!(quiet.await.is_err(), "an update for an unwatched key");
    let r3 = service
        .set(&admin, vec![("peers".into(), Some(json!(["10.0.0.2"])))])
        .await
        .unwrap();
    let next = updates.next().await.unwrap();
    assert_eq!(
        (next.revision, next.data),
        (Some(r3), json!({"peers": ["10.0.0.2"]}))
    );
    service.stop();
    assert!(
        updates.next().await.is_none(),
        "the stream ends at shutdown"
    );
}

/// The layering: the service and what it uses know no transport.
#[test]
fn the_service_knows_no_transport() {
    let sources = [
        ("service/mod.rs", include_str!("mod.rs")),
        ("service/pipeline.rs", include_str!("pipeline.rs")),
        ("service/watch.rs", include_str!("watch.rs")),
        ("apps.rs", include_str!("../apps.rs")),
        ("hooks.rs", include_str!("../hooks.rs")),
    ];
    for (file, text) in sources {
        for word in [
            "axum",
            "hyper",
            "cairn_api",
            "crate::http",
            "crate::sockets",
            "crate::server",
            "crate::peer",
        ] {
            assert!(!text.contains(word), "{file} mentions {word}");
        }
    }
}
