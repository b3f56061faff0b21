//! The HTTP/JSON API: routes, the access check, and the translation of requests into
//! typed calls on `cairn-confdb`. Nothing here stores or validates data itself.
//!
//! The same routes are served on every socket; what a caller may do depends on the
//! [`Caller`] its socket was bound for: the admin socket may do everything, an app socket
//! only reads and writes the views its app plugs.

use crate::server::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cairn_confdb::ViewId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{OpenApi, ToSchema};

/// Whom a connection speaks for: decided by the socket that accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    App(String),
}

/// Largest request body (schema documents are the biggest).
const BODY_LIMIT: usize = 4 << 20;
/// A request (not a watch stream) that takes longer is answered 503; custodian hooks
/// have their own, shorter limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The router for one socket.
pub fn app(shared: Arc<Shared>, caller: Caller) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/schemas", get(list_schemas).post(add_schema))
        .route(
            "/v1/schemas/{account}/{name}",
            get(show_schema).delete(remove_schema),
        )
        .route("/v1/schemas/{account}/{name}/history", get(history))
        .route("/v1/schemas/{account}/{name}/rollback", post(rollback))
        .route(
            "/v1/views/{account}/{schema}/{view}",
            get(get_view).put(set_view),
        )
        .route("/v1/views/{account}/{schema}/{view}/watch", get(watch_view))
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{id}", axum::routing::delete(close_session))
        .fallback(not_found)
        .layer(Extension(caller))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(shared)
}

/// The error answer: `{"error": "<one line>", "kind": "<machine-readable>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// `no-data`, `no-matching-rule`, `invalid`, `not-found`, `permission-denied`,
    /// `rejected`, `bad-request`, `internal`.
    pub kind: String,
}

/// One error type for every handler.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    fn denied(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission-denied", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            kind: self.kind.to_string(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<cairn_confdb::Error> for ApiError {
    fn from(err: cairn_confdb::Error) -> ApiError {
        use cairn_confdb::Error as E;
        let (status, kind) = match &err {
            E::NoData { .. } => (StatusCode::NOT_FOUND, "no-data"),
            E::NoMatchingRule { .. } => (StatusCode::NOT_FOUND, "no-matching-rule"),
            E::UnknownView { .. } | E::UnknownSchema(_) | E::NoRevision { .. } => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            E::UnusedData { .. } | E::Invalid { .. } | E::InvalidKey { .. } => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            E::InvalidViewId(_) | E::Schema { .. } | E::WrongSchema { .. } => {
                (StatusCode::BAD_REQUEST, "bad-request")
            }
            E::Signature(_) | E::Trust(_) | E::Key { .. } => {
                (StatusCode::FORBIDDEN, "permission-denied")
            }
            E::Io { .. } | E::Database { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, kind, err.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn require_admin(caller: &Caller, what: &str) -> ApiResult<()> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::App(app) => Err(ApiError::denied(format!(
            "permission denied: app {app:?} cannot {what} (administrators only)"
        ))),
    }
}

/// The plug check: an app socket reaches only the views its app plugs.
fn authorize_view(shared: &Shared, caller: &Caller, view: &str) -> ApiResult<()> {
    let Caller::App(name) = caller else {
        return Ok(());
    };
    let allowed = shared.app(name).is_some_and(|app| app.plug(view).is_some());
    if allowed {
        Ok(())
    } else {
        Err(ApiError::denied(format!(
            "permission denied: app {name:?} has no plug for view {view}"
        )))
    }
}

fn view_id(account: &str, schema: &str, view: &str) -> ApiResult<ViewId> {
    Ok(format!("{account}/{schema}/{view}").parse::<ViewId>()?)
}

// ---------------------------------------------------------------------------------------
// Schemas (admin only)

/// A schema as listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaSummary {
    pub account: String,
    pub name: String,
    pub summary: Option<String>,
    pub views: Vec<String>,
    /// The newest databag revision (0: nothing written yet).
    pub revision: u64,
    /// The key that signed the document (`ed25519:...`).
    pub signed_by: String,
}

impl From<cairn_confdb::SchemaInfo> for SchemaSummary {
    fn from(info: cairn_confdb::SchemaInfo) -> SchemaSummary {
        SchemaSummary {
            account: info.account,
            name: info.name,
            summary: info.summary,
            views: info.views,
            revision: info.revision,
            signed_by: info.signed_by,
        }
    }
}

#[utoipa::path(get, path = "/v1/schemas", tag = "schemas",
    responses((status = 200, body = Vec<SchemaSummary>), (status = 403, body = ErrorBody)))]
async fn list_schemas(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<SchemaSummary>>> {
    require_admin(&caller, "list schemas")?;
    let schemas = shared.confdb.schemas().await?;
    Ok(Json(schemas.into_iter().map(SchemaSummary::from).collect()))
}

#[utoipa::path(post, path = "/v1/schemas", tag = "schemas",
    request_body(content = String, description = "A signed schema document (`cairn conf sign`)",
        content_type = "application/octet-stream"),
    responses((status = 200, body = SchemaSummary), (status = 403, body = ErrorBody),
        (status = 400, body = ErrorBody)))]
async fn add_schema(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<SchemaSummary>> {
    require_admin(&caller, "add schemas")?;
    let info = shared.confdb.add_schema(&body).await?;
    tracing::info!(account = %info.account, name = %info.name, "schema added");
    Ok(Json(info.into()))
}

/// A schema's source text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaText {
    pub text: String,
}

#[utoipa::path(get, path = "/v1/schemas/{account}/{name}", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SchemaText), (status = 404, body = ErrorBody)))]
async fn show_schema(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult<Json<SchemaText>> {
    require_admin(&caller, "read schemas")?;
    Ok(Json(SchemaText {
        text: shared.confdb.schema_text(&account, &name).await?,
    }))
}

#[utoipa::path(delete, path = "/v1/schemas/{account}/{name}", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_schema(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_admin(&caller, "remove schemas")?;
    shared.confdb.remove_schema(&account, &name).await?;
    tracing::info!(%account, %name, "schema removed");
    Ok(StatusCode::NO_CONTENT)
}

/// One committed revision of a databag.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    pub revision: u64,
    /// Seconds since the Unix epoch.
    pub time: i64,
    /// The storage paths the commit changed.
    pub changed: Vec<String>,
}

impl From<cairn_confdb::RevisionInfo> for Revision {
    fn from(info: cairn_confdb::RevisionInfo) -> Revision {
        Revision {
            revision: info.revision,
            time: info.created,
            changed: info.changed,
        }
    }
}

#[utoipa::path(get, path = "/v1/schemas/{account}/{name}/history", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Vec<Revision>), (status = 404, body = ErrorBody)))]
async fn history(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Revision>>> {
    require_admin(&caller, "read history")?;
    let revisions = shared.confdb.history(&account, &name).await?;
    Ok(Json(revisions.into_iter().map(Revision::from).collect()))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    pub revision: u64,
}

/// The revision a write produced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Committed {
    pub revision: u64,
}

#[utoipa::path(post, path = "/v1/schemas/{account}/{name}/rollback", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    request_body = RollbackRequest,
    responses((status = 200, body = Committed), (status = 404, body = ErrorBody)))]
async fn rollback(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    require_admin(&caller, "roll back")?;
    let request: RollbackRequest = parse_json(&body)?;
    let revision = shared
        .confdb
        .rollback(&account, &name, request.revision)
        .await?;
    tracing::info!(%account, %name, to = request.revision, revision, "rolled back");
    Ok(Json(Committed { revision }))
}

// ---------------------------------------------------------------------------------------
// Views

/// `key=K` (repeatable) picks requests; `with=P=V` (repeatable) binds a placeholder.
fn parse_view_query(
    pairs: &[(String, String)],
) -> ApiResult<(Vec<String>, BTreeMap<String, String>)> {
    let mut keys = Vec::new();
    let mut with = BTreeMap::new();
    for (name, value) in pairs {
        match name.as_str() {
            "key" => keys.push(value.clone()),
            "with" => {
                let (p, v) = value.split_once('=').ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid with {value:?}: expected PLACEHOLDER=VALUE"
                    ))
                })?;
                with.insert(p.to_string(), v.to_string());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    Ok((keys, with))
}

#[utoipa::path(get, path = "/v1/views/{account}/{schema}/{view}", tag = "views",
    params(("account" = String, Path), ("schema" = String, Path), ("view" = String, Path),
        ("key" = Option<Vec<String>>, Query, description = "request keys (repeat); none = the whole view"),
        ("with" = Option<Vec<String>>, Query, description = "PLACEHOLDER=VALUE constraints (repeat)")),
    responses((status = 200, description = "the data (an object keyed by request when keys were given)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_view(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = view_id(&account, &schema, &view)?;
    authorize_view(&shared, &caller, &id.to_string())?;
    let (keys, with) = parse_view_query(&pairs)?;
    Ok(Json(shared.confdb.get(&id, &keys, &with).await?))
}

#[utoipa::path(put, path = "/v1/views/{account}/{schema}/{view}", tag = "views",
    params(("account" = String, Path), ("schema" = String, Path), ("view" = String, Path)),
    request_body(content = Object, description = "request key -> new value; null unsets"),
    responses((status = 200, body = Committed), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_view(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let id = view_id(&account, &schema, &view)?;
    authorize_view(&shared, &caller, &id.to_string())?;
    let changes: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    let changes = changes
        .into_iter()
        .map(|(k, v)| (k, if v.is_null() { None } else { Some(v) }))
        .collect();
    let revision = crate::server::write(&shared, &id, changes).await?;
    Ok(Json(Committed { revision }))
}

/// One line of a watch stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    /// The commit; `null` on the first line, which carries the data as it is now.
    pub revision: Option<u64>,
    /// The view's data (or the requested keys), `null` when there is none.
    pub data: serde_json::Value,
}

#[utoipa::path(get, path = "/v1/views/{account}/{schema}/{view}/watch", tag = "views",
    params(("account" = String, Path), ("schema" = String, Path), ("view" = String, Path),
        ("key" = Option<Vec<String>>, Query, description = "request keys (repeat)")),
    responses((status = 200, description = "JSON lines (application/x-ndjson), one WatchEvent per \
        commit that changed the view, after a first line with the current data",
        body = WatchEvent, content_type = "application/x-ndjson"),
        (status = 403, body = ErrorBody)))]
async fn watch_view(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let id = view_id(&account, &schema, &view)?;
    authorize_view(&shared, &caller, &id.to_string())?;
    let (keys, with) = parse_view_query(&pairs)?;
    let stream = crate::server::watch_stream(shared, id, keys, with).await?;
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Sessions (admin only)

/// A request for an ephemeral app socket (what `cairn run --confdb-plug` asks for).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionRequest {
    /// The node leaf the program runs in.
    pub node: String,
    /// Views, `ACCOUNT/SCHEMA/VIEW[:custodian]`.
    pub plugs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub id: String,
    /// The socket to mount at /run/cairn/cairn.sock in the sandbox.
    pub socket: String,
}

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = SessionRequest,
    responses((status = 200, body = SessionInfo), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn open_session(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<SessionInfo>> {
    require_admin(&caller, "open sessions")?;
    let request: SessionRequest = parse_json(&body)?;
    let (id, socket) = crate::server::open_session(&shared, &request.node, &request.plugs).await?;
    Ok(Json(SessionInfo {
        id,
        socket: socket.display().to_string(),
    }))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn close_session(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller, "close sessions")?;
    if crate::server::close_session(&shared, &id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("session {id:?} not found"),
        ))
    }
}

// ---------------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn daemon API",
        description = "confdb views, schemas and app sessions over \
        Unix sockets. The admin socket may use every route; an app socket only the views its app \
        plugs."
    ),
    paths(
        list_schemas,
        add_schema,
        show_schema,
        remove_schema,
        history,
        rollback,
        get_view,
        set_view,
        watch_view,
        open_session,
        close_session
    ),
    components(schemas(
        ErrorBody,
        SchemaSummary,
        SchemaText,
        Revision,
        RollbackRequest,
        Committed,
        WatchEvent,
        SessionRequest,
        SessionInfo
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (`cairn daemon --openapi`).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such API route (see /v1/openapi.json)",
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_query_splits_keys_and_constraints() {
        let pairs = vec![
            ("key".to_string(), "a.b".to_string()),
            ("with".to_string(), "name=eth0".to_string()),
            ("key".to_string(), "c".to_string()),
        ];
        let (keys, with) = parse_view_query(&pairs).unwrap();
        assert_eq!(keys, vec!["a.b", "c"]);
        assert_eq!(with.get("name").map(String::as_str), Some("eth0"));
        let bad = vec![("with".to_string(), "noequals".to_string())];
        assert!(
            parse_view_query(&bad)
                .unwrap_err()
                .message
                .contains("PLACEHOLDER=VALUE")
        );
        let unknown = vec![("foo".to_string(), "x".to_string())];
        assert_eq!(
            parse_view_query(&unknown).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/schemas",
            "/v1/schemas/{account}/{name}",
            "/v1/schemas/{account}/{name}/history",
            "/v1/schemas/{account}/{name}/rollback",
            "/v1/views/{account}/{schema}/{view}",
            "/v1/views/{account}/{schema}/{view}/watch",
            "/v1/sessions",
            "/v1/sessions/{id}",
        ] {
            assert!(paths.contains_key(path), "missing {path}");
        }
    }
}
