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
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let target = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &target);
            } else {
                std::fs::copy(&p, target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("gateway.toml"), dir.path().join("gateway.toml")).unwrap();
    copy_dir(&repo().join("isa-templates"), &dir.path().join("isa-templates"));
    copy_dir(&repo().join("schemas"), &dir.path().join("schemas"));
    dir
}

#[test]
fn check_names_the_file_and_place_of_every_problem() {
    let dir = workspace();
    let agreement = dir.path().join("isa-templates/nvtt-gp-update.toml");
    let original = std::fs::read_to_string(&agreement).unwrap();
    let broken = original
        .replace("systems = [\"tt-case-system\"]", "systems = [\"no-such-system\"]")
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
        out.contains("nvtt-gp-update.toml:sender.systems: system \"no-such-system\" is not registered"),
        "{out}"
    );
    assert!(
        out.contains("nvtt-gp-update.toml:fields[1].pointer: a field pointer must start with '/'"),
        "{out}"
    );
    assert!(out.contains("typo.toml:2:1: unknown field `verison`"), "{out}");
}

#[test]
fn check_reports_a_broken_schema() {
    let dir = workspace();
    std::fs::write(dir.path().join("schemas/messages/gp_update.json"), "{\"$schema\": 1").unwrap();
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
    config = config.replace("max_body_bytes = 262144", "max_body_bytes = 262144\nmax_bodies = 3");
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

/// Each fixture under tests/fixtures/agreements/broken/ breaks one load-time rule, named by its
/// file: `check` must fail naming that rule and that file.
#[test]
fn check_names_the_rule_each_broken_agreement_breaks() {
    let broken = repo().join("tests/fixtures/agreements/broken");
    let mut names: Vec<_> = std::fs::read_dir(&broken).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 13);
    for path in names {
        let rule = path.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = workspace();
        std::fs::copy(&path, dir.path().join("isa-templates").join(path.file_name().unwrap())).unwrap();
        let o = run(&["check"], dir.path());
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{rule}: {out}");
        assert!(out.contains(&format!("rule {rule}")), "{rule}: {out}");
        assert!(out.contains(&format!("{rule}.toml:")), "{rule}: {out}");
        assert_eq!(
            out.matches("rule ").count(),
            1,
            "{rule} should break exactly one rule: {out}"
        );
    }
}

#[test]
fn check_passes_on_every_shipped_agreement() {
    let o = run(&["check"], &repo());
    assert!(
        text(&o).starts_with("ok: 10 agreement(s), 6 message type(s)"),
        "{}",
        text(&o)
    );
}

/// docs/legal-bases.md is generated from the code; regenerated here if stale (commit it).
#[test]
fn legal_basis_reference_is_up_to_date() {
    let path = repo().join("docs/legal-bases.md");
    let fresh = isa_gateway::policy::legal::reference_markdown();
    if std::fs::read_to_string(&path).unwrap_or_default() != fresh {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, fresh).unwrap();
        panic!("{} was stale and has been regenerated; commit it", path.display());
    }
}

#[test]
fn keys_new_and_rotate_write_private_files_and_refuse_to_overwrite() {
    let dir = workspace();
    let o = run(&["keys", "new", "--agreement", "nvtt-nhse-dataset"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let again = run(&["keys", "new", "--agreement", "nvtt-nhse-dataset"], dir.path());
    assert!(!again.status.success());
    assert!(text(&again).contains("already has a key"), "{}", text(&again));
    let r = run(&["keys", "rotate", "--agreement", "nvtt-nhse-dataset"], dir.path());
    assert!(text(&r).contains("agreement/nvtt-nhse-dataset/v2"), "{}", text(&r));
    let key = dir.path().join("var/keys/agreements/nvtt-nhse-dataset/v2.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let material = std::fs::read_to_string(&key).unwrap();
    assert!(!text(&o).contains(material.trim()) && !text(&r).contains(material.trim()));
}

#[test]
fn agreements_lists_each_agreement_with_its_state() {
    let o = run(&["agreements"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for id in [
        "nvtt-gp-update",
        "nvtt-nhse-dataset",
        "nvtt-mash-referral",
        "nvtt-lado-referral",
        "nvtt-couples-gp-update",
    ] {
        assert!(out.contains(id), "{out}");
    }
}

/// A key file other users can read is refused, naming the file and the fix (issue 13, row 9):
/// whoever can read the index key can re-identify every person in the subject index.
#[test]
fn a_key_file_readable_by_others_is_refused_with_the_fix() {
    let dir = workspace();
    let o = run(&["keys", "new", "--checkpoint"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let key = dir.path().join("var/keys/signing/checkpoint-v1.key");
    assert!(key.is_file(), "{}", text(&o));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["ledger", "checkpoint"], dir.path());
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("checkpoint-v1.key") && out.contains("chmod 600"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(&["ledger", "checkpoint"], dir.path());
    assert!(!text(&o).contains("chmod 600"), "{}", text(&o));
}
