//! App config files (and, later, the documents a control plane receives) must never panic
//! the parser or the validator, whatever the bytes; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/fuzz/apps/x.yaml");
    match cairn_model::app::parse_file(path, text) {
        Ok(value) => {
            if let Ok(config) = serde_json::from_value::<cairn_model::AppConfig>(value)
                && let Err(e) = config.validate("x")
            {
                assert!(!e.to_string().contains('\n'));
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});
