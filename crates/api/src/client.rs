//! The blocking client of one daemon socket, and app sessions.

use crate::Error;
use crate::wire::{
    Committed, ErrorBody, ErrorKind, Revision, RollbackRequest, SchemaSummary, SchemaText,
    SessionInfo, SessionRequest, WatchEvent,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

/// Where the sandbox gets its app socket mounted.
pub use cairn_model::plug::SANDBOX_SOCKET;

/// Picks the socket the CLI talks to: the admin socket when it accepts connections,
/// otherwise the app socket of the sandbox we run in (`$CAIRN_SOCKET`, then
/// [`SANDBOX_SOCKET`]) when one exists, otherwise the admin socket (so that the error
/// names it).
pub fn choose_socket(admin: &Path) -> PathBuf {
    if std::os::unix::net::UnixStream::connect(admin).is_ok() {
        return admin.to_path_buf();
    }
    let from_env = std::env::var_os("CAIRN_SOCKET")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    for candidate in from_env.into_iter().chain([PathBuf::from(SANDBOX_SOCKET)]) {
        if candidate != admin && candidate.exists() {
            return candidate;
        }
    }
    admin.to_path_buf()
}

/// A blocking client of one daemon socket. Views are named `ACCOUNT/SCHEMA/VIEW` and
/// schemas `ACCOUNT/SCHEMA`; other names are refused before anything is sent.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(socket: &Path) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Client {
            socket: socket.to_path_buf(),
            runtime,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Reads through a view: the whole view without keys, else an object keyed by request.
    /// `with` binds placeholders of the view's rules.
    pub fn get(
        &self,
        view: &str,
        keys: &[String],
        with: &[(String, String)],
    ) -> Result<serde_json::Value, Error> {
        let with: Vec<String> = with.iter().map(|(p, v)| format!("{p}={v}")).collect();
        let path = format!("{}{}", view_path(view)?, query(keys, &with));
        self.call(Method::GET, &path, None)
    }

    /// Writes through a view in one transaction: `Some` sets a key, `None` unsets it.
    /// Returns the committed revision.
    pub fn set(
        &self,
        view: &str,
        changes: impl IntoIterator<Item = (String, Option<serde_json::Value>)>,
    ) -> Result<u64, Error> {
        let body: serde_json::Map<String, serde_json::Value> = changes
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(serde_json::Value::Null)))
            .collect();
        let body = serde_json::Value::Object(body).to_string().into_bytes();
        let committed: Committed = self.typed(Method::PUT, &view_path(view)?, Some(body))?;
        Ok(committed.revision)
    }

    /// Unsets keys through a view in one transaction.
    pub fn unset(&self, view: &str, keys: &[String]) -> Result<u64, Error> {
        self.set(view, keys.iter().map(|k| (k.clone(), None)))
    }

    /// Follows a view: `on_event` gets the current data first, then one event per commit
    /// that changed it, until it returns false or the daemon ends the stream.
    pub fn watch(
        &self,
        view: &str,
        keys: &[String],
        on_event: &mut dyn FnMut(WatchEvent) -> bool,
    ) -> Result<(), Error> {
        let path = format!("{}/watch{}", view_path(view)?, query(keys, &[]));
        let mut bad_line = None;
        self.stream_lines(&path, &mut |line| match WatchEvent::from_line(line) {
            Ok(event) => on_event(event),
            Err(e) => {
                bad_line = Some(e);
                false
            }
        })?;
        match bad_line {
            Some(e) => Err(bad_response(&self.socket, e)),
            None => Ok(()),
        }
    }

    pub fn schemas(&self) -> Result<Vec<SchemaSummary>, Error> {
        self.typed(Method::GET, "/v1/schemas", None)
    }

    /// Adds (or replaces) a signed schema document.
    pub fn add_schema(&self, signed: Vec<u8>) -> Result<SchemaSummary, Error> {
        self.typed(Method::POST, "/v1/schemas", Some(signed))
    }

    /// A schema's document text.
    pub fn schema_text(&self, schema: &str) -> Result<String, Error> {
        let text: SchemaText = self.typed(Method::GET, &schema_path(schema)?, None)?;
        Ok(text.text)
    }

    /// Removes a schema with its data and history.
    pub fn remove_schema(&self, schema: &str) -> Result<(), Error> {
        self.call(Method::DELETE, &schema_path(schema)?, None)?;
        Ok(())
    }

    pub fn history(&self, schema: &str) -> Result<Vec<Revision>, Error> {
        let path = format!("{}/history", schema_path(schema)?);
        self.typed(Method::GET, &path, None)
    }

    /// Restores the data of `revision` as a new revision, which is returned.
    pub fn rollback(&self, schema: &str, revision: u64) -> Result<u64, Error> {
        let path = format!("{}/rollback", schema_path(schema)?);
        let body = serde_json::to_vec(&RollbackRequest { revision })
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let committed: Committed = self.typed(Method::POST, &path, Some(body))?;
        Ok(committed.revision)
    }

    /// Asks for an app session socket (admin socket only); see [`open_session`].
    pub fn open_session(&self, request: &SessionRequest) -> Result<SessionInfo, Error> {
        let body = serde_json::to_vec(request).map_err(|e| Error::Invalid(e.to_string()))?;
        self.typed(Method::POST, "/v1/sessions", Some(body))
    }

    pub fn close_session(&self, id: &str) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &format!("/v1/sessions/{}", encode(id)),
            None,
        )?;
        Ok(())
    }

    /// Asks the daemon to re-read the app configs now (as SIGHUP does): `cairn app
    /// register` and `rm` call it so that a plugged app's socket is there at once.
    pub fn reload_apps(&self) -> Result<(), Error> {
        self.call(Method::POST, "/v1/apps/reload", None)?;
        Ok(())
    }

    /// One raw request with an optional JSON body; the answer's JSON (`null` if empty), or
    /// the daemon's error message as [`Error::Api`]. For routes without a typed method.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, Error> {
        self.runtime
            .block_on(request_json(&self.socket, method, path, body))
    }

    /// A raw streaming GET: `on_line` gets each line of the body until it returns false or
    /// the daemon ends the stream.
    pub fn stream_lines(
        &self,
        path: &str,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(stream_lines(&self.socket, path, on_line))
    }

    fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let value = self.call(method, path, body)?;
        serde_json::from_value(value).map_err(|e| bad_response(&self.socket, e))
    }
}

/// `/v1/views/A/S/V` for `A/S/V`.
fn view_path(view: &str) -> Result<String, Error> {
    let parts: Vec<&str> = view.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Invalid(format!(
            "invalid view name \"{view}\": expected ACCOUNT/SCHEMA/VIEW"
        )));
    }
    let encoded: Vec<String> = parts.iter().map(|p| encode(p)).collect();
    Ok(format!("/v1/views/{}", encoded.join("/")))
}

/// `/v1/schemas/A/S` for `A/S`.
fn schema_path(schema: &str) -> Result<String, Error> {
    match schema.split_once('/') {
        Some((account, name)) if !account.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("/v1/schemas/{}/{}", encode(account), encode(name)))
        }
        _ => Err(Error::Invalid(format!(
            "invalid schema name \"{schema}\": expected ACCOUNT/SCHEMA"
        ))),
    }
}

fn query(keys: &[String], with: &[String]) -> String {
    let pairs: Vec<String> = keys
        .iter()
        .map(|k| format!("key={}", encode(k)))
        .chain(with.iter().map(|w| format!("with={}", encode(w))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Everything but RFC 3986's unreserved characters gets escaped.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment or query component.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

// The reasons below are Display texts of io, hyper and serde_json errors: one line each.
fn unreachable(socket: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Unreachable {
        socket: socket.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn bad_response(socket: &Path, reason: impl std::fmt::Display) -> Error {
    Error::BadResponse {
        socket: socket.to_path_buf(),
        reason: reason.to_string(),
    }
}

async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| unreachable(socket, e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(socket, e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cairn");
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| bad_response(socket, e))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(socket, e))
}

/// Turns a non-success answer into the daemon's one-line message.
fn api_error(socket: &Path, status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => Error::Api {
            status: status.as_u16(),
            kind: body.kind,
            message: body.error,
        },
        Err(_) => Error::Api {
            status: status.as_u16(),
            kind: ErrorKind::Other,
            message: format!("the daemon at {} answered {status}", socket.display()),
        },
    }
}

async fn request_json(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<serde_json::Value, Error> {
    let response = send(socket, method, path, body).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| bad_response(socket, e))?
        .to_bytes();
    if !status.is_success() {
        return Err(api_error(socket, status, &bytes));
    }
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_response(socket, e))
}

async fn stream_lines(
    socket: &Path,
    path: &str,
    on_line: &mut dyn FnMut(&str) -> bool,
) -> Result<(), Error> {
    let response = send(socket, Method::GET, path, None).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| bad_response(socket, e))?
            .to_bytes();
        return Err(api_error(socket, status, &bytes));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad_response(socket, e))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            if !text.trim().is_empty() && !on_line(text.trim()) {
                return Ok(());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sessions

/// Whom a session speaks for: a program of a node family (`cairn run --node`), or a
/// registered app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Node(PathBuf),
    App(String),
}

impl From<&Path> for Identity {
    fn from(node: &Path) -> Identity {
        Identity::Node(node.to_path_buf())
    }
}

impl From<&PathBuf> for Identity {
    fn from(node: &PathBuf) -> Identity {
        Identity::Node(node.clone())
    }
}

impl From<PathBuf> for Identity {
    fn from(node: PathBuf) -> Identity {
        Identity::Node(node)
    }
}

/// An ephemeral app session: a socket that grants `plugs` to whatever it is mounted into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// The per-session socket to bind-mount at [`SANDBOX_SOCKET`] in the sandbox.
    pub socket: PathBuf,
    admin_socket: PathBuf,
}

/// Asks the daemon on `admin_socket` for a session socket granting `plugs` to `identity`
/// (a node path or an app name). Blocking; leaves no threads behind.
pub fn open_session(
    admin_socket: &Path,
    identity: impl Into<Identity>,
    plugs: &[String],
) -> Result<Session, Error> {
    let (node, app) = match identity.into() {
        Identity::Node(node) => {
            let text = node.to_str().ok_or_else(|| {
                Error::Invalid(format!("node path {} is not UTF-8", node.display()))
            })?;
            (Some(text.to_string()), None)
        }
        Identity::App(app) => (None, Some(app)),
    };
    let request = SessionRequest {
        node,
        app,
        plugs: plugs.to_vec(),
    };
    let info = Client::new(admin_socket)?.open_session(&request)?;
    Ok(Session {
        id: info.id,
        socket: PathBuf::from(info.socket),
        admin_socket: admin_socket.to_path_buf(),
    })
}

impl Session {
    /// Ends the session: the daemon removes its socket and forgets its plugs.
    pub fn close(self) -> Result<(), Error> {
        Client::new(&self.admin_socket)?.close_session(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_daemon_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cairn.sock");
        let client = Client::new(&socket).unwrap();
        let err = client.schemas().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot reach the daemon at {}: ",
                socket.display()
            )),
            "{err}"
        );
        assert!(err.ends_with("(start it with `cairn daemon`)"), "{err}");
    }

    #[test]
    fn choose_socket_prefers_a_listening_admin_socket() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.sock");
        assert_eq!(
            choose_socket(&admin),
            admin,
            "nothing exists: the admin socket is named"
        );
        let _listener = std::os::unix::net::UnixListener::bind(&admin).unwrap();
        assert_eq!(choose_socket(&admin), admin);
    }

    #[test]
    fn encode_escapes_reserved_characters() {
        assert_eq!(encode("a.b-c=d&e f"), "a.b-c%3Dd%26e%20f");
    }

    #[test]
    fn names_are_checked_before_anything_is_sent() {
        assert_eq!(
            view_path("acme/network/control-device").unwrap(),
            "/v1/views/acme/network/control-device"
        );
        assert_eq!(
            view_path("acme/network").unwrap_err().to_string(),
            "invalid view name \"acme/network\": expected ACCOUNT/SCHEMA/VIEW"
        );
        assert_eq!(
            schema_path("acme/network").unwrap(),
            "/v1/schemas/acme/network"
        );
        assert!(schema_path("acme").is_err());
        assert!(schema_path("a/b/c").is_err());
        assert_eq!(
            query(&["a.b".to_string()], &["n=eth0".to_string()]),
            "?key=a.b&with=n%3Deth0"
        );
        // A bad name fails without a daemon: nothing was tried.
        let client = Client::new(Path::new("/nonexistent/cairn.sock")).unwrap();
        let err = client.get("nope", &[], &[]).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }

    /// A one-shot HTTP server on a real socket, answering `answer` to the first request.
    fn answer_once(dir: &Path, answer: String) -> (PathBuf, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let socket = dir.join("d.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (socket, server)
    }

    #[test]
    fn error_answers_become_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let body = r#"{"error":"cannot get through a/b/c: no data","kind":"no-data"}"#;
        let answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (socket, server) = answer_once(dir.path(), answer);
        let client = Client::new(&socket).unwrap();
        let err = client
            .get(
                "a/b/c",
                &["x y".to_string()],
                &[("n".into(), "eth0".into())],
            )
            .unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::NoData));
        assert_eq!(err.to_string(), "cannot get through a/b/c: no data");
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /v1/views/a/b/c?key=x%20y&with=n%3Deth0 HTTP/1.1"),
            "{request}"
        );
    }

    #[test]
    fn watch_gives_typed_events_and_refuses_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, server) = answer_once(
            dir.path(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n{\"revision\":null,\"data\":null}\n{\"revision\":3,\"data\":{\"a\":1}}\nnot json\n"
                .to_string(),
        );
        let client = Client::new(&socket).unwrap();
        let mut events = Vec::new();
        let err = client
            .watch("a/b/c", &[], &mut |e| {
                events.push(e);
                true
            })
            .unwrap_err();
        assert!(matches!(err, Error::BadResponse { .. }), "{err}");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].revision, Some(3));
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /v1/views/a/b/c/watch ")
        );
    }
}
