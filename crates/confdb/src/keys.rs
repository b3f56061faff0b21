//! Signed documents and trusted keys (ed25519; plain files, no daemon needed).
//!
//! - Signing keys are Cairn's one keyring (crate `cairn-keys`, `<config>/keys`), the same keys
//!   that seal nodes; a public key's text form is `ed25519:<base64>`.
//! - The trust store holds `<dir>/<account>.keys`, one public key a line.
//! - A signed document is the document followed by one last line
//!   `#cairn-signature: ed25519:<public key> <base64 signature>` (a `cairn_keys::Envelope`);
//!   the signature covers every byte before that line. Being a YAML comment, the signed file
//!   stays readable YAML.

use crate::error::Error;
use crate::schema::check_account;
use cairn_keys::{Envelope, SigningKey};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SIGNATURE_PREFIX: &str = "#cairn-signature: ";

pub use cairn_keys::PublicKey;

/// A keyring error as confdb reports it.
fn key_error(name: &str, e: cairn_keys::Error) -> Error {
    Error::Key {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// Creates a new signing key in the keyring at `dir`; refuses to overwrite one.
pub fn create_key(dir: &Path, name: &str) -> Result<PublicKey, Error> {
    let info = cairn_keys::create_key(dir, name).map_err(|e| key_error(name, e))?;
    info.public.parse().map_err(|e| key_error(name, e))
}

fn load_private(dir: &Path, name: &str) -> Result<SigningKey, Error> {
    cairn_keys::load_signing_key(dir, name).map_err(|e| key_error(name, e))
}

/// The public half of a private key, in text form (`ed25519:<base64>`).
pub fn export_public(dir: &Path, name: &str) -> Result<String, Error> {
    cairn_keys::export_key(dir, name).map_err(|e| key_error(name, e))
}

/// Trust files are written whole or not at all, creating their directory.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    cairn_config::write_atomic(path, contents, mode).map_err(|e| Error::io(path, e))
}

/// Appends the signature line to `document` (a newline is added first if missing).
pub fn sign_document(dir: &Path, name: &str, document: &[u8]) -> Result<Vec<u8>, Error> {
    let key = load_private(dir, name)?;
    if split_signed(document).is_some() {
        return Err(Error::Signature("document is already signed".into()));
    }
    let mut out = document.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let line = format!("{SIGNATURE_PREFIX}{}\n", Envelope::sign(&key, &out));
    out.extend_from_slice(line.as_bytes());
    Ok(out)
}

/// Splits a signed document into (body, signature line) if its last line is a signature.
fn split_signed(signed: &[u8]) -> Option<(&[u8], &str)> {
    let trimmed = signed.trim_ascii_end();
    let start = trimmed
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = std::str::from_utf8(&trimmed[start..]).ok()?;
    line.starts_with(SIGNATURE_PREFIX)
        .then_some((&signed[..start], line))
}

/// Checks the signature of a signed document and returns its body and the signing key. Trust
/// is checked separately, because the account is only known once the body is parsed.
pub fn verify_document(signed: &[u8]) -> Result<(String, PublicKey), Error> {
    let (body, line) = split_signed(signed).ok_or_else(|| {
        Error::Signature(
            "schema document is not signed (sign it with `cairn conf sign SCHEMA.yaml --key NAME`)"
                .into(),
        )
    })?;
    let rest = &line[SIGNATURE_PREFIX.len()..];
    if !rest.trim().contains(' ') {
        return Err(Error::Signature(
            "malformed signature line (expected \"#cairn-signature: KEY SIGNATURE\")".into(),
        ));
    }
    let envelope: Envelope = rest
        .parse()
        .map_err(|e| Error::Signature(format!("malformed signature line: {e}")))?;
    let key = envelope.key;
    envelope.verify(body).map_err(|_| {
        Error::Signature(format!(
            "signature by {key} does not verify: the document was changed after signing"
        ))
    })?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| Error::Signature("signed document is not UTF-8".into()))?;
    Ok((text, key))
}

/// Public keys trusted to sign schemas, per account.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// Where it was loaded from, so that keys added later by `cairn conf trust add` are seen.
    dir: Option<PathBuf>,
    keys: BTreeMap<String, BTreeSet<String>>,
}

impl TrustStore {
    /// An empty store that trusts nothing (tests, or a device without trust configured).
    pub fn empty() -> Self {
        TrustStore::default()
    }

    /// Loads `<dir>/<account>.keys`; a missing directory is an empty store.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let mut store = TrustStore {
            dir: Some(dir.to_path_buf()),
            keys: BTreeMap::new(),
        };
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let Some(account) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".keys"))
            else {
                continue;
            };
            if check_account(account).is_err() {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let keys = store.keys.entry(account.to_string()).or_default();
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let key: PublicKey = line
                    .parse()
                    .map_err(|e: cairn_keys::Error| Error::Trust(e.to_string()))?;
                keys.insert(key.to_string());
            }
        }
        Ok(store)
    }

    /// Adds a key for `account` to `<dir>/<account>.keys` (atomically; adding twice is fine).
    pub fn add(dir: &Path, account: &str, public_key: &str) -> Result<(), Error> {
        check_account(account).map_err(Error::Trust)?;
        let key: PublicKey = public_key
            .parse()
            .map_err(|e: cairn_keys::Error| Error::Trust(e.to_string()))?;
        let path = dir.join(format!("{account}.keys"));
        let existing = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let key_text = key.to_string();
        if existing.lines().any(|l| l.trim() == key_text) {
            return Ok(());
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&key_text);
        text.push('\n');
        write_atomic(&path, text.as_bytes(), 0o644)
    }

    /// Trusts a key in memory only (tests, embedding).
    pub fn insert(&mut self, account: &str, key: &PublicKey) {
        self.keys
            .entry(account.to_string())
            .or_default()
            .insert(key.to_string());
    }

    pub fn is_trusted(&self, account: &str, key: &PublicKey) -> bool {
        self.keys
            .get(account)
            .is_some_and(|k| k.contains(&key.to_string()))
    }

    /// The same store re-read from its directory (or itself if it has none).
    pub fn reloaded(&self) -> Result<Self, Error> {
        match &self.dir {
            Some(dir) => {
                let mut fresh = TrustStore::load(dir)?;
                for (account, keys) in &self.keys {
                    fresh
                        .keys
                        .entry(account.clone())
                        .or_default()
                        .extend(keys.iter().cloned());
                }
                Ok(fresh)
            }
            None => Ok(self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_export_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let public = create_key(dir.path(), "main").unwrap();
        let mode = fs::metadata(dir.path().join("main.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_key(dir.path(), "main").is_err());
        assert_eq!(
            export_public(dir.path(), "main").unwrap(),
            public.to_string()
        );
        let signed = sign_document(dir.path(), "main", b"account: acme\nname: x").unwrap();
        let (body, key) = verify_document(&signed).unwrap();
        assert_eq!(body, "account: acme\nname: x\n");
        assert_eq!(key, public);
        assert!(sign_document(dir.path(), "main", &signed).is_err());
        let mut padded = signed.clone();
        padded.extend_from_slice(b"\n\n");
        assert!(
            verify_document(&padded).is_ok(),
            "trailing blank lines are harmless"
        );
        let nested = dir.path().join("sub");
        create_key(&nested, "k").unwrap();
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(
            sign_document(dir.path(), "nope", b"x")
                .unwrap_err()
                .to_string()
                .contains("no key nope")
        );
    }

    #[test]
    fn tampered_and_unsigned_documents_fail() {
        let dir = tempfile::tempdir().unwrap();
        create_key(dir.path(), "k").unwrap();
        let signed = sign_document(dir.path(), "k", b"account: acme\nname: x\n").unwrap();
        let tampered = String::from_utf8(signed.clone())
            .unwrap()
            .replace("name: x", "name: y");
        assert!(
            verify_document(tampered.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("does not verify")
        );
        assert!(
            verify_document(b"account: acme\n")
                .unwrap_err()
                .to_string()
                .contains("not signed")
        );
        let mut other_key = String::from_utf8(signed).unwrap();
        let other = create_key(dir.path(), "other").unwrap();
        let start = other_key.find("ed25519:").unwrap();
        let end = other_key[start..].find(' ').unwrap() + start;
        other_key.replace_range(start..end, &other.to_string());
        assert!(verify_document(other_key.as_bytes()).is_err());
    }

    #[test]
    fn trust_store() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let trust = dir.path().join("trust");
        let k = create_key(&keys, "k").unwrap();
        assert!(!TrustStore::load(&trust).unwrap().is_trusted("acme", &k));
        TrustStore::add(&trust, "acme", &k.to_string()).unwrap();
        TrustStore::add(&trust, "acme", &k.to_string()).unwrap();
        let store = TrustStore::load(&trust).unwrap();
        assert!(store.is_trusted("acme", &k));
        assert!(!store.is_trusted("other", &k));
        assert_eq!(
            fs::read_to_string(trust.join("acme.keys"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert!(TrustStore::add(&trust, "../x", &k.to_string()).is_err());
        assert!(TrustStore::add(&trust, "acme", "ed25519:nope").is_err());
    }
}
