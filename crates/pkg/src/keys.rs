//! ed25519 signing keys for seals: `NAME.key` (secret, mode 0600) and `NAME.pub` in a
//! key directory. A directory of `.pub` files is also what `check_seal` trusts.

use crate::error::{Error, Result};
use crate::layout::{hex, read_optional, unhex, write_atomic};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use std::path::{Path, PathBuf};

const SECRET_TAG: &str = "cairn-ed25519-secret";
const PUBLIC_TAG: &str = "cairn-ed25519";

/// A key as listed: its name and public half (hex).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub public: String,
    /// Whether the secret half is in the directory (false for trusted-only keys).
    pub has_secret: bool,
}

/// Creates a new key pair in `dir`; refuses to overwrite an existing key.
pub fn create_key(dir: &Path, name: &str) -> Result<KeyInfo> {
    check_name(name)?;
    let (secret_path, public_path) = key_paths(dir, name);
    if secret_path.exists() || public_path.exists() {
        return Err(Error::KeyExists {
            name: name.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    create_private_dir(dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Io {
        path: secret_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let public = hex(key.verifying_key().as_bytes());
    write_atomic(
        &secret_path,
        format!("{SECRET_TAG} {}\n", hex(&seed)).as_bytes(),
        0o600,
    )?;
    write_atomic(&public_path, public_line(name, &public).as_bytes(), 0o644)?;
    Ok(KeyInfo {
        name: name.to_string(),
        public,
        has_secret: true,
    })
}

/// Every key in `dir` (by its `.pub` file), sorted by name.
pub fn list_keys(dir: &Path) -> Result<Vec<KeyInfo>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.map_err(Error::io(dir))?.path();
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
                public: hex(public.as_bytes()),
                has_secret,
            });
        }
    }
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(keys)
}

/// The public key line of `name`, to give to the devices that must trust it.
pub fn export_key(dir: &Path, name: &str) -> Result<String> {
    check_name(name)?;
    let (_, public_path) = key_paths(dir, name);
    let public = read_public(&public_path)?;
    Ok(public_line(name, &hex(public.as_bytes())))
}

/// Loads the secret key `name` from `dir`.
pub(crate) fn load_signing_key(dir: &Path, name: &str) -> Result<SigningKey> {
    check_name(name)?;
    let (secret_path, _) = key_paths(dir, name);
    let text = read_optional(&secret_path)?.ok_or_else(|| Error::BadKey {
        path: secret_path.clone(),
        reason: "no such key (create it with `cairn key create`)".into(),
    })?;
    let bad = |reason: &str| Error::BadKey {
        path: secret_path.clone(),
        reason: reason.into(),
    };
    let hex_seed = text
        .trim()
        .strip_prefix(SECRET_TAG)
        .ok_or_else(|| bad("not a cairn ed25519 secret key"))?;
    let seed: [u8; 32] = unhex(hex_seed.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("expected 32 bytes of hex"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a `.pub` file (`cairn-ed25519 HEX [NAME]`).
pub(crate) fn read_public(path: &Path) -> Result<VerifyingKey> {
    let text = read_optional(path)?.ok_or_else(|| Error::BadKey {
        path: path.to_path_buf(),
        reason: "no such key".into(),
    })?;
    parse_public(&text).ok_or_else(|| Error::BadKey {
        path: path.to_path_buf(),
        reason: format!("expected \"{PUBLIC_TAG} <64 hex digits> [name]\""),
    })
}

fn parse_public(text: &str) -> Option<VerifyingKey> {
    let mut words = text.split_whitespace();
    if words.next()? != PUBLIC_TAG {
        return None;
    }
    let bytes: [u8; 32] = unhex(words.next()?)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

fn public_line(name: &str, public_hex: &str) -> String {
    format!("{PUBLIC_TAG} {public_hex} {name}\n")
}

fn key_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadKeyName {
            name: name.to_string(),
        })
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir))
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
        assert_eq!(info.public.len(), 64);
        let mode = std::fs::metadata(keys.join("fleet-1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            create_key(&keys, "fleet-1"),
            Err(Error::KeyExists { .. })
        ));
        assert!(matches!(
            create_key(&keys, "Bad/Name"),
            Err(Error::BadKeyName { .. })
        ));
        assert_eq!(list_keys(&keys).unwrap(), vec![info.clone()]);
        let line = export_key(&keys, "fleet-1").unwrap();
        assert_eq!(line, format!("cairn-ed25519 {} fleet-1\n", info.public));
        let signing = load_signing_key(&keys, "fleet-1").unwrap();
        assert_eq!(hex(signing.verifying_key().as_bytes()), info.public);
        assert!(load_signing_key(&keys, "nope").is_err());
    }

    #[test]
    fn rejects_malformed_public_keys() {
        assert!(parse_public("cairn-ed25519 abcd").is_none());
        assert!(parse_public("ssh-ed25519 AAAA").is_none());
    }
}
