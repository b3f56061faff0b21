//! Building small OCI images and serving them from a local registry, for this crate's tests,
//! the `cairn` end-to-end tests and the pull benchmark.
//!
//! Images are packed with this module's own code (no docker, podman or umoci): layer tars
//! with the `tar` crate, OCI layouts and docker-archives written by hand. [`Registry`] runs
//! Debian's `docker-registry` on a free loopback port with its storage in a temporary
//! directory, and stops it when dropped; [`RegistrySetup`] adds TLS and htpasswd or token auth.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::digest::Digest;
pub use crate::hostile::EntryKind;
use crate::manifest::{
    OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST, RuntimeConfig,
};
use crate::unpack::{Compression, detect_compression};

/// One entry of a layer built for tests.
#[derive(Debug, Clone)]
pub enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    /// OCI whiteout of `path` (`dir/.wh.name`).
    Whiteout {
        path: String,
    },
    /// OCI opaque marker in `dir`.
    Opaque {
        dir: String,
    },
}

/// An uncompressed layer tar holding `entries` (in order, with fixed times and owners so that
/// builds are reproducible and layers shared between images hash the same).
pub fn layer_tar(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::File { path, data, mode } => {
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, &data[..])?;
            }
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty())?;
            }
            Entry::Symlink { path, target } | Entry::Hardlink { path, target } => {
                let kind = if matches!(entry, Entry::Symlink { .. }) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
            Entry::Whiteout { path } => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_data(&mut header, wh, io::empty())?;
            }
            Entry::Opaque { dir } => {
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_data(&mut header, format!("{dir}/.wh..wh..opq"), io::empty())?;
            }
        }
    }
    builder.into_inner()
}

/// A raw tar member written byte-for-byte (hostile names the `tar` builder would refuse).
pub fn raw_member(path: &[u8], kind: EntryKind, link: &[u8], data: &[u8]) -> Vec<u8> {
    let kind = match kind {
        EntryKind::File => tar::EntryType::Regular,
        EntryKind::Dir => tar::EntryType::Directory,
        EntryKind::Symlink => tar::EntryType::Symlink,
        EntryKind::Hardlink => tar::EntryType::Link,
        EntryKind::CharDevice => tar::EntryType::Char,
        EntryKind::BlockDevice => tar::EntryType::Block,
        EntryKind::Fifo => tar::EntryType::Fifo,
    };
    let mut header = tar::Header::new_old();
    let bytes = header.as_old_mut();
    let n = path.len().min(100);
    bytes.name[..n].copy_from_slice(&path[..n]);
    let l = link.len().min(100);
    bytes.linkname[..l].copy_from_slice(&link[..l]);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_entry_type(kind);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Ends a tar made of [`raw_member`]s.
pub fn finish_raw(mut members: Vec<u8>) -> Vec<u8> {
    members.extend_from_slice(&[0u8; 1024]);
    members
}

pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)?;
    enc.finish()
}

pub fn zstd(data: &[u8]) -> io::Result<Vec<u8>> {
    ::zstd::encode_all(data, 3)
}

/// A base layer with Debian's static busybox as `/bin/busybox` and a few applet links.
pub fn busybox_layer() -> io::Result<Vec<u8>> {
    let busybox = fs::read("/bin/busybox").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("/bin/busybox (install busybox-static): {e}"),
        )
    })?;
    let mut entries = vec![
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox".into(),
            data: busybox,
            mode: 0o755,
        },
    ];
    for applet in ["sh", "ls", "cat", "echo", "true"] {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    entries.extend([
        Entry::Dir {
            path: "etc".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "etc/passwd".into(),
            data: b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
            mode: 0o644,
        },
        Entry::File {
            path: "etc/motd".into(),
            data: b"base\n".to_vec(),
            mode: 0o644,
        },
        Entry::Dir {
            path: "var/cache/base".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "var/cache/base/old".into(),
            data: b"old\n".to_vec(),
            mode: 0o644,
        },
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
        },
    ]);
    layer_tar(&entries)
}

/// An image under construction: layer blobs as stored (compressed or not) and a config.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// (blob bytes, uncompressed tar digest).
    pub layers: Vec<(Vec<u8>, Digest)>,
    pub runtime: RuntimeConfig,
}

impl ImageSpec {
    /// Adds a layer from its uncompressed tar, stored with `compression`.
    pub fn layer(mut self, tar: &[u8], compression: Compression) -> io::Result<ImageSpec> {
        let blob = match compression {
            Compression::None => tar.to_vec(),
            Compression::Gzip => gzip(tar)?,
            Compression::Zstd => zstd(tar)?,
        };
        self.layers.push((blob, Digest::of(tar)));
        Ok(self)
    }

    pub fn config_json(&self) -> Vec<u8> {
        let (_, arch) = crate::manifest::host_platform();
        let diff_ids: Vec<&str> = self.layers.iter().map(|(_, d)| d.as_str()).collect();
        let r = &self.runtime;
        let doc = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Entrypoint": r.entrypoint, "Cmd": r.cmd, "Env": r.env,
                       "WorkingDir": r.working_dir.clone().unwrap_or_default(), "User": r.user.clone().unwrap_or_default()},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        doc.to_string().into_bytes()
    }

    pub fn manifest_json(&self) -> Vec<u8> {
        let config = self.config_json();
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|(blob, _)| {
                let media = match detect_compression(blob) {
                    Compression::None => OCI_LAYER_TAR.to_string(),
                    Compression::Gzip => OCI_LAYER_GZIP.to_string(),
                    Compression::Zstd => format!("{OCI_LAYER_TAR}+zstd"),
                };
                serde_json::json!({"mediaType": media, "digest": Digest::of(blob).as_str(), "size": blob.len()})
            })
            .collect();
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
            "layers": layers,
        });
        doc.to_string().into_bytes()
    }

    /// Writes an OCI image layout at `dir` whose index names the image `ref_name`; returns
    /// the manifest digest.
    pub fn write_oci_layout(&self, dir: &Path, ref_name: Option<&str>) -> io::Result<Digest> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs)?;
        let put = |data: &[u8]| -> io::Result<Digest> {
            let d = Digest::of(data);
            fs::write(blobs.join(d.hex()), data)?;
            Ok(d)
        };
        for (blob, _) in &self.layers {
            put(blob)?;
        }
        put(&self.config_json())?;
        let manifest = self.manifest_json();
        let digest = put(&manifest)?;
        let mut entry = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": manifest.len()});
        if let Some(name) = ref_name {
            entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        }
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]});
        fs::write(dir.join("index.json"), index.to_string())?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(digest)
    }

    /// Writes a docker-archive tar (the `podman save` default format); layers must have been
    /// added uncompressed.
    pub fn write_docker_archive(&self, path: &Path, tag: &str) -> io::Result<()> {
        let mut builder = tar::Builder::new(fs::File::create(path)?);
        let mut add = |name: &str, data: &[u8]| -> io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, data)
        };
        let config = self.config_json();
        let config_name = format!("{}.json", Digest::of(&config).hex());
        add(&config_name, &config)?;
        let mut layer_names = Vec::new();
        for (blob, diff_id) in &self.layers {
            let name = format!("{}/layer.tar", diff_id.hex());
            add(&name, blob)?;
            layer_names.push(name);
        }
        let manifest =
            serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]);
        add("manifest.json", manifest.to_string().as_bytes())?;
        builder.into_inner()?.sync_all()
    }
}

/// Debian's `docker-registry` serving on a free loopback port until dropped.
#[derive(Debug)]
pub struct Registry {
    /// None for a registry this process did not start ([`Registry::remote`]).
    child: Option<Child>,
    /// `127.0.0.1:<port>`
    pub addr: String,
    pub storage: PathBuf,
    setup: RegistrySetup,
    _dir: Option<tempfile::TempDir>,
}

/// How a test registry serves and whom it lets in (default: plain HTTP, anyone).
#[derive(Debug, Clone, Default)]
pub struct RegistrySetup {
    /// Serve https with this certificate (PEM, chain) and key (PEM) file.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The CA (PEM) that [`Registry::push`] trusts: the one that signed `tls`.
    pub ca_pem: Option<Vec<u8>>,
    /// HTTP Basic auth against this htpasswd file (bcrypt lines, see [`htpasswd_line`]).
    pub htpasswd: Option<PathBuf>,
    /// Bearer token auth through a token service.
    pub token: Option<TokenSetup>,
    /// What [`Registry::push`] logs in with.
    pub push_credentials: Option<(String, String)>,
}

/// The registry's `auth: token` section: tokens are JWTs from `realm`, signed by a key whose
/// certificate is in `root_cert_bundle`, issued by `issuer` for `service`.
#[derive(Debug, Clone)]
pub struct TokenSetup {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert_bundle: PathBuf,
}

/// One htpasswd line for `user` with a bcrypt hash (the only kind docker-registry accepts),
/// made by apache2-utils' `htpasswd`.
pub fn htpasswd_line(user: &str, password: &str) -> io::Result<String> {
    let out = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("htpasswd (install apache2-utils): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!("htpasswd: {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string() + "\n")
}

impl Registry {
    pub fn start() -> io::Result<Registry> {
        Registry::start_with(RegistrySetup::default())
    }

    pub fn start_with(setup: RegistrySetup) -> io::Result<Registry> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((cert, key)) = &setup.tls {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(file) = &setup.htpasswd {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: cairn-test\n    path: {}\n",
                file.display()
            );
        } else if let Some(t) = &setup.token {
            config += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.root_cert_bundle.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("docker-registry (install docker-registry): {e}"),
                )
            })?;
        let registry = Registry {
            child: Some(child),
            addr,
            storage,
            setup,
            _dir: Some(dir),
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    /// A plain-HTTP registry already running at `addr` (push only; nothing is stopped).
    pub fn remote(addr: &str) -> Registry {
        Registry {
            child: None,
            addr: addr.to_string(),
            storage: PathBuf::new(),
            setup: RegistrySetup::default(),
            _dir: None,
        }
    }

    /// A client for pushing: https trusting the setup's CA when it serves TLS.
    fn push_client(&self) -> io::Result<oci_client::Client> {
        use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
        crate::pull::install_tls_provider();
        let protocol = match self.setup.tls {
            Some(_) => ClientProtocol::Https,
            None => ClientProtocol::Http,
        };
        let extra_root_certificates = self
            .setup
            .ca_pem
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect();
        oci_client::Client::try_from(ClientConfig {
            protocol,
            extra_root_certificates,
            ..ClientConfig::default()
        })
        .map_err(io::Error::other)
    }

    fn push_auth(&self) -> oci_client::secrets::RegistryAuth {
        match &self.setup.push_credentials {
            Some((user, password)) => {
                oci_client::secrets::RegistryAuth::Basic(user.clone(), password.clone())
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        }
    }

    fn wait_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&self.addr) {
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut answer = String::new();
                    let _ = stream.read_to_string(&mut answer);
                    if answer.starts_with("HTTP/1.") {
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "docker-registry did not answer on {}",
            self.addr
        )))
    }

    /// Where the registry keeps a blob's bytes (tests corrupt it there).
    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data")
    }

    /// Pushes `image` as `<addr>/<repository>:<tag>`; returns the manifest digest.
    pub fn push(&self, image: &ImageSpec, repository: &str, tag: &str) -> io::Result<Digest> {
        let reference = oci_client::Reference::with_tag(
            self.addr.clone(),
            repository.to_string(),
            tag.to_string(),
        );
        let client = self.push_client()?;
        let manifest = image.manifest_json();
        let digest = Digest::of(&manifest);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let auth = self.push_auth();
            client
                .auth(&reference, &auth, oci_client::RegistryOperation::Push)
                .await
                .map_err(io::Error::other)?;
            for blob in image
                .layers
                .iter()
                .map(|(b, _)| b.clone())
                .chain([image.config_json()])
            {
                let d = Digest::of(&blob);
                client
                    .push_blob(&reference, blob, d.as_str())
                    .await
                    .map_err(io::Error::other)?;
            }
            let media = http::HeaderValue::from_static(OCI_MANIFEST);
            client
                .push_manifest_raw(&reference, manifest, media)
                .await
                .map_err(io::Error::other)?;
            Ok::<(), io::Error>(())
        })?;
        Ok(digest)
    }
}

impl Registry {
    /// Pushes an image index (manifest list) as `<repository>:<tag>` naming already pushed
    /// manifests: (manifest digest, manifest size, architecture), all for linux.
    pub fn push_index(
        &self,
        repository: &str,
        tag: &str,
        entries: &[(Digest, usize, &str)],
    ) -> io::Result<Digest> {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(d, size, arch)| {
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d.as_str(), "size": size,
                                   "platform": {"os": "linux", "architecture": arch}})
            })
            .collect();
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let body = index.to_string().into_bytes();
        let digest = Digest::of(&body);
        let reference = oci_client::Reference::with_tag(
            self.addr.clone(),
            repository.to_string(),
            tag.to_string(),
        );
        let client = self.push_client()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let auth = self.push_auth();
            client
                .auth(&reference, &auth, oci_client::RegistryOperation::Push)
                .await
                .map_err(io::Error::other)?;
            let media = http::HeaderValue::from_static(OCI_INDEX);
            client
                .push_manifest_raw(&reference, body, media)
                .await
                .map_err(io::Error::other)?;
            Ok::<(), io::Error>(())
        })?;
        Ok(digest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
