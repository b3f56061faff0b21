//! The daemon's HTTP client over a Unix socket: what `cairn conf` and `cairn run` use.
//!
//! Blocking on purpose: each [`Client`] owns a current-thread tokio runtime, and dropping
//! it leaves the process without extra threads (`cairn run` forks right after opening a
//! session).

use crate::Error;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

/// Where the sandbox gets its app socket mounted.
pub const SANDBOX_SOCKET: &str = "/run/cairn/cairn.sock";

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

/// A blocking client of one daemon socket.
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

    /// One request with an optional JSON body; the answer's JSON (`null` if empty), or
    /// the daemon's error message as [`Error::Api`].
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, Error> {
        self.runtime
            .block_on(request_json(&self.socket, method, path, body))
    }

    /// A streaming GET: `on_line` gets each line of the body until it returns false or
    /// the daemon ends the stream.
    pub fn stream_lines(
        &self,
        path: &str,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(stream_lines(&self.socket, path, on_line))
    }
}

fn unreachable(socket: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Unreachable {
        socket: socket.to_path_buf(),
        reason: cairn_config::one_line(&reason.to_string()),
    }
}

fn bad_response(socket: &Path, reason: impl std::fmt::Display) -> Error {
    Error::BadResponse {
        socket: socket.to_path_buf(),
        reason: cairn_config::one_line(&reason.to_string()),
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
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|e| e.as_str())
            .map(str::to_string)
    };
    let message = field("error")
        .unwrap_or_else(|| format!("the daemon at {} answered {status}", socket.display()));
    Error::Api {
        status: status.as_u16(),
        kind: field("kind").unwrap_or_default(),
        message,
    }
}

pub(crate) async fn request_json(
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

/// Everything but RFC 3986's unreserved characters gets escaped.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment or query component.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

/// An ephemeral app session: a socket that grants `plugs` to whatever it is mounted into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// The per-session socket to bind-mount at [`SANDBOX_SOCKET`] in the sandbox.
    pub socket: PathBuf,
    admin_socket: PathBuf,
}

/// Asks the daemon on `admin_socket` for a session socket granting `plugs` to a program
/// of the node family `node`. Blocking; leaves no threads behind.
pub fn open_session(admin_socket: &Path, node: &Path, plugs: &[String]) -> Result<Session, Error> {
    let client = Client::new(admin_socket)?;
    let body = serde_json::json!({ "node": node, "plugs": plugs });
    let answer = client.call(
        Method::POST,
        "/v1/sessions",
        Some(body.to_string().into_bytes()),
    )?;
    let field = |name: &str| {
        answer
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| bad_response(admin_socket, format!("session answer without {name:?}")))
    };
    Ok(Session {
        id: field("id")?,
        socket: PathBuf::from(field("socket")?),
        admin_socket: admin_socket.to_path_buf(),
    })
}

impl Session {
    /// Ends the session: the daemon removes its socket and forgets its plugs.
    pub fn close(self) -> Result<(), Error> {
        let client = Client::new(&self.admin_socket)?;
        client.call(
            Method::DELETE,
            &format!("/v1/sessions/{}", encode(&self.id)),
            None,
        )?;
        Ok(())
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
        let err = client
            .call(Method::GET, "/v1/schemas", None)
            .unwrap_err()
            .to_string();
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
}
