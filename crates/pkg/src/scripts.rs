//! Maintainer scripts: run inside the node's sandbox (a `cairn run` re-exec of a
//! [`cairn_model::Request`]), never on the host.
//!
//! The script body is passed as `sh -c BODY NAME ARGS...`, so it needs no path inside the
//! sandbox; only shell scripts (sh, dash, bash) can be run that way.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// How maintainer scripts are handled.
#[derive(Debug, Clone)]
pub enum Scripts {
    /// `--no-scripts`: never run them.
    Skip,
    /// Run them with `CAIRN run --node LEAF -- sh -c ...` (CAIRN is normally the current
    /// executable).
    InSandbox { cairn: PathBuf },
}

/// One script invocation.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub leaf: &'a Path,
    pub package: &'a str,
    pub script: &'a str,
    pub body: &'a [u8],
    pub args: &'a [&'a str],
}

/// Runs the script if scripts are enabled; a non-zero exit is `ScriptFailed`.
pub fn run(mode: &Scripts, inv: &Invocation<'_>) -> Result<()> {
    let Scripts::InSandbox { cairn } = mode else {
        return Ok(());
    };
    let (interpreter, interp_args) = interpreter(inv)?;
    let mut argv: Vec<OsString> = vec![interpreter.into()];
    argv.extend(interp_args.into_iter().map(OsString::from));
    argv.push("-c".into());
    argv.push(OsString::from_vec(inv.body.to_vec()));
    argv.push(inv.script.into());
    argv.extend(inv.args.iter().map(OsString::from));
    let request = cairn_model::Request::node(inv.leaf, argv)
        .with_env("DPKG_MAINTSCRIPT_NAME", inv.script)
        .with_env("DPKG_MAINTSCRIPT_PACKAGE", inv.package);
    let mut cmd = request.command(cairn);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::io::stderr());
    let status = cmd.status().map_err(|source| Error::Spawn {
        tool: cairn.display().to_string(),
        err: source,
    })?;
    if !status.success() {
        return Err(Error::ScriptFailed {
            package: inv.package.to_string(),
            script: inv.script.to_string(),
            status: status.to_string(),
        });
    }
    Ok(())
}

/// The shell named by the script's `#!` line (`/bin/sh` without one) and its option.
fn interpreter(inv: &Invocation<'_>) -> Result<(String, Vec<String>)> {
    let first = inv.body.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(shebang) = first.strip_prefix(b"#!") else {
        return Ok(("/bin/sh".into(), Vec::new()));
    };
    let text = String::from_utf8_lossy(shebang);
    let mut words = text.split_whitespace();
    let program = words.next().unwrap_or("/bin/sh").to_string();
    let args: Vec<String> = words.map(str::to_string).collect();
    let base = program.rsplit('/').next().unwrap_or("");
    if !matches!(base, "sh" | "dash" | "bash") || args.iter().any(|a| !a.starts_with('-')) {
        return Err(Error::UnsupportedInterpreter {
            package: inv.package.to_string(),
            script: inv.script.to_string(),
            interpreter: text.trim().to_string(),
        });
    }
    Ok((program, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(body: &[u8]) -> Invocation<'_> {
        Invocation {
            leaf: Path::new("/n"),
            package: "p",
            script: "postinst",
            body,
            args: &[],
        }
    }

    #[test]
    fn picks_shell_from_shebang() {
        assert_eq!(
            interpreter(&inv(b"echo hi\n")).unwrap(),
            ("/bin/sh".to_string(), vec![])
        );
        assert_eq!(
            interpreter(&inv(b"#!/bin/bash -e\nset -x\n")).unwrap(),
            ("/bin/bash".to_string(), vec!["-e".to_string()])
        );
        let err = interpreter(&inv(b"#!/usr/bin/perl -w\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsupported interpreter \"/usr/bin/perl -w\""),
            "{err}"
        );
    }

    #[test]
    fn skip_runs_nothing_and_failures_are_reported() {
        assert!(run(&Scripts::Skip, &inv(b"exit 1")).is_ok());
        // /bin/false stands in for `cairn`: it fails whatever its arguments.
        let mode = Scripts::InSandbox {
            cairn: PathBuf::from("/bin/false"),
        };
        let err = run(&mode, &inv(b"exit 0")).unwrap_err();
        assert!(matches!(err, Error::ScriptFailed { .. }), "{err}");
    }
}
