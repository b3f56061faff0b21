//! `cairn node add-repo|repos|rm-repo|search|install|remove|upgrade|packages|verify|seal`:
//! per-node Debian packages (flattened into `cairn node`).
//!
//! This is glue: cairn-node finds the family, cairn-pkg does the work, and this file draws
//! progress and prints results.

use crate::output;
use anyhow::Context;
use cairn_pkg::{Event, Options, Outcome, Scripts};
use clap::Subcommand;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Add a package repository to a node ("deb [trusted=yes] file:/srv/repo ./").
    AddRepo { leaf: PathBuf, line: String },
    /// List a node's package repositories.
    Repos {
        leaf: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Remove a repository, given as its line or its number in `repos`.
    RmRepo { leaf: PathBuf, repo: String },
    /// Search the node's repositories for a word (in names and descriptions).
    Search {
        leaf: PathBuf,
        word: String,
        #[arg(long)]
        json: bool,
    },
    /// Install packages into a node; dependencies its ancestors have are not installed again.
    Install {
        leaf: PathBuf,
        #[arg(required = true)]
        packages: Vec<String>,
        /// Install even when an ancestor node already has the package.
        #[arg(long)]
        force: bool,
        /// Do not run maintainer scripts (they normally run inside the node's sandbox).
        #[arg(long)]
        no_scripts: bool,
        #[command(flatten)]
        reseal: ResealArg,
        #[arg(long)]
        json: bool,
    },
    /// Remove packages from a node (refused while other packages depend on them).
    Remove {
        leaf: PathBuf,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        no_scripts: bool,
        #[command(flatten)]
        reseal: ResealArg,
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the node's own packages to the newest versions of its repositories.
    Upgrade {
        leaf: PathBuf,
        #[arg(long)]
        no_scripts: bool,
        #[command(flatten)]
        reseal: ResealArg,
        #[arg(long)]
        json: bool,
    },
    /// List the packages installed in a node.
    Packages {
        leaf: PathBuf,
        /// Include the ancestors' packages (with the node that has each).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check the node's files against its packages' checksums (exit 1 on any difference).
    Verify {
        leaf: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Sign a manifest of the node's files with a key from `cairn key create`.
    Seal {
        leaf: PathBuf,
        #[arg(long)]
        key: String,
    },
}

/// `--reseal KEY` of the changing commands.
#[derive(Debug, clap::Args)]
pub struct ResealArg {
    /// Seal the node again with KEY (from `cairn key create`) as part of the change; needed
    /// to change a sealed node whose family says `verify: required`.
    #[arg(long, value_name = "KEY")]
    reseal: Option<String>,
}

pub fn run(command: PkgCommand) -> anyhow::Result<ExitCode> {
    match command {
        PkgCommand::AddRepo { leaf, line } => {
            cairn_pkg::add_repo(&leaf, &line)?;
            Ok(ExitCode::SUCCESS)
        }
        PkgCommand::Repos { leaf, json } => repos(&leaf, json),
        PkgCommand::RmRepo { leaf, repo } => {
            let removed = cairn_pkg::remove_repo(&leaf, &repo)?;
            println!("removed: {removed}");
            Ok(ExitCode::SUCCESS)
        }
        PkgCommand::Search { leaf, word, json } => search(&leaf, &word, json),
        PkgCommand::Install {
            leaf,
            packages,
            force,
            no_scripts,
            reseal,
            json,
        } => {
            let mut opts = options(&leaf, no_scripts, reseal)?;
            opts.force = force;
            let family = family(&leaf)?;
            let outcome = with_progress(|p| cairn_pkg::install(&family, &packages, &opts, p))
                .with_context(|| format!("cannot install into {}", leaf.display()))?;
            report(&outcome, json)
        }
        PkgCommand::Remove {
            leaf,
            packages,
            no_scripts,
            reseal,
            json,
        } => {
            let mut opts = options(&leaf, no_scripts, reseal)?;
            opts.descendants = descendants(&leaf)?;
            let family = family(&leaf)?;
            let outcome = with_progress(|p| cairn_pkg::remove(&family, &packages, &opts, p))
                .with_context(|| format!("cannot remove from {}", leaf.display()))?;
            report(&outcome, json)
        }
        PkgCommand::Upgrade {
            leaf,
            no_scripts,
            reseal,
            json,
        } => {
            let opts = options(&leaf, no_scripts, reseal)?;
            let family = family(&leaf)?;
            let outcome = with_progress(|p| cairn_pkg::upgrade(&family, &opts, p))
                .with_context(|| format!("cannot upgrade {}", leaf.display()))?;
            report(&outcome, json)
        }
        PkgCommand::Packages { leaf, all, json } => packages(&leaf, all, json),
        PkgCommand::Verify { leaf, json } => verify(&leaf, json),
        PkgCommand::Seal { leaf, key } => {
            let keys = super::key::keys_dir()?;
            let family = family(&leaf)?;
            let summary = with_progress(|p| cairn_pkg::seal(&family, &keys, &key, p))?;
            println!(
                "sealed {} files of {} with key {}",
                summary.files,
                leaf.display(),
                summary.key_name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The family of `leaf`, root first, as cairn-node finds and validates it.
fn family(leaf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let family = cairn_node::load_family(leaf, &cairn_node::VarContext::from_process())?;
    Ok(family.nodes().iter().map(|n| n.path.clone()).collect())
}

/// Nodes below `leaf` (their packages may depend on the leaf's).
fn descendants(leaf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let me = std::path::absolute(leaf)?;
    let below = cairn_node::list_nodes(leaf)?;
    Ok(below
        .into_iter()
        .map(|n| n.path)
        .filter(|p| p != &me && p != leaf)
        .collect())
}

/// Options shared by the changing commands. The host's installed packages count as present
/// when the family exports the host's `/usr` (a system node made by `--template system`);
/// `verify: required` in the family keeps a sealed leaf from changing without `--reseal`.
fn options(leaf: &Path, no_scripts: bool, reseal: ResealArg) -> anyhow::Result<Options> {
    let merged =
        cairn_node::load_family(leaf, &cairn_node::VarContext::from_process())?.merged()?;
    let reseal = match reseal.reseal {
        Some(key) => Some(cairn_pkg::Reseal {
            keys_dir: super::key::keys_dir()?,
            key,
        }),
        None => None,
    };
    let exports_host_usr = merged
        .exports
        .iter()
        .any(|e| e.path.as_deref() == Some(Path::new("/usr")));
    let scripts = if no_scripts {
        Scripts::Skip
    } else {
        Scripts::InSandbox {
            cairn: std::env::current_exe().context("cannot find the cairn executable")?,
        }
    };
    Ok(Options {
        scripts,
        host_status: exports_host_usr.then(|| PathBuf::from("/var/lib/dpkg/status")),
        seal_required: merged.config.verify.value == cairn_node::Verify::Required,
        reseal,
        ..Options::default()
    })
}

fn repos(leaf: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let lines = cairn_pkg::repos(leaf)?;
    if json {
        output::print_json(&lines)?;
    } else {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| vec![(i + 1).to_string(), l.clone()])
            .collect();
        output::print_table(&["#", "REPOSITORY"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn search(leaf: &Path, word: &str, json: bool) -> anyhow::Result<ExitCode> {
    let family = family(leaf)?;
    let hits = with_progress(|p| cairn_pkg::search(&family, word, p))?;
    if json {
        output::print_json(&hits)?;
    } else {
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                vec![
                    h.name.clone(),
                    h.candidate.clone().unwrap_or_default(),
                    h.installed_in
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    h.summary.clone(),
                ]
            })
            .collect();
        output::print_table(&["NAME", "VERSION", "INSTALLED IN", "SUMMARY"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn packages(leaf: &Path, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let family = family(leaf)?;
    let list = with_progress(|p| cairn_pkg::packages(&family, all, p))?;
    if json {
        output::print_json(&list)?;
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|p| {
                let mut row = vec![p.name.clone(), p.version.clone(), p.architecture.clone()];
                if all {
                    row.push(p.node.display().to_string());
                }
                row.push(p.summary.clone());
                row
            })
            .collect();
        let header: &[&str] = if all {
            &["NAME", "VERSION", "ARCH", "NODE", "SUMMARY"]
        } else {
            &["NAME", "VERSION", "ARCH", "SUMMARY"]
        };
        output::print_table(header, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(leaf: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let family = family(leaf)?;
    let report = with_progress(|p| cairn_pkg::verify(&family, p))?;
    if json {
        output::print_json(&report)?;
    } else {
        for (what, paths) in [
            ("modified", &report.modified),
            ("missing", &report.missing),
            ("unowned", &report.unowned),
        ] {
            for path in paths {
                println!("{what:<9} {path}");
            }
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(outcome: &Outcome, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::print_json(outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    for note in &outcome.notes {
        println!("{note}");
    }
    for c in &outcome.changes {
        let verb = match c.action {
            cairn_pkg::Action::Install => "installed",
            cairn_pkg::Action::Upgrade => "upgraded",
            cairn_pkg::Action::Remove => "removed",
        };
        match &c.old_version {
            Some(old) => println!("{verb} {} {old} -> {}", c.package, c.version),
            None => println!("{verb} {} {}", c.package, c.version),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `work` with a progress bar on a terminal (stderr) and plain lines otherwise.
fn with_progress<T>(
    work: impl FnOnce(&mut dyn FnMut(Event<'_>)) -> cairn_pkg::Result<T>,
) -> anyhow::Result<T> {
    let mut bar = Bar {
        tty: std::io::stderr().is_terminal(),
        quiet: !tracing::enabled!(tracing::Level::WARN),
        drawn: false,
    };
    let result = work(&mut |event| bar.show(event));
    bar.clear();
    Ok(result?)
}

struct Bar {
    tty: bool,
    /// `-q` (log level error) hides progress; lock waits and rollbacks still show.
    quiet: bool,
    drawn: bool,
}

impl Bar {
    fn show(&mut self, event: Event<'_>) {
        match event {
            Event::WaitingForLock { node } => {
                self.clear();
                eprintln!("cairn: waiting for the package lock of {}", node.display());
            }
            Event::RolledBack { node } => {
                self.clear();
                eprintln!(
                    "cairn: rolled back an interrupted package transaction in {}",
                    node.display()
                );
            }
            Event::Step { .. } if self.quiet => {}
            Event::Step {
                phase,
                done,
                total,
                item,
            } if self.tty => {
                const WIDTH: usize = 30;
                let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
                let mut err = std::io::stderr();
                let _ = write!(
                    err,
                    "\r\x1b[K[{}{}] {done}/{total} {} {item}",
                    "#".repeat(filled),
                    "-".repeat(WIDTH - filled),
                    phase.verb()
                );
                let _ = err.flush();
                self.drawn = true;
            }
            Event::Step {
                phase,
                done,
                total,
                item,
            } => {
                if item.is_empty() {
                    // The closing report of a phase: the bar needs it, plain lines do not.
                } else if phase == cairn_pkg::Phase::Download {
                    eprintln!("downloading {item}");
                } else {
                    eprintln!("{} {item} ({}/{total})", phase.verb(), done + 1);
                }
            }
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}
