//! What the daemon and its clients read from a socket peer: request bodies, error bodies and
//! watch lines. Parsing never panics; what parses writes back to what parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<cairn_api::wire::SessionRequest>(data);
    let _ = serde_json::from_slice::<cairn_api::wire::RollbackRequest>(data);
    let _ = serde_json::from_slice::<cairn_api::wire::ErrorBody>(data);
    if let Ok(line) = std::str::from_utf8(data)
        && let Ok(event) = cairn_api::wire::WatchEvent::from_line(line)
    {
        let again = String::from_utf8_lossy(&event.to_line()).into_owned();
        let reread = cairn_api::wire::WatchEvent::from_line(again.trim_end());
        assert!(reread.is_ok(), "{again:?}");
    }
});
