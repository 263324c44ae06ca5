//! Tidy checks that keep the architecture what ARCHITECTURE.md says it is (in the style of
//! rust-analyzer's `tidy.rs`): the policy crate does no IO, and no source file grows past what one
//! reader can hold.

use std::path::{Path, PathBuf};

use crate::helpers::repo;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(under: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&repo().join(under), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no sources under {under}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The decision core is pure: its manifest names no IO crate, and its sources touch no file,
/// socket, environment variable or process.
#[test]
fn the_policy_crate_does_no_io() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("src/policy/Cargo.toml")).unwrap()).unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    assert!(deps.contains_key("serde"), "the manifest was read");
    for io in [
        "tokio",
        "sqlx",
        "actix-web",
        "actix-tls",
        "reqwest",
        "rustls",
        "hyper",
        "mio",
        "tracing",
        "figment",
    ] {
        assert!(
            !deps.contains_key(io),
            "src/policy/Cargo.toml depends on {io}: the policy core does no IO"
        );
    }
    for (path, text) in sources("src/policy") {
        for banned in [
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "std::io::stdin",
            "tokio::",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}: the policy core takes values and returns values",
                path.display()
            );
        }
    }
}

/// No source file over 600 lines (tests and generated files aside): a file that long does
/// several jobs, and should be split where the jobs part.
#[test]
fn no_source_file_is_too_long() {
    let mut long = Vec::new();
    for (path, text) in sources("src") {
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let lines = text.lines().count();
        if lines > 600 {
            long.push(format!(
                "{} ({lines} lines)",
                path.strip_prefix(repo()).unwrap().display()
            ));
        }
    }
    assert!(long.is_empty(), "split these files: {long:?}");
}
