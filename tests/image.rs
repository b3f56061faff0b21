//! End-to-end tests of `cairn image` (the real binary) against Debian's docker-registry on a
//! loopback port and images built from Debian's static busybox.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use cairn_image::testkit::{
    Entry, EntryKind, ImageSpec, Registry, busybox_layer, finish_raw, layer_tar, raw_member,
};
use cairn_image::unpack::Compression;
use cairn_image::{Digest, RuntimeConfig};

/// A `cairn` bound to a private CAIRN_ROOT whose cairn.toml allows plain HTTP to `insecure`.
fn cairn(root: &Path) -> Command {
    let mut cmd = Command::cargo_bin("cairn").unwrap();
    cmd.env("CAIRN_ROOT", root).env_remove("CAIRN_LOG");
    cmd
}

fn configure(root: &Path, insecure: &[&str]) {
    let dir = root.join("etc/cairn");
    fs::create_dir_all(&dir).unwrap();
    let list: Vec<String> = insecure.iter().map(|h| format!("{h:?}")).collect();
    fs::write(
        dir.join("cairn.toml"),
        format!("[registries]\ninsecure = [{}]\n", list.join(", ")),
    )
    .unwrap();
}

fn base() -> ImageSpec {
    let runtime = RuntimeConfig {
        entrypoint: vec!["/bin/sh".into()],
        ..RuntimeConfig::default()
    };
    ImageSpec {
        runtime,
        ..ImageSpec::default()
    }
    .layer(&busybox_layer().unwrap(), Compression::Gzip)
    .unwrap()
}

fn delta() -> ImageSpec {
    let tar = layer_tar(&[
        Entry::File {
            path: "etc/app".into(),
            data: b"app\n".to_vec(),
            mode: 0o644,
        },
        Entry::Whiteout {
            path: "etc/motd".into(),
        },
    ])
    .unwrap();
    base().layer(&tar, Compression::Zstd).unwrap()
}

fn stdout_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

fn store_entries(root: &Path, sub: &str) -> usize {
    fs::read_dir(root.join("var/lib/cairn/images").join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn pull_shows_progress_and_shares_layers() {
    let registry = Registry::start().unwrap();
    registry.push(&base(), "busybox", "1").unwrap();
    registry.push(&delta(), "app", "1").unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = |name: &str| format!("{}/{name}:1", registry.addr);

    // Not listed as insecure: refused, one line, nothing stored.
    configure(root.path(), &[]);
    let out = cairn(root.path())
        .args(["image", "pull", &r("busybox")])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.starts_with("cairn: pull ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("[registries] insecure"), "{err}");

    configure(root.path(), &[&registry.addr]);
    let out = cairn(root.path())
        .args(["image", "pull", &r("busybox")])
        .assert()
        .success()
        .get_output()
        .clone();
    let log = String::from_utf8(out.stderr).unwrap();
    assert!(
        log.contains("fetched and unpacked"),
        "plain progress lines off a terminal: {log}"
    );
    let out = cairn(root.path())
        .args(["image", "pull", &r("app"), "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["layers_fetched"].as_u64(),
            report["layers_present"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("already present")
    );
    assert_eq!(store_entries(root.path(), "layers/sha256"), 2);

    let list = stdout_json(cairn(root.path()).args(["image", "ls", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let table = cairn(root.path())
        .args(["image", "ls"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8(table).unwrap().starts_with("REFERENCE"));
    let details = stdout_json(cairn(root.path()).args(["image", "inspect", &r("app")]));
    assert_eq!(details["runtime"]["entrypoint"][0], "/bin/sh");
    let dirs = details["layer_dirs"].as_array().unwrap();
    assert!(
        Path::new(dirs[0].as_str().unwrap())
            .join("bin/busybox")
            .is_file()
    );
}

#[test]
fn corrupted_blob_fails_cleanly() {
    let registry = Registry::start().unwrap();
    let image = base();
    registry.push(&image, "busybox", "1").unwrap();
    let data_path = registry.blob_data(&Digest::of(&image.layers[0].0));
    let mut data = fs::read(&data_path).unwrap();
    data[100] ^= 1;
    fs::write(&data_path, data).unwrap();
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), &[&registry.addr]);
    let out = cairn(root.path())
        .args(["image", "pull", &format!("{}/busybox:1", registry.addr)])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.to_lowercase().contains("digest") || err.contains("corrupted"),
        "{err}"
    );
    let list = stdout_json(cairn(root.path()).args(["image", "ls", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(
        store_entries(root.path(), "layers/sha256") + store_entries(root.path(), "tmp"),
        0
    );
}

#[test]
fn import_rm_gc_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    delta()
        .write_oci_layout(&layout, Some("example.org/app:3"))
        .unwrap();
    let archive = work.path().join("saved.tar");
    let plain = ImageSpec::default()
        .layer(&busybox_layer().unwrap(), Compression::None)
        .unwrap();
    plain
        .write_docker_archive(&archive, "localhost/busybox:saved")
        .unwrap();

    let out = cairn(root.path())
        .args(["image", "import"])
        .arg(&layout)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("example.org/app:3 sha256:")
    );
    cairn(root.path())
        .args(["image", "import"])
        .arg(&archive)
        .assert()
        .success();
    let list = stdout_json(cairn(root.path()).args(["image", "ls", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["example.org/app:3", "localhost/busybox:saved"]);
    // The busybox layer is the same content in both: stored once.
    assert_eq!(store_entries(root.path(), "layers/sha256"), 2);

    cairn(root.path())
        .args([
            "image",
            "rm",
            "example.org/app:3",
            "localhost/busybox:saved",
        ])
        .assert()
        .success();
    let gc = stdout_json(cairn(root.path()).args(["image", "gc", "--json"]));
    assert_eq!(gc["layers"], 2);
    for sub in ["blobs/sha256", "layers/sha256", "tmp"] {
        assert_eq!(store_entries(root.path(), sub), 0, "{sub}");
    }
    cairn(root.path())
        .args(["image", "rm", "example.org/app:3"])
        .assert()
        .code(1);
}

#[test]
fn hostile_archive_is_rejected() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let evil = finish_raw(raw_member(b"/etc/cairn-evil", EntryKind::File, b"", b"x"));
    let image = ImageSpec::default()
        .layer(&evil, Compression::Gzip)
        .unwrap();
    image
        .write_oci_layout(work.path(), Some("evil/x:1"))
        .unwrap();
    let out = cairn(root.path())
        .args(["image", "import"])
        .arg(work.path())
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains("hostile entry \"/etc/cairn-evil\": absolute path"),
        "{err}"
    );
    assert_eq!(
        err.matches("hostile entry").count(),
        1,
        "one line, no repeated cause: {err}"
    );
    assert!(!Path::new("/etc/cairn-evil").exists());
    assert_eq!(
        store_entries(root.path(), "layers/sha256") + store_entries(root.path(), "tmp"),
        0
    );
    cairn(root.path()).args(["image", "pull"]).assert().code(2);
}

/// As an unprivileged user (setpriv to nobody) and as uid 0 of a user namespace (unshare -r),
/// an import writes `user.overlay.opaque`, keeps whiteouts, and refuses device nodes.
#[test]
fn rootless_import_uses_user_xattrs() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let layout = work.path().join("layout");
    let tar = layer_tar(&[
        Entry::Opaque {
            dir: "var/cache".into(),
        },
        Entry::Whiteout {
            path: "etc/motd".into(),
        },
    ])
    .unwrap();
    ImageSpec::default()
        .layer(&tar, Compression::Gzip)
        .unwrap()
        .write_oci_layout(&layout, Some("local/rl:1"))
        .unwrap();
    let evil_layout = work.path().join("evil");
    let dev = finish_raw(raw_member(b"dev/sda", EntryKind::BlockDevice, b"", b""));
    ImageSpec::default()
        .layer(&dev, Compression::None)
        .unwrap()
        .write_oci_layout(&evil_layout, Some("local/dev:1"))
        .unwrap();
    let cairn_bin = assert_cmd::cargo::cargo_bin("cairn");
    let wrappers: [&[&str]; 2] = [
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["unshare", "--user", "--map-root-user"],
    ];
    for (i, wrapper) in wrappers.iter().enumerate() {
        let root = work.path().join(format!("root{i}"));
        fs::create_dir(&root).unwrap();
        if wrapper[0] == "setpriv" {
            std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
        }
        let run = |layout: &Path| {
            std::process::Command::new(wrapper[0])
                .args(&wrapper[1..])
                .arg(&cairn_bin)
                .args(["image", "import"])
                .arg(layout)
                .env("CAIRN_ROOT", &root)
                .output()
                .unwrap()
        };
        let out = run(&layout);
        assert!(
            out.status.success(),
            "{wrapper:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layers = root.join("var/lib/cairn/images/layers/sha256");
        let layer = fs::read_dir(&layers)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let cache = layer.join("var/cache");
        assert_eq!(
            cairn_image::unpack::get_xattr(&cache, "user.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            cairn_image::unpack::get_xattr(&cache, "trusted.overlay.opaque").unwrap(),
            None
        );
        assert!(
            fs::symlink_metadata(layer.join("etc/motd"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let out = run(&evil_layout);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("device node in a rootless unpack"));
    }
}
