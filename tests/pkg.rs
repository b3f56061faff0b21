//! End-to-end tests of per-node packages: the real `cairn` binary, real dpkg-deb/apt, real
//! repositories built by each test (dpkg-deb + apt-ftparchive, from apt-utils), real
//! sandboxes for maintainer scripts.
#![allow(clippy::unwrap_used)]

mod support;

use predicates::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{World, write};

/// One package to build: name, version, control extras, files, maintainer scripts.
struct Pkg<'a> {
    name: &'a str,
    version: &'a str,
    depends: Option<&'a str>,
    files: Vec<(&'a str, Vec<u8>, u32)>,
    postinst: Option<&'a str>,
    conffiles: Vec<&'a str>,
}

impl<'a> Pkg<'a> {
    fn new(name: &'a str, version: &'a str) -> Pkg<'a> {
        Pkg {
            name,
            version,
            depends: None,
            files: Vec::new(),
            postinst: None,
            conffiles: Vec::new(),
        }
    }
    fn depends(mut self, d: &'a str) -> Self {
        self.depends = Some(d);
        self
    }
    fn file(mut self, path: &'a str, body: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path, body.into(), mode));
        self
    }
    fn conffile(mut self, path: &'a str, body: &'a str) -> Self {
        self.conffiles.push(path);
        self.file(path, body, 0o644)
    }
    fn postinst(mut self, body: &'a str) -> Self {
        self.postinst = Some(body);
        self
    }
}

fn arch() -> String {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `pkg` with dpkg-deb into `repo`.
fn build(repo: &Path, work: &Path, pkg: &Pkg<'_>) {
    use std::os::unix::fs::PermissionsExt;
    let root = work.join(format!("{}-{}", pkg.name, pkg.version));
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Cairn tests <t@example.org>\n",
        pkg.name,
        pkg.version,
        arch()
    );
    if let Some(d) = pkg.depends {
        control.push_str(&format!("Depends: {d}\n"));
    }
    control.push_str(&format!("Description: test package {}\n", pkg.name));
    write(&root.join("DEBIAN/control"), &control);
    if let Some(body) = pkg.postinst {
        let p = root.join("DEBIAN/postinst");
        write(&p, body);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if !pkg.conffiles.is_empty() {
        let list: String = pkg.conffiles.iter().map(|c| format!("/{c}\n")).collect();
        write(&root.join("DEBIAN/conffiles"), &list);
    }
    for (path, body, mode) in &pkg.files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let deb = repo.join(format!("{}_{}_{}.deb", pkg.name, pkg.version, arch()));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "-b"])
            .arg(&root)
            .arg(&deb),
    );
}

/// Writes Packages and Release for a flat repository.
fn index(repo: &Path) {
    let out = Command::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apt-ftparchive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(repo.join("Packages"), &out.stdout).unwrap();
    let out = Command::new("apt-ftparchive")
        .args(["release", "."])
        .current_dir(repo)
        .output()
        .unwrap();
    std::fs::write(repo.join("Release"), &out.stdout).unwrap();
}

/// A shared library and a program linked against it, compiled with the host's C compiler.
fn compile_greeter(work: &Path) -> (Vec<u8>, Vec<u8>) {
    write(
        &work.join("greet.c"),
        "#include <stdio.h>\nvoid greet(void){puts(\"hello from libgreet\");}\n",
    );
    write(
        &work.join("main.c"),
        "void greet(void);\nint main(void){greet();return 0;}\n",
    );
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o", "libgreet.so", "greet.c"])
            .current_dir(work),
    );
    run_ok(
        Command::new("cc")
            .args(["-o", "greet", "main.c", "-L.", "-lgreet"])
            .current_dir(work),
    );
    (
        std::fs::read(work.join("libgreet.so")).unwrap(),
        std::fs::read(work.join("greet")).unwrap(),
    )
}

/// The test repository: libgreet (a shared library), greet (needs it), withpost (a
/// postinst that writes into the node's var from inside the sandbox), badpost (a failing
/// postinst), postlocal (a postinst that writes a sealed file, in the node's local/), clash (a file greet also has) and bulk (several files, for kill tests).
fn repo(w: &World) -> PathBuf {
    let repo = w.path("repo");
    let work = w.path("build");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let (lib, bin) = compile_greeter(&work);
    let pkgs = [
        Pkg::new("libgreet", "1.0").depends("libc6").file("usr/lib/libgreet.so", lib, 0o644),
        Pkg::new("greet", "1.0")
            .depends("libgreet (>= 1.0)")
            .file("usr/bin/greet", bin, 0o755)
            .file("usr/share/doc/greet/README", "greet\n", 0o644),
        Pkg::new("withpost", "1.0")
            .file("usr/share/withpost/data", "d\n", 0o644)
            .postinst("#!/bin/sh\nset -e\necho \"$DPKG_MAINTSCRIPT_NAME $1\" > /nodes/app/var/postinst-ran\n"),
        Pkg::new("badpost", "1.0").file("usr/bin/badpost", "#!/bin/sh\n", 0o755).postinst("#!/bin/sh\nexit 3\n"),
        Pkg::new("postlocal", "1.0")
            .file("usr/share/postlocal/data", "d\n", 0o644)
            .postinst("#!/bin/sh\nset -e\necho configured > /nodes/app/local/configured\n"),
        Pkg::new("clash", "1.0").file("usr/bin/greet", "#!/bin/sh\necho impostor\n", 0o755),
        Pkg::new("bulk", "1.0")
            .conffile("etc/bulk.conf", "one\n")
            .conffile("etc/bulk-other.conf", "other\n")
            .file("usr/share/bulk/a", "a", 0o644)
            .file("usr/share/bulk/b", "b", 0o644)
            .file("usr/share/bulk/c", "c", 0o644)
            .file("usr/share/bulk/d", "d", 0o644),
    ];
    for p in &pkgs {
        build(&repo, &work, p);
    }
    index(&repo);
    repo
}

/// sys (host base system) > base > app, each with the test repository.
fn family(w: &World) -> (PathBuf, PathBuf) {
    let repo = repo(w);
    w.node("nodes/sys", "sys", "system");
    let base = w.node("nodes/sys/base", "base", "leaf");
    let app = w.node("nodes/sys/base/app", "app", "leaf");
    let line = format!("deb [trusted=yes] file:{} ./", repo.display());
    for node in [&base, &app] {
        w.cairn()
            .args(["node", "add-repo"])
            .arg(node)
            .arg(&line)
            .assert()
            .success();
    }
    (base, app)
}

fn packages(w: &World, node: &Path) -> Vec<String> {
    let out = w
        .cairn()
        .args(["node", "packages", "--json"])
        .arg(node)
        .assert()
        .success();
    let list: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn install(w: &World, node: &Path, pkgs: &[&str]) -> assert_cmd::assert::Assert {
    w.cairn()
        .args(["node", "install"])
        .arg(node)
        .args(pkgs)
        .assert()
}

#[test]
fn repos_add_list_remove() {
    let w = World::new();
    let node = w.node("nodes/n", "n", "leaf");
    w.cairn()
        .args(["node", "add-repo"])
        .arg(&node)
        .arg("deb [trusted=yes] file:/srv/a ./")
        .assert()
        .success();
    w.cairn()
        .args(["node", "add-repo"])
        .arg(&node)
        .arg("deb file:/srv/b")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("expected a URI and a suite"));
    w.cairn()
        .args(["node", "repos"])
        .arg(&node)
        .assert()
        .success()
        .stdout(predicate::str::contains("file:/srv/a"));
    w.cairn()
        .args(["node", "rm-repo"])
        .arg(&node)
        .arg("1")
        .assert()
        .success();
    w.cairn()
        .args(["node", "repos", "--json"])
        .arg(&node)
        .assert()
        .success()
        .stdout("[]\n");
}

#[test]
fn install_into_parent_then_child_resolves_against_parent() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"])
        .success()
        .stdout(predicate::str::contains("installed libgreet 1.0"));
    // libc6 comes from the host: the family exports the host's /usr.
    assert_eq!(packages(&w, &base), ["libgreet"]);
    install(&w, &app, &["greet"]).success();
    assert_eq!(
        packages(&w, &app),
        ["greet"],
        "only the missing package lands in the child"
    );
    assert!(!app.join("usr/lib/libgreet.so").exists());
    assert!(app.join("usr/bin/greet").is_file());
    // The node's database is dpkg's own format.
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", app.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Package} ${Version} ${Status}\n"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "greet 1.0 install ok installed\n"
    );
    let out = Command::new("dpkg")
        .arg(format!("--root={}", app.display()))
        .arg(format!("--admindir={}", app.join("var/lib/dpkg").display()))
        .arg("-V")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The program runs in the leaf's sandbox with the library from the parent node.
    w.cairn()
        .args(["run", "--node"])
        .arg(&app)
        .args(["--", "greet"])
        .assert()
        .success()
        .stdout("hello from libgreet\n");
}

#[test]
fn host_packages_count_as_installed_when_the_family_exports_the_host() {
    let w = World::new();
    let (_base, app) = family(&w);
    // dpkg is on every Debian host and in no test repository.
    install(&w, &app, &["dpkg"])
        .success()
        .stdout(predicate::str::contains("dpkg: nothing to install"));
    assert!(packages(&w, &app).is_empty());
}

#[test]
fn ancestor_duplicate_is_refused_unless_forced() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"]).success();
    install(&w, &app, &["libgreet"])
        .code(1)
        .stderr(predicate::str::contains(
            "libgreet is already installed in ancestor node",
        ))
        .stderr(predicate::str::contains("--force"));
    assert!(packages(&w, &app).is_empty());
    w.cairn()
        .args(["node", "install", "--force"])
        .arg(&app)
        .arg("libgreet")
        .assert()
        .success();
    assert_eq!(packages(&w, &app), ["libgreet"]);
    assert!(app.join("usr/lib/libgreet.so").is_file());
    install(&w, &app, &["libgreet"])
        .success()
        .stdout(predicate::str::contains("already installed"));
}

#[test]
fn removal_blocked_by_dependent_in_descendant() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"]).success();
    install(&w, &app, &["greet"]).success();
    w.cairn()
        .args(["node", "remove"])
        .arg(&base)
        .arg("libgreet")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot remove libgreet: needed by greet (in",
        ));
    assert!(base.join("usr/lib/libgreet.so").is_file());
    w.cairn()
        .args(["node", "remove"])
        .arg(&app)
        .arg("greet")
        .assert()
        .success();
    assert!(!app.join("usr/bin/greet").exists());
    assert!(
        !app.join("usr/share/doc/greet").exists(),
        "emptied package directories are pruned"
    );
    assert!(
        app.join("usr/bin").is_dir(),
        "the node's own directories stay"
    );
    w.cairn()
        .args(["node", "remove"])
        .arg(&base)
        .arg("libgreet")
        .assert()
        .success();
    assert!(packages(&w, &base).is_empty());
}

#[test]
fn verify_reports_modified_missing_and_unowned() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"]).success();
    install(&w, &app, &["greet"]).success();
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success()
        .stdout("");
    std::fs::write(app.join("usr/bin/greet"), "tampered").unwrap();
    std::fs::remove_file(app.join("usr/share/doc/greet/README")).unwrap();
    std::fs::write(app.join("usr/bin/stray"), "x").unwrap();
    std::fs::write(app.join("var/runtime-data"), "ok").unwrap();
    let out = w
        .cairn()
        .args(["node", "verify", "--json"])
        .arg(&app)
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["modified"], serde_json::json!(["/usr/bin/greet"]));
    assert_eq!(
        report["missing"],
        serde_json::json!(["/usr/share/doc/greet/README"])
    );
    assert_eq!(report["unowned"], serde_json::json!(["/usr/bin/stray"]));
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("modified  /usr/bin/greet"));
}

#[test]
fn file_conflict_is_refused_and_nothing_changes() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"]).success();
    install(&w, &app, &["greet"]).success();
    let before = std::fs::read(app.join("usr/bin/greet")).unwrap();
    install(&w, &app, &["clash"])
        .code(1)
        .stderr(predicate::str::contains(
            "file conflict: /usr/bin/greet of clash is already owned by greet",
        ));
    assert_eq!(std::fs::read(app.join("usr/bin/greet")).unwrap(), before);
    assert_eq!(packages(&w, &app), ["greet"]);
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success();
}

#[test]
fn postinst_runs_inside_the_sandbox() {
    let w = World::new();
    let (_base, app) = family(&w);
    install(&w, &app, &["withpost"]).success();
    // /nodes/app/var exists only inside the sandbox: the script did not run on the host.
    assert_eq!(
        std::fs::read_to_string(app.join("var/postinst-ran")).unwrap(),
        "postinst configure\n"
    );
    assert!(!Path::new("/nodes/app").exists());
}

#[test]
fn no_scripts_skips_maintainer_scripts() {
    let w = World::new();
    let (_base, app) = family(&w);
    w.cairn()
        .args(["node", "install", "--no-scripts"])
        .arg(&app)
        .arg("withpost")
        .assert()
        .success();
    assert!(!app.join("var/postinst-ran").exists());
    assert_eq!(packages(&w, &app), ["withpost"]);
}

#[test]
fn failing_postinst_rolls_the_node_back() {
    let w = World::new();
    let (_base, app) = family(&w);
    install(&w, &app, &["bulk"]).success();
    let status_before = std::fs::read(app.join("var/lib/dpkg/status")).unwrap();
    install(&w, &app, &["badpost"])
        .code(1)
        .stderr(predicate::str::contains("badpost: postinst failed"))
        .stderr(predicate::str::contains("rolled back"));
    assert!(!app.join("usr/bin/badpost").exists());
    assert_eq!(
        std::fs::read(app.join("var/lib/dpkg/status")).unwrap(),
        status_before
    );
    assert!(!app.join("var/lib/dpkg/info/badpost.list").exists());
    assert_eq!(packages(&w, &app), ["bulk"]);
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success();
    w.cairn()
        .args(["node", "install", "--no-scripts"])
        .arg(&app)
        .arg("badpost")
        .assert()
        .success();
}

#[test]
fn search_and_packages_listing() {
    let w = World::new();
    let (base, app) = family(&w);
    install(&w, &base, &["libgreet"]).success();
    let out = w
        .cairn()
        .args(["node", "search", "--json"])
        .arg(&app)
        .arg("greet")
        .assert()
        .success();
    let hits: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let names: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greet", "libgreet"]);
    assert_eq!(
        hits[1]["installed_in"].as_str().unwrap(),
        base.to_str().unwrap()
    );
    assert_eq!(hits[0]["candidate"], "1.0");
    w.cairn()
        .args(["node", "packages", "--all"])
        .arg(&app)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("libgreet")
                .and(predicate::str::contains(base.to_str().unwrap())),
        );
}

#[test]
fn upgrade_replaces_files_and_removes_dropped_ones() {
    let w = World::new();
    let (_base, app) = family(&w);
    install(&w, &app, &["bulk"]).success();
    let repo = w.path("repo");
    build(
        &repo,
        &w.path("build"),
        &Pkg::new("bulk", "2.0")
            .conffile("etc/bulk.conf", "two\n")
            .conffile("etc/bulk-other.conf", "other2\n")
            .file("usr/share/bulk/a", "a2", 0o644),
    );
    index(&repo);
    std::fs::write(app.join("etc/bulk.conf"), "local edit\n").unwrap();
    w.cairn()
        .args(["node", "upgrade"])
        .arg(&app)
        .assert()
        .success()
        .stdout(predicate::str::contains("upgraded bulk 1.0 -> 2.0"));
    assert_eq!(
        std::fs::read_to_string(app.join("usr/share/bulk/a")).unwrap(),
        "a2"
    );
    assert!(!app.join("usr/share/bulk/b").exists());
    // A conffile edited locally stays; the new one lands beside it. Unedited ones follow.
    let read = |rel: &str| std::fs::read_to_string(app.join(rel)).unwrap();
    assert_eq!(read("etc/bulk.conf"), "local edit\n");
    assert_eq!(read("etc/bulk.conf.dpkg-dist"), "two\n");
    assert_eq!(read("etc/bulk-other.conf"), "other2\n");
    let out = w
        .cairn()
        .args(["node", "verify", "--json"])
        .arg(&app)
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["modified"], serde_json::json!(["/etc/bulk.conf"]));
    assert_eq!(report["missing"], serde_json::json!([]));
    assert_eq!(
        report["unowned"],
        serde_json::json!(["/etc/bulk.conf.dpkg-dist"])
    );
    w.cairn()
        .args(["node", "upgrade"])
        .arg(&app)
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));
}

// ---- hostile archives -------------------------------------------------------------------

/// One ustar entry (type b'0' file, b'2' symlink, b'5' directory).
fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, body: &[u8], link: &str) {
    let mut h = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, len: usize, value: &[u8]| {
        h[at..at + value.len().min(len)].copy_from_slice(&value[..value.len().min(len)]);
    };
    field(&mut h, 0, 100, name.as_bytes());
    field(&mut h, 100, 8, b"0000755\0");
    field(&mut h, 108, 8, b"0000000\0");
    field(&mut h, 116, 8, b"0000000\0");
    field(&mut h, 124, 12, format!("{:011o}\0", body.len()).as_bytes());
    field(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    field(&mut h, 157, 100, link.as_bytes());
    field(&mut h, 257, 8, b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    field(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A .deb (ar archive) with the given data tar entries.
fn hostile_deb(path: &Path, name: &str, entries: &[(&str, u8, &str)]) {
    let mut control = Vec::new();
    let text = format!(
        "Package: {name}\nVersion: 1.0\nArchitecture: {}\nMaintainer: t <t@e>\nDescription: evil\n",
        arch()
    );
    tar_entry(&mut control, "./control", b'0', text.as_bytes(), "");
    control.extend_from_slice(&[0u8; 1024]);
    let mut data = Vec::new();
    for (entry, kind, link) in entries {
        let body: &[u8] = if *kind == b'0' { b"pwned\n" } else { b"" };
        tar_entry(&mut data, entry, *kind, body, link);
    }
    data.extend_from_slice(&[0u8; 1024]);
    let mut ar = b"!<arch>\n".to_vec();
    for (member, body) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control),
        ("data.tar", data),
    ] {
        ar.extend_from_slice(
            format!(
                "{member:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                100644,
                body.len()
            )
            .as_bytes(),
        );
        ar.extend_from_slice(&body);
        if body.len() % 2 == 1 {
            ar.push(b'\n');
        }
    }
    std::fs::write(path, ar).unwrap();
}

#[test]
fn hostile_debs_cannot_escape_the_node() {
    let w = World::new();
    let node = w.node("nodes/n", "n", "leaf");
    let repo = w.path("evil-repo");
    std::fs::create_dir_all(&repo).unwrap();
    let outside = w.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let depth = node.components().count() + 2;
    let escape = format!(
        "./{}{}",
        "../".repeat(depth),
        outside
            .join("escaped")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    hostile_deb(
        &repo.join(format!("dotdot_1.0_{}.deb", arch())),
        "dotdot",
        &[("./usr/", b'5', ""), (&escape, b'0', "")],
    );
    let link_target = outside.display().to_string();
    hostile_deb(
        &repo.join(format!("symlinked_1.0_{}.deb", arch())),
        "symlinked",
        &[
            ("./usr/", b'5', ""),
            ("./usr/evil", b'2', &link_target),
            ("./usr/evil/pwned", b'0', ""),
        ],
    );
    index(&repo);
    w.cairn()
        .args(["node", "add-repo"])
        .arg(&node)
        .arg(format!("deb [trusted=yes] file:{} ./", repo.display()))
        .assert()
        .success();
    install(&w, &node, &["dotdot"])
        .code(1)
        .stderr(predicate::str::contains("unsafe entry").and(predicate::str::contains("\"..\"")));
    install(&w, &node, &["symlinked"])
        .code(1)
        .stderr(predicate::str::contains("goes through a symlink"));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside the node"
    );
    assert!(!node.join("usr/evil").exists());
    assert!(packages(&w, &node).is_empty());
}

// ---- locking and crashes ------------------------------------------------------------------

/// Starts `cairn node install` stalled after `after` file changes; returns once it stalls.
fn stalled_install(
    w: &World,
    node: &Path,
    pkg: &str,
    after: usize,
    secs: u64,
) -> std::process::Child {
    let mut child = w
        .cairn_std()
        .args(["node", "install", "--no-scripts"])
        .arg(node)
        .arg(pkg)
        .env("CAIRN_PKG_TEST_STALL_AFTER_FILES", after.to_string())
        .env("CAIRN_PKG_TEST_STALL_SECS", secs.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("install ended before stalling")
            .unwrap();
        if line.contains("stalled for tests") {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn concurrent_installs_into_one_node_are_serialized() {
    let w = World::new();
    let (_base, app) = family(&w);
    let first = stalled_install(&w, &app, "bulk", 1, 3);
    let mut first = first;
    let second = w
        .cairn()
        .args(["node", "install", "--no-scripts"])
        .arg(&app)
        .arg("withpost")
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .stderr(predicate::str::contains("waiting for the package lock"));
    drop(second);
    assert!(first.wait().unwrap().success());
    let mut names = packages(&w, &app);
    names.sort();
    assert_eq!(names, ["bulk", "withpost"]);
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success();
}

#[test]
fn kill_9_during_install_is_rolled_back_by_the_next_command() {
    let w = World::new();
    let (_base, app) = family(&w);
    let mut child = stalled_install(&w, &app, "bulk", 3, 120);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        app.join("usr/share/bulk/a").exists(),
        "the install was cut in the middle"
    );
    w.cairn()
        .args(["node", "packages"])
        .arg(&app)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("interrupted package transaction"));
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "rolled back an interrupted package transaction",
        ));
    assert!(!app.join("usr/share/bulk").exists());
    assert!(!app.join("etc/bulk.conf").exists());
    assert!(packages(&w, &app).is_empty());
    install(&w, &app, &["bulk"]).success();
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success();
}

// ---- keys and seals -----------------------------------------------------------------------

#[test]
fn keys_create_list_export() {
    let w = World::new();
    w.cairn()
        .args(["key", "create", "fleet"])
        .assert()
        .success();
    w.cairn()
        .args(["key", "create", "fleet"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    let key = w.config_dir().join("keys/fleet.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    w.cairn()
        .args(["key", "ls"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fleet"));
    w.cairn()
        .args(["key", "export", "fleet"])
        .assert()
        .success()
        .stdout(predicate::str::is_match("^ed25519:[A-Za-z0-9+/]{43}=\n$").unwrap());
}

#[test]
fn seal_written_and_stale_seal_reported() {
    let w = World::new();
    let (_base, app) = family(&w);
    install(&w, &app, &["bulk"]).success();
    w.cairn().args(["key", "create", "k"]).assert().success();
    w.cairn()
        .args(["node", "seal", "--key", "k"])
        .arg(&app)
        .assert()
        .success()
        .stdout(predicate::str::contains("sealed"));
    assert!(app.join("etc/cairn/seal.json").is_file());
    w.cairn()
        .args(["node", "seal", "--key", "nokey"])
        .arg(&app)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no key nokey"));
    w.cairn()
        .args(["node", "install", "--no-scripts"])
        .arg(&app)
        .arg("withpost")
        .assert()
        .success()
        .stdout(predicate::str::contains("is sealed and has changed"));
}

/// `verify: required` makes `cairn run` check the seals before launching anything.
#[test]
fn sealed_node_with_verify_required_refuses_launch_when_altered() {
    let w = World::new();
    let (_base, app) = family(&w);
    install(&w, &app, &["bulk"]).success();
    let yaml = app.join("etc/cairn/node.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap().replacen(
        "config:\n",
        "config:\n  verify: required\n",
        1,
    );
    std::fs::write(&yaml, text).unwrap();
    w.cairn().args(["key", "create", "k"]).assert().success();
    w.cairn()
        .args(["node", "seal", "--key", "k"])
        .arg(&app)
        .assert()
        .success();
    w.cairn()
        .args(["run", "--node"])
        .arg(&app)
        .args(["--", "true"])
        .assert()
        .success();
    std::fs::write(app.join("usr/share/bulk/c"), "altered").unwrap();
    w.cairn()
        .args(["run", "--node"])
        .arg(&app)
        .args(["--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/usr/share/bulk/c"));
    // Removing the seal is no way around it.
    std::fs::remove_file(app.join("etc/cairn/seal.json")).unwrap();
    w.cairn()
        .args(["run", "--node"])
        .arg(&app)
        .args(["--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has no seal"));
}

// ---- signed repositories --------------------------------------------------------------------

/// Signs `repo`'s Release into InRelease with a fresh key; returns the public keyring.
fn sign_repo(w: &World, repo: &Path) -> PathBuf {
    let home = w.path("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", &home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args);
        cmd
    };
    run_ok(&mut gpg(&[
        "--quick-gen-key",
        "Cairn Test <test@example.org>",
        "ed25519",
        "sign",
        "never",
    ]));
    let keyring = w.path("repo-key.gpg");
    run_ok(&mut gpg(&[
        "--output",
        keyring.to_str().unwrap(),
        "--export",
    ]));
    let inrelease = repo.join("InRelease");
    run_ok(&mut gpg(&[
        "--yes",
        "--output",
        inrelease.to_str().unwrap(),
        "--clearsign",
        repo.join("Release").to_str().unwrap(),
    ]));
    keyring
}

#[test]
fn signed_repository_is_checked_by_apt() {
    let w = World::new();
    let repo = repo(&w);
    let keyring = sign_repo(&w, &repo);
    let node = w.node("nodes/n", "n", "leaf");
    let add = |line: String| {
        w.cairn()
            .args(["node", "add-repo"])
            .arg(&node)
            .arg(line)
            .assert()
            .success()
    };
    // Unsigned trust is not assumed without trusted=yes: a key apt does not have fails.
    let other = w.path("other-key.gpg");
    std::fs::write(&other, b"").unwrap();
    add(format!(
        "deb [signed-by={}] file:{} ./",
        other.display(),
        repo.display()
    ));
    install(&w, &node, &["bulk"])
        .code(1)
        .stderr(predicate::str::contains("apt-get -q update failed"));
    w.cairn()
        .args(["node", "rm-repo"])
        .arg(&node)
        .arg("1")
        .assert()
        .success();
    add(format!(
        "deb [signed-by={}] file:{} ./",
        keyring.display(),
        repo.display()
    ));
    install(&w, &node, &["bulk"]).success();
    assert_eq!(packages(&w, &node), ["bulk"]);
}

// ---- nested nodes and sealed installs -------------------------------------------------------

/// sys > plat > app nested on disk, each with the test repository and a package of its own
/// (libgreet in sys, bulk in plat, greet in app).
fn nested_family(w: &World) -> (PathBuf, PathBuf, PathBuf) {
    let repo = repo(w);
    let sys = w.node("nodes/sys", "sys", "system");
    let plat = w.node("nodes/sys/plat", "plat", "leaf");
    let app = w.node("nodes/sys/plat/app", "app", "leaf");
    let line = format!("deb [trusted=yes] file:{} ./", repo.display());
    for node in [&sys, &plat, &app] {
        w.cairn()
            .args(["node", "add-repo"])
            .arg(node)
            .arg(&line)
            .assert()
            .success();
    }
    install(w, &sys, &["libgreet"]).success();
    install(w, &plat, &["bulk"]).success();
    install(w, &app, &["greet"]).success();
    (sys, plat, app)
}

/// Adds `verify: required` to a node made from the leaf template.
fn require_verify(node: &Path) {
    let yaml = node.join("etc/cairn/node.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap().replacen(
        "config:\n",
        "config:\n  verify: required\n",
        1,
    );
    std::fs::write(&yaml, text).unwrap();
}

fn run_true(w: &World, node: &Path) -> assert_cmd::assert::Assert {
    w.cairn()
        .args(["run", "--node"])
        .arg(node)
        .args(["--", "true"])
        .assert()
}

#[test]
fn verify_and_seal_of_a_parent_stop_at_child_nodes() {
    let w = World::new();
    let (sys, plat, app) = nested_family(&w);
    for node in [&sys, &plat, &app] {
        w.cairn()
            .args(["node", "verify"])
            .arg(node)
            .assert()
            .success()
            .stdout("");
    }
    // A real stray file of the parent is still reported, and only it.
    std::fs::write(plat.join("usr/bin/stray"), "x").unwrap();
    let out = w
        .cairn()
        .args(["node", "verify", "--json"])
        .arg(&plat)
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["unowned"], serde_json::json!(["/usr/bin/stray"]));
    std::fs::remove_file(plat.join("usr/bin/stray")).unwrap();

    // The parent's seal covers its own files only: the child changing does not break it.
    require_verify(&plat);
    w.cairn().args(["key", "create", "k"]).assert().success();
    w.cairn()
        .args(["node", "seal", "--key", "k"])
        .arg(&plat)
        .assert()
        .success();
    run_true(&w, &plat).success();
    std::fs::write(app.join("usr/share/doc/greet/README"), "changed\n").unwrap();
    std::fs::write(app.join("usr/bin/new-in-app"), "x").unwrap();
    run_true(&w, &plat).success();
    // A new directory made to look like a node does not hide from the parent's seal.
    write(
        &plat.join("usr/lib/evil/etc/cairn/node.yaml"),
        "node: {alias: fake}\n",
    );
    write(&plat.join("usr/lib/evil/payload"), "x");
    run_true(&w, &plat)
        .code(1)
        .stderr(predicate::str::contains("/usr/lib/evil was added"));
}

/// Every file, symlink and directory below `root` (outside `skip`, node-relative prefixes)
/// with its mode and content: two equal snapshots mean a byte-identical tree.
fn snapshot(root: &Path, skip: &[&str]) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<(String, u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, mode, target.into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                out.push((rel, mode, Vec::new()));
                walk(root, &path, skip, out);
            } else {
                out.push((rel, mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, skip, &mut out);
    out.sort();
    out
}

/// base > app with bulk in app, `verify: required` in app, app sealed with key k.
fn sealed_required(w: &World) -> PathBuf {
    let (_base, app) = family(w);
    install(w, &app, &["bulk"]).success();
    require_verify(&app);
    w.cairn().args(["key", "create", "k"]).assert().success();
    w.cairn()
        .args(["node", "seal", "--key", "k"])
        .arg(&app)
        .assert()
        .success();
    run_true(w, &app).success();
    app
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn changing_packages_of_a_sealed_required_node_is_refused_up_front() {
    let w = World::new();
    let app = sealed_required(&w);
    let before = snapshot(&app, &[]);
    let refused = install(&w, &app, &["withpost"]).code(1);
    assert_eq!(
        stderr_of(&refused),
        format!(
            "cairn: cannot install into {}: the node is sealed (verify: required); add --reseal KEY to install and seal it again\n",
            app.display()
        )
    );
    assert_eq!(snapshot(&app, &[]), before, "a refusal changes nothing");
    let refused = w
        .cairn()
        .args(["node", "remove"])
        .arg(&app)
        .arg("bulk")
        .assert()
        .code(1);
    assert_eq!(
        stderr_of(&refused),
        format!(
            "cairn: cannot remove from {}: the node is sealed (verify: required); add --reseal KEY to remove and seal it again\n",
            app.display()
        )
    );
    assert_eq!(snapshot(&app, &[]), before);
    // A key that is not in the keyring: one line, nothing changed.
    let wrong = w
        .cairn()
        .args(["node", "install", "--reseal", "nokey"])
        .arg(&app)
        .arg("withpost")
        .assert()
        .code(1);
    let line = stderr_of(&wrong);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("no key nokey"), "{line}");
    assert_eq!(snapshot(&app, &[]), before);
    run_true(&w, &app).success();
    // A reseal never signs a change made behind Cairn's back.
    std::fs::write(app.join("usr/share/bulk/c"), "altered").unwrap();
    let before = snapshot(&app, &[]);
    let tampered = w
        .cairn()
        .args(["node", "install", "--reseal", "k"])
        .arg(&app)
        .arg("withpost")
        .assert()
        .code(1);
    assert_eq!(
        stderr_of(&tampered),
        format!(
            "cairn: cannot install into {}: refusing to reseal: the node no longer matches its seal (/usr/share/bulk/c was modified); restore it, or seal it as it is with `cairn node seal` first\n",
            app.display()
        )
    );
    assert_eq!(snapshot(&app, &[]), before);
}

#[test]
fn reseal_installs_and_removes_and_seals_again_in_one_transaction() {
    let w = World::new();
    let app = sealed_required(&w);
    let seal = app.join("etc/cairn/seal.json");
    let old_seal = std::fs::read(&seal).unwrap();
    // withpost's postinst runs in the node's sandbox, which checks the seal first.
    w.cairn()
        .args(["node", "install", "--reseal", "k"])
        .arg(&app)
        .arg("withpost")
        .assert()
        .success()
        .stdout(predicate::str::contains("installed withpost 1.0"))
        .stdout(predicate::str::contains("is sealed and has changed").not());
    assert_eq!(
        std::fs::read_to_string(app.join("var/postinst-ran")).unwrap(),
        "postinst configure\n"
    );
    assert_ne!(std::fs::read(&seal).unwrap(), old_seal);
    w.cairn()
        .args(["node", "verify"])
        .arg(&app)
        .assert()
        .success()
        .stdout("");
    run_true(&w, &app).success();

    // A failing maintainer script rolls back the files and the seal.
    let before = snapshot(&app, &["var/lib/cairn"]);
    let seal_before = std::fs::read(&seal).unwrap();
    w.cairn()
        .args(["node", "install", "--reseal", "k"])
        .arg(&app)
        .arg("badpost")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("badpost: postinst failed"));
    assert_eq!(snapshot(&app, &["var/lib/cairn"]), before);
    assert_eq!(std::fs::read(&seal).unwrap(), seal_before);
    run_true(&w, &app).success();

    // What the postinst itself writes is sealed too: the seal is written again after it.
    w.cairn()
        .args(["node", "install", "--reseal", "k"])
        .arg(&app)
        .arg("postlocal")
        .assert()
        .success();
    assert!(app.join("local/configured").is_file());
    run_true(&w, &app).success();

    w.cairn()
        .args(["node", "remove", "--reseal", "k"])
        .arg(&app)
        .args(["withpost", "postlocal"])
        .assert()
        .success();
    assert!(!app.join("usr/share/withpost/data").exists());
    assert_eq!(packages(&w, &app), ["bulk"]);
    run_true(&w, &app).success();
}
