//! Per-launch cost of `load_family` + `to_spec` on the 3-node, 25-export family.
//!
//! Run: `cargo run --release -p cairn-node --example launch_cost [ITERATIONS]`

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/family3.rs"]
mod family3;

use std::time::Instant;

use cairn_node::{Launch, VarContext, load_family};

/// CPU time (user + system) this process used so far, in microseconds; unlike wall time it
/// does not count the time spent waiting for a CPU on a busy machine.
fn cpu_us() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
    us(u.user_time()) + us(u.system_time())
}

/// Wall and CPU microseconds per launch (CPU excludes exec children).
fn measure(with_exec: bool, iterations: u32) -> Result<(f64, f64), cairn_node::Error> {
    let dir = tempfile::tempdir().map_err(|e| cairn_node::Error::Io {
        path: "tempdir".into(),
        err: e,
    })?;
    let (_, leaf) = family3::build(dir.path(), with_exec);
    let launch = Launch::new(vec!["true".into()]);
    let start = Instant::now();
    let cpu = cpu_us();
    for _ in 0..iterations {
        let ctx = VarContext::from_process();
        let fam = load_family(&leaf, &ctx)?;
        let spec = fam.to_spec(&launch)?;
        std::hint::black_box(spec);
    }
    let n = f64::from(iterations);
    Ok((
        start.elapsed().as_secs_f64() * 1e6 / n,
        (cpu_us() - cpu) / n,
    ))
}

/// CPU microseconds to parse and validate the family's three files alone (no family walk,
/// no stat of sources): the floor set by the YAML parser.
fn parse_only(iterations: u32) -> Result<f64, cairn_node::Error> {
    let dir = tempfile::tempdir().map_err(|e| cairn_node::Error::Io {
        path: "tempdir".into(),
        err: e,
    })?;
    let (sys, _) = family3::build(dir.path(), false);
    let files = [
        sys.join("etc/cairn/node.yaml"),
        sys.join("mid/etc/cairn/node.yaml"),
        sys.join("mid/leaf/etc/cairn/node.yaml"),
    ];
    let texts: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_default())
        .collect();
    let cpu = cpu_us();
    for _ in 0..iterations {
        for (f, t) in files.iter().zip(&texts) {
            cairn_node::check_node_yaml(f, t)?;
        }
    }
    Ok((cpu_us() - cpu) / f64::from(iterations))
}

fn main() -> Result<(), cairn_node::Error> {
    let iterations = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let (wall, cpu) = measure(false, iterations)?;
    println!(
        "load_family + to_spec, 3 nodes, 25 exports, no exec entry: {wall:.1} us wall, {cpu:.1} us CPU per launch"
    );
    let parse = parse_only(iterations)?;
    println!("  of which parsing + validating the 3 files:                {parse:.1} us CPU");
    if std::env::args().nth(2).as_deref() != Some("plain") {
        let (wall, cpu) = measure(true, iterations.min(200))?;
        println!(
            "same family plus one exec export (/bin/sh -c):           {wall:.1} us wall, {cpu:.1} us CPU per launch"
        );
    }
    Ok(())
}
