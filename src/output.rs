//! Logging set-up and the one-line error format shared by every command.

use std::io::IsTerminal;

/// `-v`/`-q` pick the level; `CAIRN_LOG` (an env-filter string) overrides both.
///
/// Without `CAIRN_LOG` a plain level filter is used: parsing filter directives compiles
/// regular expressions, a cost every launch would pay for nothing.
pub fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time();
    let _ = match std::env::var("CAIRN_LOG") {
        Ok(filter) => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init(),
        Err(_) => builder.with_max_level(level).try_init(),
    };
}

/// Prints `cairn: outer: inner: root cause` on one line (see [`error_line`]).
pub fn print_error(err: &anyhow::Error) {
    eprintln!("{}", error_line(err));
}

/// `cairn: outer: inner: root cause`. The chain is the binary's context layers over one
/// library error, whose message already holds its own cause (library errors return no
/// `source()`; see ARCHITECTURE.md), so each part is printed once. A layer that starts by
/// naming what the layer above it ended with (`import X` over `X: reason`) does not name
/// it again.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::from("cairn: ");
    let mut above = String::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string().replace('\n', " ");
        if i > 0 {
            line.push_str(": ");
        }
        line.push_str(without_subject(&above, &text));
        above = text;
    }
    line
}

/// `text` without its leading `SUBJECT: ` when `above` ends with that subject as a word.
fn without_subject<'a>(above: &str, text: &'a str) -> &'a str {
    let Some((subject, rest)) = text.split_once(": ") else {
        return text;
    };
    match above.strip_suffix(subject) {
        Some(before) if !subject.is_empty() && (before.is_empty() || before.ends_with(' ')) => rest,
        _ => text,
    }
}

/// Prints rows as an aligned table with a header (human output of listing commands).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let fmt_row = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    fmt_row(header.to_vec());
    for row in rows {
        fmt_row(row.iter().map(String::as_str).collect());
    }
}

/// Prints a serializable value as one JSON document (the `--json` output of listings).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_of_the_chain_once() {
        let lib = anyhow::anyhow!("/x/y: no such file");
        assert_eq!(
            error_line(&lib.context("import /x/y")),
            "cairn: import /x/y: no such file"
        );
        let lib = anyhow::anyhow!("/x/y: no such file");
        assert_eq!(
            error_line(&lib.context("/x/y")),
            "cairn: /x/y: no such file"
        );
        // Only a whole word: `/y` is not the subject `/x/y` named above.
        let lib = anyhow::anyhow!("/y: gone");
        assert_eq!(
            error_line(&lib.context("import /x/y")),
            "cairn: import /x/y: /y: gone"
        );
        let plain = anyhow::anyhow!("multi\nline").context("outer");
        assert_eq!(error_line(&plain), "cairn: outer: multi line");
    }
}
