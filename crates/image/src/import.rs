//! Importing OCI layout directories and tars, and docker-archive tars (`podman save`,
//! `docker save`).
//!
//! A tar is first unpacked with the same hostile-entry rules as layers (as if rootless: no
//! devices, no ownership) into a temporary directory. Files named by the archive's own
//! documents are opened only when they resolve inside that directory. Every blob is checked
//! against its digest; docker-archive layers against the config's diff_ids.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest};
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, json_error};
use crate::hostile::normalize;
use crate::manifest::{self, Document};
use crate::progress::Progress;
use crate::pull::record;
use crate::store::{ImageStore, normalize_reference};
use crate::unpack::{UnpackOptions, unpack_layer};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image an import stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// The index key: a normalized reference, or the manifest digest when the archive
    /// named none and no name was given.
    pub reference: String,
    pub manifest: String,
    pub layers_unpacked: usize,
    pub layers_present: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of the OCI layout or docker-archive at `path` (a directory or a
    /// tar). `name` names the image when the archive holds exactly one.
    pub fn import(
        &self,
        path: &Path,
        name: Option<&str>,
        progress: &Progress,
    ) -> Result<Vec<Imported>> {
        let _work = self.work_lock()?;
        let meta = fs::metadata(path).at(path)?;
        let extracted;
        let dir = if meta.is_dir() {
            path.to_path_buf()
        } else {
            let task = progress.task(&format!("reading {}", path.display()), Some(meta.len()));
            let mut file = File::open(path).at(path)?;
            let label = path.display().to_string();
            extracted = unpack_layer(
                &mut file,
                &self.tmp_dir(),
                &label,
                UnpackOptions { rootless: true },
            )?;
            task.finish("unpacked");
            extracted.path().to_path_buf()
        };
        let source = Source {
            dir: dir.canonicalize().at(&dir)?,
            shown: path.to_path_buf(),
        };
        if source.dir.join("oci-layout").is_file() {
            self.import_oci(&source, name, progress)
        } else if source.dir.join("manifest.json").is_file() {
            self.import_docker(&source, name, progress)
        } else {
            Err(Error::UnknownArchive {
                path: path.to_path_buf(),
            })
        }
    }

    fn import_oci(
        &self,
        source: &Source,
        name: Option<&str>,
        progress: &Progress,
    ) -> Result<Vec<Imported>> {
        let index_bytes = source.read("index.json")?;
        let Document::Index(index) =
            manifest::parse_document(&index_bytes, &source.shown("index.json"))?
        else {
            return Err(source.invalid("index.json", "not an image index"));
        };
        let entries = index.manifests();
        if entries.is_empty() {
            return Err(source.invalid("index.json", "no manifests"));
        }
        if name.is_some() && entries.len() > 1 {
            return Err(source.invalid(
                "index.json",
                "holds several images: --name needs exactly one",
            ));
        }
        let mut out = Vec::new();
        for entry in entries {
            let (digest, bytes) = self.oci_manifest(source, entry)?;
            let annotated = entry
                .annotations()
                .as_ref()
                .and_then(|a| a.get(CONTAINERD_NAME).or_else(|| a.get(REF_NAME)).cloned());
            let key = image_key(
                name.map(str::to_string).or(annotated),
                &source.shown,
                &digest,
            )?;
            out.push(self.import_manifest(source, &key, &digest, &bytes, progress)?);
        }
        Ok(out)
    }

    /// The image manifest an index entry names, through a nested index when needed.
    fn oci_manifest(&self, source: &Source, entry: &Descriptor) -> Result<(Digest, Vec<u8>)> {
        let digest = manifest::descriptor_digest(entry)?;
        let bytes = source.blob(&digest)?;
        match manifest::parse_document(&bytes, &format!("manifest {digest}"))? {
            Document::Manifest(_) => Ok((digest, bytes)),
            Document::Index(nested) => {
                let (os, arch) = manifest::host_platform();
                let chosen = manifest::select_platform(&nested, os, arch).ok_or_else(|| {
                    Error::NoPlatform {
                        reference: source.shown.display().to_string(),
                        os: os.into(),
                        arch: arch.into(),
                    }
                })?;
                let digest = manifest::descriptor_digest(chosen)?;
                Ok((digest.clone(), source.blob(&digest)?))
            }
        }
    }

    fn import_manifest(
        &self,
        source: &Source,
        key: &str,
        digest: &Digest,
        bytes: &[u8],
        progress: &Progress,
    ) -> Result<Imported> {
        let what = format!("manifest {digest}");
        let Document::Manifest(manifest) = manifest::parse_document(bytes, &what)? else {
            return Err(Error::Invalid {
                what,
                message: "an index inside an index".into(),
            });
        };
        let config_digest = manifest::descriptor_digest(manifest.config())?;
        let config_bytes = source.blob(&config_digest)?;
        let config = manifest::parse_config(&config_bytes, &format!("config {config_digest}"))?;
        let diff_ids = manifest::diff_ids(&config, manifest.layers().len(), &what)?;
        let mut imported = Imported {
            reference: key.to_string(),
            manifest: digest.to_string(),
            layers_unpacked: 0,
            layers_present: 0,
        };
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            if self.has_layer(diff_id) {
                imported.layers_present += 1;
                continue;
            }
            let blob = manifest::descriptor_digest(layer)?;
            let task = progress.task(&format!("layer {}", blob.short()), Some(layer.size()));
            let mut file = BufReader::new(source.open(&format!("blobs/sha256/{}", blob.hex()))?);
            self.ingest_layer(&mut file, Some(&blob), diff_id)?;
            task.finish("unpacked");
            imported.layers_unpacked += 1;
        }
        self.put_blob(&config_digest, &config_bytes, "config")?;
        self.put_blob(digest, bytes, "manifest")?;
        self.record(
            key,
            record(&manifest, digest, &config_digest, &diff_ids, "import"),
        )?;
        Ok(imported)
    }

    fn import_docker(
        &self,
        source: &Source,
        name: Option<&str>,
        progress: &Progress,
    ) -> Result<Vec<Imported>> {
        let data = source.read("manifest.json")?;
        let entries: Vec<DockerEntry> = serde_json::from_slice(&data)
            .map_err(|e| json_error(source.shown("manifest.json"), &e))?;
        if entries.is_empty() || (name.is_some() && entries.len() > 1) {
            return Err(source.invalid(
                "manifest.json",
                "--name needs exactly one image (and there must be one)",
            ));
        }
        let mut out = Vec::new();
        for entry in entries {
            let config_bytes = source.read(&entry.config)?;
            let config_digest = Digest::of(&config_bytes);
            let config = manifest::parse_config(&config_bytes, &source.shown(&entry.config))?;
            let diff_ids =
                manifest::diff_ids(&config, entry.layers.len(), &source.shown("manifest.json"))?;
            let mut imported = Imported {
                reference: String::new(),
                manifest: String::new(),
                layers_unpacked: 0,
                layers_present: 0,
            };
            let mut sizes = Vec::new();
            for (layer, diff_id) in entry.layers.iter().zip(&diff_ids) {
                let file = source.open(layer)?;
                sizes.push(file.metadata().at(source.shown.clone())?.len());
                if self.has_layer(diff_id) {
                    imported.layers_present += 1;
                    continue;
                }
                let task = progress.task(&format!("layer {}", diff_id.short()), None);
                self.ingest_layer(&mut BufReader::new(file), None, diff_id)?;
                task.finish("unpacked");
                imported.layers_unpacked += 1;
            }
            let manifest_bytes =
                synthesize_manifest(&config_digest, config_bytes.len(), &diff_ids, &sizes)?;
            let digest = Digest::of(&manifest_bytes);
            let manifest =
                ImageManifest::from_reader(&manifest_bytes[..]).map_err(|e| Error::Invalid {
                    what: "synthesized manifest".into(),
                    message: e.to_string(),
                })?;
            let tag = entry.repo_tags.and_then(|t| t.into_iter().next());
            let key = image_key(name.map(str::to_string).or(tag), &source.shown, &digest)?;
            self.put_blob(&config_digest, &config_bytes, "config")?;
            self.put_blob(&digest, &manifest_bytes, "manifest")?;
            self.record(
                &key,
                record(&manifest, &digest, &config_digest, &diff_ids, "import"),
            )?;
            imported.reference = key;
            imported.manifest = digest.to_string();
            out.push(imported);
        }
        Ok(out)
    }
}

/// A docker-archive has no manifest of the registry kind; the store keeps one so that every
/// image is described the same way (layers by their uncompressed digest).
fn synthesize_manifest(
    config: &Digest,
    config_size: usize,
    diff_ids: &[Digest],
    sizes: &[u64],
) -> Result<Vec<u8>> {
    let layers: Vec<_> = diff_ids
        .iter()
        .zip(sizes)
        .map(|(d, s)| serde_json::json!({"mediaType": manifest::OCI_LAYER_TAR, "digest": d.as_str(), "size": s}))
        .collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config.as_str(), "size": config_size},
        "layers": layers,
    });
    serde_json::to_vec(&doc).map_err(|e| json_error("synthesized manifest", &e))
}

/// The index key for an imported image: the given or archived name (a bare tag such as
/// `latest`, as skopeo writes, is qualified with `localhost/<file stem>`), else the digest.
fn image_key(name: Option<String>, shown: &Path, digest: &Digest) -> Result<String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(digest.to_string());
    };
    if !name.contains('/') && !name.contains(':') && !name.contains('@') {
        let stem = shown
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "image".into());
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let stem = stem.trim_matches('-');
        let stem = if stem.is_empty() { "image" } else { stem };
        return normalize_reference(&format!("localhost/{stem}:{name}"));
    }
    normalize_reference(&name)
}

/// A directory being imported; every path the archive names must stay inside it.
struct Source {
    dir: PathBuf,
    shown: PathBuf,
}

impl Source {
    fn shown(&self, rel: &str) -> String {
        format!("{}: {rel}", self.shown.display())
    }

    fn invalid(&self, rel: &str, message: &str) -> Error {
        Error::Invalid {
            what: self.shown(rel),
            message: message.to_string(),
        }
    }

    fn open(&self, rel: &str) -> Result<File> {
        let parts =
            normalize(rel.as_bytes()).map_err(|_| self.invalid(rel, "path leaves the archive"))?;
        if parts.is_empty() {
            return Err(self.invalid(rel, "empty path"));
        }
        let joined = self.dir.join(rel);
        let real = joined.canonicalize().map_err(|e| Error::Io {
            path: PathBuf::from(self.shown(rel)),
            error: e,
        })?;
        if !real.starts_with(&self.dir) {
            return Err(self.invalid(rel, "a symlink leads out of the archive"));
        }
        File::open(&real).at(real)
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let mut data = Vec::new();
        // Documents are small; bound them so a hostile archive cannot exhaust memory.
        self.open(rel)?
            .take(64 * 1024 * 1024)
            .read_to_end(&mut data)
            .at(self.shown(rel))?;
        Ok(data)
    }

    fn blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let data = self.read(&format!("blobs/sha256/{}", digest.hex()))?;
        digest.verify("blob", &Digest::of(&data))?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys() {
        let d = Digest::of(b"m");
        let shown = Path::new("/x/My Image.tar");
        assert_eq!(image_key(None, shown, &d).unwrap(), d.to_string());
        assert_eq!(
            image_key(Some("latest".into()), shown, &d).unwrap(),
            "localhost/my-image:latest"
        );
        assert_eq!(
            image_key(Some("busybox".into()), Path::new("/x/.t"), &d).unwrap(),
            "localhost/t:busybox"
        );
        assert_eq!(
            image_key(Some("localhost/busybox:1".into()), shown, &d).unwrap(),
            "localhost/busybox:1"
        );
        assert!(image_key(Some("Bad Name:1/x".into()), shown, &d).is_err());
    }
}
