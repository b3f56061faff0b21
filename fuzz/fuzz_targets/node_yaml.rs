//! The node.yaml parser and validator must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = std::path::Path::new("/fuzz/node/etc/cairn/node.yaml");
    if let Err(e) = cairn_node::check_node_yaml(file, data) {
        // Errors are one line, always.
        assert!(!e.to_string().contains('\n'));
    }
});
