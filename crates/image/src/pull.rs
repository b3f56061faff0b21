//! Pulling images over the OCI distribution API.
//!
//! Manifest and config digests are checked against what the reference or the index named;
//! each layer blob is downloaded to a temporary file while hashed, rejected unless it matches
//! the manifest's digest, and then unpacked (checking the config's diff_id). Layers already in
//! the store are not downloaded again. Plain HTTP only for registries listed as insecure.
//! Credentials and trusted CAs come from [`crate::auth`].

use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::ImageManifest;

use crate::auth;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::index::ImageRecord;
use crate::manifest::{self, ACCEPTED, Document};
use crate::progress::{Progress, human_bytes};
use crate::store::{ImageStore, now};
use crate::unpack::unpack_layer;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `host:port` of registries that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials files in lookup order ([`crate::auth`]); none: anonymous pulls.
    pub auth_files: Vec<PathBuf>,
    /// `<dir>/<registry>/*.crt` are CAs trusted for that registry.
    pub certs_dir: Option<PathBuf>,
}

impl PullOptions {
    pub fn from_config(config: &cairn_config::Config) -> PullOptions {
        PullOptions {
            insecure: config.registries.insecure.clone(),
            auth_files: auth::lookup_order(config, &cairn_config::Env::from_process()),
            certs_dir: Some(config.registry_certs_dir()),
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
        let parsed: Reference = crate::store::parse_reference(reference)?;
        let _work = self.work_lock()?;
        let remote = Remote::new(&parsed, options)?;
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

    /// Streams one layer blob into the unpacker (a worker thread) while hashing it, so that
    /// download and decompression overlap and the compressed blob never touches the disk.
    /// The unpacked tree stays in a temporary directory until both digests match.
    async fn fetch_layer(
        &self,
        remote: &Remote<'_>,
        blob: &Digest,
        size: u64,
        diff_id: &Digest,
        progress: &Progress,
    ) -> Result<u64> {
        let task = progress.task(&format!("layer {}", blob.short()), Some(size));
        let mut stream = remote
            .client
            .pull_blob_stream(remote.reference, &descriptor(blob, size))
            .await
            .map_err(|e| remote.oci_error(&e))?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<bytes::Bytes>(64);
        let (tmp, options, label) = (self.tmp_dir(), self.options, blob.to_string());
        let worker = std::thread::spawn(move || {
            let mut reader = ChannelReader {
                receiver,
                current: bytes::Bytes::new(),
            };
            unpack_layer(&mut reader, &tmp, &label, options)
        });
        let mut hasher = HashingWriter::new(std::io::sink());
        let streamed = self
            .stream_to(&mut stream, sender, &mut hasher, &task, remote)
            .await;
        // Always wait for the worker, so that a failed pull leaves no temporary tree behind.
        let unpacked = worker.join().map_err(|_| Error::Unpack {
            layer: blob.to_string(),
            path: String::new(),
            message: "unpack worker panicked".into(),
        });
        streamed?;
        let (actual, count, _) = hasher.finish().at(self.tmp_dir())?;
        blob.verify("layer blob", &actual)?;
        let unpacked = unpacked??;
        diff_id.verify("layer diff_id", &unpacked.diff_id)?;
        unpacked.commit(&self.layer_path(diff_id))?;
        task.finish(&format!("{} fetched and unpacked", human_bytes(count)));
        Ok(count)
    }
}

impl ImageStore {
    /// Feeds every chunk to the hasher and, while it still listens, to the unpack worker.
    async fn stream_to(
        &self,
        stream: &mut oci_client::client::SizedStream,
        sender: std::sync::mpsc::SyncSender<bytes::Bytes>,
        hasher: &mut HashingWriter<std::io::Sink>,
        task: &crate::progress::Task,
        remote: &Remote<'_>,
    ) -> Result<()> {
        let mut sender = Some(sender);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| remote.error(&e))?;
            hasher.write_all(&chunk).at(self.tmp_dir())?;
            task.advance(chunk.len() as u64);
            // A worker that stopped early (bad layer) drops its end; keep hashing so that a
            // corrupted blob is reported as such rather than as a decompression error.
            if sender.as_ref().is_some_and(|s| s.send(chunk).is_err()) {
                sender = None;
            }
        }
        Ok(())
    }
}

/// Reads the chunks a download sends, in order; end of stream when the sender is dropped.
struct ChannelReader {
    receiver: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
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
    /// Reached over https (not listed as insecure).
    https: bool,
    auth: RegistryAuth,
    /// The file the credentials came from, named when the registry refuses them.
    auth_file: Option<PathBuf>,
}

/// One line, with a hint where a connection failure over https may be a plain-HTTP registry
/// or one whose certificate comes from a private CA.
pub(crate) fn explain(message: &str, https: bool) -> String {
    let mut text = message.replace('\n', " ");
    if https && text.contains("certificate") {
        text.push_str(
            " (a registry with a private CA: put the CA's PEM in certs.d/<host:port>/ca.crt under Cairn's config directory)",
        );
    } else if https && text.contains("error sending request") {
        text.push_str(
            " (a plain-HTTP registry must be listed as \"host:port\" in [registries] insecure in cairn.toml)",
        );
    }
    text
}

/// reqwest's Display stops at "error sending request"; the cause (refused connection,
/// unknown CA) is further down the chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Makes ring rustls' process-wide crypto provider (installing twice is harmless: the first
/// one stays).
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Manifests and configs are small; a larger one is hostile.
const MAX_SMALL_BLOB: u64 = 16 * 1024 * 1024;

impl<'a> Remote<'a> {
    fn new(reference: &'a Reference, options: &PullOptions) -> Result<Remote<'a>> {
        install_tls_provider();
        let registry = reference.registry();
        let extra_root_certificates = auth::trusted_cas(options.certs_dir.as_deref(), registry)?
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Der,
                data,
            })
            .collect();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure.clone()),
            platform_resolver: None,
            extra_root_certificates,
            ..ClientConfig::default()
        };
        let https = !options
            .insecure
            .iter()
            .any(|h| h == reference.resolve_registry());
        let found = auth::find(&options.auth_files, registry)?;
        let auth = match &found {
            Some(f) => RegistryAuth::Basic(
                f.credentials.username.clone(),
                f.credentials.password.clone(),
            ),
            None => RegistryAuth::Anonymous,
        };
        // Client::new would fall back to a default client (without the CAs) on an error.
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            registry: registry.to_string(),
            message: format!("TLS set-up (CAs in certs.d/{registry}): {e}"),
        })?;
        Ok(Remote {
            client,
            reference,
            https,
            auth,
            auth_file: found.map(|f| f.file),
        })
    }

    fn error(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Registry {
            registry: format!(
                "{}/{}",
                self.reference.registry(),
                self.reference.repository()
            ),
            message: explain(&e.to_string(), self.https),
        }
    }

    /// Like [`Remote::error`], saying what to do when the registry wants other credentials.
    fn oci_error(&self, e: &OciDistributionError) -> Error {
        let unauthorized = matches!(
            e,
            OciDistributionError::UnauthorizedError { .. }
                | OciDistributionError::AuthenticationFailure(_)
        );
        if !unauthorized {
            return self.error(&error_chain(e));
        }
        let registry = auth::registry_key(self.reference.registry());
        let message = match &self.auth_file {
            Some(file) => format!(
                "access denied with the credentials for {registry} from {} (wrong password, or no access to this repository)",
                file.display()
            ),
            None => format!(
                "authentication required: no credentials for {registry} (run `cairn image login {registry}`)"
            ),
        };
        self.error(&message)
    }

    /// The image manifest for this host, through the index when there is one; its digest is
    /// computed here and checked against what named it.
    async fn manifest(&self) -> Result<(Digest, Vec<u8>)> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(self.reference, &self.auth, ACCEPTED)
            .await
            .map_err(|e| self.oci_error(&e))?;
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
            .pull_manifest_raw(&child, &self.auth, ACCEPTED)
            .await
            .map_err(|e| self.oci_error(&e))?;
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
            .map_err(|e| self.oci_error(&e))?;
        digest.verify("config", &Digest::of(&data))?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn https_failures_hint_at_insecure_registries() {
        let text = super::explain("error sending request for url (https://h:1/v2/)", true);
        assert!(text.contains("[registries] insecure"), "{text}");
        assert!(!super::explain("error sending request", false).contains("insecure"));
        assert_eq!(super::explain("a\nb", true), "a b");
        let text = super::explain(
            "error sending request: invalid peer certificate: UnknownIssuer",
            true,
        );
        assert!(
            text.contains("certs.d") && !text.contains("insecure"),
            "{text}"
        );
    }
}
