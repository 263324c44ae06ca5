//! Issue 12, item 5: an audit bundle proves that it holds every entry of its agreement in its
//! range, not only that the entries it holds are genuine. Through the real CLI, offline.

use std::path::{Path, PathBuf};

use serde_json::Value;

use isa_gateway::platform::clock::Clock;

use crate::helpers::{GP_AGREEMENT, Spawn, TestApp, gp_update};
use crate::ledger::{cli, stdout};

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
    let r = app
        .auditor
        .post(app.url("/v1/ledger/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checkpoint"]["tree_size"], 6);
    (app, body["public_key"].as_str().unwrap().to_owned())
}

fn export(app: &TestApp, name: &str, extra: &[&str]) -> PathBuf {
    let out = app.dir.path().join(name);
    let mut args = vec![
        "ledger",
        "export",
        "--agreement",
        GP_AGREEMENT,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = cli(app, &args);
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
    assert!(
        stdout(&o).contains("not complete") || stdout(&o).contains("boundary") || stdout(&o).contains("hidden"),
        "{what}: {}",
        stdout(&o)
    );
}

#[tokio::test]
async fn a_bundle_with_an_entry_left_out_fails_and_a_period_is_proved_by_its_boundaries() {
    let (app, public) = three_minutes().await;
    let full = export(&app, "full", &[]);
    let ok = verify(&full, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains(&format!("complete: every entry of {GP_AGREEMENT} from seq 1 to seq 6")),
        "{}",
        stdout(&ok)
    );
    let agreement: Value = serde_json::from_slice(&std::fs::read(full.join("agreement.json")).unwrap()).unwrap();
    assert_eq!(agreement["before"]["count"], 0);
    assert_eq!(agreement["after"], serde_json::json!([]));
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
    // Two lines swapped (with their proofs): out of ledger order.
    let swapped = app.dir.path().join("swapped");
    copy(&full, &swapped);
    for file in ["entries.jsonl", "proofs.jsonl"] {
        let mut l = lines(&full.join(file));
        l.swap(1, 2);
        write_lines(&swapped.join(file), &l);
    }
    assert!(!verify(&swapped, &public).status.success());

    // A period: from the fourth entry's time. The bundle starts at the first entry recorded then or
    // later, shows the one before it in full (recorded before the period), and the earlier ones
    // only as a count and link.
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
    let since = times[2];
    let first = 3;
    let period = export(&app, "period", &["--since", &since.to_string()]);
    let ok = verify(&period, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains(&format!(
            "from seq {first} to seq 6 (the signed tree holds {} of its entries before them and 0 after",
            first - 1
        )),
        "{}",
        stdout(&ok)
    );
    let proof: Value = serde_json::from_slice(&std::fs::read(period.join("agreement.json")).unwrap()).unwrap();
    assert_eq!(proof["boundary_before"]["seq"], first as i64 - 1);
    assert_eq!(lines(&period.join("entries.jsonl")).len(), 7 - first);

    // The exporter cannot shrink the period: dropping the period's first entry and showing it as
    // the boundary instead fails, because it was recorded within the period.
    let shrunk = app.dir.path().join("shrunk");
    copy(&period, &shrunk);
    let mut proof_shrunk = proof.clone();
    let moved: Value = serde_json::from_str(&lines(&period.join("entries.jsonl"))[0]).unwrap();
    let old_boundary = proof["boundary_before"]["hash"].as_str().unwrap();
    let mut before = isa_gateway::ledger::heads::Head {
        count: proof["before"]["count"].as_u64().unwrap(),
        link: hex::decode(proof["before"]["link"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    };
    before.extend(&hex::decode(old_boundary).unwrap().try_into().unwrap());
    proof_shrunk["before"] = serde_json::json!({"count": before.count, "link": hex::encode(before.link)});
    proof_shrunk["boundary_before"] = moved;
    std::fs::write(
        shrunk.join("agreement.json"),
        serde_json::to_vec(&proof_shrunk).unwrap(),
    )
    .unwrap();
    for file in ["entries.jsonl", "proofs.jsonl"] {
        let mut l = lines(&period.join(file));
        l.remove(0);
        write_lines(&shrunk.join(file), &l);
    }
    let o = verify(&shrunk, &public);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("recorded within the period"), "{}", stdout(&o));

    // Hiding earlier entries without the boundary, or a later hash removed: not complete.
    let hidden = app.dir.path().join("hidden");
    copy(&period, &hidden);
    let mut p = proof.clone();
    p["boundary_before"] = Value::Null;
    std::fs::write(hidden.join("agreement.json"), serde_json::to_vec(&p).unwrap()).unwrap();
    fails_incomplete(&hidden, &public, "the boundary removed");
    let until = export(&app, "until", &["--until", &times[2].to_string()]);
    let ok = verify(&until, &public);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let proof: Value = serde_json::from_slice(&std::fs::read(until.join("agreement.json")).unwrap()).unwrap();
    assert!(!proof["boundary_after"].is_null());
    let mut p = proof.clone();
    let after = p["after"].as_array_mut().unwrap();
    assert!(!after.is_empty(), "{proof}");
    after.pop();
    std::fs::write(until.join("agreement.json"), serde_json::to_vec(&p).unwrap()).unwrap();
    fails_incomplete(&until, &public, "a later entry's hash removed");
}
