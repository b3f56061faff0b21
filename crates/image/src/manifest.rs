//! Parsing manifests, indexes and configs, and choosing this host's platform.

use cairn_config::one_line;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Every manifest type a pull accepts, in preference order.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A fetched manifest document: either an image manifest or an index of per-platform ones.
#[derive(Debug)]
pub enum Document {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses a manifest or index; `what` names it in errors.
pub fn parse_document(data: &[u8], what: &str) -> Result<Document> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| crate::error::json_error(what, &e))?;
    let media = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    let is_index = value.get("manifests").is_some() || media == OCI_INDEX || media == DOCKER_LIST;
    let invalid = |e: oci_spec::OciSpecError| Error::Invalid {
        what: what.to_string(),
        message: one_line(&e.to_string()),
    };
    if is_index {
        return ImageIndex::from_reader(data)
            .map(|i| Document::Index(Box::new(i)))
            .map_err(invalid);
    }
    if value.get("layers").is_none() {
        return Err(Error::MediaType {
            what: what.to_string(),
            media_type: media.to_string(),
        });
    }
    let manifest = ImageManifest::from_reader(data).map_err(invalid)?;
    Ok(Document::Manifest(Box::new(manifest)))
}

pub fn parse_config(data: &[u8], what: &str) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(data).map_err(|e| Error::Invalid {
        what: what.to_string(),
        message: one_line(&e.to_string()),
    })
}

/// This host's platform in OCI terms (`GOARCH` names).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    ("linux", arch)
}

/// The index entry for `os`/`arch` (the first, as registries list preferred variants first).
pub fn select_platform<'a>(index: &'a ImageIndex, os: &str, arch: &str) -> Option<&'a Descriptor> {
    index.manifests().iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
    })
}

/// The descriptor's digest, validated as sha256.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref())
}

/// The config's layer diff_ids, checked against the manifest's layer count.
pub fn diff_ids(config: &ImageConfiguration, layers: usize, what: &str) -> Result<Vec<Digest>> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layers {
        return Err(Error::Invalid {
            what: what.to_string(),
            message: format!("config lists {} diff_ids for {layers} layers", ids.len()),
        });
    }
    ids.iter().map(|d| Digest::parse(d)).collect()
}

/// What a launcher needs from the image config to start its default process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl RuntimeConfig {
    pub fn from_config(config: &ImageConfiguration) -> RuntimeConfig {
        let Some(c) = config.config() else {
            return RuntimeConfig::default();
        };
        RuntimeConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"os":"linux","architecture":"amd64"}}]}"#;

    #[test]
    fn selects_platform_from_index() {
        let Document::Index(index) = parse_document(INDEX.as_bytes(), "index").unwrap() else {
            panic!()
        };
        let d = select_platform(&index, "linux", "amd64").unwrap();
        assert!(d.digest().to_string().starts_with("sha256:2222"));
        let d = select_platform(&index, "linux", "arm64").unwrap();
        assert!(d.digest().to_string().starts_with("sha256:1111"));
        assert!(select_platform(&index, "linux", "s390x").is_none());
    }

    #[test]
    fn rejects_non_manifests() {
        let err =
            parse_document(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, "m").unwrap_err();
        assert!(err.to_string().contains("unsupported media type"), "{err}");
        assert!(parse_document(b"[", "m").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_document(&data, "m");
            let _ = parse_config(&data, "c");
        }
    }
}
