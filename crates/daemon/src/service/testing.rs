//! A service without a transport, for tests of the service and of the HTTP routes.

use super::{Caller, Endpoints, Service, ServiceOptions};
use crate::apps::App;
use crate::hooks::HookRunner;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Endpoints that serve nothing and remember what they were asked to serve.
#[derive(Debug, Default)]
pub struct Recorded {
    pub open: Mutex<Vec<Caller>>,
}

impl Endpoints for Recorded {
    fn open(&self, _: &Arc<Service>, caller: &Caller) -> Result<PathBuf, String> {
        self.open.lock().unwrap().push(caller.clone());
        Ok(PathBuf::from(format!("/nowhere/{caller}")))
    }

    fn close(&self, caller: &Caller) {
        self.open.lock().unwrap().retain(|c| c != caller);
    }
}

/// A service on a fresh database in `dir` with `apps` registered, and its endpoints.
pub async fn service_and_endpoints(dir: &Path, apps: Vec<App>) -> (Arc<Service>, Arc<Recorded>) {
    // Account acme's key is trusted, so that `signed_network` can be added.
    let keys = dir.join("keys");
    cairn_confdb::keys::create_key(&keys, "acme").unwrap();
    let public = cairn_confdb::keys::export_public(&keys, "acme").unwrap();
    cairn_confdb::TrustStore::add(&dir.join("trust"), "acme", &public).unwrap();
    let trust = cairn_confdb::TrustStore::load(&dir.join("trust")).unwrap();
    let confdb = cairn_confdb::Confdb::open(&dir.join("confdb"), trust)
        .await
        .unwrap();
    let endpoints = Arc::new(Recorded::default());
    let options = ServiceOptions {
        apps_dir: dir.join("apps"),
        hooks: HookRunner {
            exe: PathBuf::from("/bin/false"),
            timeout: Duration::from_secs(5),
        },
    };
    let service = Service::new(confdb, options, endpoints.clone());
    for app in apps {
        super::write(&service.apps).insert(app.name.clone(), Arc::new(app));
    }
    (service, endpoints)
}

pub async fn service_with(dir: &Path, apps: Vec<App>) -> Arc<Service> {
    service_and_endpoints(dir, apps).await.0
}

/// The daemon tests' network schema (the registries-poc views), signed by acme's key.
pub fn signed_network(dir: &Path) -> Vec<u8> {
    let text = include_str!("../../tests/network.yaml");
    cairn_confdb::keys::sign_document(&dir.join("keys"), "acme", text.as_bytes()).unwrap()
}
