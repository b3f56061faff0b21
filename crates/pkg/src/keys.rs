//! Keys for seals come from Cairn's one keyring (crate `cairn-keys`), shared with confdb.

pub use cairn_keys::{KeyInfo, create_key, export_key, list_keys, load_signing_key};
