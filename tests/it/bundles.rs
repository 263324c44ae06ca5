//! Issue 12, item 5: an audit bundle proves that it holds every entry of its agreement in its
//! range, not only that the entries it holds are genuine. Through the real CLI, offline.

use std::path::{Path, PathBuf};

use serde_json::Value;

use isa_gateway::platform::clock::Clock;

use sqlx::Executor as _;

use crate::helpers::{GP_AGREEMENT, Spawn, TestApp, gp_update};
use crate::ledger::{intruder, sign_checkpoint, stdout, try_export};

/// Three GP updates a minute apart, each delivered (six entries), and a checkpoint; the
/// checkpoint key, as pinned.
async fn three_minutes() -> (TestApp, String) {
    let clock = Clock::manual("2026-06-01T12:00:00Z".parse().unwrap());
    let app = TestApp::spawn_with(Spawn {
        clock: clock.clone(),
        ..Spawn::default()
    })
    .await;
    for _ in 0..3 {
        let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
        assert_eq!(status, 202);
        app.settled(body["transfer_id"].as_str().unwrap()).await;
        if let Clock::Manual(t) = &clock {
            let mut t = t.lock().unwrap();
            *t += jiff::SignedDuration::from_mins(1);
        }
    }
    let body = sign_checkpoint(&app).await;
    assert_eq!(body["checkpoint"]["tree_size"], 6);
    (app, body["public_key"].as_str().unwrap().to_owned())
}

fn export(app: &TestApp, name: &str, extra: &[&str]) -> PathBuf {
    let (out, o) = try_export(app, name, extra);
    assert!(o.status.success(), "{}", stdout(&o));
    out
}

fn verify(dir: &Path, public: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["ledger", "verify-bundle", dir.to_str().unwrap(), "--public-key", public])
        .output()
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// A copy of a bundle, to break.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

fn fails_incomplete(dir: &Path, public: &str, what: &str) {
    let o = verify(dir, public);
    assert!(!o.status.success(), "{what}: {}", stdout(&o));
    assert!(stdout(&o).contains("not complete"), "{what}: {}", stdout(&o));
}

#[tokio::test]
async fn a_bundle_with_an_entry_left_out_fails_and_a_period_is_proved_by_its_boundaries() {
    let (app, public) = three_minutes().await;
    let full = export(&app, "full", &[]);
    let ok = verify(&full, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains(&format!(
            "complete: every entry of {GP_AGREEMENT} recorded at any time (6 entries; the signed tree holds 0 more"
        )),
        "{}",
        stdout(&ok)
    );
    let agreement: Value = serde_json::from_slice(&std::fs::read(full.join("agreement.json")).unwrap()).unwrap();
    assert_eq!(agreement["others"], serde_json::json!([]));
    let checkpoint: Value = serde_json::from_slice(&std::fs::read(full.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(
        checkpoint["agreements"].as_array().map(Vec::len),
        Some(1),
        "one agreement's head, signed"
    );

    // One line left out, with its proof: each remaining entry is still genuine and in the tree,
    // and yet the bundle fails. First, middle and last.
    for drop in [0, 2, 5] {
        let broken = app.dir.path().join(format!("drop-{drop}"));
        copy(&full, &broken);
        for file in ["entries.jsonl", "proofs.jsonl"] {
            let mut l = lines(&full.join(file));
            l.remove(drop);
            write_lines(&broken.join(file), &l);
        }
        fails_incomplete(&broken, &public, &format!("entry {} left out", drop + 1));
    }
    // A period: from the third entry's time. The bundle holds the entries recorded then or later;
    // agreement.json shows the earlier ones by time and hash only.
    let times: Vec<jiff::Timestamp> = lines(&full.join("entries.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["at"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    // A decision and its delivery share a minute; the minutes differ.
    assert!(times[1] < times[2] && times[3] < times[4], "{times:?}");
    let since = times[2].to_string();
    let period = export(&app, "period", &["--since", &since]);
    let ok = verify(&period, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains(&format!(
            "complete: every entry of {GP_AGREEMENT} recorded from {since} (4 entries; the signed tree holds 2 more of \
             its entries, each recorded outside that period)"
        )),
        "{}",
        stdout(&ok)
    );
    let proof: Value = serde_json::from_slice(&std::fs::read(period.join("agreement.json")).unwrap()).unwrap();
    let others = proof["others"].as_array().unwrap();
    assert_eq!(
        others.iter().map(|o| o["seq"].as_i64().unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(others.iter().all(|o| o.get("event").is_none()), "only time and hash");
    assert_eq!(lines(&period.join("entries.jsonl")).len(), 4);

    // The auditor names what they asked for; a bundle of another period or agreement fails.
    let asked = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args([
                "ledger",
                "verify-bundle",
                period.to_str().unwrap(),
                "--public-key",
                &public,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(
        asked(&["--agreement", GP_AGREEMENT, "--since", &since])
            .status
            .success()
    );
    let o = asked(&["--since", &times[0].to_string()]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("not the --since you asked for"), "{}", stdout(&o));
    assert!(!asked(&["--agreement", "nvtt-mash-referral"]).status.success());
    assert!(!asked(&["--until", &times[5].to_string()]).status.success());

    // The exporter cannot narrow the period: an entry of it moved out of the bundle into
    // agreement.json is recorded within the period (its time is fixed by the signed head) ...
    let moved: Value = serde_json::from_str(&lines(&period.join("entries.jsonl"))[0]).unwrap();
    let narrowed = |at: &str, name: &str| {
        let dir = app.dir.path().join(name);
        copy(&period, &dir);
        let mut p = proof.clone();
        p["others"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"seq": moved["seq"], "at": at, "hash": moved["hash"]}));
        std::fs::write(dir.join("agreement.json"), serde_json::to_vec(&p).unwrap()).unwrap();
        for file in ["entries.jsonl", "proofs.jsonl"] {
            let mut l = lines(&period.join(file));
            l.remove(0);
            write_lines(&dir.join(file), &l);
        }
        verify(&dir, &public)
    };
    let o = narrowed(moved["event"]["at"].as_str().unwrap(), "narrowed");
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("was recorded within the period"), "{}", stdout(&o));
    // ... and shown with an earlier time, it no longer reaches the signed head.
    let o = narrowed(&times[0].to_string(), "backdated");
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("not complete"), "{}", stdout(&o));

    // One of the others removed: not complete.
    let hidden = app.dir.path().join("hidden");
    copy(&period, &hidden);
    let mut p = proof.clone();
    p["others"].as_array_mut().unwrap().remove(1);
    std::fs::write(hidden.join("agreement.json"), serde_json::to_vec(&p).unwrap()).unwrap();
    fails_incomplete(&hidden, &public, "an earlier entry removed from agreement.json");
    // An --until period: the later entries are the others.
    let until = export(&app, "until", &["--until", &times[2].to_string()]);
    let ok = verify(&until, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("(2 entries; the signed tree holds 4 more"),
        "{}",
        stdout(&ok)
    );

    // An insider moves an entry to another agreement by its index column: the heads come from
    // the entries' own bytes, so the export no longer reaches the signed head and writes nothing.
    let mut conn = intruder(&app).await;
    conn.execute("UPDATE ledger_entries SET agreement_id = 'nvtt-mash-referral' WHERE seq = 4")
        .await
        .unwrap();
    let (out, o) = try_export(&app, "after-the-move", &[]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("do not reach the head"), "{}", stdout(&o));
    assert!(!out.join("entries.jsonl").exists(), "nothing exported");
}
