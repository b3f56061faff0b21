//! The podman engine (not available yet: configs naming it are refused).

use std::ffi::OsString;

use super::{LaunchContext, invalid};
use crate::config::AppConfig;
use crate::error::Error;
use crate::registry::Apps;

/// Refuses every config: the podman engine is not built yet.
pub fn validate(name: &str, _config: &AppConfig) -> Result<(), Error> {
    Err(invalid(
        name,
        "engine podman is not available yet (only native)",
    ))
}

/// Never reached: [`validate`] refuses every config first.
pub fn launch(
    _apps: &Apps,
    name: &str,
    config: &AppConfig,
    _args: Vec<OsString>,
    _ctx: &LaunchContext,
) -> Result<i32, Error> {
    validate(name, config).map(|()| 1)
}
