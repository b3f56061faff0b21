//! Pulling images over the OCI distribution API.
//!
//! Manifest and config digests are checked against what the reference or the index named;
//! each layer blob is downloaded to a temporary file while hashed, rejected unless it matches
//! the manifest's digest, and then unpacked (checking the config's diff_id). Layers already in
//! the store are not downloaded again. Plain HTTP only for registries listed as insecure.

use std::io::Write;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::ImageManifest;

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::index::ImageRecord;
use crate::manifest::{self, ACCEPTED, Document};
use crate::progress::{Progress, human_bytes};
use crate::store::{ImageStore, now};

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `host:port` of registries that may be reached over plain HTTP.
    pub insecure: Vec<String>,
}

impl PullOptions {
    pub fn from_config(config: &cairn_config::Config) -> PullOptions {
        PullOptions {
            insecure: config.registries.insecure.clone(),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullReport {
    pub reference: String,
    pub manifest: String,
    pub layers_fetched: usize,
    pub layers_present: usize,
    pub bytes_fetched: u64,
}

impl ImageStore {
    /// Pulls `reference` into the store (blocking; runs its own single-threaded runtime).
    pub fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
        progress: &Progress,
    ) -> Result<PullReport> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Registry {
                registry: reference.to_string(),
                message: e.to_string(),
            })?;
        runtime.block_on(self.pull_async(reference, options, progress))
    }

    async fn pull_async(
        &self,
        reference: &str,
        options: &PullOptions,
        progress: &Progress,
    ) -> Result<PullReport> {
        let parsed: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| Error::Reference {
                    reference: reference.to_string(),
                    message: e.to_string(),
                })?;
        let _work = self.work_lock()?;
        let remote = Remote::new(&parsed, options);
        let (manifest_digest, manifest_bytes) = remote.manifest().await?;
        let what = format!("manifest {manifest_digest}");
        let Document::Manifest(manifest) = manifest::parse_document(&manifest_bytes, &what)? else {
            return Err(Error::Invalid {
                what,
                message: "an index inside an index".into(),
            });
        };
        let config_digest = manifest::descriptor_digest(manifest.config())?;
        let config_bytes = remote
            .small_blob(&config_digest, manifest.config().size())
            .await?;
        let config = manifest::parse_config(&config_bytes, &format!("config {config_digest}"))?;
        let diff_ids = manifest::diff_ids(&config, manifest.layers().len(), &what)?;
        let mut report = PullReport {
            reference: parsed.whole(),
            manifest: manifest_digest.to_string(),
            layers_fetched: 0,
            layers_present: 0,
            bytes_fetched: 0,
        };
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            if self.has_layer(diff_id) {
                progress.note(&format!("layer {}: already present", diff_id.short()));
                report.layers_present += 1;
                continue;
            }
            let blob = manifest::descriptor_digest(layer)?;
            report.bytes_fetched += self
                .fetch_layer(&remote, &blob, layer.size(), diff_id, progress)
                .await?;
            report.layers_fetched += 1;
        }
        self.put_blob(&config_digest, &config_bytes, "config")?;
        self.put_blob(&manifest_digest, &manifest_bytes, "manifest")?;
        self.record(
            &report.reference,
            record(
                &manifest,
                &manifest_digest,
                &config_digest,
                &diff_ids,
                "pull",
            ),
        )?;
        Ok(report)
    }

    async fn fetch_layer(
        &self,
        remote: &Remote<'_>,
        blob: &Digest,
        size: u64,
        diff_id: &Digest,
        progress: &Progress,
    ) -> Result<u64> {
        let tmp = self.tmp_dir();
        let file = tempfile::NamedTempFile::new_in(&tmp).at(&tmp)?;
        let task = progress.task(&format!("layer {}", blob.short()), Some(size));
        let mut writer = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut stream = remote
            .client
            .pull_blob_stream(remote.reference, &descriptor(blob, size))
            .await
            .map_err(|e| remote.error(&e))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| remote.error(&e))?;
            writer.write_all(&chunk).at(&tmp)?;
            task.advance(chunk.len() as u64);
        }
        let (actual, count, buffered) = writer.finish().at(&tmp)?;
        blob.verify("layer blob", &actual)?;
        let file = buffered.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        let mut reader = std::io::BufReader::new(file.reopen().at(file.path())?);
        self.ingest_layer(&mut reader, None, diff_id)?;
        task.finish(&format!("{} fetched and unpacked", human_bytes(count)));
        Ok(count)
    }
}

pub(crate) fn record(
    manifest: &ImageManifest,
    digest: &Digest,
    config: &Digest,
    diff_ids: &[Digest],
    source: &str,
) -> ImageRecord {
    ImageRecord {
        manifest: digest.to_string(),
        config: config.to_string(),
        layers: diff_ids.iter().map(ToString::to_string).collect(),
        size: manifest.layers().iter().map(|l| l.size()).sum(),
        source: source.to_string(),
        stored_at: now(),
    }
}

fn descriptor(digest: &Digest, size: u64) -> OciDescriptor {
    OciDescriptor {
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// One registry repository, as seen through oci-client.
struct Remote<'a> {
    client: Client,
    reference: &'a Reference,
}

/// Manifests and configs are small; a larger one is hostile.
const MAX_SMALL_BLOB: u64 = 16 * 1024 * 1024;

impl<'a> Remote<'a> {
    fn new(reference: &'a Reference, options: &PullOptions) -> Remote<'a> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure.clone()),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        Remote {
            client: Client::new(config),
            reference,
        }
    }

    fn error(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Registry {
            registry: format!(
                "{}/{}",
                self.reference.registry(),
                self.reference.repository()
            ),
            message: e.to_string().replace('\n', " "),
        }
    }

    /// The image manifest for this host, through the index when there is one; its digest is
    /// computed here and checked against what named it.
    async fn manifest(&self) -> Result<(Digest, Vec<u8>)> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(self.reference, &RegistryAuth::Anonymous, ACCEPTED)
            .await
            .map_err(|e| self.error(&e))?;
        let digest = Digest::of(&bytes);
        if let Some(pinned) = self.reference.digest() {
            Digest::parse(pinned)?.verify("manifest", &digest)?;
        }
        let Document::Index(index) =
            manifest::parse_document(&bytes, &format!("manifest {digest}"))?
        else {
            return Ok((digest, bytes.to_vec()));
        };
        let (os, arch) = manifest::host_platform();
        let entry =
            manifest::select_platform(&index, os, arch).ok_or_else(|| Error::NoPlatform {
                reference: self.reference.whole(),
                os: os.into(),
                arch: arch.into(),
            })?;
        let wanted = manifest::descriptor_digest(entry)?;
        let child = Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            wanted.to_string(),
        );
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&child, &RegistryAuth::Anonymous, ACCEPTED)
            .await
            .map_err(|e| self.error(&e))?;
        wanted.verify("manifest", &Digest::of(&bytes))?;
        Ok((wanted, bytes.to_vec()))
    }

    async fn small_blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        if size > MAX_SMALL_BLOB {
            return Err(Error::Invalid {
                what: digest.to_string(),
                message: format!("{size}-byte config"),
            });
        }
        let mut data = Vec::new();
        self.client
            .pull_blob(self.reference, &descriptor(digest, size), &mut data)
            .await
            .map_err(|e| self.error(&e))?;
        digest.verify("config", &Digest::of(&data))?;
        Ok(data)
    }
}
