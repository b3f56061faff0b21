//! Progress reporting: bars on a terminal, plain lines otherwise, or nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone)]
pub enum Progress {
    /// One bar per download on stderr (a terminal).
    Bars(MultiProgress),
    /// One stderr line when each step starts and ends (logs, CI, pipes).
    Lines,
    Silent,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Lines
        }
    }

    /// Starts a step named `label` of `total` bytes (when known).
    pub fn task(&self, label: &str, total: Option<u64>) -> Task {
        match self {
            Progress::Bars(multi) => {
                let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                let template = "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}";
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                Task {
                    bar: Some(bar),
                    label: label.to_string(),
                    lines: false,
                }
            }
            Progress::Lines => {
                match total {
                    Some(n) => eprintln!("{label}: {} to fetch", human_bytes(n)),
                    None => eprintln!("{label}: started"),
                }
                Task {
                    bar: None,
                    label: label.to_string(),
                    lines: true,
                }
            }
            Progress::Silent => Task {
                bar: None,
                label: label.to_string(),
                lines: false,
            },
        }
    }

    /// A one-off message (`layer ... already present`).
    pub fn note(&self, message: &str) {
        match self {
            Progress::Bars(multi) => {
                let _ = multi.println(message);
            }
            Progress::Lines => eprintln!("{message}"),
            Progress::Silent => {}
        }
    }
}

#[derive(Debug)]
pub struct Task {
    bar: Option<ProgressBar>,
    label: String,
    lines: bool,
}

impl Task {
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    pub fn finish(self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.lines {
            eprintln!("{}: {message}", self.label);
        }
    }
}

/// `1.5 MiB` style sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_bytes(12), "12 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
