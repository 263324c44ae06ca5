//! Witnesses (issue 12, item 3), through the real gateway over mutual TLS and the real
//! `isa-gateway witness` command: a witness cosigns a consistent extension; refuses a fork (a
//! history rewritten on the database and re-signed with the gateway's own key) and keeps its
//! state; `ledger verify --witness` and `verify-bundle --witness` require its cosignature; the
//! gateway refuses cosignatures by unknown keys or over checkpoints it never signed.

use std::path::PathBuf;

use isa_gateway::ledger::cosignature::{self, Cosignature, Witness};
use isa_gateway::ledger::signing::CheckpointKey;
use isa_gateway::ledger::{Entry, GENESIS, note};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

use crate::helpers::{GP_AGREEMENT, Spawn, TestApp, gp_update, pki, token};
use crate::ledger::{cli, intruder, rechain, stdout, three_transfers, try_export};

const NAME: &str = "audit.partner.example/witness";
/// The ledger's origin (the default, `ledger.origin`).
const ORIGIN: &str = "isa-gateway";

/// A witness's folder, made by `isa-gateway witness init`, and its verifier key.
struct WitnessDir {
    dir: tempfile::TempDir,
    vkey: String,
    token_file: PathBuf,
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("ISA_GATEWAY_WITNESS_KEY")
        .env_remove("ISA_GATEWAY_WITNESS_KEY_FILE")
        .output()
        .unwrap()
}

fn witness_init() -> WitnessDir {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let o = run(&["witness", "init", "--state", state.to_str().unwrap(), "--name", NAME]);
    assert!(o.status.success(), "{}", stdout(&o));
    let vkey = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    assert_eq!(Witness::parse(&vkey).unwrap().name, NAME);
    let token_file = dir.path().join("token");
    isa_gateway::platform::fs::write_file(&token_file, token("wendy", &["auditor"]).as_bytes(), true).unwrap();
    WitnessDir { dir, vkey, token_file }
}

impl WitnessDir {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn key(&self) -> CheckpointKey {
        isa_gateway::app::keystore::witness_key(&self.state()).unwrap()
    }

    fn witness(&self) -> Witness {
        Witness::parse(&self.vkey).unwrap()
    }

    /// The state the witness keeps for the gateway: its files and their bytes.
    fn kept(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = self.state().join("checkpoints");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect()
    }

    /// `isa-gateway witness cosign` against the gateway listening on `port`, as the auditor
    /// organisation (its client certificate, a token with the auditor role).
    async fn cosign(&self, port: u16, gateway_key: &str) -> std::process::Output {
        let p = pki();
        let args: Vec<String> = [
            "witness",
            "cosign",
            "--state",
            self.state().to_str().unwrap(),
            "--gateway",
            &format!("https://localhost:{port}"),
            "--origin",
            "isa-gateway",
            "--gateway-key",
            gateway_key,
            "--ca",
            p.ca_cert.to_str().unwrap(),
            "--cert",
            p.auditor.cert.to_str().unwrap(),
            "--key",
            p.auditor.key.to_str().unwrap(),
            "--token-file",
            self.token_file.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Again while the gateway answers 503 (see `retrying`).
        for _ in 0..20 {
            let args = args.clone();
            let o = tokio::task::spawn_blocking(move || run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .unwrap();
            if !text(&o).contains("503 Service Unavailable") {
                return o;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tokio::task::spawn_blocking(move || run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    }
}

/// A gateway that accepts `vkey`'s cosignatures.
async fn gateway_with_witness(vkey: &str) -> TestApp {
    TestApp::spawn_with(Spawn {
        destinations: format!("[ledger]\nwitnesses = [\"{vkey}\"]\n"),
        ..Spawn::default()
    })
    .await
}

/// Sends a request, again while the gateway answers 503 `ledger_unavailable` ("try again
/// later", as a client would): the fork test runs the insider's restarted gateway beside the
/// first on one SQLite file, which no deployment does (several gateways need PostgreSQL), and
/// SQLite then now and then reports a short read to one of them.
async fn retrying(request: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    for _ in 0..20 {
        let r = request().send().await.unwrap();
        if r.status().as_u16() != 503 {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    request().send().await.unwrap()
}

/// Signs a checkpoint now, through the API; the response body.
async fn checkpoint(app: &TestApp, port: u16) -> Value {
    let r = retrying(|| {
        app.auditor
            .post(format!("https://localhost:{port}/v1/ledger/checkpoints"))
    })
    .await;
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn latest(app: &TestApp, port: u16) -> Value {
    let r = retrying(|| {
        app.auditor
            .get(format!("https://localhost:{port}/v1/ledger/checkpoint"))
    })
    .await;
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn more_transfers(app: &TestApp, n: usize) {
    for _ in 0..n {
        let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
        assert_eq!(status, 202);
        app.settled(body["transfer_id"].as_str().unwrap()).await;
    }
}

fn text(o: &std::process::Output) -> String {
    stdout(o)
}

#[tokio::test]
async fn a_witness_cosigns_a_consistent_extension_and_verify_and_bundles_require_it() {
    let w = witness_init();
    let app = three_transfers(gateway_with_witness(&w.vkey).await).await;
    let port = app.addr.port();
    let signed = checkpoint(&app, port).await;
    let gateway_key = signed["public_key"].as_str().unwrap().to_owned();
    let vkey = w.vkey.as_str();

    // Before the witness has run, an auditor who requires it gets a failure.
    let o = cli(&app, &["ledger", "verify", "--witness", vkey]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no cosignature by witness"), "{}", text(&o));

    // The first run: trusted on first use, cosigned, handed to the gateway, served back.
    let o = w.cosign(port, &gateway_key).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("cosigned: isa-gateway at tree size 6"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("first checkpoint"), "{}", text(&o));
    let note_text = latest(&app, port).await["note"].as_str().unwrap().to_owned();
    let c = cosignature::find(&note_text, &w.witness()).expect("the gateway serves the cosignature");
    assert!(note_text.contains(&c.line()));
    let public = isa_gateway::ledger::checkpoint::parse_public_key(&gateway_key).unwrap();
    assert_eq!(note::verify(&note_text, "isa-gateway", &public).unwrap().tree_size, 6);
    // The witness's kept checkpoint is itself a kept checkpoint an auditor can use.
    let kept = w.kept();
    assert_eq!(kept.len(), 1);
    let kept_note = String::from_utf8(kept[0].1.clone()).unwrap();
    assert!(cosignature::find(&kept_note, &w.witness()).is_some());

    let o = cli(&app, &["ledger", "verify", "--witness", vkey]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("witness {NAME}: cosigned the tree of 6 entries")),
        "{}",
        text(&o)
    );
    let kept_file = kept[0].0.to_str().unwrap();
    let o = cli(
        &app,
        &["ledger", "verify", "--checkpoint", kept_file, "--witness", vkey],
    );
    assert!(o.status.success(), "{}", text(&o));

    // The ledger grows; the next run proves the extension and cosigns it.
    more_transfers(&app, 2).await;
    let grown = checkpoint(&app, port).await["checkpoint"]["tree_size"]
        .as_u64()
        .unwrap();
    assert!(grown > 6);
    let o = w.cosign(port, &gateway_key).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("extension of the 6 entries cosigned before (consistency proof verified)"),
        "{}",
        text(&o)
    );
    let o = cli(&app, &["ledger", "verify", "--witness", vkey]);
    assert!(
        text(&o).contains(&format!("cosigned the tree of {grown} entries")),
        "{}",
        text(&o)
    );

    // An audit bundle carries the cosignature; verify-bundle requires the named witness's.
    let (out, o) = try_export(&app, "bundle", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("carries 1 witness cosignature"), "{}", text(&o));
    let bundle = out.to_str().unwrap();
    // Unpinned, the auditor names the origin the witness must have cosigned.
    let o = run(&["ledger", "verify-bundle", bundle, "--witness", vkey]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("name the ledger's origin (--origin"), "{}", text(&o));
    let o = run(&[
        "ledger",
        "verify-bundle",
        bundle,
        "--witness",
        vkey,
        "--origin",
        "another-ledger",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not \"another-ledger\""), "{}", text(&o));
    let o = run(&["ledger", "verify-bundle", bundle, "--witness", vkey, "--origin", ORIGIN]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("witnesses {NAME} (at ")), "{}", text(&o));
    assert!(text(&o).contains("NOT pinned"), "{}", text(&o));
    let o = run(&[
        "ledger",
        "verify-bundle",
        bundle,
        "--public-key",
        &gateway_key,
        "--witness",
        vkey,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the pinned checkpoint key"), "{}", text(&o));
    // Another witness did not cosign it.
    let stranger = Witness::new("stranger.example/w", CheckpointKey::from_seed(&[42; 32]).public()).unwrap();
    let o = run(&[
        "ledger",
        "verify-bundle",
        bundle,
        "--witness",
        &stranger.vkey(),
        "--origin",
        ORIGIN,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no cosignature by witness stranger.example/w"),
        "{}",
        text(&o)
    );
    // Nor is the cosignature good for another tree: the note's lines moved onto a changed body.
    let note_path = out.join("checkpoint.note");
    let bundled = std::fs::read_to_string(&note_path).unwrap();
    let (head, sigs) = bundled.split_once("\n\n").unwrap();
    let mut lines: Vec<&str> = head.lines().collect();
    let bumped = (lines[1].parse::<u64>().unwrap() + 1).to_string();
    lines[1] = &bumped;
    std::fs::write(&note_path, format!("{}\n\n{sigs}", lines.join("\n"))).unwrap();
    let o = run(&["ledger", "verify-bundle", bundle, "--witness", vkey, "--origin", ORIGIN]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[tokio::test]
async fn the_witness_key_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = witness_init();
    let key = isa_gateway::app::keystore::witness_key_path(&w.state());
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let state = w.state();
    let o = run(&["witness", "show", "--state", state.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), w.vkey);
    // A second init does not replace the key others pin.
    let o = run(&["witness", "init", "--state", state.to_str().unwrap(), "--name", NAME]);
    assert!(
        !o.status.success() && text(&o).contains("already exists"),
        "{}",
        text(&o)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["witness", "show", "--state", state.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("chmod 600"), "{}", text(&o));
    let seed = std::fs::read_to_string(&key).unwrap();
    assert!(!text(&o).contains(seed.trim()), "the key is never printed");
}

/// Starts another gateway process-alike on the same configuration (and database): what an
/// insider's restart does. Returns its port.
async fn restart(app: &TestApp) -> u16 {
    let config = isa_gateway::app::config::Config::load(&app.config_path, &Default::default()).unwrap();
    let again = isa_gateway::app::startup::Application::build(config).await.unwrap();
    let port = again.addr().port();
    tokio::spawn(again.run_until_stopped());
    port
}

/// A witness, and a gateway of three transfers whose checkpoint it has cosigned: the witness,
/// the gateway, its port and its checkpoint key.
async fn cosigned_once() -> (WitnessDir, TestApp, u16, String) {
    let w = witness_init();
    let app = three_transfers(gateway_with_witness(&w.vkey).await).await;
    let port = app.addr.port();
    let gateway_key = checkpoint(&app, port).await["public_key"].as_str().unwrap().to_owned();
    let o = w.cosign(port, &gateway_key).await;
    assert!(o.status.success(), "{}", text(&o));
    (w, app, port, gateway_key)
}

#[tokio::test]
async fn a_witness_refuses_a_fork_and_keeps_its_state() {
    let (w, app, _, gateway_key) = cosigned_once().await;
    let before = w.kept();

    // The insider, with the database and the gateway's key but no checkpoint log: the user who
    // asked changed, the chain re-hashed, the checkpoints deleted, the gateway restarted, and
    // the rewritten tree signed with the real key at the size the witness cosigned.
    let mut entries: Vec<Entry> = app.ledger.entries_after(0, 100).await.unwrap();
    entries[0].event.user_sub = Some("someone-else".into());
    let mut conn = intruder(&app).await;
    rechain(&mut conn, &mut entries, GENESIS).await;
    sqlx::query("UPDATE transfers SET user_sub = 'someone-else' WHERE transfer_id = $1")
        .bind(entries[0].event.transfer_id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.execute("DELETE FROM checkpoints").await.unwrap();
    conn.close().await.unwrap();
    let forked = restart(&app).await;
    let resigned = checkpoint(&app, forked).await;
    assert_eq!(resigned["checkpoint"]["tree_size"], 6);
    assert_eq!(resigned["public_key"], gateway_key.as_str(), "signed with the real key");
    // Without a witness, the gateway's own key vouches for the rewrite.
    assert!(cli(&app, &["ledger", "verify"]).status.success());

    // Two roots at one size: the witness refuses, cosigns nothing, keeps its state.
    let o = w.cosign(forked, &gateway_key).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("REFUSED: fork"), "{}", text(&o));
    assert!(text(&o).contains("tree size 6"), "{}", text(&o));
    assert_eq!(w.kept(), before, "the witness's state is unchanged");
    let served = latest(&app, forked).await["note"].as_str().unwrap().to_owned();
    assert!(
        cosignature::find(&served, &w.witness()).is_none(),
        "no cosignature on the fork"
    );

    // The rewritten ledger grows and is signed again: the proof from what the witness cosigned
    // fails, and it refuses again.
    more_transfers_at(&app, forked, 2).await;
    let grown = checkpoint(&app, forked).await;
    assert!(grown["checkpoint"]["tree_size"].as_u64().unwrap() > 6);
    let o = w.cosign(forked, &gateway_key).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("consistency proof fails"), "{}", text(&o));
    assert_eq!(w.kept(), before);

    // And an auditor who requires the witness sees the rewrite the key alone did not show.
    let o = cli(&app, &["ledger", "verify", "--witness", &w.vkey]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no longer extends"), "{}", text(&o));
}

#[tokio::test]
async fn a_witness_refuses_other_agreement_heads_at_a_size_it_cosigned() {
    let (w, app, port, _) = cosigned_once().await;
    let before = w.kept();

    // The insider, with the database and the gateway's key: the checkpoint at the size the
    // witness cosigned replaced by one with the same root but other agreement heads (as if the
    // fifth entry were not the GP agreement's), so that a bundle without it would prove complete.
    let seed: [u8; 32] = hex::decode(
        std::fs::read_to_string(app.dir.path().join("keys/signing/checkpoint-v1.key"))
            .unwrap()
            .trim(),
    )
    .unwrap()
    .try_into()
    .expect("a 32-byte seed");
    let key = CheckpointKey::from_seed(&seed);
    let entries: Vec<Entry> = app.ledger.entries_after(0, 100).await.unwrap();
    let mut heads = isa_gateway::ledger::heads::Heads::default();
    for e in entries.iter().filter(|e| e.seq != 5) {
        heads.record(&e.event.agreement_id, e.event.at.as_microsecond(), &e.hash);
    }
    let root = app.ledger.root(6).await.unwrap();
    let lying = isa_gateway::ledger::checkpoint::Checkpoint::sign(6, root, heads.lines(), jiff::Timestamp::now(), &key);
    let mut conn = intruder(&app).await;
    conn.execute("DELETE FROM checkpoints").await.unwrap();
    conn.close().await.unwrap();
    app.ledger.store_checkpoint(&lying).await.unwrap();

    // The gateway will not start on it: the checkpoint its key signed is not of these entries.
    let config = isa_gateway::app::config::Config::load(&app.config_path, &Default::default()).unwrap();
    match isa_gateway::app::startup::Application::build(config).await {
        Ok(_) => panic!("the gateway started on a checkpoint whose heads are not the ledger's"),
        Err(e) => assert!(e.to_string().contains("per-agreement heads"), "{e}"),
    }
    // The database's own check finds it.
    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("per-agreement heads"), "{}", text(&o));

    // And a witness shown its note (by a gateway the insider built to serve it) refuses to cosign
    // other heads at a size it cosigned, and keeps its state.
    let p = pki();
    let client = isa_gateway::witness::Client::new(&isa_gateway::witness::ClientSettings {
        base_url: format!("https://localhost:{port}"),
        ca: p.ca_cert.clone(),
        cert: p.auditor.cert.clone(),
        key: p.auditor.key.clone(),
        token_file: w.token_file.clone(),
    })
    .unwrap();
    let state = isa_gateway::witness::State::open(&w.state()).unwrap();
    let lying_note = note::sign("isa-gateway", &lying.tree(), &key);
    let now = jiff::Timestamp::now().as_second() as u64;
    let refused = state
        .check_and_cosign(&client, "isa-gateway", &key.public(), &lying_note, now)
        .await
        .expect_err("other heads at a cosigned size are refused");
    assert!(refused.to_string().contains("equivocation"), "{refused}");
    assert_eq!(w.kept(), before, "the witness's state is unchanged");
}

#[tokio::test]
async fn two_witness_runs_at_once_do_not_both_cosign() {
    let w = witness_init();
    let app = three_transfers(gateway_with_witness(&w.vkey).await).await;
    let port = app.addr.port();
    let gateway_key = checkpoint(&app, port).await["public_key"].as_str().unwrap().to_owned();
    // Another run holds the state folder's lock (as `witness cosign` does from reading what it
    // cosigned to keeping the new one): this one stops, doing nothing.
    let lock = std::fs::File::open(w.state().join("witness.vkey"))
        .map(|_| ())
        .and_then(|()| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(w.state().join(".lock"))?;
            f.lock()?;
            Ok(f)
        });
    let lock = lock.unwrap();
    let o = w.cosign(port, &gateway_key).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("holds this state folder's lock"), "{}", text(&o));
    assert!(w.kept().is_empty(), "nothing kept");
    drop(lock);
    let o = w.cosign(port, &gateway_key).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(w.kept().len(), 1);
}

/// Transfers sent to the gateway on `port` (each recorded before it is answered).
async fn more_transfers_at(app: &TestApp, port: u16, n: usize) {
    for _ in 0..n {
        let r = retrying(|| {
            app.sender
                .post(format!(
                    "https://localhost:{port}/v1/agreements/{GP_AGREEMENT}/transfers"
                ))
                .json(&json!({"message_type": "gp_update", "payload": gp_update()}))
        })
        .await;
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    }
}

async fn submit(app: &TestApp, client: &reqwest::Client, body: &Value) -> (u16, Value) {
    let r = client
        .post(app.url("/v1/ledger/cosignatures"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cosignatures_by_unknown_keys_or_on_checkpoints_never_signed_are_refused() {
    let w = witness_init();
    let app = three_transfers(gateway_with_witness(&w.vkey).await).await;
    let signed = checkpoint(&app, app.addr.port()).await;
    let root_hex = signed["checkpoint"]["root"].as_str().unwrap().to_owned();
    let root: [u8; 32] = hex::decode(&root_hex).unwrap().try_into().unwrap();
    let agreements = Some(signed_heads(&signed["checkpoint"]));
    let now = jiff::Timestamp::now().as_second() as u64;
    let body = |size: u64, root: &[u8; 32], key: &CheckpointKey, name: &str, time: u64| {
        let tree = note::Tree {
            tree_size: size,
            root: *root,
            agreements,
        };
        let c = Cosignature::sign(name, key, &note::body("isa-gateway", &tree), time);
        json!({"tree_size": size, "root": hex::encode(root), "cosignature": c.line()})
    };
    let key = w.key();

    let cases = [
        (
            "unknown key",
            body(6, &root, &CheckpointKey::from_seed(&[9; 32]), NAME, now),
            "unknown_witness",
        ),
        (
            "never signed (root)",
            body(6, &[0; 32], &key, NAME, now),
            "unknown_checkpoint",
        ),
        (
            "never signed (size)",
            body(5, &root, &key, NAME, now),
            "unknown_checkpoint",
        ),
        (
            "from the future",
            body(6, &root, &key, NAME, now + 86_400),
            "cosignature_from_the_future",
        ),
        (
            "malformed",
            json!({"tree_size": 6, "root": root_hex, "cosignature": "— not a cosignature"}),
            "malformed_cosignature",
        ),
    ];
    for (what, b, code) in cases {
        let (status, answer) = submit(&app, &app.auditor, &b).await;
        assert_eq!((status, answer["code"].as_str()), (422, Some(code)), "{what}: {answer}");
    }
    // A valid cosignature over another origin's note: it does not verify here.
    let tree = note::Tree {
        tree_size: 6,
        root,
        agreements,
    };
    let other = Cosignature::sign(NAME, &key, &note::body("elsewhere", &tree), now);
    let (status, answer) = submit(
        &app,
        &app.auditor,
        &json!({"tree_size": 6, "root": root_hex, "cosignature": other.line()}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("invalid_cosignature")),
        "{answer}"
    );
    let (status, answer) = submit(
        &app,
        &app.auditor,
        &json!({"tree_size": 6, "root": "zz", "cosignature": other.line()}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_cosignature_request"))
    );
    // Only through an auditor's system.
    let good = body(6, &root, &key, NAME, now);
    let (status, _) = submit(&app, &app.sender, &good).await;
    assert_eq!(status, 403);
    let kept_before = app.ledger.cosignatures(0).await.unwrap();
    assert!(kept_before.is_empty(), "nothing refused was kept");

    // The good one is kept, once, and served.
    let (status, answer) = submit(&app, &app.auditor, &good).await;
    assert_eq!(status, 200, "{answer}");
    assert!(cosignature::find(answer["note"].as_str().unwrap(), &w.witness()).is_some());
    let (status, _) = submit(&app, &app.auditor, &body(6, &root, &key, NAME, now + 1)).await;
    assert_eq!(
        status, 200,
        "a second cosignature on the same tree is accepted and not kept again"
    );
    assert_eq!(app.ledger.cosignatures(0).await.unwrap().len(), 1);
}

/// The insider inserts a cosignature row in the witness's name (its key id, a garbage signature)
/// on the tree it is about to cosign: the witness's own still lands and is served back, and
/// `ledger verify --witness` names the forged row instead of falling back to an older tree.
#[tokio::test]
async fn a_forged_cosignature_row_neither_shadows_the_witness_nor_passes_verify() {
    let w = witness_init();
    let app = three_transfers(gateway_with_witness(&w.vkey).await).await;
    let port = app.addr.port();
    let signed = checkpoint(&app, port).await;
    let gateway_key = signed["public_key"].as_str().unwrap().to_owned();
    let size = signed["checkpoint"]["tree_size"].as_i64().unwrap();
    let root = signed["checkpoint"]["root"].as_str().unwrap().to_owned();
    let mut conn = intruder(&app).await;
    sqlx::query(
        "INSERT INTO cosignatures (tree_size, root, witness, key_id, time_s, signature) VALUES ($1, $2, $3, $4, 0, $5)",
    )
    .bind(size)
    .bind(&root)
    .bind(NAME)
    .bind(hex::encode(w.witness().key_id()))
    .bind("00".repeat(64))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let o = w.cosign(port, &gateway_key).await;
    assert!(o.status.success(), "{}", text(&o));
    let note_text = latest(&app, port).await["note"].as_str().unwrap().to_owned();
    assert!(cosignature::find(&note_text, &w.witness()).is_some(), "{note_text}");

    let o = cli(&app, &["ledger", "verify", "--witness", w.vkey.as_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("does not verify under its key"), "{}", text(&o));

    // A checkpoint row the insider inserted (a tree that never existed, not signed by the key) is
    // never re-signed and served: the latest is still the real one.
    let mut conn = intruder(&app).await;
    sqlx::query("INSERT INTO checkpoints (tree_size, root, at_us, signature) VALUES (1000000000, $1, 0, $2)")
        .bind("ab".repeat(32))
        .bind("00".repeat(64))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let r = app
        .auditor
        .get(format!("https://localhost:{port}/v1/ledger/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let served: Value = r.json().await.unwrap();
    assert_eq!(served["checkpoint"]["tree_size"].as_i64(), Some(size), "{served}");
}

/// The digest of the agreements' head lines a checkpoint (as the API shows it) signs.
fn signed_heads(checkpoint: &Value) -> [u8; 32] {
    let lines: Vec<[u8; 32]> = checkpoint["agreements"]
        .as_array()
        .expect("a checkpoint signs the agreements' heads")
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    isa_gateway::ledger::heads::digest(&lines)
}
