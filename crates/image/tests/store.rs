//! The store against real components: Debian's docker-registry on a loopback port, images
//! built from Debian's static busybox, real unpacking into a temporary store.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use cairn_image::testkit::{
    Entry, EntryKind, ImageSpec, Registry, busybox_layer, finish_raw, layer_tar, raw_member,
};
use cairn_image::unpack::{Compression, get_xattr};
use cairn_image::{Digest, ImageStore, Progress, PullOptions, RuntimeConfig};

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

fn insecure(registry: &Registry) -> PullOptions {
    PullOptions {
        insecure: vec![registry.addr.clone()],
        ..PullOptions::default()
    }
}

fn base_image() -> ImageSpec {
    let runtime = RuntimeConfig {
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec!["-c".into(), "echo hi".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: Some("/tmp".into()),
        user: Some("0:0".into()),
    };
    ImageSpec {
        runtime,
        ..ImageSpec::default()
    }
    .layer(&busybox_layer().unwrap(), Compression::Gzip)
    .unwrap()
}

fn delta_layer() -> Vec<u8> {
    layer_tar(&[
        Entry::File {
            path: "etc/hello".into(),
            data: b"delta\n".to_vec(),
            mode: 0o600,
        },
        Entry::Whiteout {
            path: "etc/motd".into(),
        },
        Entry::Opaque {
            dir: "var/cache/base".into(),
        },
        Entry::File {
            path: "var/cache/base/new".into(),
            data: b"new\n".to_vec(),
            mode: 0o644,
        },
        Entry::Hardlink {
            path: "etc/hello2".into(),
            target: "etc/hello".into(),
        },
    ])
    .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_empty_store(store: &ImageStore) {
    for sub in ["blobs/sha256", "layers/sha256", "tmp"] {
        assert_eq!(
            entries(&store.root().join(sub)),
            Vec::<String>::new(),
            "{sub} not empty"
        );
    }
}

#[test]
fn pull_verifies_and_unpacks_busybox() {
    let registry = Registry::start().unwrap();
    let image = base_image();
    let digest = registry.push(&image, "busybox", "1").unwrap();
    let (_d, store) = store();
    let reference = format!("{}/busybox:1", registry.addr);
    let report = store
        .pull(&reference, &insecure(&registry), &Progress::Silent)
        .unwrap();
    assert_eq!(report.manifest, digest.to_string());
    assert_eq!((report.layers_fetched, report.layers_present), (1, 0));

    let rootfs = store.rootfs(&reference).unwrap();
    assert_eq!(rootfs.layers.len(), 1);
    let layer = &rootfs.layers[0];
    let busybox = fs::read(layer.join("bin/busybox")).unwrap();
    assert_eq!(busybox, fs::read("/bin/busybox").unwrap());
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(layer.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(rootfs.config.entrypoint, vec!["/bin/sh"]);
    assert_eq!(rootfs.config.working_dir.as_deref(), Some("/tmp"));
    // Found again by digest prefix, and a second pull downloads nothing.
    assert_eq!(store.resolve(&digest.hex()[..12]).unwrap().0, reference);
    let again = store
        .pull(&reference, &insecure(&registry), &Progress::Silent)
        .unwrap();
    assert_eq!((again.layers_fetched, again.layers_present), (0, 1));
}

#[test]
fn plain_http_needs_configuration() {
    let registry = Registry::start().unwrap();
    registry.push(&base_image(), "busybox", "1").unwrap();
    let (_d, store) = store();
    let err = store
        .pull(
            &format!("{}/busybox:1", registry.addr),
            &PullOptions::default(),
            &Progress::Silent,
        )
        .unwrap_err();
    assert!(err.to_string().contains(&registry.addr), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_kept() {
    let registry = Registry::start().unwrap();
    let image = base_image();
    registry.push(&image, "busybox", "bad").unwrap();
    let blob = Digest::of(&image.layers[0].0);
    let path = registry.blob_data(&blob);
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 20;
    data[last] ^= 0xff;
    fs::write(&path, data).unwrap();
    let (_d, store) = store();
    let err = store
        .pull(
            &format!("{}/busybox:bad", registry.addr),
            &insecure(&registry),
            &Progress::Silent,
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(blob.as_str()) || text.to_lowercase().contains("digest"),
        "{text}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_empty_store(&store);
}

#[test]
fn shared_base_is_stored_once_and_delta_applies_whiteouts() {
    let registry = Registry::start().unwrap();
    let base = base_image();
    let delta = base
        .clone()
        .layer(&delta_layer(), Compression::Zstd)
        .unwrap();
    let other = base
        .clone()
        .layer(
            &layer_tar(&[Entry::File {
                path: "other".into(),
                data: b"x".to_vec(),
                mode: 0o644,
            }])
            .unwrap(),
            Compression::None,
        )
        .unwrap();
    registry.push(&base, "base", "1").unwrap();
    registry.push(&delta, "delta", "1").unwrap();
    registry.push(&other, "other", "1").unwrap();
    let (_d, store) = store();
    let opts = insecure(&registry);
    store
        .pull(
            &format!("{}/base:1", registry.addr),
            &opts,
            &Progress::Silent,
        )
        .unwrap();
    let report = store
        .pull(
            &format!("{}/delta:1", registry.addr),
            &opts,
            &Progress::Silent,
        )
        .unwrap();
    assert_eq!((report.layers_fetched, report.layers_present), (1, 1));
    store
        .pull(
            &format!("{}/other:1", registry.addr),
            &opts,
            &Progress::Silent,
        )
        .unwrap();
    // base layer + delta layer + other's layer: three directories for three images.
    assert_eq!(entries(&store.root().join("layers/sha256")).len(), 3);

    let rootfs = store.rootfs(&format!("{}/delta:1", registry.addr)).unwrap();
    assert_eq!(
        rootfs.layers[0],
        store
            .rootfs(&format!("{}/base:1", registry.addr))
            .unwrap()
            .layers[0]
    );
    assert_eq!(
        rootfs.lowerdir(),
        format!(
            "{}:{}",
            rootfs.layers[1].display(),
            rootfs.layers[0].display()
        )
    );
    let top = &rootfs.layers[1];
    let motd = fs::symlink_metadata(top.join("etc/motd")).unwrap();
    assert!(
        motd.file_type().is_char_device() && motd.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    let opaque = get_xattr(&top.join("var/cache/base"), rootfs.opaque_xattr).unwrap();
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert_eq!(
        fs::metadata(top.join("etc/hello")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(top.join("etc/hello2")).unwrap().ino(),
        fs::metadata(top.join("etc/hello")).unwrap().ino()
    );
    assert!(!top.join("etc/.wh.motd").exists());
}

#[test]
fn hostile_layer_is_rejected_and_nothing_kept() {
    let registry = Registry::start().unwrap();
    let evil = finish_raw(
        [
            raw_member(b"ok", EntryKind::File, b"", b"fine"),
            raw_member(b"../../escape", EntryKind::File, b"", b"pwned"),
        ]
        .concat(),
    );
    let image = ImageSpec::default()
        .layer(&evil, Compression::Gzip)
        .unwrap();
    registry.push(&image, "evil", "1").unwrap();
    let (dir, store) = store();
    let err = store
        .pull(
            &format!("{}/evil:1", registry.addr),
            &insecure(&registry),
            &Progress::Silent,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("hostile entry \"../../escape\""),
        "{err}"
    );
    assert!(!dir.path().join("escape").exists() && !store.root().join("escape").exists());
    assert_empty_store(&store);
}

#[test]
fn symlink_then_write_through_it_is_rejected() {
    let (_d, store) = store();
    let evil = finish_raw(
        [
            raw_member(b"etc", EntryKind::Symlink, b"/etc", b""),
            raw_member(b"etc/cairn-pwned", EntryKind::File, b"", b"x"),
        ]
        .concat(),
    );
    let image = ImageSpec::default()
        .layer(&evil, Compression::None)
        .unwrap();
    let layout = tempfile::tempdir().unwrap();
    image.write_oci_layout(layout.path(), Some("evil")).unwrap();
    let err = store
        .import(layout.path(), None, &Progress::Silent)
        .unwrap_err();
    assert!(err.to_string().contains("through a symlink"), "{err}");
    assert!(!Path::new("/etc/cairn-pwned").exists());
    assert_empty_store(&store);
}

#[test]
fn rm_and_gc_leave_nothing() {
    let registry = Registry::start().unwrap();
    let base = base_image();
    let delta = base
        .clone()
        .layer(&delta_layer(), Compression::Gzip)
        .unwrap();
    registry.push(&base, "base", "1").unwrap();
    registry.push(&delta, "delta", "1").unwrap();
    let (_d, store) = store();
    let opts = insecure(&registry);
    let base_ref = format!("{}/base:1", registry.addr);
    let delta_ref = format!("{}/delta:1", registry.addr);
    store.pull(&base_ref, &opts, &Progress::Silent).unwrap();
    store.pull(&delta_ref, &opts, &Progress::Silent).unwrap();
    fs::create_dir(store.root().join("tmp/layer-leftover")).unwrap();

    assert_eq!(store.remove(&base_ref).unwrap(), vec![base_ref.clone()]);
    let report = store.gc().unwrap();
    // The base layer is still used by the delta image.
    assert_eq!((report.layers, report.temporary), (0, 1));
    assert!(store.rootfs(&delta_ref).is_ok());
    assert!(store.remove(&base_ref).is_err());

    store.remove(&delta_ref).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.layers, 2);
    assert_empty_store(&store);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn import_oci_layout_dir_and_tar() {
    let (_d, store) = store();
    let image = base_image()
        .layer(&delta_layer(), Compression::Zstd)
        .unwrap();
    let layout = tempfile::tempdir().unwrap();
    let digest = image
        .write_oci_layout(layout.path(), Some("example.org/app:2"))
        .unwrap();
    let imported = store
        .import(layout.path(), None, &Progress::Silent)
        .unwrap();
    assert_eq!(imported[0].reference, "example.org/app:2");
    assert_eq!(imported[0].manifest, digest.to_string());
    assert_eq!(store.rootfs("example.org/app:2").unwrap().layers.len(), 2);

    // The same layout as a tar, under another name: no layer unpacked twice.
    let tar_path = layout.path().with_extension("tar");
    let mut builder = tar::Builder::new(fs::File::create(&tar_path).unwrap());
    builder.append_dir_all(".", layout.path()).unwrap();
    builder.finish().unwrap();
    let imported = store
        .import(&tar_path, Some("local/app:tar"), &Progress::Silent)
        .unwrap();
    assert_eq!(
        (imported[0].layers_unpacked, imported[0].layers_present),
        (0, 2)
    );
    assert_eq!(
        store.resolve("local/app:tar").unwrap().1.manifest,
        digest.to_string()
    );
    assert_eq!(entries(&store.root().join("tmp")), Vec::<String>::new());
}

#[test]
fn import_docker_archive() {
    let (_d, store) = store();
    let image = ImageSpec {
        runtime: RuntimeConfig {
            cmd: vec!["/bin/sh".into()],
            ..RuntimeConfig::default()
        },
        ..ImageSpec::default()
    }
    .layer(&busybox_layer().unwrap(), Compression::None)
    .unwrap()
    .layer(&delta_layer(), Compression::None)
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("saved.tar");
    image
        .write_docker_archive(&archive, "localhost/busybox:saved")
        .unwrap();
    let imported = store.import(&archive, None, &Progress::Silent).unwrap();
    assert_eq!(imported[0].reference, "localhost/busybox:saved");
    assert_eq!(imported[0].layers_unpacked, 2);
    let rootfs = store.rootfs("localhost/busybox:saved").unwrap();
    assert_eq!(rootfs.config.cmd, vec!["/bin/sh"]);
    assert!(rootfs.layers[0].join("bin/busybox").is_file());
    assert!(
        fs::symlink_metadata(rootfs.layers[1].join("etc/motd"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

#[test]
fn wrong_diff_id_is_rejected() {
    let (_d, store) = store();
    let mut image = base_image();
    image.layers[0].1 = Digest::of(b"not the layer");
    let layout = tempfile::tempdir().unwrap();
    image
        .write_oci_layout(layout.path(), Some("x/y:z"))
        .unwrap();
    let err = store
        .import(layout.path(), None, &Progress::Silent)
        .unwrap_err();
    assert!(err.to_string().contains("diff_id"), "{err}");
    assert_empty_store(&store);
}

#[test]
fn rootless_unpack_uses_user_xattr_and_refuses_devices() {
    use cairn_image::unpack::{UnpackOptions, unpack_layer};
    let tmp = tempfile::tempdir().unwrap();
    let rootless = UnpackOptions { rootless: true };
    assert_eq!(rootless.opaque_xattr(), "user.overlay.opaque");
    let layer = layer_tar(&[
        Entry::Opaque { dir: "data".into() },
        Entry::Whiteout {
            path: "gone".into(),
        },
    ])
    .unwrap();
    let unpacked = unpack_layer(&mut &layer[..], tmp.path(), "test", rootless).unwrap();
    let xattr = get_xattr(&unpacked.path().join("data"), "user.overlay.opaque").unwrap();
    assert_eq!(xattr.as_deref(), Some(&b"y"[..]));
    assert_eq!(
        get_xattr(&unpacked.path().join("data"), "trusted.overlay.opaque").unwrap(),
        None
    );
    assert!(
        fs::symlink_metadata(unpacked.path().join("gone"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    drop(unpacked);

    let device = finish_raw(raw_member(b"dev/sda", EntryKind::BlockDevice, b"", b""));
    let err = unpack_layer(&mut &device[..], tmp.path(), "dev", rootless).unwrap_err();
    assert!(
        err.to_string().contains("device node in a rootless unpack"),
        "{err}"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn oversized_and_truncated_layers_are_rejected() {
    use cairn_image::unpack::{UnpackOptions, unpack_layer};
    let tmp = tempfile::tempdir().unwrap();
    let good = busybox_layer().unwrap();
    let truncated = cairn_image::testkit::gzip(&good[..good.len() / 2]).unwrap();
    let err = unpack_layer(
        &mut &truncated[..],
        tmp.path(),
        "cut",
        UnpackOptions { rootless: false },
    );
    assert!(err.is_err());
    let escape = finish_raw(raw_member(b"a/link", EntryKind::Symlink, b"../../etc", b""));
    let err = unpack_layer(
        &mut &escape[..],
        tmp.path(),
        "esc",
        UnpackOptions { rootless: false },
    )
    .unwrap_err();
    assert!(err.to_string().contains("escapes the layer"), "{err}");
    // A directory replaced by a symlink must not stay trusted as a directory.
    let swap = finish_raw(
        [
            raw_member(b"a/b", EntryKind::File, b"", b"1"),
            raw_member(b"a", EntryKind::Symlink, b"/tmp", b""),
            raw_member(b"a/c", EntryKind::File, b"", b"2"),
        ]
        .concat(),
    );
    let err = unpack_layer(
        &mut &swap[..],
        tmp.path(),
        "swap",
        UnpackOptions { rootless: false },
    )
    .unwrap_err();
    assert!(err.to_string().contains("through a symlink"), "{err}");
    assert!(!Path::new("/tmp/c").exists());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn pull_through_an_index_picks_this_architecture() {
    let registry = Registry::start().unwrap();
    let mine = base_image();
    let foreign = ImageSpec::default()
        .layer(
            &layer_tar(&[Entry::File {
                path: "foreign".into(),
                data: b"s390x".to_vec(),
                mode: 0o644,
            }])
            .unwrap(),
            Compression::Gzip,
        )
        .unwrap();
    let mine_digest = registry.push(&mine, "multi", "mine").unwrap();
    let foreign_digest = registry.push(&foreign, "multi", "foreign").unwrap();
    let (_, arch) = cairn_image::manifest::host_platform();
    registry
        .push_index(
            "multi",
            "1",
            &[
                (foreign_digest, foreign.manifest_json().len(), "s390x"),
                (mine_digest.clone(), mine.manifest_json().len(), arch),
            ],
        )
        .unwrap();
    let (_d, store) = store();
    let report = store
        .pull(
            &format!("{}/multi:1", registry.addr),
            &insecure(&registry),
            &Progress::Silent,
        )
        .unwrap();
    assert_eq!(report.manifest, mine_digest.to_string());
    let rootfs = store.rootfs(&format!("{}/multi:1", registry.addr)).unwrap();
    assert!(rootfs.layers[0].join("bin/busybox").is_file());

    // An index without this architecture is a clear error.
    let only_foreign = (
        Digest::of(&foreign.manifest_json()),
        foreign.manifest_json().len(),
        "s390x",
    );
    registry.push_index("multi", "2", &[only_foreign]).unwrap();
    let err = store
        .pull(
            &format!("{}/multi:2", registry.addr),
            &insecure(&registry),
            &Progress::Silent,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("no manifest for linux/{arch}")),
        "{err}"
    );
}

#[test]
fn pins_survive_rm_and_repull() {
    let registry = Registry::start().unwrap();
    let v1 = base_image();
    let v2 = v1.clone().layer(&delta_layer(), Compression::Gzip).unwrap();
    registry.push(&v1, "app", "1").unwrap();
    let (_d, store) = store();
    let opts = insecure(&registry);
    let reference = format!("{}/app:1", registry.addr);
    store.pull(&reference, &opts, &Progress::Silent).unwrap();
    let pinned = store.pin("app:demo", &reference).unwrap();
    // The name moves to v2 and is then removed; the pinned v1 stays usable through gc.
    registry.push(&v2, "app", "1").unwrap();
    store.pull(&reference, &opts, &Progress::Silent).unwrap();
    store.remove(&reference).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.layers, 1, "only v2's own layer goes");
    assert_eq!(store.pinned("app:demo").unwrap(), pinned);
    assert!(pinned.layers[0].join("bin/busybox").is_file());
    store.unpin("app:demo").unwrap();
    store.gc().unwrap();
    assert_empty_store(&store);
    assert!(store.pinned("app:demo").is_err());
}

/// The unpacked layers mount as a working overlayfs: whiteouts hide, opaque directories hide
/// the lower content, and the image's busybox runs from the merged tree.
#[test]
fn layers_mount_as_overlay_and_run() {
    let (_d, store) = store();
    let image = base_image()
        .layer(&delta_layer(), Compression::Gzip)
        .unwrap();
    let layout = tempfile::tempdir().unwrap();
    image
        .write_oci_layout(layout.path(), Some("local/overlay:1"))
        .unwrap();
    store
        .import(layout.path(), None, &Progress::Silent)
        .unwrap();
    let rootfs = store.rootfs("local/overlay:1").unwrap();
    let work = tempfile::tempdir().unwrap();
    for d in ["upper", "work", "merged"] {
        fs::create_dir(work.path().join(d)).unwrap();
    }
    let w = work.path().display();
    let script = format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={w}/upper,workdir={w}/work {w}/merged && \
         chroot {w}/merged /bin/sh -c 'cat /etc/hello; ls /var/cache/base; test ! -e /etc/motd && echo motd-hidden'",
        rootfs.lowerdir()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "delta\nnew\nmotd-hidden\n");
}
