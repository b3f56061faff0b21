//! Cairn's keyring: ed25519 signing keys as plain files in one directory
//! (`<config>/keys`), used by node seals (`cairn node seal`) and signed confdb schemas
//! (`cairn conf sign`), so that an administrator manages one set of keys.
//!
//! - `<name>.key` (mode 0600, directory 0700): `ed25519-private:<base64 seed>`.
//! - `<name>.pub`: `ed25519:<base64> <name>`; a directory of `.pub` files is also what seal
//!   checks trust.
//! - A public key's text form is `ed25519:<base64>` everywhere (export, trust, seals).
//! - A signature is an [`Envelope`]: `ed25519:<base64 key> <base64 signature>`, checked with
//!   strict verification. Schema signature lines and node seals both carry one.
//!
//! It does not define what is signed (documents, manifests): the callers do.
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cairn_config::{NameKind, check_name};
use ed25519_dalek::{Signature, Signer, VerifyingKey};

/// A secret key of the keyring (callers sign through [`Envelope::sign`]).
pub use ed25519_dalek::SigningKey;
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
    #[error("invalid signature: {reason} (expected \"ed25519:<base64 key> <base64 signature>\")")]
    BadSignature { reason: String },
    #[error("the signature by {key} does not verify")]
    Mismatch { key: String },
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
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

/// A signature together with the public key that made it: Cairn's one signature format,
/// shared by signed schema documents and node seals. Its text form is
/// `ed25519:<base64 key> <base64 signature>`. Verification is strict (`verify_strict`:
/// no small-order keys, no malleable signatures), whoever the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub key: PublicKey,
    signature: Signature,
}

impl Envelope {
    /// Signs `message` with `key`.
    pub fn sign(key: &SigningKey, message: &[u8]) -> Envelope {
        Envelope {
            key: PublicKey(key.verifying_key()),
            signature: key.sign(message),
        }
    }

    /// Checks that this envelope's key signed exactly `message`.
    pub fn verify(&self, message: &[u8]) -> Result<(), Error> {
        self.key
            .0
            .verify_strict(message, &self.signature)
            .map_err(|_| Error::Mismatch {
                key: self.key.to_string(),
            })
    }

    /// Reads the form seals had before the envelope (format 1 of `seal.json`): the key's text
    /// form and the signature as 128 hex digits, so that seals written then still verify.
    pub fn from_legacy_hex(key: &str, signature_hex: &str) -> Result<Envelope, Error> {
        let bad = |reason: &str| Error::BadSignature {
            reason: reason.into(),
        };
        let text = signature_hex.trim();
        if text.len() != 128 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not 64 bytes of hex"));
        }
        let mut bytes = [0u8; 64];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("not 64 bytes of hex"))?;
        }
        Ok(Envelope {
            key: key.parse()?,
            signature: Signature::from_bytes(&bytes),
        })
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, B64.encode(self.signature.to_bytes()))
    }
}

impl FromStr for Envelope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadSignature {
            reason: reason.into(),
        };
        let (key, signature) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("expected a key and a signature"))?;
        let key: PublicKey = key.parse()?;
        let bytes = B64
            .decode(signature.trim())
            .map_err(|_| bad("signature is not base64"))?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| bad("signature is not 64 bytes"))?;
        Ok(Envelope { key, signature })
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
        err: std::io::Error::other(format!("no randomness: {e}")),
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
                err: source,
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                err: source,
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
        Err(err) => return Err(Error::Io { path, err }),
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
        err: source,
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
            err: source,
        })
}

/// Key files are written whole or not at all (`cairn_config::write_atomic`).
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    cairn_config::write_atomic(path, contents, mode).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        err: source,
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
    fn envelopes_round_trip_verify_strictly_and_read_the_old_hex_form() {
        let dir = tempfile::tempdir().unwrap();
        create_key(dir.path(), "k").unwrap();
        let key = load_signing_key(dir.path(), "k").unwrap();
        let envelope = Envelope::sign(&key, b"message");
        envelope.verify(b"message").unwrap();
        let err = envelope.verify(b"messagf").unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
        let text = envelope.to_string();
        assert!(text.starts_with("ed25519:"), "{text}");
        assert_eq!(text.parse::<Envelope>().unwrap(), envelope);
        // The old seal form: the same signature as hex, beside the key.
        let hex: String = key
            .sign(b"message")
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let old = Envelope::from_legacy_hex(&envelope.key.to_string(), &hex).unwrap();
        assert_eq!(old, envelope);
        old.verify(b"message").unwrap();
        assert!(Envelope::from_legacy_hex(&envelope.key.to_string(), &hex[2..]).is_err());
        let (key_text, _) = text.split_once(' ').unwrap();
        for bad in [
            key_text.to_string(),
            format!("{key_text} !!!"),
            format!("{key_text} AAAA"),
            format!("ed25519:AAAA {}", text.split_once(' ').unwrap().1),
        ] {
            assert!(bad.parse::<Envelope>().is_err(), "{bad}");
        }
        // The identity as public key with R = identity, s = 0 "signs" every message for
        // plain `verify`; strict verification refuses it.
        let identity = VerifyingKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
        .unwrap();
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let forged = Envelope {
            key: PublicKey(identity),
            signature: Signature::from_bytes(&sig),
        };
        use ed25519_dalek::Verifier;
        assert!(
            identity
                .verify(b"anything", &Signature::from_bytes(&sig))
                .is_ok()
        );
        assert!(forged.verify(b"anything").is_err());
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
