//! Builds an image from Debian's static busybox plus one layer per host directory given, and
//! pushes it to a plain-HTTP registry (the pull benchmark's fixture; see scripts/bench-image).
//!
//! Usage: push_image REGISTRY REPOSITORY:TAG [DIR...]

use std::process::ExitCode;

use cairn_image::testkit::{ImageSpec, Registry, busybox_layer};
use cairn_image::unpack::Compression;

fn main() -> ExitCode {
    match run() {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("push_image: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [registry, name, dirs @ ..] = args.as_slice() else {
        return Err("usage: push_image REGISTRY REPOSITORY:TAG [DIR...]".into());
    };
    let (repository, tag) = name.split_once(':').ok_or("REPOSITORY:TAG expected")?;
    let mut image = ImageSpec::default().layer(&busybox_layer()?, Compression::Gzip)?;
    for dir in dirs {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all(dir.trim_start_matches('/'), dir)?;
        image = image.layer(&builder.into_inner()?, Compression::Gzip)?;
    }
    let registry = Registry::remote(registry);
    Ok(registry.push(&image, repository, tag)?.to_string())
}
