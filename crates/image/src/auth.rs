//! Registry credentials (`cairn image login`) and per-registry trusted CAs.
//!
//! Credentials for a registry (`host[:port]`) are looked up in these files, first match wins:
//! 1. Cairn's own, `<config dir>/registry-auth.json`, written by `cairn image login`;
//! 2. podman's, `$XDG_RUNTIME_DIR/containers/auth.json` (root without XDG_RUNTIME_DIR:
//!    `/run/containers/0/auth.json`), as `podman login` writes it;
//! 3. docker's, `$DOCKER_CONFIG/config.json`, by default `~/.docker/config.json`.
//!
//! All three use docker's layout, `{"auths": {"REG": {"auth": base64("user:password")}}}`, so
//! Cairn writes its own file in it too (mode 0600, atomically) and files can be copied across.
//! Entries without `auth` (credential helpers, identity tokens) are skipped.
//!
//! How the credentials are sent is the registry's choice (the distribution spec's two schemes,
//! both handled by oci-client): HTTP Basic, or a Bearer token fetched from the realm of the
//! registry's `WWW-Authenticate` challenge (with the credentials if any, anonymously otherwise).
//!
//! A registry whose certificate comes from a private CA is trusted through every `*.crt` (PEM)
//! in `<config dir>/certs.d/REG/`, in addition to the system's roots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result, json_error};
use crate::pull::{PullOptions, install_tls_provider};

/// A username and password for one registry; never printed (Debug hides the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials and the file they were read from (named in errors, never the secret).
#[derive(Debug, Clone)]
pub struct Found {
    pub credentials: Credentials,
    pub file: PathBuf,
}

/// The credentials files in lookup order (see the module documentation).
pub fn lookup_order(config: &cairn_config::Config, env: &cairn_config::Env) -> Vec<PathBuf> {
    let mut files = vec![config.registry_auth_file()];
    match &env.xdg_runtime_dir {
        Some(dir) => files.push(dir.join("containers/auth.json")),
        None if env.euid == 0 => files.push("/run/containers/0/auth.json".into()),
        None => {}
    }
    let docker = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".docker")));
    if let Some(dir) = docker {
        files.push(dir.join("config.json"));
    }
    files
}

/// The key a registry is filed under: `host[:port]`, lowercase, without scheme or path;
/// docker's names for Docker Hub all become `docker.io`.
pub fn registry_key(name: &str) -> String {
    let name = name.trim();
    let name = name
        .strip_prefix("https://")
        .or_else(|| name.strip_prefix("http://"))
        .unwrap_or(name);
    let host = name
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Checks a registry name given on the command line (`host[:port]`).
pub fn parse_registry(name: &str) -> Result<String> {
    let key = registry_key(name);
    let rest = name
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let valid = !key.is_empty()
        && path.trim_matches('/').is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !valid {
        return Err(Error::Invalid {
            what: format!("registry {name:?}"),
            message: "expected host or host:port".into(),
        });
    }
    Ok(key)
}

/// docker's config layout; keys Cairn does not use are kept when it rewrites its own file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The file's content; an absent file is an empty one.
fn read_file(path: &Path) -> Result<Option<AuthFile>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| json_error(path.display().to_string(), &e))
}

/// The credentials for `registry` in the first of `files` that has them.
pub fn find(files: &[PathBuf], registry: &str) -> Result<Option<Found>> {
    let wanted = registry_key(registry);
    for path in files {
        let Some(file) = read_file(path)? else {
            continue;
        };
        let entry = file
            .auths
            .iter()
            .find(|(k, e)| registry_key(k) == wanted && e.auth.is_some());
        if let Some((
            key,
            AuthEntry {
                auth: Some(auth), ..
            },
        )) = entry
        {
            let credentials = decode(auth).ok_or_else(|| Error::Invalid {
                what: path.display().to_string(),
                message: format!("auths.{key:?}.auth is not base64 of \"user:password\""),
            })?;
            return Ok(Some(Found {
                credentials,
                file: path.clone(),
            }));
        }
    }
    Ok(None)
}

fn decode(auth: &str) -> Option<Credentials> {
    let bytes = STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

/// Files `credentials` for `registry` in Cairn's file `path` (created 0600, replaced
/// atomically; its other entries kept).
pub fn store(path: &Path, registry: &str, credentials: &Credentials) -> Result<()> {
    let mut file = read_file(path)?.unwrap_or_default();
    let key = registry_key(registry);
    file.auths.retain(|k, _| registry_key(k) != key);
    let auth = STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
    file.auths.insert(
        key,
        AuthEntry {
            auth: Some(auth),
            ..AuthEntry::default()
        },
    );
    write(path, &file)
}

/// Removes `registry` from Cairn's file; false when it had no entry.
pub fn remove(path: &Path, registry: &str) -> Result<bool> {
    let Some(mut file) = read_file(path)? else {
        return Ok(false);
    };
    let key = registry_key(registry);
    let before = file.auths.len();
    file.auths.retain(|k, _| registry_key(k) != key);
    if file.auths.len() == before {
        return Ok(false);
    }
    write(path, &file)?;
    Ok(true)
}

fn write(path: &Path, file: &AuthFile) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(file).map_err(|e| json_error("credentials", &e))?;
    text.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    cairn_config::write_atomic(path, &text, 0o600).at(path)
}

/// The CAs trusted for `registry` (DER): the certificates of each `*.crt` in
/// `<certs dir>/<registry>/`, in name order. A file without a PEM certificate is an error
/// rather than a CA silently not trusted.
pub(crate) fn trusted_cas(certs_dir: Option<&Path>, registry: &str) -> Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(dir) = certs_dir else {
        return Ok(Vec::new());
    };
    let dir = dir.join(registry_key(registry));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&dir),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.at(&dir)?.path();
        if path.extension().is_some_and(|e| e == "crt") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut cas = Vec::new();
    for path in paths {
        let pem = std::fs::read(&path).at(&path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
            .and_then(|c| {
                if c.is_empty() {
                    Err("no PEM certificate in it".to_string())
                } else {
                    Ok(c)
                }
            })
            .map_err(|message| Error::Invalid {
                what: path.display().to_string(),
                message,
            })?;
        cas.extend(certs.into_iter().map(|c| c.to_vec()));
    }
    Ok(cas)
}

/// Checks `credentials` against `registry` the way a pull would present them: `GET /v2/` with
/// HTTP Basic; when the registry answers with a Bearer challenge instead, a token request to
/// its realm with the same credentials. Refused credentials are an error. (oci-client's own
/// `auth` cannot serve here: it takes Basic credentials unchecked and a pull swallows a
/// refused token request, so it would only fail later, on the first pull.)
pub fn check(registry: &str, credentials: &Credentials, options: &PullOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Registry {
            registry: registry.into(),
            message: e.to_string(),
        })?;
    runtime.block_on(check_async(registry, credentials, options))
}

async fn check_async(
    registry: &str,
    credentials: &Credentials,
    options: &PullOptions,
) -> Result<()> {
    let key = registry_key(registry);
    let fail = |message: String| Error::Registry {
        registry: key.clone(),
        message,
    };
    let refused = || fail("username or password refused".into());
    install_tls_provider();
    let mut builder = reqwest::Client::builder();
    for der in trusted_cas(options.certs_dir.as_deref(), &key)? {
        let cert =
            reqwest::Certificate::from_der(&der).map_err(|e| fail(format!("trusted CA: {e}")))?;
        builder = builder.tls_certs_merge([cert]);
    }
    let client = builder.build().map_err(|e| fail(e.to_string()))?;
    let https = !options.insecure.iter().any(|h| registry_key(h) == key);
    let host = if key == "docker.io" {
        "index.docker.io"
    } else {
        &key
    };
    let url = format!("{}://{host}/v2/", if https { "https" } else { "http" });
    let send_error =
        |e: reqwest::Error| fail(crate::pull::explain(&crate::pull::error_chain(&e), https));
    let answer = client
        .get(&url)
        .basic_auth(&credentials.username, Some(&credentials.password))
        .send()
        .await
        .map_err(send_error)?;
    match answer.status() {
        reqwest::StatusCode::OK => return Ok(()),
        reqwest::StatusCode::UNAUTHORIZED => {}
        status => return Err(fail(format!("{url} answered {status}"))),
    }
    let challenge = answer
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_challenge);
    let Some((realm, service)) = challenge else {
        return Err(refused());
    };
    let mut query = vec![("account", credentials.username.clone())];
    if let Some(service) = service {
        query.push(("service", service));
    }
    let answer = client
        .get(&realm)
        .query(&query)
        .basic_auth(&credentials.username, Some(&credentials.password))
        .send()
        .await
        .map_err(send_error)?;
    match answer.status() {
        reqwest::StatusCode::OK => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(refused()),
        status => Err(fail(format!("token service {realm} answered {status}"))),
    }
}

/// `realm` and `service` of the first Bearer challenge in a `WWW-Authenticate` value.
fn bearer_challenge(value: &str) -> Option<(String, Option<String>)> {
    http_auth::parser::ChallengeParser::new(value)
        .filter_map(std::result::Result::ok)
        .filter(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .find_map(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some((param("realm")?, param("service")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_scheme_path_and_docker_hub_aliases() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("Reg.Example:5000"), "reg.example:5000");
        assert_eq!(registry_key("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert!(parse_registry("127.0.0.1:5000").is_ok());
        assert!(parse_registry("reg/some/repo").is_err());
        assert!(parse_registry("").is_err());
        assert!(parse_registry("a b").is_err());
    }

    #[test]
    fn bearer_challenges_name_realm_and_service() {
        let value =
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull""#;
        assert_eq!(
            bearer_challenge(value),
            Some(("https://auth.example/token".into(), Some("reg".into())))
        );
        assert_eq!(bearer_challenge(r#"Basic realm="x""#), None);
    }

    #[test]
    fn store_find_and_remove_keep_other_entries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        let alice = Credentials {
            username: "alice".into(),
            password: "p:ss word".into(),
        };
        store(&path, "a.example:5000", &alice).unwrap();
        store(&path, "b.example", &alice).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let found = find(std::slice::from_ref(&path), "https://a.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(found.credentials, alice);
        assert!(!format!("{found:?}").contains("ss word"));
        assert!(remove(&path, "a.example:5000").unwrap());
        assert!(!remove(&path, "a.example:5000").unwrap());
        assert!(
            find(std::slice::from_ref(&path), "a.example:5000")
                .unwrap()
                .is_none()
        );
        assert!(
            find(std::slice::from_ref(&path), "b.example")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn broken_files_and_entries_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = find(std::slice::from_ref(&path), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json") && !err.contains('\n'), "{err}");
        std::fs::write(&path, r#"{"auths": {"r": {"auth": "!!"}, "s": {}}}"#).unwrap();
        let err = find(std::slice::from_ref(&path), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auths.\"r\".auth"), "{err}");
        // An entry without "auth" (a credential helper's) is skipped, not an error.
        assert!(find(std::slice::from_ref(&path), "s").unwrap().is_none());
    }
}
