//! The daemon's life: sockets (admin, per app, per session), the write pipeline with
//! custodian hooks, observers, watch streams, reload on SIGHUP and graceful shutdown.
//!
//! Everything runs on one current-thread tokio runtime (small idle memory; SQLite work
//! happens on the database driver's own thread). The caller of a request is known from
//! the socket that accepted it: each socket gets its own router carrying its [`Caller`].

use crate::Error;
use crate::api::{self, ApiError, Caller, WatchEvent};
use crate::apps::{self, App, AppSource, Hooks};
use crate::hooks::{HookKind, HookRunner};
use crate::peer::{AdminPolicy, PeerInfo};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_confdb::{Confdb, ViewId};
use futures_util::Stream;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Where the daemon finds and puts things.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The Cairn roots: every location comes from their path helpers.
    pub paths: cairn_config::Config,
    /// The cairn binary, used to run hooks of sandboxed apps (`cairn run --node ...`).
    pub exe: PathBuf,
    pub hook_timeout: Duration,
    /// How long shutdown waits for open requests and streams.
    pub drain_timeout: Duration,
}

impl DaemonOptions {
    /// The standard layout under the three Cairn roots.
    pub fn new(config_dir: &Path, state_dir: &Path, run_dir: &Path) -> DaemonOptions {
        DaemonOptions::from_config(cairn_config::Config::with_dirs(
            config_dir, state_dir, run_dir,
        ))
    }

    /// The layout of a loaded configuration.
    pub fn from_config(paths: cairn_config::Config) -> DaemonOptions {
        DaemonOptions {
            paths,
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cairn")),
            hook_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.paths.admin_socket()
    }

    fn apps_dir(&self) -> PathBuf {
        self.paths.apps_dir()
    }

    fn app_socket(&self, app: &str) -> PathBuf {
        self.paths.app_socket(app)
    }

    fn sessions_dir(&self) -> PathBuf {
        self.paths.sessions_dir()
    }
}

/// State shared by every socket and task.
pub struct Shared {
    pub(crate) confdb: Confdb,
    apps: RwLock<BTreeMap<String, Arc<App>>>,
    /// Stop signals of the app and session sockets, by app name.
    listeners: Mutex<HashMap<String, watch::Sender<bool>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    hooks: HookRunner,
    options: DaemonOptions,
    policy: AdminPolicy,
    shutdown: watch::Sender<bool>,
    next_session: AtomicU64,
    /// Requests served so far (the idle trimmer's activity signal).
    requests: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn app(&self, name: &str) -> Option<Arc<App>> {
        self.apps.read().ok()?.get(name).cloned()
    }

    fn apps_snapshot(&self) -> Vec<Arc<App>> {
        self.apps
            .read()
            .map(|apps| apps.values().cloned().collect())
            .unwrap_or_default()
    }

    fn track(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }
}

/// A running daemon (sockets bound, tasks spawned on the current runtime).
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
}

impl Daemon {
    /// Opens the databases, binds the admin socket and every app's socket, and starts
    /// serving. Refuses to start when another daemon answers on the admin socket.
    pub async fn start(options: DaemonOptions) -> Result<Daemon, Error> {
        prepare_dir(&options.paths.run_dir, 0o755)?;
        let trust = cairn_confdb::keys::TrustStore::load(&options.paths.trust_dir())?;
        let confdb = Confdb::open(&options.paths.confdb_dir(), trust).await?;
        // Sessions belonged to runs of a previous daemon; their sockets are dead.
        remove_dir_if_present(&options.sessions_dir())?;
        let admin = bind_admin(&options)?;
        let policy = AdminPolicy::for_this_process();
        if let Some(gid) = policy.cairn_gid {
            let path = options.admin_socket();
            if let Err(e) = nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(gid))) {
                tracing::warn!("cannot give {} to group cairn: {e}", path.display());
            }
        }
        let shared = Arc::new(Shared {
            confdb,
            apps: RwLock::new(BTreeMap::new()),
            listeners: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            hooks: HookRunner {
                exe: options.exe.clone(),
                timeout: options.hook_timeout,
            },
            policy,
            shutdown: watch::Sender::new(false),
            next_session: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            options,
        });
        let task = tokio::spawn(serve_socket(
            shared.clone(),
            admin,
            Caller::Admin,
            None,
            None,
        ));
        shared.track(task);
        let daemon = Daemon { shared };
        daemon.reload();
        let observer = tokio::spawn(observe_commits(daemon.shared.clone()));
        daemon.shared.track(observer);
        tracing::info!(
            "listening on {}",
            daemon.shared.options.admin_socket().display()
        );
        Ok(daemon)
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.shared.options.admin_socket()
    }

    /// Re-reads the app configs: new apps get a socket, removed ones lose theirs, changed
    /// plugs apply to the next request. Sessions are left alone.
    pub fn reload(&self) {
        let (loaded, errors) = apps::load_dir(&self.shared.options.apps_dir());
        for error in errors {
            tracing::warn!("{error}");
        }
        let current: Vec<Arc<App>> = self
            .shared
            .apps_snapshot()
            .into_iter()
            .filter(|a| a.source == AppSource::Config)
            .collect();
        for app in &current {
            if !loaded.contains_key(&app.name) {
                stop_app(
                    &self.shared,
                    &app.name,
                    &self.shared.options.app_socket(&app.name),
                );
                tracing::info!(app = %app.name, "app removed");
            }
        }
        for (name, app) in loaded {
            let known = current.iter().any(|a| a.name == name);
            if known {
                if let Ok(mut apps) = self.shared.apps.write() {
                    apps.insert(name, Arc::new(app));
                }
                continue;
            }
            let socket = self.shared.options.app_socket(&name);
            match start_app(&self.shared, app, &socket, 0o666) {
                Ok(()) => tracing::info!(app = %name, "serving {}", socket.display()),
                Err(e) => tracing::warn!(app = %name, "{e}"),
            }
        }
    }

    /// Stops accepting, ends watch streams, and waits up to the drain timeout for open
    /// requests; removes every socket it created.
    pub async fn shutdown(self) {
        let shared = self.shared;
        shared.shutdown.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = shared
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let drained = tokio::time::timeout(shared.options.drain_timeout, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("open requests did not finish in time; stopping anyway");
        }
        let names: Vec<String> = shared
            .apps_snapshot()
            .iter()
            .map(|a| a.name.clone())
            .collect();
        for name in names {
            let path = socket_path_of(&shared, &name);
            stop_app(&shared, &name, &path);
        }
        let _ = std::fs::remove_file(shared.options.admin_socket());
        let _ = std::fs::remove_dir_all(shared.options.sessions_dir());
        // Commits are durable already; closing checkpoints the WAL for a quick next start.
        shared.confdb.close().await;
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT; SIGHUP reloads the app
/// configs. Tells systemd when ready and feeds its watchdog when asked to.
pub fn run(options: DaemonOptions) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(Error::Signals)?;
        let daemon = Daemon::start(options).await?;
        notify(&[sd_notify::NotifyState::Ready]);
        crate::memory::release_clean_pages();
        let trimmer = tokio::spawn(trim_when_idle(daemon.shared.clone()));
        let watchdog = tokio::spawn(feed_watchdog());
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("reloading app configs");
                    daemon.reload();
                }
            }
        }
        tracing::info!("shutting down");
        notify(&[sd_notify::NotifyState::Stopping]);
        watchdog.abort();
        trimmer.abort();
        daemon.shutdown().await;
        Ok(())
    })
}

fn notify(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, state)
    {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// The watchdog period systemd asks for, as sd_watchdog_enabled(3) reads it: a
/// `WATCHDOG_PID` that names another process turns it off, a missing one does not.
fn watchdog_usec() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

async fn feed_watchdog() {
    let Some(usec) = watchdog_usec() else { return };
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

// ---------------------------------------------------------------------------------------
// Sockets

fn prepare_dir(path: &Path, mode: u32) -> Result<(), Error> {
    let prepare = |source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(prepare)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(prepare)
}

fn remove_dir_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Prepare {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn bind_admin(options: &DaemonOptions) -> Result<UnixListener, Error> {
    let path = options.admin_socket();
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(Error::AlreadyRunning { socket: path });
    }
    bind_socket(&path, 0o660)
}

/// Binds a socket at `path` (replacing a stale one) with permissions `mode`.
fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, Error> {
    let listen = |source| Error::Listen {
        path: path.to_path_buf(),
        source,
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

/// Serves one socket until its own stop signal or the daemon's shutdown.
async fn serve_socket(
    shared: Arc<Shared>,
    listener: UnixListener,
    caller: Caller,
    stop: Option<watch::Receiver<bool>>,
    socket: Option<PathBuf>,
) {
    let router = api::app(shared.clone(), caller.clone());
    let router = match caller {
        Caller::Admin => router.layer(axum::middleware::from_fn_with_state(
            shared.policy,
            admin_guard,
        )),
        Caller::App(_) => router,
    };
    let router = router.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        count_request,
    ));
    let mut global = shared.shutdown.subscribe();
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
    let service = router.into_make_service_with_connect_info::<PeerInfo>();
    if let Err(e) = axum::serve(listener, service)
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
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

/// After each burst of requests followed by a quiet period, hands the code pages the burst
/// faulted in back to the kernel (see [`crate::memory`]).
async fn trim_when_idle(shared: Arc<Shared>) {
    // Trims once no request came for a whole tick: after 5 to 10 quiet seconds.
    const QUIET: Duration = Duration::from_secs(5);
    let mut trimmed_at = shared.requests.load(Ordering::Relaxed);
    let mut seen = trimmed_at;
    let mut tick = tokio::time::interval(QUIET);
    loop {
        tick.tick().await;
        let now = shared.requests.load(Ordering::Relaxed);
        if now == seen && now != trimmed_at {
            crate::memory::release_clean_pages();
            trimmed_at = now;
        }
        seen = now;
    }
}

/// Lets only root, the daemon's user and group `cairn` use the admin socket.
async fn admin_guard(
    State(policy): State<AdminPolicy>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    request: Request,
    next: Next,
) -> Response {
    if policy.allows(&peer) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission-denied",
        format!(
            "permission denied: uid {} may not use the admin socket (root, uid {} and group cairn only)",
            peer.uid, policy.daemon_uid
        ),
    )
    .into_response()
}

/// Registers `app` and serves its socket at `path`.
fn start_app(shared: &Arc<Shared>, app: App, path: &Path, mode: u32) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        // Only root passes through the host directory; sandboxes get the socket itself
        // bind-mounted, so the socket may be open to everyone inside.
        prepare_dir(parent, 0o711)?;
    }
    let listener = bind_socket(path, mode)?;
    let name = app.name.clone();
    if let Ok(mut apps) = shared.apps.write() {
        apps.insert(name.clone(), Arc::new(app));
    }
    let (tx, rx) = watch::channel(false);
    if let Ok(mut listeners) = shared.listeners.lock()
        && let Some(old) = listeners.insert(name.clone(), tx)
    {
        old.send_replace(true);
    }
    let task = tokio::spawn(serve_socket(
        shared.clone(),
        listener,
        Caller::App(name),
        Some(rx),
        Some(path.to_path_buf()),
    ));
    shared.track(task);
    Ok(())
}

/// Forgets an app and closes its socket (the path goes at once, open requests finish).
fn stop_app(shared: &Shared, name: &str, path: &Path) -> bool {
    let known = shared
        .apps
        .write()
        .map(|mut apps| apps.remove(name).is_some())
        .unwrap_or(false);
    if let Ok(mut listeners) = shared.listeners.lock()
        && let Some(stop) = listeners.remove(name)
    {
        stop.send_replace(true);
    }
    let _ = std::fs::remove_file(path);
    known
}

fn socket_path_of(shared: &Shared, name: &str) -> PathBuf {
    match name.strip_prefix(SESSION_PREFIX) {
        Some(id) => shared.options.sessions_dir().join(format!("{id}.sock")),
        None => shared.options.app_socket(name),
    }
}

const SESSION_PREFIX: &str = "session-";

pub(crate) async fn open_session(
    shared: &Arc<Shared>,
    node: &str,
    plugs: &[String],
) -> Result<(String, PathBuf), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", m);
    if plugs.is_empty() {
        return Err(bad("a session needs at least one plug".to_string()));
    }
    if !Path::new(node).is_absolute() {
        return Err(bad(format!(
            "session node {node:?} is not an absolute path"
        )));
    }
    let id = shared
        .next_session
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    let name = format!("{SESSION_PREFIX}{id}");
    let app = App::new(
        &name,
        Some(node.into()),
        plugs,
        Hooks::default(),
        AppSource::Session,
    )
    .map_err(|e| bad(e.to_string()))?;
    let socket = socket_path_of(shared, &name);
    start_app(shared, app, &socket, 0o666)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    tracing::info!(session = %id, %node, "session opened");
    Ok((id, socket))
}

pub(crate) fn close_session(shared: &Shared, id: &str) -> bool {
    let name = format!("{SESSION_PREFIX}{id}");
    if cairn_config::check_name(cairn_config::NameKind::App, &name).is_err() {
        return false;
    }
    let closed = stop_app(shared, &name, &socket_path_of(shared, &name));
    if closed {
        tracing::info!(session = %id, "session closed");
    }
    closed
}

// ---------------------------------------------------------------------------------------
// Writes, hooks, observers

/// One write: begin (validate through the view), custodian change-view hooks, commit.
pub(crate) async fn write(
    shared: &Shared,
    view: &ViewId,
    changes: Vec<(String, Option<serde_json::Value>)>,
) -> Result<u64, ApiError> {
    let keys = quoted_keys(changes.iter().map(|(k, _)| k.as_str()));
    let mut tx = shared.confdb.begin(view, changes).await?;
    for app in shared.apps_snapshot() {
        let Some(command) = app.hooks.change_view.as_deref() else {
            continue;
        };
        for plug in app.plugs.iter().filter(|p| p.custodian) {
            let Ok(custodied) = plug.view.parse::<ViewId>() else {
                continue;
            };
            if custodied.account != view.account || custodied.schema != view.schema {
                continue;
            }
            // A plug naming a view the schema lacks (or one with nothing readable) gives
            // its custodian nothing to look at; that must not block other writers.
            let proposed = match tx.view_data(&custodied) {
                Ok(data) => data,
                Err(e) => {
                    tracing::warn!(app = %app.name, "custodian hook skipped: {e}");
                    continue;
                }
            };
            let current = current_data(shared, &custodied).await;
            if same_data(&proposed, &current) {
                continue;
            }
            let outcome = shared
                .hooks
                .run(&app, HookKind::ChangeView, command, &plug.view, &proposed)
                .await;
            match outcome {
                Ok(Some(modified)) => tx.replace_view_data(&custodied, modified)?,
                Ok(None) => {}
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "rejected",
                        format!("cannot set{keys} through {view}: {e}"),
                    ));
                }
            }
        }
    }
    Ok(tx.commit().await?)
}

fn quoted_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    keys.enumerate()
        .map(|(i, k)| format!("{}\"{k}\"", if i == 0 { " " } else { ", " }))
        .collect()
}

/// `null` and `{}` both mean "nothing there".
fn same_data(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let empty = |v: &serde_json::Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
    a == b || (empty(a) && empty(b))
}

/// A view's whole data now, `null` when there is none.
async fn current_data(shared: &Shared, view: &ViewId) -> serde_json::Value {
    shared
        .confdb
        .get(view, &[], &BTreeMap::new())
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Runs observe-view hooks once per commit for every app plugging a changed view.
async fn observe_commits(shared: Arc<Shared>) {
    let mut events = shared.confdb.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("observers missed {n} commits");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let changed: Vec<String> = shared
            .confdb
            .affected_views(&event)
            .iter()
            .map(ToString::to_string)
            .collect();
        for app in shared.apps_snapshot() {
            let Some(command) = app.hooks.observe_view.clone() else {
                continue;
            };
            for plug in app.plugs.iter().filter(|p| changed.contains(&p.view)) {
                let Ok(view) = plug.view.parse::<ViewId>() else {
                    continue;
                };
                let data = current_data(&shared, &view).await;
                let (shared, app, command, view_name) = (
                    shared.clone(),
                    app.clone(),
                    command.clone(),
                    plug.view.clone(),
                );
                tokio::spawn(async move {
                    let run =
                        shared
                            .hooks
                            .run(&app, HookKind::ObserveView, &command, &view_name, &data);
                    if let Err(e) = run.await {
                        tracing::warn!("{e}");
                    }
                });
            }
        }
    }
}

/// The body of a watch request: a first line with the current data, then one line per
/// commit that changed what the caller watches; ends at daemon shutdown.
pub(crate) async fn watch_stream(
    shared: Arc<Shared>,
    view: ViewId,
    keys: Vec<String>,
    with: BTreeMap<String, String>,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static, ApiError> {
    // Subscribe before reading, so that no commit falls between the two.
    let events = shared.confdb.subscribe();
    let first = read_or_null(&shared, &view, &keys, &with).await?;
    let shutdown = shared.shutdown.subscribe();
    let state = WatchState {
        first: Some(line(None, &first)),
        last: first,
        events,
        shutdown,
        shared,
        view,
        keys,
        with,
    };
    Ok(futures_util::stream::unfold(state, next_watch_line))
}

struct WatchState {
    first: Option<Bytes>,
    last: serde_json::Value,
    events: broadcast::Receiver<cairn_confdb::CommitEvent>,
    shutdown: watch::Receiver<bool>,
    shared: Arc<Shared>,
    view: ViewId,
    keys: Vec<String>,
    with: BTreeMap<String, String>,
}

async fn next_watch_line(mut st: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    if let Some(first) = st.first.take() {
        return Some((Ok(first), st));
    }
    loop {
        let event = tokio::select! {
            _ = st.shutdown.wait_for(|s| *s) => return None,
            event = st.events.recv() => event,
        };
        let revision = match event {
            Ok(event) => {
                if !st.shared.confdb.affected_views(&event).contains(&st.view) {
                    continue;
                }
                Some(event.revision)
            }
            // Missed commits: compare with the current data instead.
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let data = read_or_null(&st.shared, &st.view, &st.keys, &st.with)
            .await
            .unwrap_or(serde_json::Value::Null);
        if data == st.last {
            continue;
        }
        st.last = data;
        let line = line(revision, &st.last);
        return Some((Ok(line), st));
    }
}

fn line(revision: Option<u64>, data: &serde_json::Value) -> Bytes {
    let event = WatchEvent {
        revision,
        data: data.clone(),
    };
    let mut text = serde_json::to_vec(&event).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// A get where "no data" is `null` rather than an error (other errors still count).
async fn read_or_null(
    shared: &Shared,
    view: &ViewId,
    keys: &[String],
    with: &BTreeMap<String, String>,
) -> Result<serde_json::Value, ApiError> {
    match shared.confdb.get(view, keys, with).await {
        Ok(data) => Ok(data),
        Err(cairn_confdb::Error::NoData { .. }) => Ok(serde_json::Value::Null),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_data_compares_equal() {
        assert!(same_data(&json!(null), &json!({})));
        assert!(same_data(&json!({"a": 1}), &json!({"a": 1})));
        assert!(!same_data(&json!({"a": 1}), &json!(null)));
    }

    #[test]
    fn keys_are_quoted_like_library_errors() {
        assert_eq!(quoted_keys(["a", "b.c"].into_iter()), " \"a\", \"b.c\"");
        assert_eq!(quoted_keys(std::iter::empty()), "");
    }

    /// A `Shared` without sockets, for router tests.
    async fn shared_for_test(dir: &Path, apps: Vec<App>) -> Arc<Shared> {
        let confdb = Confdb::open(&dir.join("confdb"), cairn_confdb::TrustStore::empty())
            .await
            .unwrap();
        let options = DaemonOptions::new(dir, dir, dir);
        Arc::new(Shared {
            confdb,
            apps: RwLock::new(
                apps.into_iter()
                    .map(|a| (a.name.clone(), Arc::new(a)))
                    .collect(),
            ),
            listeners: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            hooks: HookRunner {
                exe: options.exe.clone(),
                timeout: options.hook_timeout,
            },
            policy: AdminPolicy {
                daemon_uid: 0,
                cairn_gid: None,
            },
            shutdown: watch::Sender::new(false),
            next_session: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            options,
        })
    }

    async fn send(
        router: axum::Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn router_enforces_plugs_and_answers_errors_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(
            "reporting",
            None,
            &["acme/network/observe-device".to_string()],
            Hooks::default(),
            AppSource::Config,
        )
        .unwrap();
        let shared = shared_for_test(dir.path(), vec![app]).await;
        let as_app = || api::app(shared.clone(), Caller::App("reporting".into()));
        let (status, body) =
            send(as_app(), "GET", "/v1/views/acme/network/control-device", "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["kind"], "permission-denied");
        assert_eq!(
            body["error"],
            "permission denied: app \"reporting\" has no plug for view acme/network/control-device"
        );
        // A plugged view reaches the library, which knows no such schema.
        let (status, body) =
            send(as_app(), "GET", "/v1/views/acme/network/observe-device", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "schema acme/network not found");
        let (status, _) = send(as_app(), "POST", "/v1/sessions", "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An app that disappeared (reload) loses access at once.
        let gone = api::app(shared.clone(), Caller::App("vpn".into()));
        let (status, _) = send(gone, "GET", "/v1/views/acme/network/observe-device", "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let admin = || api::app(shared.clone(), Caller::Admin);
        let (status, body) = send(
            admin(),
            "PUT",
            "/v1/views/acme/network/control-device",
            "[1, 2]",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body: "),
            "{body}"
        );
        let (status, body) = send(admin(), "GET", "/v1/nope", "").await;
        assert_eq!(
            (status, body["kind"].as_str()),
            (StatusCode::NOT_FOUND, Some("not-found"))
        );
        let (status, body) = send(admin(), "GET", "/v1/views/Acme!/x/y", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = send(admin(), "GET", "/v1/openapi.json", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["info"]["title"], "Cairn daemon API");
        let (status, _) = send(admin(), "DELETE", "/v1/sessions/99", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

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
