//! Cairn's keyring: ed25519 signing keys as plain files in one directory
//! (`<config>/keys`), used by node seals (`cairn node seal`) and signed confdb schemas
//! (`cairn conf sign`), so that an administrator manages one set of keys.
//!
//! - `<name>.key` (mode 0600, directory 0700): `ed25519-private:<base64 seed>`.
//! - `<name>.pub`: `ed25519:<base64> <name>`; a directory of `.pub` files is also what seal
//!   checks trust.
//! - A public key's text form is `ed25519:<base64>` everywhere (export, trust, seals).
//!
//! It does not define what is signed (documents, manifests): the callers do.
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cairn_config::{NameKind, check_name};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fmt;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const PRIVATE_PREFIX: &str = "ed25519-private:";
const PUBLIC_PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key names become file names.
    #[error(transparent)]
    BadName(#[from] cairn_config::NameError),
    #[error("key {name} already exists in {}", dir.display())]
    Exists { name: String, dir: PathBuf },
    #[error("no key {name} in {} (create it with `cairn key create {name}`)", dir.display())]
    NotFound { name: String, dir: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("invalid public key {text:?}: {reason} (expected ed25519:<base64>)")]
    BadPublic { text: String, reason: &'static str },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A public key; its text form is `ed25519:<base64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadPublic {
            text: s.to_string(),
            reason,
        };
        let b64 = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| bad("missing ed25519: prefix"))?;
        let bytes = B64.decode(b64).map_err(|_| bad("not base64"))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("not 32 bytes"))?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| bad("not a valid ed25519 point"))
    }
}

/// A key as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    /// `ed25519:<base64>`.
    pub public: String,
    /// Whether the secret half is in the directory (false for trusted-only keys).
    pub has_secret: bool,
}

/// Creates a new key pair `<dir>/<name>.key` + `.pub`; refuses to overwrite an existing key.
pub fn create_key(dir: &Path, name: &str) -> Result<KeyInfo, Error> {
    check_name(NameKind::Key, name)?;
    let (secret_path, public_path) = key_paths(dir, name);
    if secret_path.exists() || public_path.exists() {
        return Err(Error::Exists {
            name: name.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    create_private_dir(dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Io {
        path: secret_path.clone(),
        source: std::io::Error::other(format!("no randomness: {e}")),
    })?;
    let public = PublicKey(SigningKey::from_bytes(&seed).verifying_key()).to_string();
    write_atomic(
        &secret_path,
        format!("{PRIVATE_PREFIX}{}\n", B64.encode(seed)).as_bytes(),
        0o600,
    )?;
    write_atomic(&public_path, format!("{public} {name}\n").as_bytes(), 0o644)?;
    Ok(KeyInfo {
        name: name.to_string(),
        public,
        has_secret: true,
    })
}

/// Every key in `dir` (by its `.pub` file), sorted by name.
pub fn list_keys(dir: &Path) -> Result<Vec<KeyInfo>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "pub") {
            let public = read_public(&path)?;
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let has_secret = path.with_extension("key").exists();
            keys.push(KeyInfo {
                name,
                public: public.to_string(),
                has_secret,
            });
        }
    }
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(keys)
}

/// The public key of `name` in text form, to give to whoever must trust it.
pub fn export_key(dir: &Path, name: &str) -> Result<String, Error> {
    Ok(PublicKey(load_signing_key(dir, name)?.verifying_key()).to_string())
}

/// Loads the secret key `name` from `dir`.
pub fn load_signing_key(dir: &Path, name: &str) -> Result<SigningKey, Error> {
    check_name(NameKind::Key, name)?;
    let (path, _) = key_paths(dir, name);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        Err(source) => return Err(Error::Io { path, source }),
    };
    let bad = || Error::BadFile {
        path: path.clone(),
        reason: "not a cairn ed25519 private key".into(),
    };
    let b64 = text.trim().strip_prefix(PRIVATE_PREFIX).ok_or_else(bad)?;
    let bytes = B64.decode(b64).map_err(|_| bad())?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a `.pub` file (`ed25519:<base64> [name]`).
pub fn read_public(path: &Path) -> Result<PublicKey, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let first = text.split_whitespace().next().unwrap_or("");
    first.parse().map_err(|_| Error::BadFile {
        path: path.to_path_buf(),
        reason: "expected \"ed25519:<base64> [name]\"".into(),
    })
}

fn key_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Key files are written whole or not at all (`cairn_config::write_atomic`).
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    cairn_config::write_atomic(path, contents, mode).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_list_export_load() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let info = create_key(&keys, "fleet-1").unwrap();
        assert!(info.public.starts_with("ed25519:"));
        let mode = fs::metadata(keys.join("fleet-1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(matches!(
            create_key(&keys, "fleet-1"),
            Err(Error::Exists { .. })
        ));
        assert!(matches!(
            create_key(&keys, "Bad/Name"),
            Err(Error::BadName(_))
        ));
        assert_eq!(list_keys(&keys).unwrap(), vec![info.clone()]);
        assert_eq!(export_key(&keys, "fleet-1").unwrap(), info.public);
        let signing = load_signing_key(&keys, "fleet-1").unwrap();
        assert_eq!(PublicKey(signing.verifying_key()).to_string(), info.public);
        let err = load_signing_key(&keys, "nope").unwrap_err().to_string();
        assert!(err.contains("cairn key create nope"), "{err}");
    }

    #[test]
    fn public_keys_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let info = create_key(dir.path(), "k").unwrap();
        let key: PublicKey = info.public.parse().unwrap();
        assert_eq!(key.to_string(), info.public);
        for bad in [
            "ed25519:",
            "ed25519:!!!",
            "ssh-ed25519 AAAA",
            "ed25519:AAAA",
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
        fs::write(dir.path().join("k.key"), "garbage").unwrap();
        assert!(matches!(
            load_signing_key(dir.path(), "k"),
            Err(Error::BadFile { .. })
        ));
    }
}
