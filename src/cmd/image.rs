//! `cairn image`: pull, import, list, inspect, remove and garbage-collect OCI images in the
//! store under the state directory (see the `cairn-image` crate).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    let store = ImageStore::from_config(&config)?;
    match command {
        ImageCommand::Pull(args) => {
            let options = PullOptions::from_config(&config);
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
    }
    Ok(ExitCode::SUCCESS)
}
