//! The gateway killed with SIGKILL in the middle of a burst, then restarted: nothing that got a
//! 202 is lost, nothing is half-recorded, and "delivered" is recorded exactly once per transfer.
//!
//! Deterministic by design: the kill lands at an arbitrary point, and every assertion holds
//! wherever it lands.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use isa_gateway::ledger::{EventKind, Ledger, SqlLedger, TransferStatus, verify_chain};
use serde_json::{Value, json};

use crate::helpers::{GatewayProcess, Receiver, dev_config_in, gp_update, http_client, https_destination, pki};

#[tokio::test]
async fn a_sigkill_mid_burst_loses_nothing_that_was_accepted() {
    let receiver = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    // The GP agreement's destination, redirected to a real HTTPS receiver.
    let destination =
        https_destination("y99001-gp-drop", receiver.port).replace("max_attempts = 3", "max_attempts = 1000");
    let config = dev_config_in(dir.path(), |c| {
        let start = c.find("[[destinations]]\nid = \"y99001-gp-drop\"").unwrap();
        let end = start + c[start..].find("\n\n").unwrap();
        // A burst: the per-system limits are not what is under test here.
        format!("{}{}{}", &c[..start], destination.trim_end(), &c[end..]).replace(
            "[limits]\n",
            "[limits]\nrequests_per_sec = 100000\nrequest_burst = 100000\nconnections_per_identity = 100000\n",
        )
    });
    let gateway = GatewayProcess::start(&config).await;
    let client = http_client(&pki().sender);
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..120 {
        let (client, url, body, tx) = (
            client.clone(),
            gateway.url("/v1/agreements/nvtt-gp-update/transfers"),
            body.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            // Stagger a little so the burst is still going when the kill lands.
            tokio::time::sleep(Duration::from_millis(i * 3)).await;
            let outcome = match client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 202 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["transfer_id"].as_str().map(str::to_owned)),
                _ => None,
            };
            let _ = tx.send(outcome);
        });
    }
    drop(tx);
    let mut accepted = HashSet::new();
    let mut answered = 0;
    while let Some(outcome) = rx.recv().await {
        answered += 1;
        if let Some(id) = outcome {
            accepted.insert(id);
        }
        if answered == 25 {
            let _ = gateway_kill_now(&gateway);
        }
    }
    let _ = gateway.kill();
    eprintln!("crash test: {} of 120 got 202 before the kill", accepted.len());
    assert!(
        accepted.len() >= 20,
        "enough transfers were accepted before the kill: {}",
        accepted.len()
    );
    assert!(answered == 120);

    // Restart on the same database and folders; the worker resumes the outbox.
    let gateway = GatewayProcess::start(&config).await;
    let auditor = crate::helpers::http_client_as(&pki().auditor, &crate::helpers::token("ivan", &["auditor"]));
    let mut settled = false;
    for _ in 0..400 {
        let list: Value = auditor
            .get(gateway.url("/v1/agreements/nvtt-gp-update/transfers?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = list["transfers"].as_array().unwrap();
        if rows
            .iter()
            .all(|r| r["status"] == "delivered" || r["status"] == "refused")
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gateway.kill();
    assert!(settled, "deliveries did not finish after the restart:\n{log}");

    eprintln!("crash test: restarted and settled");
    let ledger = SqlLedger::sqlite(&dir.path().join("var/isa-gateway.db")).await.unwrap();
    let report = verify_chain(&ledger).await.unwrap();
    assert_eq!(report.first_break, None, "the chain survived the kill");
    let entries = ledger.entries_after(0, 100_000).await.unwrap();
    let mut decisions: HashMap<String, TransferStatus> = HashMap::new();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        let id = e.event.transfer_id.to_string();
        match (e.event.kind, e.event.status) {
            (EventKind::Decision, s) => {
                assert!(decisions.insert(id, s).is_none(), "one decision per transfer");
            }
            (EventKind::Delivery, TransferStatus::Delivered) => *delivered.entry(id).or_default() += 1,
            _ => {}
        }
    }
    // Everything the client was told is accepted is recorded as accepted and delivered, once.
    for id in &accepted {
        assert_eq!(
            decisions.get(id),
            Some(&TransferStatus::Accepted),
            "{id} got 202 but is not recorded"
        );
        assert_eq!(
            delivered.get(id),
            Some(&1),
            "{id} not delivered exactly once in the ledger"
        );
    }
    // Anything recorded is complete: every accepted decision, answered or not, was delivered once.
    for (id, status) in &decisions {
        assert_eq!(*status, TransferStatus::Accepted);
        assert_eq!(delivered.get(id), Some(&1), "{id} is half-recorded");
    }
    assert_eq!(ledger.outbox_depth().await.unwrap(), Vec::<(String, i64)>::new());
    eprintln!(
        "crash test: {} decisions recorded ({} answered 202), receiver saw {} requests",
        decisions.len(),
        accepted.len(),
        receiver.ids().len()
    );
    // The receiver saw every accepted transfer at least once (repeats are allowed and carry the id).
    let seen: HashSet<String> = receiver.ids().into_iter().collect();
    for id in decisions.keys() {
        assert!(seen.contains(id), "{id} never reached the receiver");
    }
}

/// Sends SIGKILL to the running process without consuming the handle.
fn gateway_kill_now(gateway: &GatewayProcess) -> std::io::Result<()> {
    std::process::Command::new("kill")
        .args(["-9", &gateway.pid().to_string()])
        .status()
        .map(|_| ())
}
