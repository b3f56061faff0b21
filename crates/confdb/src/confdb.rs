//! The `Confdb` handle: schemas and databags kept in memory for reads, written through
//! SQLite transactions serialized per schema, with commit notifications.

use crate::data;
use crate::error::{Error, Keys};
use crate::keys::{self, TrustStore};
use crate::path::{self, Bindings};
use crate::schema::{self, Schema, View};
use crate::store::{RevisionInfo, Store};
use crate::view::{self, ViewError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{OwnedMutexGuard, broadcast};

/// `ACCOUNT/SCHEMA/VIEW`, e.g. `acme/network/control-device`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId {
    pub account: String,
    pub schema: String,
    pub view: String,
}

impl ViewId {
    pub fn schema_id(&self) -> String {
        format!("{}/{}", self.account, self.schema)
    }
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.account, self.schema, self.view)
    }
}

impl FromStr for ViewId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidViewId(s.to_string());
        let mut parts = s.split('/');
        let (Some(account), Some(schema), Some(view), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        schema::check_account(account).map_err(|_| bad())?;
        path::check_segment(schema).map_err(|_| bad())?;
        path::check_segment(view).map_err(|_| bad())?;
        Ok(ViewId {
            account: account.into(),
            schema: schema.into(),
            view: view.into(),
        })
    }
}

impl serde::Serialize for ViewId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ViewId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What `schema ls` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchemaInfo {
    pub account: String,
    pub name: String,
    pub summary: Option<String>,
    pub views: Vec<String>,
    /// The newest databag revision (0: nothing written yet).
    pub revision: u64,
    /// The key that signed the document (`ed25519:...`).
    pub signed_by: String,
}

/// Sent to subscribers after each commit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommitEvent {
    pub account: String,
    pub schema: String,
    pub revision: u64,
    /// Storage paths (dotted) whose value changed.
    pub changed: Vec<String>,
}

/// One schema as loaded: immutable, replaced as a whole on each commit so readers never see
/// half a transaction.
#[derive(Debug)]
struct Loaded {
    schema: Arc<Schema>,
    signed: Arc<Vec<u8>>,
    signed_by: String,
    revision: u64,
    data: Arc<Value>,
}

type SchemaKey = (String, String);

#[derive(Debug)]
struct Inner {
    store: Store,
    trust: Mutex<TrustStore>,
    schemas: RwLock<BTreeMap<SchemaKey, Arc<Loaded>>>,
    writers: Mutex<HashMap<SchemaKey, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<CommitEvent>,
}

/// The confdb of one device: cheap to clone (an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Confdb {
    inner: Arc<Inner>,
}

fn key_of(account: &str, name: &str) -> SchemaKey {
    (account.to_string(), name.to_string())
}

fn view_error(op: &'static str, keys: &[String], view: &ViewId, e: ViewError) -> Error {
    let (keys, view) = (Keys(keys.to_vec()), view.to_string());
    match e {
        ViewError::NoMatchingRule => Error::NoMatchingRule { op, keys, view },
        ViewError::UnusedData(path) => Error::UnusedData { keys, view, path },
        ViewError::InvalidKey(reason) => Error::Invalid {
            op,
            keys,
            view,
            reason: format!("invalid key {reason}"),
        },
    }
}

impl Confdb {
    /// Opens (creating) `<dir>/confdb.db` and loads every schema and its newest databag.
    pub async fn open(dir: &Path, trust: TrustStore) -> Result<Confdb, Error> {
        let store = Store::open(dir).await?;
        let mut schemas = BTreeMap::new();
        for stored in store.load_all().await? {
            let id = format!("{}/{}", stored.account, stored.name);
            let (text, signer) = keys::verify_document(&stored.signed)?;
            let schema =
                schema::parse(&text).map_err(|reason| Error::Schema { schema: id, reason })?;
            let loaded = Loaded {
                schema: Arc::new(schema),
                signed: Arc::new(stored.signed),
                signed_by: signer.to_string(),
                revision: stored.revision,
                data: Arc::new(stored.data),
            };
            schemas.insert(key_of(&stored.account, &stored.name), Arc::new(loaded));
        }
        let (events, _) = broadcast::channel(256);
        let inner = Inner {
            store,
            trust: Mutex::new(trust),
            schemas: RwLock::new(schemas),
            writers: Mutex::new(HashMap::new()),
            events,
        };
        Ok(Confdb {
            inner: Arc::new(inner),
        })
    }

    /// Waits until the database is closed (pending writes are already durable).
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    fn loaded(&self, account: &str, name: &str) -> Result<Arc<Loaded>, Error> {
        let map = self.inner.schemas.read().unwrap_or_else(|e| e.into_inner());
        map.get(&key_of(account, name))
            .cloned()
            .ok_or_else(|| Error::UnknownSchema(format!("{account}/{name}")))
    }

    fn replace_loaded(&self, account: &str, name: &str, loaded: Option<Loaded>) {
        let mut map = self
            .inner
            .schemas
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match loaded {
            Some(l) => map.insert(key_of(account, name), Arc::new(l)),
            None => map.remove(&key_of(account, name)),
        };
    }

    async fn lock_writer(&self, account: &str, name: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut writers = self.inner.writers.lock().unwrap_or_else(|e| e.into_inner());
            writers.entry(key_of(account, name)).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Verifies the signature against the trusted keys of the document's account, parses
    /// and checks the schema, and checks that existing data still fits; adding an existing
    /// schema again replaces it and keeps its data.
    pub async fn add_schema(&self, signed_document: &[u8]) -> Result<SchemaInfo, Error> {
        let (text, signer) = keys::verify_document(signed_document)?;
        let raw = schema::parse_text(&text).map_err(|reason| Error::Schema {
            schema: "document".into(),
            reason,
        })?;
        let id = match (
            raw.get("account").and_then(Value::as_str),
            raw.get("name").and_then(Value::as_str),
        ) {
            (Some(a), Some(n)) => format!("{a}/{n}"),
            _ => "document".to_string(),
        };
        let schema = schema::parse(&text).map_err(|reason| Error::Schema {
            schema: id.clone(),
            reason,
        })?;
        self.check_trusted(&schema.account, &signer)?;
        let _guard = self.lock_writer(&schema.account, &schema.name).await;
        let (revision, data) = match self.loaded(&schema.account, &schema.name) {
            Ok(old) => (old.revision, old.data.clone()),
            Err(_) => (0, Arc::new(Value::Object(Default::default()))),
        };
        schema.validate(&data).map_err(|v| Error::Schema {
            schema: id.clone(),
            reason: format!("existing data does not fit the new schema: {v}"),
        })?;
        self.inner
            .store
            .put_schema(&schema.account, &schema.name, signed_document)
            .await?;
        let loaded = Loaded {
            schema: Arc::new(schema),
            signed: Arc::new(signed_document.to_vec()),
            signed_by: signer.to_string(),
            revision,
            data,
        };
        let info = info_of(&loaded);
        let (account, name) = (loaded.schema.account.clone(), loaded.schema.name.clone());
        self.replace_loaded(&account, &name, Some(loaded));
        Ok(info)
    }

    fn check_trusted(&self, account: &str, signer: &keys::PublicKey) -> Result<(), Error> {
        let mut trust = self.inner.trust.lock().unwrap_or_else(|e| e.into_inner());
        if trust.is_trusted(account, signer) {
            return Ok(());
        }
        *trust = trust.reloaded()?;
        if trust.is_trusted(account, signer) {
            return Ok(());
        }
        Err(Error::Signature(format!(
            "key {signer} is not trusted for account {account} (add it with `cairn conf trust add {account} KEY`)"
        )))
    }

    pub async fn schemas(&self) -> Result<Vec<SchemaInfo>, Error> {
        let map = self.inner.schemas.read().unwrap_or_else(|e| e.into_inner());
        Ok(map.values().map(|l| info_of(l)).collect())
    }

    /// The signed document as added (signature line included).
    pub async fn schema_text(&self, account: &str, name: &str) -> Result<String, Error> {
        let loaded = self.loaded(account, name)?;
        Ok(String::from_utf8_lossy(&loaded.signed).into_owned())
    }

    /// Removes the schema with all its data and history.
    pub async fn remove_schema(&self, account: &str, name: &str) -> Result<(), Error> {
        self.loaded(account, name)?;
        let _guard = self.lock_writer(account, name).await;
        self.loaded(account, name)?;
        self.inner.store.remove_schema(account, name).await?;
        self.replace_loaded(account, name, None);
        Ok(())
    }

    fn view_of<'a>(&self, loaded: &'a Loaded, id: &ViewId) -> Result<&'a View, Error> {
        loaded
            .schema
            .views
            .get(&id.view)
            .ok_or_else(|| Error::UnknownView {
                view: id.to_string(),
                schema: id.schema_id(),
                available: loaded
                    .schema
                    .views
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Reads through a view from memory (no SQL). With no requests: the whole view as one
    /// tree. With requests: a map keyed by each request that has data; `no data` only if
    /// none has. `with` binds placeholders (`--with P=V`).
    pub async fn get(
        &self,
        view: &ViewId,
        requests: &[String],
        with: &BTreeMap<String, String>,
    ) -> Result<Value, Error> {
        let loaded = self.loaded(&view.account, &view.schema)?;
        let v = self.view_of(&loaded, view)?;
        read_view(v, view, &loaded.data, requests, with)
    }

    /// Starts a write: takes the schema's writer lock (held until commit or drop), applies the
    /// changes (`None` unsets) to a copy of the databag through the view and validates it.
    pub async fn begin(
        &self,
        view: &ViewId,
        changes: Vec<(String, Option<Value>)>,
    ) -> Result<Transaction, Error> {
        self.loaded(&view.account, &view.schema)?;
        let guard = self.lock_writer(&view.account, &view.schema).await;
        let loaded = self.loaded(&view.account, &view.schema)?;
        let v = self.view_of(&loaded, view)?;
        let mut proposed = (*loaded.data).clone();
        let keys: Vec<String> = changes.iter().map(|(k, _)| k.clone()).collect();
        for (key, value) in changes {
            let segments = path::parse_key(&key).map_err(|reason| Error::InvalidKey {
                op: "set",
                key: key.clone(),
                view: view.to_string(),
                reason,
            })?;
            let ops = view::plan_write(v, &segments, value.as_ref())
                .map_err(|e| view_error("set", std::slice::from_ref(&key), view, e))?;
            view::apply(&mut proposed, ops);
        }
        validate_as(&loaded.schema, &proposed, "set", &keys, view)?;
        Ok(Transaction {
            db: self.clone(),
            loaded,
            view: view.clone(),
            keys,
            proposed,
            _guard: guard,
        })
    }

    pub async fn history(&self, account: &str, name: &str) -> Result<Vec<RevisionInfo>, Error> {
        self.loaded(account, name)?;
        self.inner.store.history(account, name).await
    }

    /// Makes the data of `revision` current again, as a new revision (returned). Revision 0
    /// is the empty databag.
    pub async fn rollback(&self, account: &str, name: &str, revision: u64) -> Result<u64, Error> {
        self.loaded(account, name)?;
        let guard = self.lock_writer(account, name).await;
        let loaded = self.loaded(account, name)?;
        let data = if revision == 0 {
            Value::Object(Default::default())
        } else {
            self.inner
                .store
                .revision_data(account, name, revision)
                .await?
                .ok_or_else(|| Error::NoRevision {
                    schema: format!("{account}/{name}"),
                    revision,
                })?
        };
        loaded.schema.validate(&data).map_err(|v| Error::Schema {
            schema: format!("{account}/{name}"),
            reason: format!("revision {revision} does not fit the current schema: {v}"),
        })?;
        self.commit_data(&loaded, data, guard).await
    }

    /// Writes a new revision, swaps it in memory and notifies subscribers.
    async fn commit_data(
        &self,
        base: &Loaded,
        data: Value,
        _guard: OwnedMutexGuard<()>,
    ) -> Result<u64, Error> {
        let changed = data::diff(&base.data, &data);
        if changed.is_empty() {
            return Ok(base.revision);
        }
        let (account, name) = (base.schema.account.clone(), base.schema.name.clone());
        let revision = base.revision + 1;
        self.inner
            .store
            .commit(&account, &name, revision, &data, &changed)
            .await?;
        let loaded = Loaded {
            schema: base.schema.clone(),
            signed: base.signed.clone(),
            signed_by: base.signed_by.clone(),
            revision,
            data: Arc::new(data),
        };
        self.replace_loaded(&account, &name, Some(loaded));
        let _ = self.inner.events.send(CommitEvent {
            account,
            schema: name,
            revision,
            changed,
        });
        Ok(revision)
    }

    /// Commit notifications; a slow receiver gets `Lagged` rather than blocking writers.
    pub fn subscribe(&self) -> broadcast::Receiver<CommitEvent> {
        self.inner.events.subscribe()
    }

    /// The views of the event's schema through which a changed value is readable.
    pub fn affected_views(&self, event: &CommitEvent) -> Vec<ViewId> {
        let Ok(loaded) = self.loaded(&event.account, &event.schema) else {
            return Vec::new();
        };
        let changed: Vec<Vec<String>> = event
            .changed
            .iter()
            .map(|c| c.split('.').map(str::to_string).collect())
            .collect();
        loaded
            .schema
            .views
            .values()
            .filter(|v| view::affected(v, &changed))
            .map(|v| ViewId {
                account: event.account.clone(),
                schema: event.schema.clone(),
                view: v.name.clone(),
            })
            .collect()
    }

    /// The whole databag of a schema (admin inspection, tests).
    pub fn databag(&self, account: &str, name: &str) -> Result<(u64, Value), Error> {
        let loaded = self.loaded(account, name)?;
        Ok((loaded.revision, (*loaded.data).clone()))
    }
}

fn info_of(l: &Loaded) -> SchemaInfo {
    SchemaInfo {
        account: l.schema.account.clone(),
        name: l.schema.name.clone(),
        summary: l.schema.summary.clone(),
        views: l.schema.views.keys().cloned().collect(),
        revision: l.revision,
        signed_by: l.signed_by.clone(),
    }
}

fn read_view(
    v: &View,
    id: &ViewId,
    data: &Value,
    requests: &[String],
    with: &BTreeMap<String, String>,
) -> Result<Value, Error> {
    let with: Bindings = with.clone();
    for (p, value) in &with {
        path::check_segment(value).map_err(|reason| Error::InvalidKey {
            op: "get",
            key: format!("{p}={value}"),
            view: id.to_string(),
            reason,
        })?;
    }
    if requests.is_empty() {
        return match view::read(v, data, &[], &with).map_err(|e| view_error("get", &[], id, e))? {
            Some(value) => Ok(value),
            None => Err(Error::NoData {
                keys: Keys::default(),
                view: id.to_string(),
            }),
        };
    }
    let mut out = serde_json::Map::new();
    for request in requests {
        let segments = path::parse_key(request).map_err(|reason| Error::InvalidKey {
            op: "get",
            key: request.clone(),
            view: id.to_string(),
            reason,
        })?;
        let found = view::read(v, data, &segments, &with)
            .map_err(|e| view_error("get", std::slice::from_ref(request), id, e))?;
        if let Some(value) = found {
            out.insert(request.clone(), value);
        }
    }
    if out.is_empty() {
        return Err(Error::NoData {
            keys: Keys(requests.to_vec()),
            view: id.to_string(),
        });
    }
    Ok(Value::Object(out))
}

/// Validates a whole databag and names the keys whose storage the violation concerns.
fn validate_as(
    schema: &Schema,
    data: &Value,
    op: &'static str,
    keys: &[String],
    view: &ViewId,
) -> Result<(), Error> {
    schema.validate(data).map_err(|v| Error::Invalid {
        op,
        keys: Keys(keys.to_vec()),
        view: view.to_string(),
        reason: v.message,
    })
}

/// A write in progress: holds the schema's writer lock; dropping it aborts.
#[derive(Debug)]
pub struct Transaction {
    db: Confdb,
    loaded: Arc<Loaded>,
    view: ViewId,
    keys: Vec<String>,
    proposed: Value,
    _guard: OwnedMutexGuard<()>,
}

impl Transaction {
    fn view<'a>(&'a self, id: &ViewId) -> Result<&'a View, Error> {
        if id.account != self.loaded.schema.account || id.schema != self.loaded.schema.name {
            return Err(Error::WrongSchema {
                view: id.to_string(),
                schema: self.loaded.schema.id(),
            });
        }
        self.db.view_of(&self.loaded, id)
    }

    /// The proposed data as seen through `view` (an empty map if it shows nothing).
    pub fn view_data(&self, view: &ViewId) -> Result<Value, Error> {
        let v = self.view(view)?;
        let found = view::read(v, &self.proposed, &[], &Bindings::new())
            .map_err(|e| view_error("get", &[], view, e))?;
        Ok(found.unwrap_or_else(|| Value::Object(Default::default())))
    }

    /// Replaces what `view` shows by `data` (a change-view hook's result): the differences
    /// are written through the view's rules, then the databag is validated again.
    pub fn replace_view_data(&mut self, view: &ViewId, data: Value) -> Result<(), Error> {
        let old = self.view_data(view)?;
        let v = self.view(view)?;
        let mut proposed = self.proposed.clone();
        for (key, value) in view::view_changes(&old, &data) {
            let ops = view::plan_write(v, &key, value.as_ref())
                .map_err(|e| view_error("set", &[path::join(&key)], view, e))?;
            view::apply(&mut proposed, ops);
        }
        validate_as(&self.loaded.schema, &proposed, "set", &[], view)?;
        self.proposed = proposed;
        Ok(())
    }

    /// The view the transaction was started through.
    pub fn origin(&self) -> &ViewId {
        &self.view
    }

    /// The request keys the transaction was started with.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Writes the new revision in one fsync'd SQLite transaction, then makes it visible and
    /// notifies subscribers. Unchanged data commits nothing and returns the current revision.
    pub async fn commit(self) -> Result<u64, Error> {
        validate_as(
            &self.loaded.schema,
            &self.proposed,
            "set",
            &self.keys,
            &self.view,
        )?;
        let Transaction {
            db,
            loaded,
            proposed,
            _guard,
            ..
        } = self;
        db.commit_data(&loaded, proposed, _guard).await
    }
}
