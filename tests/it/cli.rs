//! The command line as an operator uses it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::helpers::repo;

fn run(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_passes_on_the_shipped_configuration() {
    let o = run(&["check"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("ok: "), "{}", text(&o));
}

/// A copy of the repository's configuration, agreements and schemas to break things in.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("gateway.toml"), dir.path().join("gateway.toml")).unwrap();
    for sub in ["isa-templates", "schemas", "schemas/messages"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

#[test]
fn check_names_the_file_and_place_of_every_problem() {
    let dir = workspace();
    let agreement = dir.path().join("isa-templates/nvtt-gp-update.toml");
    let original = std::fs::read_to_string(&agreement).unwrap();
    let broken = original
        .replace(
            "systems = [\"tt-case-system\"]",
            "systems = [\"no-such-system\"]",
        )
        .replace("pointer = \"/name\"", "pointer = \"name\"");
    std::fs::write(&agreement, broken).unwrap();
    std::fs::write(
        dir.path().join("isa-templates/typo.toml"),
        "id = \"x\"\nverison = \"1\"\n",
    )
    .unwrap();
    let o = run(&["check"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(
            "nvtt-gp-update.toml:sender.systems: system \"no-such-system\" is not registered"
        ),
        "{out}"
    );
    assert!(
        out.contains("nvtt-gp-update.toml:fields[1].pointer: a field pointer must start with '/'"),
        "{out}"
    );
    assert!(
        out.contains("typo.toml:2:1: unknown field `verison`"),
        "{out}"
    );
}

#[test]
fn check_reports_a_broken_schema() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("schemas/messages/gp_update.json"),
        "{\"$schema\": 1",
    )
    .unwrap();
    let o = run(&["check"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("gp_update.json:1:"), "{}", text(&o));
}

#[test]
fn certs_dev_writes_private_keys_and_a_client_certificate_per_system() {
    let dir = workspace();
    let o = run(&["certs", "dev", "--out", "pki"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let pki = dir.path().join("pki");
    for f in [
        "ca.crt",
        "ca.crl",
        "server.crt",
        "clients/tt-case-system.crt",
        "clients/ig-audit.crt",
        "gateway-client.crt",
    ] {
        assert!(pki.join(f).is_file(), "{f}");
    }
    for f in [
        "ca.key",
        "server.key",
        "clients/tt-case-system.key",
        "gateway-client.key",
    ] {
        assert_eq!(
            std::fs::metadata(pki.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    // Key material is never printed.
    assert!(!text(&o).contains("PRIVATE KEY"));
}

#[test]
fn production_refuses_development_certificates_and_says_what_is_wrong() {
    let dir = workspace();
    assert!(run(&["certs", "dev"], dir.path()).status.success());
    let config = std::fs::read_to_string(dir.path().join("gateway.toml"))
        .unwrap()
        .replace("profile = \"development\"", "profile = \"production\"")
        .replace("crls = [\"certs/dev/ca.crl\"]", "crls = []")
        .replace("certs/dev/server.key", "certs/prod/server.key");
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let o = run(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("production profile refuses to start"), "{out}");
    assert!(
        out.contains("missing file") && out.contains("certs/prod/server.key"),
        "{out}"
    );
    assert!(
        out.contains("client CA") && out.contains("development material"),
        "{out}"
    );
    assert!(out.contains("no CRL configured"), "{out}");
}

#[test]
fn an_unknown_configuration_key_is_refused_by_name() {
    let dir = workspace();
    let mut config = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    config = config.replace(
        "max_body_bytes = 262144",
        "max_body_bytes = 262144\nmax_bodies = 3",
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let o = run(&["check"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("max_bodies"), "{}", text(&o));
}

#[test]
fn the_environment_overrides_the_file() {
    let dir = workspace();
    let o = Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["check"])
        .current_dir(dir.path())
        .env("ISA_GATEWAY__AGREEMENTS_DIR", "/nonexistent/agreements")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/agreements"), "{}", text(&o));
}
