//! Fuzzes the confdb schema parser, the signed-document reader, and reads and writes through
//! every view of any schema that parses: none may panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let _ = cairn_confdb::keys::verify_document(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schema) = cairn_confdb::parse_schema(text) else {
        return;
    };
    let empty = json!({});
    let _ = schema.validate(&empty);
    let sample = json!({"a": {"b": 1, "c": ["x"]}, "b": "s", "c": true});
    let _ = schema.validate(&sample);
    let no_bindings = Default::default();
    for view in schema.views.values() {
        let _ = cairn_confdb::view::read(view, &sample, &[], &no_bindings);
        for rule in &view.rules {
            let request: Vec<String> = rule
                .request
                .0
                .iter()
                .map(|s| match s {
                    cairn_confdb::path::Segment::Key(k) => k.clone(),
                    cairn_confdb::path::Segment::Placeholder(_) => "p".to_string(),
                })
                .collect();
            let _ = cairn_confdb::view::read(view, &sample, &request, &no_bindings);
            if let Ok(ops) = cairn_confdb::view::plan_write(view, &request, Some(&Value::from(1))) {
                let mut bag = sample.clone();
                cairn_confdb::view::apply(&mut bag, ops);
                let _ = schema.validate(&bag);
            }
        }
    }
});
