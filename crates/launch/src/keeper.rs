//! The keeper process of a resume or attach instance (`cairn app keep`, started by the
//! instance's first call through [`cairn_model::Request::keep`]).
//!
//! It says "ready" (or the one-line error) on its stdout, the starting call's pipe, then
//! closes it. Everything this process starts gets /dev/null as stdout instead, so no
//! long-lived process holds the call's pipe.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;

use cairn_app::Apps;
use cairn_model::Request;

use crate::error::Error;

pub(crate) fn keep(
    config: &cairn_config::Config,
    name: &str,
    id: &str,
    request: &Request,
) -> Result<i32, Error> {
    let what = format!("{name}@{id}");
    let failed = |reason: String| Error::Keeper {
        what: what.clone(),
        reason,
    };
    let report = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| failed(format!("cannot keep the report channel: {e}")))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| failed(format!("cannot open /dev/null: {e}")))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| failed(format!("cannot redirect stdout: {e}")))?;
    let report = RefCell::new(Some(std::fs::File::from(report)));
    let say = |line: &str| {
        if let Some(mut out) = report.borrow_mut().take() {
            let _ = writeln!(out, "{line}");
        }
    };
    let result = (|| -> Result<i32, Error> {
        let apps = Apps::new(config);
        let app = apps.load(name)?;
        let plug = crate::app_plug(config, name, &app)?;
        let ctx = crate::context(config, request, plug, false);
        Ok(cairn_app::engine::native::keep(
            &apps,
            name,
            id,
            request.args.clone(),
            &ctx,
            &mut || say("ready"),
        )?)
    })();
    if let Err(e) = &result {
        say(&e.to_string().replace('\n', " "));
    }
    result
}
