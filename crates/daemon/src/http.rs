//! The HTTP/JSON translation of the service: routes map requests to [`Service`] calls and
//! service errors to answers. Bodies are `cairn-api`'s wire types; nothing here decides
//! access, stores or validates data.
//!
//! The same routes are served on every socket. The socket layer puts the [`Caller`] of
//! each request into its extensions (from the socket that accepted it and the peer's
//! credentials); the service decides what that caller may do.

use crate::service::{Caller, Service, ServiceError, SessionFor, Update};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cairn_api::{
    Committed, ErrorBody, ErrorKind, Revision, RollbackRequest, SchemaSummary, SchemaText,
    SessionInfo, SessionRequest, WatchEvent,
};
use cairn_confdb::ViewId;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// Largest request body (schema documents are the biggest).
const BODY_LIMIT: usize = 4 << 20;
/// A request (not a watch stream) that takes longer is answered 503; custodian hooks
/// have their own, shorter limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The routes, for a socket layer that adds the `Caller` extension.
pub fn router(service: Arc<Service>) -> Router {
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
        .route("/v1/apps/reload", post(reload_apps))
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{id}", axum::routing::delete(close_session))
        .fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(service)
}

/// The one error answer of every route: `{"error": "<one line>", "kind": "..."}`.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, ErrorKind::BadRequest, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            kind: self.kind,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ServiceError> for HttpError {
    fn from(err: ServiceError) -> HttpError {
        use cairn_confdb::Error as E;
        let (status, kind) = match &err {
            ServiceError::NoPlug { .. } | ServiceError::AdminOnly { .. } => {
                (StatusCode::FORBIDDEN, ErrorKind::PermissionDenied)
            }
            ServiceError::BadSession(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadRequest),
            ServiceError::NoSession { .. } => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
            ServiceError::Rejected { .. } => (StatusCode::CONFLICT, ErrorKind::Rejected),
            ServiceError::Endpoint(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal),
            ServiceError::Confdb(e) => match e {
                E::NoData { .. } => (StatusCode::NOT_FOUND, ErrorKind::NoData),
                E::NoMatchingRule { .. } => (StatusCode::NOT_FOUND, ErrorKind::NoMatchingRule),
                E::UnknownView { .. } | E::UnknownSchema(_) | E::NoRevision { .. } => {
                    (StatusCode::NOT_FOUND, ErrorKind::NotFound)
                }
                E::UnusedData { .. } | E::Invalid { .. } | E::InvalidKey { .. } => {
                    (StatusCode::BAD_REQUEST, ErrorKind::Invalid)
                }
                E::InvalidViewId(_) | E::Schema { .. } | E::WrongSchema { .. } => {
                    (StatusCode::BAD_REQUEST, ErrorKind::BadRequest)
                }
                E::Signature(_) | E::Trust(_) | E::Key { .. } => {
                    (StatusCode::FORBIDDEN, ErrorKind::PermissionDenied)
                }
                E::Io { .. } | E::Database { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal)
                }
            },
        };
        HttpError::new(status, kind, err.to_string())
    }
}

impl From<cairn_confdb::Error> for HttpError {
    fn from(err: cairn_confdb::Error) -> HttpError {
        ServiceError::from(err).into()
    }
}

type HttpResult<T> = Result<T, HttpError>;

fn view_id(account: &str, schema: &str, view: &str) -> HttpResult<ViewId> {
    Ok(format!("{account}/{schema}/{view}").parse::<ViewId>()?)
}

fn summary(info: cairn_confdb::SchemaInfo) -> SchemaSummary {
    SchemaSummary {
        account: info.account,
        name: info.name,
        summary: info.summary,
        views: info.views,
        revision: info.revision,
        signed_by: info.signed_by,
    }
}

fn revision(info: cairn_confdb::RevisionInfo) -> Revision {
    Revision {
        revision: info.revision,
        time: info.created,
        changed: info.changed,
    }
}

// ---------------------------------------------------------------------------------------
// Schemas (admin only)

#[utoipa::path(get, path = "/v1/schemas", tag = "schemas",
    responses((status = 200, body = Vec<SchemaSummary>), (status = 403, body = ErrorBody)))]
async fn list_schemas(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<Vec<SchemaSummary>>> {
    let admin = service.grant_admin(&caller, "list schemas")?;
    let schemas = service.schemas(&admin).await?;
    Ok(Json(schemas.into_iter().map(summary).collect()))
}

#[utoipa::path(post, path = "/v1/schemas", tag = "schemas",
    request_body(content = String, description = "A signed schema document (`cairn conf sign`)",
        content_type = "application/octet-stream"),
    responses((status = 200, body = SchemaSummary), (status = 403, body = ErrorBody),
        (status = 400, body = ErrorBody)))]
async fn add_schema(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> HttpResult<Json<SchemaSummary>> {
    let admin = service.grant_admin(&caller, "add schemas")?;
    Ok(Json(summary(service.add_schema(&admin, &body).await?)))
}

#[utoipa::path(get, path = "/v1/schemas/{account}/{name}", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SchemaText), (status = 404, body = ErrorBody)))]
async fn show_schema(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> HttpResult<Json<SchemaText>> {
    let admin = service.grant_admin(&caller, "read schemas")?;
    Ok(Json(SchemaText {
        text: service.schema_text(&admin, &account, &name).await?,
    }))
}

#[utoipa::path(delete, path = "/v1/schemas/{account}/{name}", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_schema(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> HttpResult<StatusCode> {
    let admin = service.grant_admin(&caller, "remove schemas")?;
    service.remove_schema(&admin, &account, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/schemas/{account}/{name}/history", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Vec<Revision>), (status = 404, body = ErrorBody)))]
async fn history(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
) -> HttpResult<Json<Vec<Revision>>> {
    let admin = service.grant_admin(&caller, "read history")?;
    let revisions = service.history(&admin, &account, &name).await?;
    Ok(Json(revisions.into_iter().map(revision).collect()))
}

#[utoipa::path(post, path = "/v1/schemas/{account}/{name}/rollback", tag = "schemas",
    params(("account" = String, Path), ("name" = String, Path)),
    request_body = RollbackRequest,
    responses((status = 200, body = Committed), (status = 404, body = ErrorBody)))]
async fn rollback(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, name)): Path<(String, String)>,
    body: Bytes,
) -> HttpResult<Json<Committed>> {
    let admin = service.grant_admin(&caller, "roll back")?;
    let request: RollbackRequest = parse_json(&body)?;
    let revision = service
        .rollback(&admin, &account, &name, request.revision)
        .await?;
    Ok(Json(Committed { revision }))
}

// ---------------------------------------------------------------------------------------
// Views

/// `key=K` (repeatable) picks requests; `with=P=V` (repeatable) binds a placeholder.
fn parse_view_query(
    pairs: &[(String, String)],
) -> HttpResult<(Vec<String>, BTreeMap<String, String>)> {
    let mut keys = Vec::new();
    let mut with = BTreeMap::new();
    for (name, value) in pairs {
        match name.as_str() {
            "key" => keys.push(value.clone()),
            "with" => {
                let (p, v) = value.split_once('=').ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "invalid with {value:?}: expected PLACEHOLDER=VALUE"
                    ))
                })?;
                with.insert(p.to_string(), v.to_string());
            }
            other => {
                return Err(HttpError::bad_request(format!(
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
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> HttpResult<Json<serde_json::Value>> {
    let grant = service.grant_view(&caller, view_id(&account, &schema, &view)?)?;
    let (keys, with) = parse_view_query(&pairs)?;
    Ok(Json(service.get(&grant, &keys, &with).await?))
}

#[utoipa::path(put, path = "/v1/views/{account}/{schema}/{view}", tag = "views",
    params(("account" = String, Path), ("schema" = String, Path), ("view" = String, Path)),
    request_body(content = Object, description = "request key -> new value; null unsets"),
    responses((status = 200, body = Committed), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_view(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    body: Bytes,
) -> HttpResult<Json<Committed>> {
    let grant = service.grant_view(&caller, view_id(&account, &schema, &view)?)?;
    let changes: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    let changes = changes
        .into_iter()
        .map(|(k, v)| (k, if v.is_null() { None } else { Some(v) }))
        .collect();
    let revision = service.set(&grant, changes).await?;
    Ok(Json(Committed { revision }))
}

#[utoipa::path(get, path = "/v1/views/{account}/{schema}/{view}/watch", tag = "views",
    params(("account" = String, Path), ("schema" = String, Path), ("view" = String, Path),
        ("key" = Option<Vec<String>>, Query, description = "request keys (repeat)")),
    responses((status = 200, description = "JSON lines (application/x-ndjson), one WatchEvent per \
        commit that changed the view, after a first line with the current data",
        body = WatchEvent, content_type = "application/x-ndjson"),
        (status = 403, body = ErrorBody)))]
async fn watch_view(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path((account, schema, view)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> HttpResult<Response> {
    let grant = service.grant_view(&caller, view_id(&account, &schema, &view)?)?;
    let (keys, with) = parse_view_query(&pairs)?;
    let updates = service.watch(grant, keys, with).await?;
    let lines = updates.map(|Update { revision, data }| {
        let line = WatchEvent { revision, data }.to_line();
        Ok::<Bytes, Infallible>(Bytes::from(line))
    });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Apps (admin only)

/// Re-reads the app configs, as SIGHUP does (`cairn app register` and `rm` ask for it).
#[utoipa::path(post, path = "/v1/apps/reload", tag = "apps",
    responses((status = 204), (status = 403, body = ErrorBody)))]
async fn reload_apps(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<StatusCode> {
    service.grant_admin(&caller, "reload apps")?;
    service.reload();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Sessions (admin only)

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = SessionRequest,
    responses((status = 200, body = SessionInfo), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn open_session(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> HttpResult<Json<SessionInfo>> {
    let admin = service.grant_admin(&caller, "open sessions")?;
    let request: SessionRequest = parse_json(&body)?;
    let identity = match (request.node, request.app) {
        (Some(node), None) => SessionFor::Node(node.into()),
        (None, Some(app)) => SessionFor::App(app),
        (None, None) => return Err(HttpError::bad_request("a session needs a node or an app")),
        (Some(_), Some(_)) => {
            return Err(HttpError::bad_request(
                "a session is for a node or an app, not both",
            ));
        }
    };
    let opened = service.open_session(&admin, identity, &request.plugs)?;
    Ok(Json(SessionInfo {
        id: opened.id,
        socket: opened.endpoint.display().to_string(),
    }))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn close_session(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    let admin = service.grant_admin(&caller, "close sessions")?;
    service.close_session(&admin, &id)?;
    Ok(StatusCode::NO_CONTENT)
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
        reload_apps,
        open_session,
        close_session
    ),
    components(schemas(
        ErrorBody,
        ErrorKind,
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

async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "no such API route (see /v1/openapi.json)",
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> HttpResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{App, AppSource, Hooks};
    use crate::service::testing::service_with;

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

    async fn send(
        router: Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
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
        let service = service_with(dir.path(), vec![app]).await;
        let as_caller = |caller: Caller| router(service.clone()).layer(Extension(caller));
        let as_app = || as_caller(Caller::App("reporting".into()));
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
        let gone = as_caller(Caller::App("vpn".into()));
        let (status, _) = send(gone, "GET", "/v1/views/acme/network/observe-device", "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let admin = || as_caller(Caller::Admin);
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
        let (status, body) = send(admin(), "POST", "/v1/sessions", r#"{"plugs": ["a/b/c"]}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "a session needs a node or an app");
    }
}
