//! Running it for real (docs/deploy/): the systemd unit is hardened, hands every credential to the
//! gateway under a name the gateway reads, and agrees with the production example configuration,
//! which the real configuration loader accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::repo;

const UNIT: &str = "docs/deploy/isa-gateway.service";
const PRODUCTION: &str = "docs/deploy/gateway.production.toml";
/// Where systemd puts this unit's credentials (its `%d`), and where the production example names
/// the secrets that cannot be set from the environment.
const CREDENTIALS: &str = "/run/credentials/isa-gateway.service";
/// The folders the production example may name, as the unit and the image lay them out.
const DEPLOYED_ROOTS: [&str; 3] = [
    "/etc/isa-gateway/",
    "/var/lib/isa-gateway/",
    "/run/credentials/isa-gateway.service/",
];

/// A unit file as systemd reads it: `[Section]` headers, `Key=value` lines (later assignments of a
/// key add to or override earlier ones, so every one is kept, in order), `#` and `;` comments,
/// and a trailing backslash continuing a line.
struct Unit {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Unit {
    fn parse(text: &str) -> Self {
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut logical = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') || line.starts_with(';') || (logical.is_empty() && line.is_empty()) {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let line = std::mem::take(&mut logical);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.to_owned(), Vec::new()));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT}:{}: not Key=value: {line:?}", n + 1));
            let (_, entries) = sections
                .last_mut()
                .unwrap_or_else(|| panic!("{UNIT}:{}: a setting before any [Section]", n + 1));
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        assert!(logical.is_empty(), "{UNIT}: ends inside a continued line");
        Self { sections }
    }

    fn section(&self, name: &str) -> &[(String, String)] {
        let found: Vec<_> = self.sections.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "{UNIT}: expected one [{name}] section");
        &found[0].1
    }

    /// Every assignment of `key` in `[section]`, in order.
    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.section(section)
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value a single-valued setting ends up with: its last assignment.
    fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// Every `NAME=value` that `Environment=` lines set, in order.
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .into_iter()
            .flat_map(words)
            .map(|w| {
                let (name, value) = w
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{UNIT}: Environment= word {w:?} is not NAME=value"));
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    /// `LoadCredential=NAME:PATH`, by name.
    fn credentials(&self) -> BTreeMap<String, String> {
        let mut credentials = BTreeMap::new();
        for value in self.all("Service", "LoadCredential") {
            let (name, path) = value
                .split_once(':')
                .unwrap_or_else(|| panic!("{UNIT}: LoadCredential={value} is not NAME:PATH"));
            assert!(
                credentials.insert(name.to_owned(), path.to_owned()).is_none(),
                "{UNIT}: credential {name} is loaded twice"
            );
        }
        credentials
    }
}

/// A value split into words as systemd splits `Environment=`: by white space, outside quotes.
fn words(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {value:?}");
    if started {
        out.push(word);
    }
    out
}

fn unit() -> Unit {
    Unit::parse(&std::fs::read_to_string(repo().join(UNIT)).unwrap())
}

fn production_text() -> String {
    std::fs::read_to_string(repo().join(PRODUCTION)).unwrap()
}

fn production() -> toml::Value {
    toml::from_str(&production_text()).unwrap()
}

/// Every string in a TOML document with its dotted path (array elements as `[i]`).
fn strings(value: &toml::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::String(s) => out.push((path.to_owned(), s.clone())),
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, &format!("{path}[{i}]"), out);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                strings(item, &path, out);
            }
        }
        _ => {}
    }
}

fn production_strings() -> Vec<(String, String)> {
    let mut out = Vec::new();
    strings(&production(), "", &mut out);
    out
}

/// The agreements the repository ships, by id, with whether they tokenise (and so need a key).
fn shipped_agreements() -> BTreeMap<String, bool> {
    let mut agreements = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("isa-templates")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let id = doc["id"].as_str().unwrap().to_owned();
        let tokenises = doc
            .get("fields")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .any(|f| {
                f.get("treatment")
                    .and_then(|t| t.get("op"))
                    .and_then(toml::Value::as_str)
                    == Some("token")
            });
        agreements.insert(id, tokenises);
    }
    agreements
}

/// How the key store spells an agreement id in a variable name: upper case, '-' as '_'.
fn key_variable_id(agreement_id: &str) -> String {
    agreement_id.to_ascii_uppercase().replace('-', "_")
}

#[test]
fn the_unit_confines_the_service_as_the_deployment_requires() {
    let unit = unit();
    for (key, expected) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
        ("StateDirectory", "isa-gateway"),
        ("ConfigurationDirectory", "isa-gateway"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(unit.last("Service", key), Some(expected), "{UNIT}: {key}=");
    }
    // Address families: exactly these, as an allow list.
    let families: BTreeSet<String> = words(unit.last("Service", "RestrictAddressFamilies").unwrap())
        .into_iter()
        .collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_INET".to_owned(), "AF_INET6".to_owned(), "AF_UNIX".to_owned()]),
        "{UNIT}: RestrictAddressFamilies="
    );
    // System calls: the first filter is the allow list @system-service; later ones may only deny.
    let filters = unit.all("Service", "SystemCallFilter");
    assert_eq!(
        filters.first().copied(),
        Some("@system-service"),
        "{UNIT}: SystemCallFilter="
    );
    for f in &filters[1..] {
        assert!(
            f.starts_with('~'),
            "{UNIT}: SystemCallFilter={f} would widen the allow list"
        );
    }
    // No capabilities at all: the bounding set is assigned, and its last assignment empties it.
    assert_eq!(
        unit.last("Service", "CapabilityBoundingSet"),
        Some(""),
        "{UNIT}: CapabilityBoundingSet= must be present and empty"
    );
    assert!(
        unit.last("Service", "AmbientCapabilities").is_none_or(str::is_empty),
        "{UNIT}: AmbientCapabilities="
    );
    // Never root: a user of its own, static or dynamic.
    let user = unit.last("Service", "User");
    assert!(
        user == Some("isa-gateway") || unit.last("Service", "DynamicUser") == Some("yes"),
        "{UNIT}: User=isa-gateway or DynamicUser=yes"
    );
    // It runs the gateway on the installed configuration.
    let exec = words(unit.last("Service", "ExecStart").unwrap());
    assert!(
        exec[0].starts_with('/') && exec[0].ends_with("/isa-gateway"),
        "{exec:?}"
    );
    assert_eq!(
        exec[1..],
        ["serve", "--config", "/etc/isa-gateway/gateway.toml"],
        "{exec:?}"
    );
    assert_eq!(unit.last("Install", "WantedBy"), Some("multi-user.target"));
}

/// Typos in a unit are warnings systemd ignores, leaving the service less confined than it reads.
/// Without systemd-analyze (see `systemd_analyze_accepts_the_unit`), this list is the check.
#[test]
fn the_unit_uses_only_directives_systemd_knows() {
    assert_only_known_directives(&unit());
}

fn assert_only_known_directives(unit: &Unit) {
    let known: BTreeMap<&str, &str> = BTreeMap::from([
        (
            "Unit",
            "Description Documentation Wants Requires After Before StartLimitIntervalSec StartLimitBurst",
        ),
        (
            "Service",
            "Type User Group DynamicUser ExecStart ExecStartPre ExecReload Restart RestartSec TimeoutStartSec \
             TimeoutStopSec LimitNOFILE LoadCredential Environment WorkingDirectory ProtectSystem ProtectHome \
             PrivateTmp PrivateDevices PrivateMounts PrivateUsers StateDirectory StateDirectoryMode \
             ConfigurationDirectory ConfigurationDirectoryMode UMask ReadWritePaths ReadOnlyPaths InaccessiblePaths \
             NoNewPrivileges CapabilityBoundingSet AmbientCapabilities RestrictSUIDSGID RemoveIPC \
             ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectClock \
             ProtectHostname ProtectProc ProcSubset RestrictNamespaces RestrictRealtime LockPersonality \
             MemoryDenyWriteExecute RestrictAddressFamilies IPAddressAllow IPAddressDeny SystemCallArchitectures \
             SystemCallFilter SystemCallErrorNumber",
        ),
        ("Install", "WantedBy RequiredBy Alias"),
    ]);
    let names: Vec<&str> = unit.sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Unit", "Service", "Install"], "{UNIT}: sections");
    for (section, entries) in &unit.sections {
        for (key, _) in entries {
            assert!(
                known[section.as_str()].split_whitespace().any(|k| k == key),
                "{UNIT}: [{section}] {key}= is not a directive this test knows (a typo? if not, add it here)"
            );
        }
    }
}

#[test]
fn every_credential_reaches_the_gateway_and_every_secret_it_reads_is_a_credential() {
    let unit = unit();
    let credentials = unit.credentials();
    assert!(!credentials.is_empty(), "{UNIT}: no LoadCredential=");
    for (name, path) in &credentials {
        assert!(
            path.starts_with("/etc/isa-gateway/secrets/"),
            "{UNIT}: credential {name} comes from {path}, outside /etc/isa-gateway/secrets/"
        );
    }
    // Credentials handed over by environment variable: exactly %d/NAME.
    let mut used = BTreeSet::new();
    for (variable, value) in unit.environment() {
        if value.contains("%d") {
            let name = value
                .strip_prefix("%d/")
                .unwrap_or_else(|| panic!("{UNIT}: {variable}={value} is not %d/NAME"));
            assert!(
                credentials.contains_key(name),
                "{UNIT}: {variable}={value} names no LoadCredential={name}:…"
            );
            used.insert(name.to_owned());
        }
    }
    // Credentials the configuration names by path (destination secrets).
    for (key, value) in production_strings() {
        if let Some(name) = value.strip_prefix(&format!("{CREDENTIALS}/")) {
            assert!(
                credentials.contains_key(name),
                "{PRODUCTION}: {key} = {value:?} names no LoadCredential={name}:… in {UNIT}"
            );
            used.insert(name.to_owned());
        }
    }
    for name in credentials.keys() {
        assert!(
            used.contains(name),
            "{UNIT}: credential {name} is loaded but no Environment=…=%d/{name} or {PRODUCTION} path uses it"
        );
    }
    // The other way round: no secret the gateway reads is left on disk where the service would
    // read it directly.
    for (key, value) in production_strings() {
        let secret = ["server_key", "client_key", "password_file", "shared_key_file"]
            .iter()
            .any(|s| key.ends_with(&format!(".{s}")));
        if secret {
            let overridden = unit.environment().iter().any(|(v, _)| {
                v.strip_prefix("ISA_GATEWAY__")
                    .is_some_and(|p| p.to_ascii_lowercase().replace("__", ".") == key)
            });
            assert!(
                overridden || value.starts_with(&format!("{CREDENTIALS}/")),
                "{PRODUCTION}: {key} = {value:?} is a secret but not a credential"
            );
        }
    }
}

/// The variables the gateway reads, spelled as in its sources: the configuration override prefix
/// (figment, split on `__`), and the key store's key files. A test that fails here means the code
/// renamed one: change the unit, the README and this list together.
#[test]
fn every_variable_the_unit_sets_is_one_the_gateway_reads() {
    let mut sources = String::new();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    for literal in [
        "\"ISA_GATEWAY__\"",
        "\"ISA_GATEWAY_INDEX_KEY_FILE\"",
        "\"ISA_GATEWAY_CHECKPOINT_KEY_FILE\"",
        "\"ISA_GATEWAY_SUBJECT_INDEX_DIR\"",
        "\"ISA_GATEWAY_KEY_{}_V\"",
        "\"{name}_FILE\"",
    ] {
        assert!(
            sources.contains(literal),
            "the gateway's sources no longer contain {literal}"
        );
    }

    let production = production();
    let agreements = shipped_agreements();
    let mut agreement_keys = BTreeSet::new();
    for (variable, value) in unit().environment() {
        if let Some(path) = variable.strip_prefix("ISA_GATEWAY__") {
            // A configuration override: the key path must be a setting of the production example.
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            let mut at = &production;
            for k in &keys {
                at = at.get(k.as_str()).unwrap_or_else(|| {
                    panic!(
                        "{UNIT}: {variable} overrides {}, which is not a setting in {PRODUCTION}",
                        keys.join(".")
                    )
                });
            }
            assert!(!at.is_table(), "{UNIT}: {variable} overrides a whole table");
        } else if let Some(rest) = variable
            .strip_prefix("ISA_GATEWAY_KEY_")
            .and_then(|r| r.strip_suffix("_FILE"))
        {
            // ISA_GATEWAY_KEY_<AGREEMENT_ID>_V<N>_FILE for an agreement that tokenises.
            let (id, version) = rest
                .rsplit_once("_V")
                .unwrap_or_else(|| panic!("{UNIT}: {variable} is not ISA_GATEWAY_KEY_<ID>_V<N>_FILE"));
            assert!(
                version.parse::<u32>().is_ok_and(|v| v >= 1),
                "{UNIT}: {variable}: version {version:?} is not a positive number"
            );
            let agreement = agreements
                .iter()
                .find(|(a, _)| key_variable_id(a) == id)
                .unwrap_or_else(|| panic!("{UNIT}: {variable} names no agreement in isa-templates/"));
            assert!(
                *agreement.1,
                "{UNIT}: {variable}: agreement {} does not tokenise",
                agreement.0
            );
            agreement_keys.insert(agreement.0.clone());
        } else {
            assert!(
                [
                    "ISA_GATEWAY_INDEX_KEY_FILE",
                    "ISA_GATEWAY_CHECKPOINT_KEY_FILE",
                    "ISA_GATEWAY_SUBJECT_INDEX_DIR"
                ]
                .contains(&variable.as_str()),
                "{UNIT}: Environment={variable}={value}: the gateway does not read {variable}"
            );
        }
    }
    // Key material goes by file, never by value in the unit (which any local user can read).
    for (variable, value) in unit().environment() {
        if variable.starts_with("ISA_GATEWAY_") && variable.contains("KEY") && !variable.starts_with("ISA_GATEWAY__") {
            assert!(
                value.starts_with("%d/"),
                "{UNIT}: {variable} must name a credential file"
            );
        }
    }
    // Every shipped agreement that tokenises has a key in the unit.
    for (id, tokenises) in &agreements {
        if *tokenises {
            assert!(
                agreement_keys.contains(id),
                "{UNIT}: agreement {id} tokenises but no ISA_GATEWAY_KEY_{}_V<N>_FILE gives its key",
                key_variable_id(id)
            );
        }
    }
}

#[test]
fn the_production_example_keeps_to_the_deployed_layout() {
    let production = production();
    assert_eq!(production["profile"].as_str(), Some("production"));
    assert!(
        !production["tls"]["crls"].as_array().unwrap().is_empty(),
        "production needs a CRL"
    );
    let unit = unit();
    let writable: Vec<String> = unit
        .all("Service", "ReadWritePaths")
        .into_iter()
        .flat_map(words)
        .map(|p| p.trim_start_matches(['-', '+']).trim_end_matches('/').to_owned() + "/")
        .chain(["/var/lib/isa-gateway/".to_owned()])
        .collect();
    for (key, value) in production_strings() {
        assert!(
            !key.ends_with("dev_signing_key"),
            "{PRODUCTION}: {key}: production refuses it"
        );
        let path = value.strip_prefix("sqlite://").unwrap_or(&value);
        if path.starts_with('/') {
            assert!(
                DEPLOYED_ROOTS.iter().any(|r| path.starts_with(r)),
                "{PRODUCTION}: {key} = {value:?} is outside {DEPLOYED_ROOTS:?}"
            );
        }
        // What the gateway writes (the ledger, drop folders) is where the unit lets it write.
        let written = key == "database_url" || (key.starts_with("destinations[") && key.ends_with("].path"));
        if written && path.starts_with('/') {
            assert!(
                writable.iter().any(|w| path.starts_with(w.as_str())),
                "{PRODUCTION}: {key} = {value:?}: the unit lets the service write only to {writable:?}"
            );
        }
    }
}

#[test]
fn the_container_image_carries_what_the_production_example_names() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let production = production();
    let port = production["listen"].as_str().unwrap().rsplit(':').next().unwrap();
    for line in [
        "COPY docs/deploy/gateway.production.toml /etc/isa-gateway/gateway.toml".to_owned(),
        format!("COPY schemas {}", production["schemas_dir"].as_str().unwrap()),
        format!("COPY isa-templates {}", production["agreements_dir"].as_str().unwrap()),
        format!("ENV ISA_GATEWAY__KEYS_DIR={CREDENTIALS}/keys"),
        format!("EXPOSE {port}"),
        "USER nonroot".to_owned(),
    ] {
        assert!(
            dockerfile.lines().any(|l| l.trim() == line),
            "Dockerfile: no line {line:?}"
        );
    }
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for pattern in ["target/", "var/", "certs/dev/", ".git"] {
        assert!(
            ignored.lines().any(|l| l.trim() == pattern),
            ".dockerignore: no {pattern}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

/// `isa-gateway check` on the production example moved under `root`, with the unit's
/// environment (its `%d` being `credentials`), and no other ISA_GATEWAY variable.
fn check_as_deployed(config: &Path, credentials: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isa-gateway"));
    command.args(["check", "--config"]).arg(config).env("RUST_LOG", "error");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ISA_GATEWAY") {
            command.env_remove(name);
        }
    }
    for (variable, value) in unit().environment() {
        command.env(variable, value.replace("%d", &credentials.display().to_string()));
    }
    command.output().unwrap()
}

/// The production example goes through the real loader: no unknown key and no parse error, from
/// the file or from the unit's environment. With nothing installed, the only problems are missing
/// files; once they exist (and the agreements and schemas), `check` passes.
#[test]
fn check_accepts_the_production_example_and_misses_only_files_until_they_are_installed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut text = production_text();
    for prefix in DEPLOYED_ROOTS {
        text = text.replace(prefix, &format!("{}{prefix}", root.display()));
    }
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    let credentials = root.join("credentials");

    let o = check_as_deployed(&config, &credentials);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("the production profile refuses to start:"), "{out}");
    let missing: BTreeSet<PathBuf> = lines
        .map(|l| {
            let path = l
                .strip_prefix("  - missing file ")
                .unwrap_or_else(|| panic!("a problem other than a missing file: {l:?}\n{out}"));
            assert!(path.starts_with(&root.display().to_string()), "{l}\n{out}");
            PathBuf::from(path)
        })
        .collect();
    // The unit's ISA_GATEWAY__TLS__SERVER_KEY=%d/server.key took effect.
    assert!(missing.contains(&credentials.join("server.key")), "{out}");
    assert!(
        !missing.contains(&root.join("run/credentials/isa-gateway.service/server.key")),
        "{out}"
    );

    for file in &missing {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "").unwrap();
    }
    let production = production();
    let installed = |key: &str| root.join(production[key].as_str().unwrap().trim_start_matches('/'));
    copy_dir(&repo().join("isa-templates"), &installed("agreements_dir"));
    copy_dir(&repo().join("schemas"), &installed("schemas_dir"));

    let o = check_as_deployed(&config, &credentials);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    let expected = format!("ok: {} agreement(s), ", shipped_agreements().len());
    assert!(out.starts_with(&expected), "{out}");
    let counts = format!(
        "{} system(s), {} destination(s)",
        production["systems"].as_array().unwrap().len(),
        production["destinations"].as_array().unwrap().len()
    );
    assert!(out.contains(&counts), "{out}");
}

/// systemd's own reading of the unit, where systemd-analyze is installed; elsewhere this says so
/// and checks what it can without it (the other tests parse the unit in any case).
#[test]
fn systemd_analyze_accepts_the_unit() {
    let version = Command::new("systemd-analyze").arg("--version").output();
    let Ok(version) = version
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    else {
        eprintln!(
            "systemd-analyze is not on the PATH: {UNIT} is checked by this test's parser and list of \
             directives only"
        );
        assert_only_known_directives(&unit());
        return;
    };
    // A copy named as installed, running the binary just built (verify wants it to exist).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("isa-gateway.service");
    let installed = words(unit().last("Service", "ExecStart").unwrap()).remove(0);
    let text = std::fs::read_to_string(repo().join(UNIT))
        .unwrap()
        .replace(&installed, env!("CARGO_BIN_EXE_isa-gateway"));
    std::fs::write(&path, text).unwrap();

    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "systemd-analyze verify: {err}");
    // verify exits 0 on unknown or malformed settings; it names the file in those warnings.
    let file = path.display().to_string();
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(&file)).collect();
    assert!(warnings.is_empty(), "systemd-analyze verify: {warnings:#?}");

    // The exposure score, offline (systemd 250 and later): at most 2.0, "OK".
    let release: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if release >= 250 {
        let o = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "systemd-analyze security: exposure above 2.0:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("systemd {release} cannot score a unit offline: exposure not checked");
    }
}
