//! Manifest, index, config and PAX-record parsing must never panic on any input.
#![no_main]

use cairn_image::manifest::{Document, parse_config, parse_document, select_platform};
use cairn_image::tarstream::parse_pax;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Document::Index(index)) = parse_document(data, "fuzz") {
        let _ = select_platform(&index, "linux", "amd64");
    }
    let _ = parse_config(data, "fuzz");
    let _ = parse_pax(data);
});
