//! `cairn conf`: shared configuration through views (confdb).
//!
//! Keys, trust and signing work on files directly; everything else goes to the daemon
//! through the typed client of `cairn-api`: the admin socket, or inside a sandbox the app
//! socket (`$CAIRN_SOCKET`, `/run/cairn/cairn.sock`), where the daemon enforces the app's
//! plugs.

use crate::output;
use anyhow::Context;
use cairn_api::{Client, ErrorKind};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ConfCommand {
    /// Read through a view: `cairn conf get acme/network/control-device [KEY...]`.
    Get(GetArgs),
    /// Write through a view: `KEY=VALUE` sets, `KEY!` unsets; one transaction.
    Set(SetArgs),
    /// Unset keys through a view (one transaction).
    Unset {
        /// ACCOUNT/SCHEMA/VIEW
        view: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print a JSON line with the current data, then one per commit that changes it.
    Watch {
        /// ACCOUNT/SCHEMA/VIEW
        view: String,
        keys: Vec<String>,
    },
    /// Revisions of a schema's data.
    History {
        /// ACCOUNT/SCHEMA
        schema: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore the data of an earlier revision (as a new revision).
    Rollback {
        /// ACCOUNT/SCHEMA
        schema: String,
        revision: u64,
    },
    /// Signed schema documents: add, list, show, remove.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Signing keys: the same keyring as `cairn key` (files under <config>/keys).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Keys trusted to sign an account's schemas.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Sign a schema document; the signed document goes to stdout.
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: String,
    },
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// ACCOUNT/SCHEMA/VIEW
    view: String,
    /// Request keys (none: the whole view).
    keys: Vec<String>,
    /// Print a JSON document keyed by request.
    #[arg(short = 'd')]
    document: bool,
    /// Print this (JSON, or else a string) when there is no data.
    #[arg(long, value_name = "JSON")]
    default: Option<String>,
    /// Bind a placeholder of the view's rules: `--with name=eth0`.
    #[arg(long = "with", value_name = "PLACEHOLDER=VALUE")]
    with: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// ACCOUNT/SCHEMA/VIEW
    view: String,
    /// `KEY=VALUE` (VALUE is JSON when it parses, a string otherwise) or `KEY!` (unset).
    #[arg(required = true)]
    assignments: Vec<String>,
    /// Values must be JSON.
    #[arg(short = 't', conflicts_with = "string")]
    strict: bool,
    /// Values are strings, taken as they are.
    #[arg(short = 's')]
    string: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Add (or replace) a signed schema; refused unless a trusted key of its account signed it.
    Add {
        /// The signed document (`-` reads stdin).
        file: PathBuf,
    },
    /// List the schemas.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Print a schema document.
    Show {
        /// ACCOUNT/SCHEMA
        schema: String,
    },
    /// Remove a schema with its data and history.
    Rm {
        /// ACCOUNT/SCHEMA
        schema: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a signing key pair.
    Create { name: String },
    /// Print a key's public half (`ed25519:...`), for `cairn conf trust add`.
    Export { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust PUBKEY to sign schemas of ACCOUNT.
    Add { account: String, public_key: String },
}

pub fn run(command: ConfCommand) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    let keys_dir = config.keys_dir();
    match command {
        ConfCommand::Key(KeyCommand::Create { name }) => {
            let key = cairn_daemon::confdb::keys::create_key(&keys_dir, &name)?;
            println!("created key {name} ({key})");
        }
        ConfCommand::Key(KeyCommand::Export { name }) => {
            println!(
                "{}",
                cairn_daemon::confdb::keys::export_public(&keys_dir, &name)?.trim_end()
            );
        }
        ConfCommand::Trust(TrustCommand::Add {
            account,
            public_key,
        }) => {
            let dir = config.trust_dir();
            cairn_daemon::confdb::TrustStore::add(&dir, &account, &public_key)?;
            println!("trusting {} for account {account}", public_key.trim());
        }
        ConfCommand::Sign { file, key } => {
            let text = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let signed = cairn_daemon::confdb::keys::sign_document(&keys_dir, &key, &text)?;
            std::io::stdout().write_all(&signed)?;
        }
        other => {
            let client = Client::new(&cairn_api::choose_socket(&config.admin_socket()))?;
            return remote(&client, other);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The commands that go through the daemon.
fn remote(client: &Client, command: ConfCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfCommand::Get(args) => get(client, args)?,
        ConfCommand::Set(args) => {
            let changes = parse_assignments(&args.assignments, value_mode(&args))?;
            put(client, &args.view, changes)?;
        }
        ConfCommand::Unset { view, keys } => {
            let revision = client.unset(&view, &keys)?;
            tracing::info!("{view}: committed revision {revision}");
        }
        ConfCommand::Watch { view, keys } => watch(client, &view, &keys)?,
        ConfCommand::History { schema, json } => history(client, &schema, json)?,
        ConfCommand::Rollback { schema, revision } => {
            let now = client.rollback(&schema, revision)?;
            println!("rolled {schema} back to revision {revision} (now revision {now})");
        }
        ConfCommand::Schema(command) => schema(client, command)?,
        ConfCommand::Key(_) | ConfCommand::Trust(_) | ConfCommand::Sign { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// get

fn get(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    for w in &args.with {
        if !w.contains('=') {
            anyhow::bail!("invalid --with \"{w}\": expected PLACEHOLDER=VALUE");
        }
    }
    let with: Vec<(String, String)> = args
        .with
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    let data = match client.get(&args.view, &args.keys, &with) {
        Ok(data) => data,
        Err(e) if e.kind() == Some(ErrorKind::NoData) && args.default.is_some() => {
            let default = parse_value(args.default.as_deref().unwrap_or("null"), ValueMode::Guess)?;
            default_document(&args.keys, default)
        }
        Err(e) => return Err(e.into()),
    };
    print_data(
        &args.keys,
        data,
        args.document,
        std::io::stdout().is_terminal(),
    )
}

/// What `--default` stands for: the value itself, or a document keyed by request.
fn default_document(keys: &[String], default: Value) -> Value {
    if keys.is_empty() {
        return default;
    }
    Value::Object(keys.iter().map(|k| (k.clone(), default.clone())).collect())
}

/// Output rules of `cairn conf get`: `-d` prints the JSON document; one key with a scalar
/// prints it raw; a map prints a Key/Value table on a terminal and JSON otherwise.
fn print_data(keys: &[String], data: Value, document: bool, tty: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(render(keys, data, document, tty).as_bytes())?;
    Ok(())
}

fn render(keys: &[String], data: Value, document: bool, tty: bool) -> String {
    if document {
        return pretty(&data);
    }
    let (prefix, value) = match (keys, &data) {
        ([key], Value::Object(map)) if map.len() == 1 && map.contains_key(key) => {
            (key.clone(), map.get(key).cloned().unwrap_or(Value::Null))
        }
        _ => (String::new(), data),
    };
    match &value {
        Value::String(s) => format!("{s}\n"),
        Value::Object(_) if tty => {
            let mut rows = Vec::new();
            flatten(&prefix, &value, &mut rows);
            table(&rows)
        }
        Value::Object(_) | Value::Array(_) => pretty(&value),
        other => format!("{other}\n"),
    }
}

fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    )
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::String(s) => rows.push((prefix.to_string(), s.clone())),
        other => rows.push((prefix.to_string(), other.to_string())),
    }
}

fn table(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(3);
    let mut out = format!("{:<width$}  Value\n", "Key");
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// set / unset

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueMode {
    /// JSON when it parses, a string otherwise.
    Guess,
    /// `-t`: JSON only.
    Strict,
    /// `-s`: always a string.
    String,
}

fn value_mode(args: &SetArgs) -> ValueMode {
    match (args.strict, args.string) {
        (true, _) => ValueMode::Strict,
        (_, true) => ValueMode::String,
        _ => ValueMode::Guess,
    }
}

fn parse_value(text: &str, mode: ValueMode) -> anyhow::Result<Value> {
    match mode {
        ValueMode::String => Ok(Value::String(text.to_string())),
        ValueMode::Guess => {
            Ok(serde_json::from_str(text).unwrap_or(Value::String(text.to_string())))
        }
        ValueMode::Strict => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("value {text:?} is not JSON (-t): {e}")),
    }
}

/// `KEY=VALUE` and `KEY!` arguments, in order; a later one for the same key wins.
fn parse_assignments(args: &[String], mode: ValueMode) -> anyhow::Result<Vec<(String, Value)>> {
    let mut changes: Vec<(String, Value)> = Vec::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((key, text)) => {
                let value =
                    parse_value(text, mode).with_context(|| format!("cannot set \"{key}\""))?;
                (key.to_string(), value)
            }
            None => match arg.strip_suffix('!') {
                Some(key) => (key.to_string(), Value::Null),
                None => {
                    anyhow::bail!("cannot set \"{arg}\": expected KEY=VALUE or KEY! (to unset)")
                }
            },
        };
        if key.is_empty() {
            anyhow::bail!("invalid assignment \"{arg}\": the key is empty");
        }
        changes.retain(|(k, _)| *k != key);
        changes.push((key, value));
    }
    Ok(changes)
}

/// One transaction; a `null` value unsets its key.
fn put(client: &Client, view: &str, changes: Vec<(String, Value)>) -> anyhow::Result<()> {
    let changes = changes
        .into_iter()
        .map(|(k, v)| (k, if v.is_null() { None } else { Some(v) }));
    let revision = client.set(view, changes)?;
    tracing::info!("{view}: committed revision {revision}");
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn watch(client: &Client, view: &str, keys: &[String]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    client.watch(view, keys, &mut |event| {
        // A closed stdout (`| head`) ends the watch.
        stdout
            .write_all(&event.to_line())
            .and_then(|()| stdout.flush())
            .is_ok()
    })?;
    Ok(())
}

fn history(client: &Client, schema: &str, json: bool) -> anyhow::Result<()> {
    let revisions = client.history(schema)?;
    if json {
        return output::print_json(&revisions);
    }
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| vec![r.revision.to_string(), utc(r.time), r.changed.join(", ")])
        .collect();
    output::print_table(&["REVISION", "TIME", "CHANGED"], &rows);
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` UTC from Unix seconds (Howard Hinnant's civil-from-days).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

fn schema(client: &Client, command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Add { file } => {
            let info = client.add_schema(read_input(&file)?)?;
            println!(
                "added schema {}/{} (views: {})",
                info.account,
                info.name,
                info.views.join(", ")
            );
        }
        SchemaCommand::Ls { json } => {
            let list = client.schemas()?;
            if json {
                return output::print_json(&list);
            }
            let rows: Vec<Vec<String>> = list.iter().map(schema_row).collect();
            output::print_table(&["SCHEMA", "REVISION", "VIEWS", "SUMMARY"], &rows);
        }
        SchemaCommand::Show { schema } => {
            print!("{}", client.schema_text(&schema)?);
        }
        SchemaCommand::Rm { schema } => {
            client.remove_schema(&schema)?;
            println!("removed schema {schema}");
        }
    }
    Ok(())
}

fn schema_row(info: &cairn_api::SchemaSummary) -> Vec<String> {
    vec![
        format!("{}/{}", info.account, info.name),
        info.revision.to_string(),
        info.views.len().to_string(),
        info.summary.clone().unwrap_or_default(),
    ]
}

fn read_input(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("stdin")?;
        return Ok(buf);
    }
    std::fs::read(file).with_context(|| format!("{}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn assignments_parse_values_and_unsets() {
        let args = keys(&["a=1", "b=hello", "c!", "d={\"x\":true}", "a=2"]);
        let changes = parse_assignments(&args, ValueMode::Guess).unwrap();
        assert_eq!(
            changes,
            vec![
                ("b".into(), json!("hello")),
                ("c".into(), Value::Null),
                ("d".into(), json!({"x": true})),
                ("a".into(), json!(2)),
            ]
        );
        let strings = parse_assignments(&keys(&["a=1"]), ValueMode::String).unwrap();
        assert_eq!(strings[0].1, json!("1"));
        let err = parse_assignments(&keys(&["a=hello"]), ValueMode::Strict).unwrap_err();
        assert!(format!("{err:#}").contains("cannot set \"a\""), "{err:#}");
        let err = parse_assignments(&keys(&["oops"]), ValueMode::Guess).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set \"oops\": expected KEY=VALUE or KEY! (to unset)"
        );
    }

    #[test]
    fn output_follows_the_spec() {
        let one = keys(&["server-url"]);
        let data = json!({"server-url": "http://x"});
        assert_eq!(render(&one, data.clone(), false, false), "http://x\n");
        assert_eq!(
            render(&one, data, true, false),
            "{\n  \"server-url\": \"http://x\"\n}\n"
        );
        let stats = json!({"packets-sent": {"eth0": 130, "wlan0": 131}});
        let table = render(&keys(&["packets-sent"]), stats.clone(), false, true);
        let expected = format!(
            "{:<18}  Value\n{:<18}  130\n{:<18}  131\n",
            "Key", "packets-sent.eth0", "packets-sent.wlan0"
        );
        assert_eq!(table, expected);
        let piped = render(&keys(&["packets-sent"]), stats, false, false);
        assert_eq!(
            serde_json::from_str::<Value>(&piped).unwrap(),
            json!({"eth0": 130, "wlan0": 131})
        );
        assert_eq!(render(&keys(&["n"]), json!({"n": 5}), false, true), "5\n");
        assert_eq!(
            render(&keys(&["p"]), json!({"p": [1]}), false, true),
            "[\n  1\n]\n"
        );
    }

    #[test]
    fn utc_times_are_formatted() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_416_460), "2026-11-23 06:47:40");
    }

    #[test]
    fn defaults_are_keyed_by_request() {
        assert_eq!(default_document(&[], json!(1)), json!(1));
        assert_eq!(
            default_document(&keys(&["a", "b"]), json!(1)),
            json!({"a": 1, "b": 1})
        );
    }
}
