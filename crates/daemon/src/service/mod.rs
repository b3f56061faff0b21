//! The daemon as a service, without any transport: confdb operations, the registry of apps
//! and sessions, the write pipeline with custodian hooks, observers and watch streams.
//!
//! Every operation is asked for by a [`Caller`]. [`Service::authorize`] is the one place
//! that decides what a caller may do; the operations only accept the grants it hands out
//! ([`ViewGrant`], [`AdminGrant`]), so no transport can reach data without asking it.
//! Transports (the HTTP API on Unix sockets today, a cloud link later) translate their
//! requests into these calls and bind an endpoint per app or session through
//! [`Endpoints`]; nothing here knows HTTP, sockets or wire formats.

mod pipeline;
mod watch;

use crate::apps::{self, App, AppSource, Hooks};
use crate::hooks::{HookError, HookRunner};
use cairn_confdb::{Confdb, RevisionInfo, SchemaInfo, ViewId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch as signal;

pub use watch::Update;

/// Whom a request speaks for. The transport decides it (the socket that accepted a
/// connection and its peer's credentials); the service decides what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Caller {
    /// Root, the daemon's user or group `cairn` on the admin socket: everything.
    Admin,
    /// A registered app (`<config>/apps/NAME.yaml`): the views it plugs.
    App(String),
    /// An ephemeral session (`cairn run --confdb-plug`), by id: the views it plugs.
    Session(String),
    /// The fleet's control plane over the cloud link (coming): nothing yet, until that link
    /// defines what a deployment may touch.
    Cloud,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Admin => write!(f, "the administrator"),
            Caller::App(name) => write!(f, "app {name:?}"),
            // Sessions have always been named like apps in messages.
            Caller::Session(id) => write!(f, "app \"{SESSION_PREFIX}{id}\""),
            Caller::Cloud => write!(f, "the cloud link"),
        }
    }
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Read, write or watch one view.
    View(&'a ViewId),
    /// Administration (schemas, history, rollback, sessions); the text names the action
    /// for the refusal: "list schemas", "open sessions", ...
    Admin(&'static str),
}

/// What `authorize` granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    /// Through a plug of the caller's app or session; a custodian's change-view hook
    /// vets every write to the view.
    Plug {
        custodian: bool,
    },
}

/// Leave to use one view, from [`Service::grant_view`].
#[derive(Debug, Clone)]
pub struct ViewGrant {
    view: ViewId,
    role: Role,
}

impl ViewGrant {
    pub fn view(&self) -> &ViewId {
        &self.view
    }

    pub fn role(&self) -> Role {
        self.role
    }
}

/// Leave to administer, from [`Service::grant_admin`].
#[derive(Debug, Clone)]
pub struct AdminGrant(());

/// Whom a session speaks for (its hooks would run in the node's sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionFor {
    Node(PathBuf),
    App(String),
}

/// A session as opened: the endpoint its plugs are served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSession {
    pub id: String,
    pub endpoint: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("permission denied: {caller} has no plug for view {view}")]
    NoPlug { caller: Caller, view: String },
    #[error("permission denied: {caller} cannot {action} (administrators only)")]
    AdminOnly {
        caller: Caller,
        action: &'static str,
    },
    /// A session request that cannot be served (no plug, a bad plug or identity).
    #[error("{0}")]
    BadSession(String),
    #[error("session {id:?} not found")]
    NoSession { id: String },
    /// A change-view hook refused (or failed to vet) a write; nothing was written.
    #[error("cannot set{keys} through {view}: {source}")]
    Rejected {
        keys: String,
        view: String,
        source: HookError,
    },
    /// The transport could not serve an endpoint.
    #[error("{0}")]
    Endpoint(String),
    #[error(transparent)]
    Confdb(#[from] cairn_confdb::Error),
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// How a transport serves apps and sessions: one endpoint each, with the caller fixed.
pub trait Endpoints: Send + Sync {
    /// Starts serving `caller` (an app or a session); returns where it is reached.
    fn open(&self, service: &Arc<Service>, caller: &Caller)
    -> std::result::Result<PathBuf, String>;
    /// Stops serving `caller` at once; requests already open finish.
    fn close(&self, caller: &Caller);
}

/// What the service needs besides its database.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `<config>/apps`: the app configs [`Service::reload`] reads.
    pub apps_dir: PathBuf,
    pub hooks: HookRunner,
}

const SESSION_PREFIX: &str = "session-";

/// The daemon's state and operations, shared by every transport and task.
pub struct Service {
    confdb: Confdb,
    options: ServiceOptions,
    endpoints: Arc<dyn Endpoints>,
    apps: RwLock<BTreeMap<String, Arc<App>>>,
    sessions: RwLock<BTreeMap<String, Arc<App>>>,
    next_session: AtomicU64,
    shutdown: signal::Sender<bool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service over an open database, with no app yet ([`Service::reload`] loads them).
    pub fn new(
        confdb: Confdb,
        options: ServiceOptions,
        endpoints: Arc<dyn Endpoints>,
    ) -> Arc<Service> {
        Arc::new(Service {
            confdb,
            options,
            endpoints,
            apps: RwLock::new(BTreeMap::new()),
            sessions: RwLock::new(BTreeMap::new()),
            next_session: AtomicU64::new(1),
            shutdown: signal::Sender::new(false),
        })
    }

    // -----------------------------------------------------------------------------------
    // Authorization: the one place that decides.

    /// Decides whether `caller` may do `access`: the administrator may do everything; an
    /// app or a session may use exactly the views it plugs (read, write and watch alike;
    /// the library's view rules still say which keys are writable) and administers
    /// nothing; the cloud link may do nothing yet. An app that a reload removed loses its
    /// access at once.
    pub fn authorize(&self, caller: &Caller, access: Access<'_>) -> Result<Role> {
        let member = match caller {
            Caller::Admin => return Ok(Role::Admin),
            Caller::App(name) => read(&self.apps).get(name).cloned(),
            Caller::Session(id) => read(&self.sessions).get(id).cloned(),
            Caller::Cloud => None,
        };
        match access {
            Access::Admin(action) => Err(ServiceError::AdminOnly {
                caller: caller.clone(),
                action,
            }),
            Access::View(view) => {
                let view = view.to_string();
                match member.as_ref().and_then(|app| app.plug(&view)) {
                    Some(plug) => Ok(Role::Plug {
                        custodian: plug.custodian,
                    }),
                    None => Err(ServiceError::NoPlug {
                        caller: caller.clone(),
                        view,
                    }),
                }
            }
        }
    }

    pub fn grant_view(&self, caller: &Caller, view: ViewId) -> Result<ViewGrant> {
        let role = self.authorize(caller, Access::View(&view))?;
        Ok(ViewGrant { view, role })
    }

    pub fn grant_admin(&self, caller: &Caller, action: &'static str) -> Result<AdminGrant> {
        self.authorize(caller, Access::Admin(action))?;
        Ok(AdminGrant(()))
    }

    // -----------------------------------------------------------------------------------
    // Views

    /// Reads through the view (`keys` empty: all of it; `with` binds placeholders).
    pub async fn get(
        &self,
        grant: &ViewGrant,
        keys: &[String],
        with: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value> {
        Ok(self.confdb.get(&grant.view, keys, with).await?)
    }

    /// One transaction through the view (`None` unsets), vetted by custodians; returns the
    /// committed revision.
    pub async fn set(
        &self,
        grant: &ViewGrant,
        changes: Vec<(String, Option<serde_json::Value>)>,
    ) -> Result<u64> {
        self.write(&grant.view, changes).await
    }

    // -----------------------------------------------------------------------------------
    // Schemas

    pub async fn schemas(&self, _: &AdminGrant) -> Result<Vec<SchemaInfo>> {
        Ok(self.confdb.schemas().await?)
    }

    /// Adds or replaces a signed schema document.
    pub async fn add_schema(&self, _: &AdminGrant, document: &[u8]) -> Result<SchemaInfo> {
        let info = self.confdb.add_schema(document).await?;
        tracing::info!(account = %info.account, name = %info.name, "schema added");
        Ok(info)
    }

    pub async fn schema_text(&self, _: &AdminGrant, account: &str, name: &str) -> Result<String> {
        Ok(self.confdb.schema_text(account, name).await?)
    }

    pub async fn remove_schema(&self, _: &AdminGrant, account: &str, name: &str) -> Result<()> {
        self.confdb.remove_schema(account, name).await?;
        tracing::info!(%account, %name, "schema removed");
        Ok(())
    }

    pub async fn history(
        &self,
        _: &AdminGrant,
        account: &str,
        name: &str,
    ) -> Result<Vec<RevisionInfo>> {
        Ok(self.confdb.history(account, name).await?)
    }

    /// Restores the data of `revision` as a new revision, which is returned.
    pub async fn rollback(
        &self,
        _: &AdminGrant,
        account: &str,
        name: &str,
        revision: u64,
    ) -> Result<u64> {
        let new = self.confdb.rollback(account, name, revision).await?;
        tracing::info!(%account, %name, to = revision, revision = new, "rolled back");
        Ok(new)
    }

    // -----------------------------------------------------------------------------------
    // Apps and sessions

    /// Opens a session granting `plugs` and serves it on a new endpoint.
    pub fn open_session(
        self: &Arc<Self>,
        _: &AdminGrant,
        identity: SessionFor,
        plugs: &[String],
    ) -> Result<OpenedSession> {
        let bad = ServiceError::BadSession;
        if plugs.is_empty() {
            return Err(bad("a session needs at least one plug".to_string()));
        }
        let node = match &identity {
            SessionFor::Node(node) if !node.is_absolute() => {
                return Err(bad(format!(
                    "session node {:?} is not an absolute path",
                    node.display().to_string()
                )));
            }
            SessionFor::Node(node) => Some(node.clone()),
            SessionFor::App(app) => {
                cairn_config::check_name(cairn_config::NameKind::App, app)
                    .map_err(|e| bad(e.to_string()))?;
                None
            }
        };
        let id = self
            .next_session
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let name = format!("{SESSION_PREFIX}{id}");
        let app = App::new(&name, node, plugs, Hooks::default(), AppSource::Session)
            .map_err(|e| bad(e.to_string()))?;
        write(&self.sessions).insert(id.clone(), Arc::new(app));
        let caller = Caller::Session(id.clone());
        match self.endpoints.open(self, &caller) {
            Ok(endpoint) => {
                match &identity {
                    SessionFor::Node(node) => {
                        tracing::info!(session = %id, node = %node.display(), "session opened");
                    }
                    SessionFor::App(app) => tracing::info!(session = %id, %app, "session opened"),
                }
                Ok(OpenedSession { id, endpoint })
            }
            Err(e) => {
                write(&self.sessions).remove(&id);
                Err(ServiceError::Endpoint(e))
            }
        }
    }

    /// Ends a session: its endpoint goes at once, its plugs with it.
    pub fn close_session(&self, _: &AdminGrant, id: &str) -> Result<()> {
        if write(&self.sessions).remove(id).is_none() {
            return Err(ServiceError::NoSession { id: id.to_string() });
        }
        self.endpoints.close(&Caller::Session(id.to_string()));
        tracing::info!(session = %id, "session closed");
        Ok(())
    }

    /// Re-reads the app configs: new apps get an endpoint, removed ones lose theirs,
    /// changed plugs apply to the next request. Sessions are left alone.
    pub fn reload(self: &Arc<Self>) {
        let (loaded, errors) = apps::load_dir(&self.options.apps_dir);
        for error in errors {
            tracing::warn!("{error}");
        }
        let current: Vec<String> = read(&self.apps).keys().cloned().collect();
        for name in &current {
            if !loaded.contains_key(name) {
                write(&self.apps).remove(name);
                self.endpoints.close(&Caller::App(name.clone()));
                tracing::info!(app = %name, "app removed");
            }
        }
        for (name, app) in loaded {
            let known = current.contains(&name);
            write(&self.apps).insert(name.clone(), Arc::new(app));
            if known {
                continue;
            }
            match self.endpoints.open(self, &Caller::App(name.clone())) {
                Ok(endpoint) => tracing::info!(app = %name, "serving {}", endpoint.display()),
                Err(e) => {
                    write(&self.apps).remove(&name);
                    tracing::warn!(app = %name, "{e}");
                }
            }
        }
    }

    /// Every app and session, as callers (what the transport serves).
    pub fn callers(&self) -> Vec<Caller> {
        let mut all: Vec<Caller> = read(&self.apps).keys().cloned().map(Caller::App).collect();
        all.extend(read(&self.sessions).keys().cloned().map(Caller::Session));
        all
    }

    /// Apps and sessions, for the pipeline and the observers.
    fn members(&self) -> Vec<Arc<App>> {
        let mut all: Vec<Arc<App>> = read(&self.apps).values().cloned().collect();
        all.extend(read(&self.sessions).values().cloned());
        all
    }

    // -----------------------------------------------------------------------------------
    // Lifecycle

    /// Flips to true once [`Service::stop`] is called: watch streams, observers and the
    /// transports' endpoints end on it.
    pub fn stopping(&self) -> signal::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Begins the shutdown: streams end, observers stop.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    /// Forgets every app and session and closes their endpoints, then the database
    /// (commits are durable already; closing checkpoints the WAL for a quick next start).
    pub async fn close(&self) {
        for caller in self.callers() {
            self.endpoints.close(&caller);
        }
        write(&self.apps).clear();
        write(&self.sessions).clear();
        self.confdb.close().await;
    }
}

/// A poisoned lock only means a panicking request; the map itself is still whole.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
