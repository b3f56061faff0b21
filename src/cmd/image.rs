//! `cairn image`: pull, import, list, inspect, remove and garbage-collect OCI images in the
//! store under the state directory (see the `cairn-image` crate), and log in to registries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_image::auth::{self, Credentials};
use cairn_image::{ImageStore, Progress, PullOptions, human_bytes};
use clap::{Args, Subcommand};

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry (plain HTTP only for `[registries] insecure` entries).
    Pull(PullArgs),
    /// Import an OCI layout (directory or tar) or a docker-archive tar (`podman save`).
    Import(ImportArgs),
    /// List stored images.
    Ls(ListArgs),
    /// Show an image's record, runtime config and layer directories (JSON).
    Inspect(InspectArgs),
    /// Remove image names (by reference or manifest digest); `gc` frees their data.
    Rm(RmArgs),
    /// Delete blobs and layers no image uses, and leftovers of interrupted work.
    Gc(ListArgs),
    /// Check a username and password against a registry, then keep them (0600) for pulls.
    Login(LoginArgs),
    /// Forget the credentials `cairn image login` stored for a registry.
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry `host[:port]`.
    pub registry: String,
    /// Asked on the terminal when not given.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from standard input (never from the command line, where other
    /// users could see it); without it, it is asked on the terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. `registry.local:5000/tools/aws-cli:2`.
    pub reference: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub path: PathBuf,
    /// Name for the image (when the archive holds exactly one).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// Bars on a terminal, lines otherwise, nothing under `-q` (only errors are wanted then).
fn progress() -> Progress {
    if tracing::level_filters::LevelFilter::current() < tracing::level_filters::LevelFilter::WARN {
        Progress::Silent
    } else {
        Progress::auto()
    }
}

pub fn run(command: ImageCommand) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    match command {
        ImageCommand::Login(args) => login(&config, &args),
        ImageCommand::Logout(args) => logout(&config, &args.registry),
        other => run_store(&config, other),
    }
}

fn run_store(config: &cairn_config::Config, command: ImageCommand) -> anyhow::Result<ExitCode> {
    let store = ImageStore::from_config(config)?;
    match command {
        ImageCommand::Pull(args) => {
            let options = PullOptions::from_config(config);
            let report = store
                .pull(&args.reference, &options, &progress())
                .with_context(|| format!("pull {}", args.reference))?;
            if args.json {
                print_json(&report)?;
            } else {
                println!("{} {}", report.reference, report.manifest);
            }
        }
        ImageCommand::Import(args) => {
            let imported = store
                .import(&args.path, args.name.as_deref(), &progress())
                .with_context(|| format!("import {}", args.path.display()))?;
            if args.json {
                print_json(&imported)?;
            } else {
                for image in imported {
                    println!("{} {}", image.reference, image.manifest);
                }
            }
        }
        ImageCommand::Ls(args) => {
            let images = store.list()?;
            if args.json {
                print_json(&images)?;
            } else {
                let rows: Vec<Vec<String>> = images
                    .iter()
                    .map(|i| {
                        let id = i
                            .manifest
                            .trim_start_matches("sha256:")
                            .chars()
                            .take(12)
                            .collect();
                        vec![
                            i.reference.clone(),
                            id,
                            i.layers.to_string(),
                            human_bytes(i.size),
                            i.source.clone(),
                        ]
                    })
                    .collect();
                print_table(&["REFERENCE", "ID", "LAYERS", "SIZE", "SOURCE"], &rows);
            }
        }
        ImageCommand::Inspect(args) => print_json(&store.inspect(&args.reference)?)?,
        ImageCommand::Rm(args) => {
            for reference in &args.references {
                for name in store.remove(reference)? {
                    println!("removed {name}");
                }
            }
        }
        ImageCommand::Gc(args) => {
            let report = store.gc()?;
            if args.json {
                print_json(&report)?;
            } else {
                println!(
                    "removed {} blobs, {} layers, {} leftovers",
                    report.blobs, report.layers, report.temporary
                );
            }
        }
        ImageCommand::Login(args) => return login(config, &args),
        ImageCommand::Logout(args) => return logout(config, &args.registry),
    }
    Ok(ExitCode::SUCCESS)
}

/// Nothing is stored unless the registry accepted the credentials.
fn login(config: &cairn_config::Config, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = auth::parse_registry(&args.registry)?;
    let credentials = read_credentials(args)?;
    let options = PullOptions::from_config(config);
    // The error names the registry already.
    auth::check(&registry, &credentials, &options).context("login")?;
    let file = config.registry_auth_file();
    auth::store(&file, &registry, &credentials)?;
    println!(
        "logged in to {registry} as {} (credentials in {})",
        credentials.username,
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn logout(config: &cairn_config::Config, registry: &str) -> anyhow::Result<ExitCode> {
    let registry = auth::parse_registry(registry)?;
    let file = config.registry_auth_file();
    if !auth::remove(&file, &registry)? {
        anyhow::bail!(
            "not logged in to {registry} (no entry in {})",
            file.display()
        );
    }
    println!("logged out of {registry}");
    Ok(ExitCode::SUCCESS)
}

/// The username from the flag or the terminal, the password from standard input or the
/// terminal (not echoed).
fn read_credentials(args: &LoginArgs) -> anyhow::Result<Credentials> {
    use std::io::{IsTerminal, Read};
    let terminal = std::io::stdin().is_terminal();
    let username = match &args.username {
        Some(u) => u.clone(),
        None if terminal && !args.password_stdin => prompt("Username: ", true)?,
        None => anyhow::bail!(
            "no username: pass --username (standard input is not a terminal to ask on)"
        ),
    };
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if terminal {
        prompt("Password: ", false)?
    } else {
        anyhow::bail!("no password: pass it on standard input with --password-stdin")
    };
    if username.is_empty() || username.contains(':') {
        anyhow::bail!("invalid username {username:?}: empty or containing ':'");
    }
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(Credentials { username, password })
}

/// Asks on stderr and reads one line from the terminal, with echo off for secrets.
fn prompt(question: &str, echo: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if echo {
        None
    } else {
        let saved = tcgetattr(&stdin).context("terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("terminal settings")?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
