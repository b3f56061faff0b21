//! The Unix-socket transport: the admin socket, one socket per app and per session, each
//! serving the HTTP routes of [`crate::http`] with its [`Caller`] fixed by the socket (and,
//! on the admin socket, by the peer's credentials).

use crate::Error;
use crate::http::{self, HttpError};
use crate::peer::{AdminPolicy, PeerInfo};
use crate::service::{Caller, Endpoints, Service};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_api::ErrorKind;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use cairn_config::{admin_socket, sessions_dir};

/// The sockets of one daemon and the tasks serving them.
#[derive(Debug)]
pub struct Sockets {
    run_dir: PathBuf,
    policy: AdminPolicy,
    /// Stop signals of the app and session sockets.
    listeners: Mutex<HashMap<Caller, watch::Sender<bool>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Requests served so far (the idle trimmer's activity signal).
    requests: Arc<AtomicU64>,
}

impl Sockets {
    pub fn new(run_dir: &Path, policy: AdminPolicy) -> Sockets {
        Sockets {
            run_dir: run_dir.to_path_buf(),
            policy,
            listeners: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Serves the admin socket: only peers the policy allows get [`Caller::Admin`].
    pub fn serve_admin(&self, service: &Arc<Service>, listener: UnixListener) {
        let task = tokio::spawn(serve_socket(
            service.clone(),
            listener,
            Identify::Peer(self.policy),
            self.requests.clone(),
            None,
            None,
        ));
        self.track(task);
    }

    /// How many requests all sockets served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn track(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The tasks still running (sockets, observers), for the shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn path_of(&self, caller: &Caller) -> Option<PathBuf> {
        match caller {
            Caller::App(name) => Some(cairn_config::app_socket(&self.run_dir, name)),
            Caller::Session(id) => Some(sessions_dir(&self.run_dir).join(format!("{id}.sock"))),
            Caller::Admin | Caller::Cloud => None,
        }
    }
}

impl Endpoints for Sockets {
    fn open(&self, service: &Arc<Service>, caller: &Caller) -> Result<PathBuf, String> {
        let path = self
            .path_of(caller)
            .ok_or_else(|| format!("{caller} has no socket of its own"))?;
        if let Some(parent) = path.parent() {
            // Only root passes through the host directory; sandboxes get the socket itself
            // bind-mounted, so the socket may be open to everyone inside.
            prepare_dir(parent, 0o711).map_err(|e| e.to_string())?;
        }
        let listener = bind_socket(&path, 0o666).map_err(|e| e.to_string())?;
        let (tx, rx) = watch::channel(false);
        let old = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(caller.clone(), tx);
        if let Some(old) = old {
            old.send_replace(true);
        }
        let task = tokio::spawn(serve_socket(
            service.clone(),
            listener,
            Identify::Fixed(caller.clone()),
            self.requests.clone(),
            Some(rx),
            Some(path.clone()),
        ));
        self.track(task);
        Ok(path)
    }

    fn close(&self, caller: &Caller) {
        let stop = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(caller);
        if let Some(stop) = stop {
            stop.send_replace(true);
        }
        // The path goes at once; open requests finish.
        if let Some(path) = self.path_of(caller) {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(crate) fn prepare_dir(path: &Path, mode: u32) -> Result<(), Error> {
    let prepare = |err| Error::Prepare {
        path: path.to_path_buf(),
        err,
    };
    std::fs::create_dir_all(path).map_err(prepare)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(prepare)
}

/// Binds the admin socket, refusing when another daemon answers on it.
pub(crate) fn bind_admin(run_dir: &Path) -> Result<UnixListener, Error> {
    let path = admin_socket(run_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(Error::AlreadyRunning { socket: path });
    }
    bind_socket(&path, 0o660)
}

/// Binds a socket at `path` (replacing a stale one) with permissions `mode`.
fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, Error> {
    let listen = |err| Error::Listen {
        path: path.to_path_buf(),
        err,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(listen)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    UnixListener::from_std(listener).map_err(listen)
}

/// How a socket knows its callers.
enum Identify {
    /// Every connection speaks for this caller (an app or session socket).
    Fixed(Caller),
    /// The admin socket: peers the policy allows are the administrator, others refused.
    Peer(AdminPolicy),
}

/// Serves one socket until its own stop signal or the service's shutdown.
async fn serve_socket(
    service: Arc<Service>,
    listener: UnixListener,
    identify: Identify,
    requests: Arc<AtomicU64>,
    stop: Option<watch::Receiver<bool>>,
    socket: Option<PathBuf>,
) {
    let router = http::router(service.clone());
    let router = match identify {
        Identify::Fixed(caller) => router.layer(axum::Extension(caller)),
        Identify::Peer(policy) => {
            router.layer(axum::middleware::from_fn_with_state(policy, admin_guard))
        }
    };
    let router = router.layer(axum::middleware::from_fn_with_state(
        requests,
        count_request,
    ));
    let mut global = service.stopping();
    let own_stop = async move {
        match stop {
            // A dropped sender counts as "stop" too: the app is gone.
            Some(mut stop) => drop(stop.wait_for(|s| *s).await),
            None => std::future::pending().await,
        }
    };
    let signal = async move {
        tokio::select! {
            _ = own_stop => {}
            _ = global.wait_for(|s| *s) => {}
        }
    };
    let make_service = router.into_make_service_with_connect_info::<PeerInfo>();
    if let Err(e) = axum::serve(listener, make_service)
        .with_graceful_shutdown(signal)
        .await
    {
        tracing::warn!("socket server stopped: {e}");
    }
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
    }
}

async fn count_request(
    State(requests): State<Arc<AtomicU64>>,
    request: Request,
    next: Next,
) -> Response {
    requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

/// Peer credentials → caller on the admin socket: only root, the daemon's user and group
/// `cairn` are the administrator.
async fn admin_guard(
    State(policy): State<AdminPolicy>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    mut request: Request,
    next: Next,
) -> Response {
    if policy.allows(&peer) {
        request.extensions_mut().insert(Caller::Admin);
        return next.run(request).await;
    }
    HttpError::new(
        StatusCode::FORBIDDEN,
        ErrorKind::PermissionDenied,
        format!(
            "permission denied: uid {} may not use the admin socket (root, uid {} and group cairn only)",
            peer.uid, policy.daemon_uid
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_and_mode_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _listener = runtime
            .block_on(async { bind_socket(&path, 0o660) })
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }
}
