//! Seals: a signed (ed25519) manifest of a node's files in `etc/cairn/seal.json`, and the
//! launch-time check that the node still matches it. The signature is Cairn's one
//! envelope (`cairn_keys::Envelope`, strict verification); seals of format 1 (the key
//! beside a hex signature) are still read.
//!
//! Sealed: every file and symlink of the node (content hash, mode, link target) except
//! `var/` (run-time data) whose only sealed parts are dpkg's `status` and `info/`, and
//! except the seal itself. Directories are not sealed; the files in them are. A descendant
//! node (nodes nest in the filesystem) is sealed as one entry saying that a node is there:
//! its files are its own seal's business, and a directory of this node cannot be turned into
//! a "node" to hide what is in it.

use crate::error::{Error, Result};
use crate::family::open;
use crate::keys::{list_keys, load_signing_key};
use crate::layout::{NodePaths, hex, write_atomic};
use crate::progress::Event;
use cairn_keys::{Envelope, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file on disk: the manifest as the exact signed text, plus who signed it.
/// Format 2: `signature` is an envelope (`ed25519:<key> <base64>`). Format 1 (read only):
/// `key` holds the public key and `signature` 128 hex digits.
#[derive(Debug, Serialize, Deserialize)]
struct SealFile {
    format: u32,
    key_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    signature: String,
    manifest: String,
}

/// The format `seal` writes.
const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestEntry {
    path: String,
    mode: u32,
    /// `sha256:<hex>` for files, `link:<target>` for symlinks, `node` for a descendant node.
    content: String,
}

/// What `seal` did.
#[derive(Debug, Clone, Serialize)]
pub struct SealSummary {
    pub files: usize,
    pub key_name: String,
    pub key: String,
}

/// Signs a manifest of the leaf node of `family` with key `key_name` from `keys_dir`.
pub fn seal(
    family: &[PathBuf],
    keys_dir: &Path,
    key_name: &str,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<SealSummary> {
    let key = load_signing_key(keys_dir, key_name)?;
    let opened = open(family, &[], progress)?;
    write_seal(&opened.leaf, &key, key_name)
}

/// Writes the seal of `leaf` (whose lock the caller holds) signed with `key`.
pub(crate) fn write_seal(
    leaf: &NodePaths,
    key: &SigningKey,
    key_name: &str,
) -> Result<SealSummary> {
    let files = scan(&leaf.root)?;
    let count = files.len();
    let manifest = serde_json::to_string(&Manifest { files }).map_err(json_err(&leaf.seal()))?;
    let envelope = Envelope::sign(key, manifest.as_bytes());
    let file = SealFile {
        format: FORMAT,
        key_name: key_name.to_string(),
        key: None,
        signature: envelope.to_string(),
        manifest,
    };
    let text = serde_json::to_vec_pretty(&file).map_err(json_err(&leaf.seal()))?;
    write_atomic(&leaf.seal(), &text, 0o644)?;
    Ok(SealSummary {
        files: count,
        key_name: key_name.to_string(),
        key: envelope.key.to_string(),
    })
}

/// Checks a node against its seal, if it has one: the seal must be signed by a key whose
/// `.pub` is in `trusted_keys_dir`, and every sealed file must be unchanged with nothing
/// added. The error names the first altered file. An unsealed node passes.
pub fn check_seal(node: &Path, trusted_keys_dir: &Path) -> Result<(), Error> {
    let paths = NodePaths::open(node)?;
    let seal_path = paths.seal();
    let Some(text) = crate::layout::read_optional(&seal_path)? else {
        return Ok(());
    };
    let bad = |reason: &str| Error::BadSeal {
        path: seal_path.clone(),
        reason: reason.into(),
    };
    let file: SealFile = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let envelope = match (file.format, &file.key) {
        (FORMAT, None) => file.signature.parse::<Envelope>(),
        (1, Some(key)) => Envelope::from_legacy_hex(key, &file.signature),
        _ => return Err(bad("unknown format")),
    }
    .map_err(|e| bad(&e.to_string()))?;
    let key = envelope.key.to_string();
    if !list_keys(trusted_keys_dir)?.iter().any(|k| k.public == key) {
        return Err(Error::UntrustedSeal {
            node: node.to_path_buf(),
            dir: trusted_keys_dir.to_path_buf(),
        });
    }
    envelope
        .verify(file.manifest.as_bytes())
        .map_err(|_| bad("signature does not match the manifest"))?;
    let manifest: Manifest =
        serde_json::from_str(&file.manifest).map_err(|e| bad(&e.to_string()))?;
    let current = scan(node)?;
    match first_difference(&manifest.files, &current) {
        None => Ok(()),
        Some((path, change)) => Err(Error::SealBroken {
            node: node.to_path_buf(),
            path,
            change: change.into(),
        }),
    }
}

/// Both lists are sorted by path; returns the first path that differs and how.
fn first_difference(
    sealed: &[ManifestEntry],
    now: &[ManifestEntry],
) -> Option<(String, &'static str)> {
    let (mut i, mut j) = (0, 0);
    loop {
        match (sealed.get(i), now.get(j)) {
            (None, None) => return None,
            (Some(s), None) => return Some((s.path.clone(), "is missing")),
            (None, Some(n)) => return Some((n.path.clone(), "was added")),
            (Some(s), Some(n)) if s.path < n.path => return Some((s.path.clone(), "is missing")),
            (Some(s), Some(n)) if s.path > n.path => return Some((n.path.clone(), "was added")),
            (Some(s), Some(n)) if s != n => return Some((s.path.clone(), "was modified")),
            _ => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// The node's sealed files, sorted by path.
fn scan(root: &Path) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn is_sealed(rel: &str) -> bool {
    if rel == "etc/cairn/seal.json" {
        return false;
    }
    if rel == "var" || rel.starts_with("var/") {
        return rel == "var/lib/dpkg/status"
            || rel.starts_with("var/lib/dpkg/info/")
            || is_var_ancestor(rel);
    }
    true
}

/// Directories on the way to the sealed parts of `var/` must still be walked.
fn is_var_ancestor(rel: &str) -> bool {
    matches!(
        rel,
        "var" | "var/lib" | "var/lib/dpkg" | "var/lib/dpkg/info"
    )
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ManifestEntry>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if !is_sealed(&rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() && cairn_config::is_node(&path) {
            out.push(ManifestEntry {
                path: rel,
                mode,
                content: "node".into(),
            });
        } else if meta.is_dir() {
            walk(root, &path, out)?;
        } else if is_var_ancestor(&rel) {
            continue;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(Error::io(&path))?;
            out.push(ManifestEntry {
                path: rel,
                mode,
                content: format!("link:{}", target.display()),
            });
        } else {
            out.push(ManifestEntry {
                path: rel,
                mode,
                content: format!("sha256:{}", sha256_file(&path)?),
            });
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn json_err(path: &Path) -> impl FnOnce(serde_json::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io {
        path,
        err: std::io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(dir: &Path) -> PathBuf {
        let n = dir.join("n");
        std::fs::create_dir_all(n.join("etc/cairn")).unwrap();
        std::fs::create_dir_all(n.join("usr/bin")).unwrap();
        std::fs::create_dir_all(n.join("var/lib/dpkg/info")).unwrap();
        std::fs::write(n.join("etc/cairn/node.yaml"), "node: {alias: n}\n").unwrap();
        std::fs::write(n.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(n.join("var/lib/dpkg/status"), "").unwrap();
        n
    }

    #[test]
    fn seal_then_tamper_is_caught_and_var_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let keys = dir.path().join("keys");
        crate::keys::create_key(&keys, "k").unwrap();
        let summary = seal(std::slice::from_ref(&n), &keys, "k", &mut |_| {}).unwrap();
        assert!(summary.files >= 3, "{summary:?}");
        check_seal(&n, &keys).unwrap();
        std::fs::write(n.join("var/runtime-data"), "x").unwrap();
        check_seal(&n, &keys).unwrap();
        std::fs::write(n.join("usr/bin/tool"), "#!/bin/sh\nevil\n").unwrap();
        let err = check_seal(&n, &keys).unwrap_err().to_string();
        assert!(
            err.ends_with("sealed node altered: /usr/bin/tool was modified"),
            "{err}"
        );
        std::fs::write(n.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(n.join("usr/bin/added"), "x").unwrap();
        let err = check_seal(&n, &keys).unwrap_err().to_string();
        assert!(err.contains("/usr/bin/added was added"), "{err}");
    }

    #[test]
    fn untrusted_and_forged_seals_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let keys = dir.path().join("keys");
        let other = dir.path().join("other");
        crate::keys::create_key(&keys, "k").unwrap();
        crate::keys::create_key(&other, "o").unwrap();
        seal(std::slice::from_ref(&n), &keys, "k", &mut |_| {}).unwrap();
        assert!(matches!(
            check_seal(&n, &other),
            Err(Error::UntrustedSeal { .. })
        ));
        let text = std::fs::read_to_string(n.join("etc/cairn/seal.json")).unwrap();
        let forged = text.replace("usr/bin/tool", "usr/bin/tooo");
        std::fs::write(n.join("etc/cairn/seal.json"), forged).unwrap();
        let err = check_seal(&n, &keys).unwrap_err().to_string();
        assert!(err.contains("signature does not match"), "{err}");
    }

    /// Seals written before the envelope (format 1: key beside a hex signature) still verify,
    /// and still fail when the node or the manifest changed.
    #[test]
    fn format_1_seals_with_hex_signatures_are_still_read() {
        use ed25519_dalek::Signer;
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let keys = dir.path().join("keys");
        crate::keys::create_key(&keys, "k").unwrap();
        let key = load_signing_key(&keys, "k").unwrap();
        // The old encoding, written out by hand as the old code did.
        let manifest = serde_json::to_string(&Manifest {
            files: scan(&n).unwrap(),
        })
        .unwrap();
        let old = serde_json::json!({
            "format": 1,
            "key_name": "k",
            "key": cairn_keys::PublicKey(key.verifying_key()).to_string(),
            "signature": hex(&key.sign(manifest.as_bytes()).to_bytes()),
            "manifest": manifest,
        });
        let seal_path = n.join("etc/cairn/seal.json");
        std::fs::write(&seal_path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        check_seal(&n, &keys).unwrap();
        std::fs::write(n.join("usr/bin/tool"), "#!/bin/sh\nevil\n").unwrap();
        let err = check_seal(&n, &keys).unwrap_err().to_string();
        assert!(err.contains("/usr/bin/tool was modified"), "{err}");
        std::fs::write(n.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        let forged = old.to_string().replace("usr/bin/tool", "usr/bin/tooo");
        std::fs::write(&seal_path, forged).unwrap();
        let err = check_seal(&n, &keys).unwrap_err().to_string();
        assert!(err.contains("signature does not match"), "{err}");
        // A new seal is written in the envelope format.
        seal(std::slice::from_ref(&n), &keys, "k", &mut |_| {}).unwrap();
        let new: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&seal_path).unwrap()).unwrap();
        assert_eq!(new["format"], 2);
        assert!(new.get("key").is_none());
        assert!(new["signature"].as_str().unwrap().starts_with("ed25519:"));
        check_seal(&n, &keys).unwrap();
    }

    #[test]
    fn unsealed_node_passes() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        check_seal(&n, dir.path()).unwrap();
    }
}
