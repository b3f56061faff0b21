//! The error line of failing commands, exactly: `cairn: ` then each layer of the error once
//! (a library error's message includes its cause; nothing repeats it, nor the subject the
//! layer above names), and the exit code.
//! No registry, daemon or sandbox launch is needed: every command fails before that.

#![allow(clippy::unwrap_used)]

mod support;

use support::World;

/// (arguments, exit code, the one stderr line). `{root}` is the world's CAIRN_ROOT.
const CASES: &[(&[&str], i32, &str)] = &[
    // run
    (
        &["run", "--node", "/nonexistent", "--", "/bin/true"],
        1,
        "/nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["run", "--node", "{root}/plain", "--", "/bin/true"],
        1,
        "{root}/plain: not a node (no etc/cairn/node.yaml)",
    ),
    (
        &["run", "--node", "{root}/nodes/sys/bad", "--", "/bin/true"],
        1,
        "{root}/nodes/sys/bad/etc/cairn/node.yaml:4: unknown key \"bogus\" \
         (expected one of: node, config, exports, environ)",
    ),
    // node
    (
        &["node", "tree", "/nonexistent"],
        1,
        "cannot load the family of /nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["node", "rm", "/nonexistent"],
        1,
        "/nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["node", "verify", "/nonexistent"],
        1,
        "/nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["node", "create", "{root}/nodes/sys", "--alias", "again"],
        1,
        "{root}/nodes/sys: already exists",
    ),
    // packages
    (
        &["node", "add-repo", "{root}/nodes/sys/app", "garbage"],
        1,
        "bad repository line \"garbage\": must start with \"deb\"",
    ),
    (
        &["node", "install", "{root}/nodes/sys/app", "hello"],
        1,
        "cannot install into {root}/nodes/sys/app: no repositories (add one with \
         `cairn node add-repo`)",
    ),
    (
        &["node", "repos", "/nonexistent"],
        1,
        "/nonexistent: not a node (no etc/cairn/node.yaml)",
    ),
    // image
    (
        &["image", "import", "/nonexistent"],
        1,
        "import /nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["image", "pull", "Bad::Ref"],
        1,
        "pull Bad::Ref: invalid image reference \"Bad::Ref\": invalid reference format",
    ),
    (
        &["image", "rm", "local/none:1"],
        1,
        "image \"local/none:1\" not found in the store",
    ),
    // app
    (
        &["app", "rm", "nosuch"],
        1,
        "no app named nosuch (see `cairn app ls`)",
    ),
    (
        &[
            "app",
            "register",
            "x",
            "--image",
            "local/none:1",
            "--target",
            "/bin/sh",
        ],
        1,
        "image \"local/none:1\" not found in the store",
    ),
    (
        &[
            "app",
            "register",
            "x",
            "--image",
            "local/none:1",
            "--target",
            "bin/sh",
        ],
        1,
        "app x: target bin/sh is not absolute",
    ),
    (
        &[
            "app",
            "register",
            "Bad",
            "--image",
            "local/none:1",
            "--target",
            "/bin/sh",
        ],
        1,
        "invalid app name \"Bad\": expected lowercase letters, digits and dashes, not starting with a dash, at most 64 bytes",
    ),
    // conf
    (
        &["conf", "get", "acme/net/view", "a"],
        1,
        "cannot reach the daemon at {root}/run/cairn/cairn.sock: No such file or directory \
         (os error 2) (start it with `cairn daemon`)",
    ),
    (
        &["conf", "get", "bad-view"],
        1,
        "invalid view name \"bad-view\": expected ACCOUNT/SCHEMA/VIEW",
    ),
    (
        &["conf", "schema", "add", "/nonexistent"],
        1,
        "/nonexistent: No such file or directory (os error 2)",
    ),
    // key
    (
        &["key", "export", "nosuch"],
        1,
        "no key nosuch in {root}/etc/cairn/keys (create it with `cairn key create nosuch`)",
    ),
    (
        &["key", "create", "Bad Name"],
        1,
        "invalid key name \"Bad Name\": expected lowercase letters, digits, dashes and '_', starting with a letter or digit, at most 64 bytes",
    ),
    // vm
    (
        &["vm", "rm", "nosuch"],
        1,
        "no vm named nosuch (see `cairn vm ls`)",
    ),
    (
        &[
            "vm",
            "pull",
            "v",
            "--kernel",
            "/nonexistent",
            "--rootfs",
            "/nonexistent",
        ],
        1,
        "/nonexistent: No such file or directory (os error 2)",
    ),
    (
        &["vm", "run", "nosuch", "--", "/bin/true"],
        1,
        "no vm named nosuch (see `cairn vm ls`)",
    ),
];

#[test]
fn failing_commands_print_one_exact_line() {
    let world = World::new();
    let root = world.root().to_str().unwrap().to_string();
    std::fs::create_dir_all(world.path("plain")).unwrap();
    world.family();
    let bad = world.node("nodes/sys/bad", "bad", "leaf");
    support::rewrite_node(&bad, "bogus: 1\n");
    let mut failures = Vec::new();
    for (args, code, line) in CASES {
        let args: Vec<String> = args.iter().map(|a| a.replace("{root}", &root)).collect();
        let want = format!("cairn: {}\n", line.replace("{root}", &root));
        let out = world.cairn().args(&args).output().unwrap();
        let got = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(*code) || got != want {
            failures.push(format!(
                "cairn {}\n  want ({code}) {want}  got  ({:?}) {got}",
                args.join(" "),
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
