//! Layer tar parsing: the bounded raw-entry walker and the hostile-entry rules must never
//! panic, and every accepted entry must stay inside the layer.
#![no_main]

use cairn_image::hostile::{Action, EntryMeta, check_entry};
use cairn_image::tarstream::walk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = walk(data, |member, content| {
        let meta = EntryMeta {
            path: member.path.clone(),
            link: member.link.clone(),
            kind: member.kind,
            xattr_names: member.xattrs.iter().map(|(k, _)| k.clone()).collect(),
        };
        for rootless in [false, true] {
            if let Ok(Action::Create { path, .. } | Action::Whiteout { path }) =
                check_entry(&meta, rootless)
            {
                assert!(path.is_relative());
                assert!(
                    path.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
                );
            }
        }
        std::io::copy(content, &mut std::io::sink()).map(|_| ())
    });
});
