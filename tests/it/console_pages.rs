//! The console's follow-up and audit pages, as people use them (over HTTPS, with the development
//! sign-in, against a real gateway process): a director reviews an urgent referral, a lead records
//! that the person was told, "My transfers", the agreement as a document, its activity chart and
//! counts by legal basis, and the ledger page's "verify now" catching an edited database.

use sqlx::{Connection, Executor};

use super::console::{csrf_in, dev_sign_in, form, plain_client};
use super::helpers::{GatewayProcess, dev_config_in, repo};

/// GET a console page as the person with this session: status and body.
async fn get(client: &reqwest::Client, url: String, session: &str) -> (u16, String) {
    let r = client.get(url).header("cookie", session).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The ledger page once "verify now" has finished (it runs in the background), with `want`.
async fn verified(client: &reqwest::Client, url: String, session: &str, want: &str) -> String {
    let mut page = String::new();
    for _ in 0..200 {
        page = get(client, url.clone(), session).await.1;
        if page.contains(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    page
}

/// POST a console form with the session's CSRF token (read from `page`): status and Location.
async fn post(
    client: &reqwest::Client,
    url: String,
    session: &str,
    page: &str,
    fields: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let csrf = csrf_in(page);
    let mut pairs = fields.to_vec();
    pairs.push(("csrf", &csrf));
    let r = client
        .post(url)
        .header("cookie", session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .await
        .unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (r.status().as_u16(), location, r.text().await.unwrap())
}

#[tokio::test]
async fn an_urgent_referral_is_reviewed_its_subject_recorded_as_told_and_the_auditor_sees_and_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&dev_config_in(dir.path(), |c| c)).await;
    let console = gateway.console_url();
    let page = |path: &str| format!("{console}{path}");
    let client = plain_client();

    // Sam, a safeguarding lead, sends an immediate MASH referral through the case system: it
    // leaves at once, a director must review it within 24 hours, and the child's mother is to be
    // told afterwards (by a date long past: overdue).
    let api = super::helpers::http_client_as(
        &super::helpers::pki().sender,
        &super::helpers::token("sam", &["safeguarding_lead"]),
    );
    let mut envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/mash_referral.json")).unwrap()).unwrap();
    envelope["immediate"] = serde_json::json!(true);
    envelope["subject_informed"] = serde_json::json!({"status": "after", "due_by": "2026-06-08"});
    let id = super::helpers::post_accepted(
        api,
        gateway.url("/v1/agreements/nvtt-mash-referral/transfers"),
        serde_json::to_vec(&envelope).unwrap(),
        &[],
    )
    .await;

    // Sam finds it under "My transfers" and "People to be told" (overdue), and records it.
    let sam = dev_sign_in(&client, &console, "sam", "safeguarding_lead").await;
    let (status, mine) = get(&client, page("/mine"), &sam).await;
    assert_eq!(status, 200);
    assert!(mine.contains(&format!("/transfers/{id}")), "{mine}");
    let (_, told) = get(&client, page("/told"), &sam).await;
    assert!(told.contains(&format!("/transfers/{id}/told")), "{told}");
    assert!(told.contains("overdue"), "{told}");
    // A note instead of a reference is refused, naming the field and rule, without echoing it.
    let (status, _, refused) = post(
        &client,
        page(&format!("/transfers/{id}/told")),
        &sam,
        &told,
        &[("note_ref", "Told mum on the phone")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(refused.contains("note_ref") && refused.contains("pattern"), "{refused}");
    assert!(!refused.contains("Told mum"), "the typed note is never echoed");
    let (status, location, _) = post(
        &client,
        page(&format!("/transfers/{id}/told")),
        &sam,
        &told,
        &[("note_ref", "CMS:contact/88")],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/told")));
    let (_, told) = get(&client, page("/told"), &sam).await;
    assert!(!told.contains(&id), "recorded: nobody left to tell");
    assert!(told.contains("Nobody is waiting to be told."));
    // Another person with no sending role cannot open the page.
    let dora = dev_sign_in(&client, &console, "dora", "dpo").await;
    assert_eq!(get(&client, page("/told"), &dora).await.0, 403);

    // Sam as a director may not review their own referral; Dee, another director, does.
    let sam_director = dev_sign_in(&client, &console, "sam", "director").await;
    let (_, own) = get(&client, page(&format!("/transfers/{id}")), &sam_director).await;
    assert!(
        own.contains("another director must review it") && !own.contains("Record the review"),
        "{own}"
    );
    let dee = dev_sign_in(&client, &console, "dee", "director").await;
    let (_, queue) = get(&client, page("/held"), &dee).await;
    assert!(
        queue.contains("Urgent transfers awaiting review") && queue.contains(&format!("/transfers/{id}")),
        "{queue}"
    );
    let (_, transfer) = get(&client, page(&format!("/transfers/{id}")), &dee).await;
    assert!(transfer.contains("Record the review"), "{transfer}");
    assert!(
        transfer.contains("Told (recorded"),
        "the page shows the person was told: {transfer}"
    );
    let (status, location, _) = post(
        &client,
        page(&format!("/transfers/{id}/review")),
        &dee,
        &transfer,
        &[("reason", "justified"), ("note_ref", "CMS:review/12")],
    )
    .await;
    assert_eq!((status, location), (303, Some(format!("/transfers/{id}"))));
    let (_, transfer) = get(&client, page(&format!("/transfers/{id}")), &dee).await;
    assert!(
        transfer.contains("Reviewed ") && !transfer.contains("Record the review"),
        "{transfer}"
    );
    let (_, queue) = get(&client, page("/held"), &dee).await;
    assert!(queue.contains("No review is outstanding."), "{queue}");

    // The auditor reads the agreement as a document, its activity and counts by legal basis.
    let ivan = dev_sign_in(&client, &console, "ivan", "auditor").await;
    let (status, document) = get(&client, page("/audit/agreements/nvtt-mash-referral"), &ivan).await;
    assert_eq!(status, 200);
    for part in [
        "1. Parties",
        "4. Legal basis",
        "5. What is shared",
        "Two-person rule",
        "Content hash",
    ] {
        assert!(document.contains(part), "{part}: {document}");
    }
    assert!(
        document.contains("/subject/nhs_number"),
        "the fields are listed: {document}"
    );
    assert_eq!(
        get(&client, page("/audit/agreements/nvtt-mash-referral"), &sam).await.0,
        403
    );
    assert_eq!(get(&client, page("/audit/agreements/no-such"), &ivan).await.0, 404);
    let (status, activity) = get(
        &client,
        page("/audit/agreements/nvtt-mash-referral/activity?days=7"),
        &ivan,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        activity.contains("1 permitted without waiting, 0 held for a director, 0 refused"),
        "{activity}"
    );
    assert!(
        activity.contains("<svg") && activity.contains("class=\"bar-sent\""),
        "{activity}"
    );
    assert!(
        activity.contains("Children Act 1989"),
        "counts by legal basis, with titles: {activity}"
    );

    // Transfers filtered by the legal basis that applied (the child's: Children Act 1989 s.47,
    // not the Care Act's), by message type, sending system and user.
    for (query, listed) in [
        ("legal_basis=statute%2Fchildren-act-1989%2Fs47", true),
        ("legal_basis=statute%2Fcare-act-2014%2Fs42", false),
        ("message_type=mash_referral&sender_system=tt-case-system&user=sam", true),
        ("user=dee", false),
    ] {
        let (status, list) = get(
            &client,
            page(&format!("/audit/transfers?agreement=nvtt-mash-referral&{query}")),
            &ivan,
        )
        .await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(list.contains(&format!("/transfers/{id}")), listed, "{query}: {list}");
    }

    // "Verify now" passes, then catches an entry edited in the database file.
    let (_, ledger) = get(&client, page("/audit/ledger"), &ivan).await;
    assert!(ledger.contains("Not verified from the console"), "{ledger}");
    let (status, location, _) = post(&client, page("/audit/ledger/verify"), &ivan, &ledger, &[]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/audit/ledger")));
    let ledger = verified(&client, page("/audit/ledger"), &ivan, "every listing").await;
    assert!(
        ledger.contains("Verified ") && ledger.contains("every listing"),
        "{ledger}"
    );
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("var/isa-gateway.db").display()))
            .await
            .unwrap();
    conn.execute("DROP TRIGGER ledger_entries_no_update").await.unwrap();
    conn.execute("UPDATE ledger_entries SET hash = zeroblob(32) WHERE seq = 1")
        .await
        .unwrap();
    conn.close().await.unwrap();
    // The console does not start another run sooner than the last one took (nor while one runs),
    // and answers such a request as any other: ask again until a run has started and ended.
    let form = ledger;
    let mut ledger = String::new();
    for _ in 0..200 {
        post(&client, page("/audit/ledger/verify"), &ivan, &form, &[]).await;
        ledger = get(&client, page("/audit/ledger"), &ivan).await.1;
        if ledger.contains("does not verify") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ledger.contains("The ledger does not verify"), "{ledger}");
    let log = gateway.kill();
    assert!(log.contains("ALERT: console: the ledger does not verify"));
}
