//! Configuration: layering, unknown keys, paths, and every check.

use super::*;

const MINIMAL: &str = r#"
profile = "development"
listen = "127.0.0.1:8443"
database_url = "sqlite://var/test.db"
agreements_dir = "isa-templates"
schemas_dir = "schemas"
keys_dir = "var/keys"

[auth]
audience = "isa-gateway"

[[auth.issuers]]
issuer = "urn:test"
algorithms = ["ES256"]
public_key = "certs/token.pub.pem"
roles = ["practitioner"]
systems = ["case-system"]

[tls]
server_cert = "certs/server.crt"
server_key = "certs/server.key"
client_ca = "certs/ca.crt"

[[systems]]
id = "case-system"
identity = "urn:isa-gateway:system:case-system"
roles = ["sender"]

[[destinations]]
id = "gp"
transport = "dir"
path = "out/gp"
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn no_env() -> Env {
    Env::prefixed("ISA_GATEWAY_TEST_NEVER_SET__").split("__")
}

#[test]
fn loads_and_resolves_relative_paths_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let c = Config::load_with_env(&path, &Overrides::default(), no_env()).unwrap();
    assert_eq!(c.tls.server_key, dir.path().join("certs/server.key"));
    assert_eq!(
        c.database_url,
        format!("sqlite://{}", dir.path().join("var/test.db").display())
    );
    assert_eq!(c.limits.max_body_bytes, 256 * 1024);
}

#[test]
fn refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &format!("{MINIMAL}\n[limits]\nmax_body = 3\n"));
    let err = Config::load_with_env(&path, &Overrides::default(), no_env()).unwrap_err();
    assert!(err.to_string().contains("max_body"), "{err}");
}

#[test]
fn refuses_unknown_keys_in_a_destination() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace("path = \"out/gp\"", "path = \"out/gp\"\nurl = \"https://x\"");
    let err = Config::load_with_env(&write(dir.path(), &text), &Overrides::default(), no_env()).unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure signature, not ours
fn environment_overrides_nested_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    figment::Jail::expect_with(|jail| {
        jail.set_env("ISA_GATEWAY_JAIL__TLS__SERVER_KEY", "/run/secrets/key.pem");
        jail.set_env("ISA_GATEWAY_JAIL__LIMITS__MAX_BODY_BYTES", "1024");
        let env = Env::prefixed("ISA_GATEWAY_JAIL__").split("__");
        let c = Config::load_with_env(&path, &Overrides::default(), env).unwrap();
        assert_eq!(c.tls.server_key, PathBuf::from("/run/secrets/key.pem"));
        assert_eq!(c.limits.max_body_bytes, 1024);
        Ok(())
    });
}

#[test]
fn reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL
        .replace("id = \"case-system\"", "id = \"Case System\"")
        .replace("roles = [\"sender\"]", "roles = []");
    let err = Config::load_with_env(&write(dir.path(), &text), &Overrides::default(), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lower-case"), "{err}");
    assert!(err.contains("no roles"), "{err}");
    assert!(
        err.contains("issuer \"urn:test\" names system \"case-system\", which is not registered"),
        "{err}"
    );
}

#[test]
fn a_mesh_destination_needs_https_and_upper_case_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MINIMAL}\n[[destinations]]\nid = \"nhse\"\ntransport = \"mesh\"\nurl = \"http://mesh\"\nmailbox = \"x26abc1\"\n\
         to = \"X26ABC2\"\nworkflow_id = \"W\"\npassword_file = \"p\"\nshared_key_file = \"k\"\nca = \"c\"\n\
         client_cert = \"c\"\nclient_key = \"k\"\n"
    );
    let err = Config::load_with_env(&write(dir.path(), &text), &Overrides::default(), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("url must start with https://"), "{err}");
    assert!(err.contains("mailbox must be an upper-case MESH mailbox id"), "{err}");
    assert!(!err.contains("to must be"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let err = Config::load_with_env(Path::new("/nonexistent/g.toml"), &Overrides::default(), no_env()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/g.toml"));
}

#[test]
fn a_witness_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::ledger::signing::CheckpointKey::from_seed(&[5; 32]).public();
    let a = crate::ledger::cosignature::Witness::new("a.example/w", key)
        .unwrap()
        .vkey();
    let b = crate::ledger::cosignature::Witness::new("b.example/w", key)
        .unwrap()
        .vkey();
    let text = format!("{MINIMAL}\n[ledger]\nwitnesses = [{a:?}, {b:?}]\n");
    let err = Config::load_with_env(&write(dir.path(), &text), &Overrides::default(), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"b.example/w\" repeats a witness's key or name"), "{err}");
    let text = format!("{MINIMAL}\n[ledger]\nwitnesses = [{a:?}]\n");
    assert!(Config::load_with_env(&write(dir.path(), &text), &Overrides::default(), no_env()).is_ok());
}
