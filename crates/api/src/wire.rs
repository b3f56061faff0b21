//! The bodies that cross the socket, as the daemon writes and the client reads them. Field
//! names and shapes are the API: change them only together with `/v1/openapi.json`.

use serde::{Deserialize, Serialize};

/// The machine-readable half of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Nothing is stored where the request looked.
    NoData,
    /// The view has no rule for the requested key.
    NoMatchingRule,
    /// The data breaks the schema.
    Invalid,
    /// No such schema, view, revision, session or route.
    NotFound,
    PermissionDenied,
    /// A custodian's change-view hook refused the write.
    Rejected,
    BadRequest,
    Internal,
    /// A kind this client does not know (a newer daemon), or an answer without a body.
    #[serde(other)]
    Other,
}

/// The error answer: `{"error": "<one line>", "kind": "<machine-readable>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    pub kind: ErrorKind,
}

/// A schema as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A schema's source text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaText {
    pub text: String,
}

/// One committed revision of a databag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revision {
    pub revision: u64,
    /// Seconds since the Unix epoch.
    pub time: i64,
    /// The storage paths the commit changed.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackRequest {
    pub revision: u64,
}

/// The revision a write produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Committed {
    pub revision: u64,
}

/// One line of a watch stream (`application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEvent {
    /// The commit; `null` on the first line, which carries the data as it is now.
    pub revision: Option<u64>,
    /// The view's data (or the requested keys), `null` when there is none.
    pub data: serde_json::Value,
}

impl WatchEvent {
    /// The event as one line of the stream, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Reads one line of the stream (without its newline).
    pub fn from_line(line: &str) -> Result<WatchEvent, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// A request for an ephemeral app socket (what `cairn run --confdb-plug` asks for). It
/// speaks for exactly one of a node or a registered app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionRequest {
    /// The node leaf the program runs in (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The registered app the program is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Views, `ACCOUNT/SCHEMA/VIEW[:custodian]`.
    pub plugs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    /// The socket to mount at /run/cairn/cairn.sock in the sandbox.
    pub socket: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_kinds_are_kebab_case_and_unknown_ones_are_other() {
        let body: ErrorBody =
            serde_json::from_value(json!({"error": "x", "kind": "no-matching-rule"})).unwrap();
        assert_eq!(body.kind, ErrorKind::NoMatchingRule);
        let body: ErrorBody =
            serde_json::from_value(json!({"error": "x", "kind": "from-the-future"})).unwrap();
        assert_eq!(body.kind, ErrorKind::Other);
        assert_eq!(
            serde_json::to_value(ErrorKind::PermissionDenied).unwrap(),
            json!("permission-denied")
        );
    }

    #[test]
    fn watch_lines_round_trip() {
        let event = WatchEvent {
            revision: Some(7),
            data: json!({"peers": ["10.0.0.1"]}),
        };
        let line = event.to_line();
        assert_eq!(
            line,
            b"{\"revision\":7,\"data\":{\"peers\":[\"10.0.0.1\"]}}\n".to_vec()
        );
        let text = std::str::from_utf8(&line).unwrap().trim_end();
        assert_eq!(WatchEvent::from_line(text).unwrap(), event);
    }

    #[test]
    fn session_requests_name_one_identity() {
        let node: SessionRequest =
            serde_json::from_value(json!({"node": "/n", "plugs": ["a/b/c"]})).unwrap();
        assert_eq!((node.node.as_deref(), node.app), (Some("/n"), None));
        let app = SessionRequest {
            node: None,
            app: Some("vpn".into()),
            plugs: vec![],
        };
        assert_eq!(
            serde_json::to_value(&app).unwrap(),
            json!({"app": "vpn", "plugs": []})
        );
    }
}
