//! A real daemon on real sockets in a temporary root, for the integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use cairn_api::Client;
use cairn_daemon::{Daemon, DaemonOptions};
use hyper::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const NETWORK: &str = include_str!("../network.yaml");

/// A temporary Cairn root with a signing key for account `acme` that is trusted.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let root = Root { dir };
        let keys = root.config().join("conf/keys");
        cairn_confdb::keys::create_key(&keys, "acme").unwrap();
        let public = cairn_confdb::keys::export_public(&keys, "acme").unwrap();
        cairn_confdb::TrustStore::add(&root.config().join("conf/trust"), "acme", &public).unwrap();
        root
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    pub fn options(&self) -> DaemonOptions {
        let mut options = DaemonOptions::new(
            &self.config(),
            &self.dir.path().join("state"),
            &self.dir.path().join("run"),
        );
        options.hook_timeout = Duration::from_secs(5);
        options
    }

    pub fn admin(&self) -> PathBuf {
        self.options().admin_socket()
    }

    pub fn app_socket(&self, app: &str) -> PathBuf {
        self.dir.path().join("run/apps").join(format!("{app}.sock"))
    }

    /// Writes `<config>/apps/NAME.yaml`.
    pub fn app(&self, name: &str, yaml: &str) {
        let dir = self.config().join("apps");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }

    pub fn signed_network(&self) -> Vec<u8> {
        cairn_confdb::keys::sign_document(
            &self.config().join("conf/keys"),
            "acme",
            NETWORK.as_bytes(),
        )
        .unwrap()
    }
}

/// A daemon running on its own thread and runtime; stopped (gracefully) on drop.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub admin: PathBuf,
}

pub fn start(root: &Root) -> Running {
    start_with(root.options())
}

pub fn start_with(options: DaemonOptions) -> Running {
    let admin = options.admin_socket();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let daemon = match Daemon::start(options).await {
                Ok(daemon) => daemon,
                Err(e) => {
                    ready_tx.send(Err(e.to_string())).unwrap();
                    return;
                }
            };
            ready_tx.send(Ok(())).unwrap();
            let _ = stop_rx.await;
            daemon.shutdown().await;
        });
    });
    ready_rx.recv().unwrap().unwrap();
    Running {
        stop: Some(stop_tx),
        thread: Some(thread),
        admin,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Blocking helpers over one socket.
pub struct Api {
    pub client: Client,
}

impl Api {
    pub fn on(socket: &Path) -> Api {
        Api {
            client: Client::new(socket).unwrap(),
        }
    }

    pub fn get(&self, view: &str, keys: &[&str]) -> Result<Value, String> {
        let query: Vec<String> = keys.iter().map(|k| format!("key={k}")).collect();
        let path = format!("/v1/views/{view}?{}", query.join("&"));
        self.client
            .call(Method::GET, &path, None)
            .map_err(|e| e.to_string())
    }

    pub fn set(&self, view: &str, changes: Value) -> Result<u64, String> {
        let path = format!("/v1/views/{view}");
        let answer = self
            .client
            .call(Method::PUT, &path, Some(changes.to_string().into_bytes()))
            .map_err(|e| e.to_string())?;
        Ok(answer["revision"].as_u64().unwrap())
    }

    pub fn add_schema(&self, signed: Vec<u8>) -> Result<Value, String> {
        self.client
            .call(Method::POST, "/v1/schemas", Some(signed))
            .map_err(|e| e.to_string())
    }
}

/// The control app's initial configuration, as in the registries PoC.
pub fn control_defaults() -> Value {
    json!({
        "config.eth0": {"interface-type": "ethernet", "ip-address": "172.16.0.3"},
        "config.wlan0": {"interface-type": "wifi", "ip-address": "192.168.0.104"},
    })
}

/// Waits until `check` holds (hooks and streams are asynchronous).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}
