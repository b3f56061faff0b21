//! End-to-end tests of private registries with the real binary: `cairn image login/logout`,
//! credentials from Cairn's, podman's and docker's files, HTTP Basic and Bearer token auth,
//! and TLS from a private CA, against Debian's docker-registry. The CA, the certificates and
//! the htpasswd file are made here; for Bearer auth a small token service written here issues
//! the ES256 JWTs docker-registry verifies (it has no token service of its own).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cairn_image::testkit::{
    Entry, ImageSpec, Registry, RegistrySetup, TokenSetup, htpasswd_line, layer_tar,
};
use cairn_image::unpack::Compression;
use support::World;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55word";

/// A CA, a server certificate it signed for 127.0.0.1, and a token-signing certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cairn test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        };
        std::fs::write(pki.path("ca.crt"), &pki.ca_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A leaf certificate for `name` (also valid for 127.0.0.1); returns its DER and key.
    fn leaf(&self, name: &str) -> (Vec<u8>, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        (cert.der().to_vec(), key)
    }

    /// Serve TLS with a fresh server certificate; the pusher trusts the CA.
    fn tls_setup(&self) -> RegistrySetup {
        self.leaf("server");
        RegistrySetup {
            tls: Some((self.path("server.crt"), self.path("server.key"))),
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            push_credentials: Some((USER.into(), PASSWORD.into())),
            ..RegistrySetup::default()
        }
    }
}

fn image() -> ImageSpec {
    let tar = layer_tar(&[Entry::File {
        path: "etc/private".into(),
        data: b"only for alice\n".to_vec(),
        mode: 0o644,
    }])
    .unwrap();
    ImageSpec::default().layer(&tar, Compression::Gzip).unwrap()
}

/// A world whose podman runtime dir is its own (root's default is the host's /run).
fn world() -> World {
    let world = World::new();
    std::fs::create_dir_all(world.path("xdg-run")).unwrap();
    world
}

fn cairn(world: &World) -> assert_cmd::Command {
    let mut cmd = world.cairn();
    cmd.env("XDG_RUNTIME_DIR", world.path("xdg-run"));
    cmd
}

/// Trusts the test CA for `registry` the documented way.
fn trust(world: &World, registry: &Registry, pki: &Pki) {
    support::write(
        &world
            .config_dir()
            .join("certs.d")
            .join(&registry.addr)
            .join("ca.crt"),
        &pki.ca_pem,
    );
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: assert_cmd::Command, stdin: &str) -> Outcome {
    let out = cmd.write_stdin(stdin).output().unwrap();
    let outcome = Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    // The secret never shows, in clear or as docker's base64 "auth".
    let encoded = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for text in [&outcome.stdout, &outcome.stderr] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&encoded),
            "secret in output: {text}"
        );
    }
    outcome
}

fn pull(world: &World, reference: &str) -> Outcome {
    let mut cmd = cairn(world);
    cmd.args(["-vvv", "image", "pull", reference]);
    run(cmd, "")
}

fn login(world: &World, registry: &str, password: &str) -> Outcome {
    let mut cmd = cairn(world);
    cmd.args([
        "-vvv",
        "image",
        "login",
        registry,
        "--username",
        USER,
        "--password-stdin",
    ]);
    run(cmd, &format!("{password}\n"))
}

/// The error of a failed command: exactly one line, returned for matching.
fn one_line(outcome: &Outcome) -> String {
    assert!(!outcome.ok, "expected a failure: {}", outcome.stdout);
    let lines: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("cairn:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", outcome.stderr);
    lines[0].to_string()
}

fn auth_file(world: &World) -> PathBuf {
    world.config_dir().join("registry-auth.json")
}

#[test]
fn basic_auth_over_tls_from_a_private_ca() {
    let pki = Pki::new();
    let htpasswd = pki.path("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line(USER, PASSWORD).unwrap()).unwrap();
    let registry = Registry::start_with(RegistrySetup {
        htpasswd: Some(htpasswd),
        ..pki.tls_setup()
    })
    .unwrap();
    registry.push(&image(), "private/app", "1").unwrap();
    let reference = format!("{}/private/app:1", registry.addr);
    let world = world();

    // Untrusted CA: one line that says what to do.
    let line = one_line(&pull(&world, &reference));
    assert!(line.contains("certs.d"), "{line}");
    // A file there that is no certificate: one line, not a silent fallback to system roots.
    let bad = world
        .config_dir()
        .join("certs.d")
        .join(&registry.addr)
        .join("bad.crt");
    support::write(&bad, "not a certificate\n");
    let line = one_line(&pull(&world, &reference));
    assert!(line.contains("bad.crt: no PEM certificate"), "{line}");
    std::fs::remove_file(&bad).unwrap();
    trust(&world, &registry, &pki);

    // Anonymous: refused, and the line says how to log in.
    let line = one_line(&pull(&world, &reference));
    assert!(
        line.contains("authentication required")
            && line.contains(&format!("cairn image login {}", registry.addr)),
        "{line}"
    );

    // No terminal to ask on and no --password-stdin: one line (there is no flag for it).
    let mut cmd = cairn(&world);
    cmd.args(["image", "login", &registry.addr, "--username", USER]);
    assert!(one_line(&run(cmd, PASSWORD)).contains("--password-stdin"));

    // A wrong password: one line, nothing stored.
    let line = one_line(&login(&world, &registry.addr, "wrong-password"));
    assert!(line.contains("refused"), "{line}");
    assert!(!auth_file(&world).exists());

    let out = login(&world, &registry.addr, PASSWORD);
    assert!(out.ok, "{}", out.stderr);
    let mode = std::fs::metadata(auth_file(&world))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(auth_file(&world)).unwrap()).unwrap();
    assert!(
        stored["auths"][&registry.addr]["auth"].is_string(),
        "{stored}"
    );

    let out = pull(&world, &reference);
    assert!(out.ok, "{}", out.stderr);

    // Cairn's file comes before podman's: a wrong password there changes nothing yet.
    let podman = world.path("xdg-run/containers/auth.json");
    write_auths(&podman, &registry.addr, "wrong-password");
    assert!(pull(&world, &reference).ok);

    let mut cmd = cairn(&world);
    cmd.args(["image", "logout", &registry.addr]);
    assert!(run(cmd, "").ok);
    let mut cmd = cairn(&world);
    cmd.args(["image", "logout", &registry.addr]);
    assert!(one_line(&run(cmd, "")).contains("not logged in"));

    // Now podman's wrong password is used, and the line names where it came from.
    let line = one_line(&pull(&world, &reference));
    assert!(
        line.contains("access denied") && line.contains(&podman.display().to_string()),
        "{line}"
    );
    std::fs::remove_file(&podman).unwrap();

    // docker's config.json, without any login.
    write_auths(&world.path(".docker/config.json"), &registry.addr, PASSWORD);
    let out = pull(&world, &reference);
    assert!(out.ok, "{}", out.stderr);
}

/// docker's and podman's layout: `{"auths": {REG: {"auth": base64(user:password)}}}`.
fn write_auths(path: &Path, registry: &str, password: &str) {
    let auth = STANDARD.encode(format!("{USER}:{password}"));
    let doc = serde_json::json!({"auths": {registry: {"auth": auth}}});
    support::write(path, &doc.to_string());
}

/// What the token service saw: the scope of each token request and whether it was granted.
type Requests = Arc<Mutex<Vec<(String, bool)>>>;

/// A token service in the spec's form: `GET /token?service=..&scope=..` with HTTP Basic
/// credentials answers `{"token": JWT}` granting the scope, signed ES256 by a certificate
/// from the test CA (sent in the JWT's x5c header); anything else answers 401.
fn token_service(pki: &Pki, service: &str, issuer: &str) -> (String, Requests) {
    let (cert_der, key) = pki.leaf("token-signer");
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    let (service, issuer) = (service.to_string(), issuer.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let token =
                |scope: Option<&str>| jwt(&signer, &rng, &cert_der, &issuer, &service, scope);
            let _ = answer(stream, &seen, token);
        }
    });
    (realm, requests)
}

fn answer(
    stream: TcpStream,
    seen: &Requests,
    token: impl Fn(Option<&str>) -> String,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scope = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v));
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let granted = authorization.as_deref() == Some(expected.as_str());
    seen.lock()
        .unwrap()
        .push((scope.clone().unwrap_or_default(), granted));
    let mut stream = stream;
    if granted {
        let body =
            serde_json::json!({"token": token(scope.as_deref()), "expires_in": 300}).to_string();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A docker-registry token: `access` grants what `scope` (`repository:NAME:ACTIONS`) asks.
fn jwt(
    signer: &ring::signature::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    cert_der: &[u8],
    issuer: &str,
    service: &str,
    scope: Option<&str>,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scope
        .and_then(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({"type": kind, "name": name,
                                    "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .into_iter()
        .collect();
    let header =
        serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert_der)]});
    let claims = serde_json::json!({"iss": issuer, "sub": USER, "aud": service, "exp": now + 300,
                                    "nbf": now - 60, "iat": now, "jti": format!("t{now}"), "access": access});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[test]
fn bearer_token_auth_through_a_token_service() {
    let pki = Pki::new();
    let (service, issuer) = ("cairn-test-registry", "cairn-test-issuer");
    let (realm, requests) = token_service(&pki, service, issuer);
    let registry = Registry::start_with(RegistrySetup {
        token: Some(TokenSetup {
            realm,
            service: service.into(),
            issuer: issuer.into(),
            root_cert_bundle: pki.path("ca.crt"),
        }),
        ..pki.tls_setup()
    })
    .unwrap();
    registry.push(&image(), "private/app", "1").unwrap();
    let reference = format!("{}/private/app:1", registry.addr);
    let world = world();
    trust(&world, &registry, &pki);
    requests.lock().unwrap().clear();

    // Anonymous: the token service refuses, so does the registry: one line.
    let line = one_line(&pull(&world, &reference));
    assert!(line.contains("authentication required"), "{line}");
    assert!(requests.lock().unwrap().iter().all(|(_, granted)| !granted));

    let line = one_line(&login(&world, &registry.addr, "wrong-password"));
    assert!(line.contains("refused"), "{line}");
    assert!(!auth_file(&world).exists());

    let out = login(&world, &registry.addr, PASSWORD);
    assert!(out.ok, "{}", out.stderr);
    requests.lock().unwrap().clear();
    let out = pull(&world, &reference);
    assert!(out.ok, "{}", out.stderr);
    // The pull's token was asked for with the credentials, for exactly this repository.
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.contains(&("repository:private/app:pull".to_string(), true)),
        "{seen:?}"
    );
}
