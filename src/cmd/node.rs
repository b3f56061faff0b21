//! `cairn node ...`: create, list, show, check and remove nodes.

use crate::output;
use anyhow::Context;
use cairn_node::Template;
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    #[command(flatten)]
    Pkg(crate::cmd::pkg::PkgCommand),
    /// Create a node (its parent, if any, is the nearest ancestor directory that is a node).
    Create {
        path: PathBuf,
        /// Short name, unique within the family ([A-Za-z0-9+_.@:-]).
        #[arg(long)]
        alias: String,
        #[arg(long, value_enum, default_value_t = TemplateArg::Leaf)]
        template: TemplateArg,
    },
    /// List the nodes below a directory (default: Cairn's nodes directory).
    Ls {
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the family of a leaf, from the system node down.
    Tree {
        leaf: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the merged configuration of a family, each value with the file it came from.
    Config {
        leaf: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Validate every file of a family without launching anything.
    Check { leaf: PathBuf },
    /// Remove a node (atomically: renamed away first, then deleted).
    Rm {
        path: PathBuf,
        /// Also remove the child nodes inside it.
        #[arg(long)]
        recursive: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    /// Exports the host's base system read-only, so that ordinary programs run.
    System,
    /// The node's own files only.
    Leaf,
    /// A leaf plus a node-admin.yaml with restrictive settings.
    Admin,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Template {
        match t {
            TemplateArg::System => Template::System,
            TemplateArg::Leaf => Template::Leaf,
            TemplateArg::Admin => Template::Admin,
        }
    }
}

pub fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    match command {
        NodeCommand::Pkg(c) => return crate::cmd::pkg::run(c),
        NodeCommand::Create {
            path,
            alias,
            template,
        } => {
            let info = cairn_node::create_node(&path, &alias, template.into())?;
            println!(
                "created node {} ({}) at {}",
                info.alias,
                info.name,
                info.path.display()
            );
        }
        NodeCommand::Ls { dir, json } => {
            let dir = match dir {
                Some(d) => d,
                None => cairn_config::Config::load()?.nodes_dir(),
            };
            let nodes = if dir.exists() {
                cairn_node::list_nodes(&dir)?
            } else {
                Vec::new()
            };
            if json {
                output::print_json(&nodes)?;
            } else {
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.alias.clone(),
                            n.name.clone(),
                            n.parent
                                .as_deref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "-".into()),
                            n.path.display().to_string(),
                        ]
                    })
                    .collect();
                output::print_table(&["ALIAS", "NAME", "PARENT", "PATH"], &rows);
            }
        }
        NodeCommand::Tree { leaf, json } => {
            let family = load(&leaf)?;
            let nodes: Vec<serde_json::Value> = family
                .nodes
                .iter()
                .map(|n| serde_json::json!({ "alias": n.alias, "name": n.name, "path": n.path, "files": n.files }))
                .collect();
            if json {
                output::print_json(&nodes)?;
            } else {
                for (depth, n) in family.nodes.iter().enumerate() {
                    let branch = if depth == 0 {
                        String::new()
                    } else {
                        format!("{}└─ ", "   ".repeat(depth - 1))
                    };
                    println!("{branch}{} ({})  {}", n.alias, n.name, n.path.display());
                }
            }
        }
        NodeCommand::Config { leaf, json } => {
            let merged = load(&leaf)?.merged()?;
            if json {
                output::print_json(&merged)?;
            } else {
                print!("{}", config_text(&serde_json::to_value(&merged)?));
            }
        }
        NodeCommand::Check { leaf } => {
            let family = load(&leaf)?;
            family.check()?;
            println!("ok: {} node(s), every file valid", family.nodes.len());
        }
        NodeCommand::Rm { path, recursive } => {
            cairn_node::remove_node(&path, recursive)?;
            println!("removed {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(leaf: &Path) -> anyhow::Result<cairn_node::Family> {
    let ctx = cairn_node::VarContext::from_process();
    cairn_node::load_family(leaf, &ctx)
        .with_context(|| format!("cannot load the family of {}", leaf.display()))
}

/// Human form of `cairn node config`: one `key = value  (file:line)` line per merged value.
fn config_text(merged: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(config) = merged.get("config") {
        valued_lines("config", config, &mut out);
    }
    for (section, key_field) in [("exports", "mount"), ("environ", "key")] {
        out.push_str(&format!("{section}:\n"));
        for entry in merged
            .get(section)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let detail = field("path")
                .or_else(|| field("value"))
                .or_else(|| field("command").map(|c| format!("$({c})")));
            out.push_str(&format!(
                "  {:<10} {}{}  ({})\n",
                field("mode").unwrap_or_default(),
                field(key_field).unwrap_or_default(),
                detail.map(|d| format!(" <- {d}")).unwrap_or_default(),
                origin_text(entry.get("origin")),
            ));
        }
    }
    out
}

fn valued_lines(prefix: &str, value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map)
            if map.contains_key("value") && map.contains_key("origin") =>
        {
            out.push_str(&format!(
                "{prefix} = {}  ({})\n",
                map["value"],
                origin_text(map.get("origin"))
            ));
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                valued_lines(&format!("{prefix}.{k}"), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                out.push_str(&format!("{prefix} = []\n"));
            }
            for v in items {
                valued_lines(prefix, v, out);
            }
        }
        other => out.push_str(&format!("{prefix} = {other}\n")),
    }
}

fn origin_text(origin: Option<&serde_json::Value>) -> String {
    match origin {
        Some(o) if !o.is_null() => format!(
            "{}:{}",
            o.get("file").and_then(|f| f.as_str()).unwrap_or("?"),
            o.get("line").map(|l| l.to_string()).unwrap_or_default()
        ),
        _ => "default".to_string(),
    }
}
