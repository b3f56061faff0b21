//! The node.yaml parser and validator never panic and always answer in one line, on
//! arbitrary bytes and on YAML-shaped noise (the same property the fuzz target checks).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

fn check(bytes: &[u8]) {
    let file = std::path::Path::new("/n/etc/cairn/node.yaml");
    if let Err(e) = cairn_node::check_node_yaml(file, bytes) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.starts_with("/n/etc/cairn/node.yaml:"), "{msg}");
    }
}

const TOKENS: &[&str] = &[
    "node:\n",
    "  alias: a\n",
    "  name: b\n",
    "config:\n",
    "exports:\n",
    "environ:\n",
    "  - ",
    "{ mode: ",
    "public",
    "exec",
    "symlink",
    "tmpfs",
    ", mount: ",
    "/x",
    "$NODE_ALIAS",
    "${",
    "}",
    "$$",
    "$",
    ", path: ",
    "..",
    ", command: ",
    "\"",
    "'",
    " }\n",
    "  share: { net: ",
    "true",
    "  capabilities: { drop: [",
    "all",
    "CAP_X",
    "] }\n",
    "  umask: ",
    "0777",
    "  cgroup: ",
    "{ memory_max: 9999999999999G }",
    "&a ",
    "*a",
    "<<: ",
    "!!binary ",
    "---\n",
    "\t",
    "é",
    "\u{0}",
    "\n",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "#",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes);
    }

    #[test]
    fn yaml_shaped_noise(parts in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)) {
        check(parts.concat().as_bytes());
    }
}
