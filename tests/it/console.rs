//! The console in a real browser: Debian's chromium driven over WebDriver (chromedriver), signing
//! in through a real OpenID Connect provider (the `oidc-provider` package from npm, run with
//! Node.js on loopback), against a real gateway process. Every page visited is saved as a
//! screenshot under `target/console-screens/`.
//!
//! Needs `chromium`, `chromium-driver` and Node.js (`.ci/run` installs them; the README says so).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::helpers::{GatewayProcess, dev_config_in, free_port, repo};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The identity provider: `provider.mjs` with its accounts; returns the process and the issuer.
fn start_provider(redirect: &str, secret: &str) -> (Killed, String) {
    let status = Command::new("bash")
        .arg(repo().join("scripts/oidc-provider.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "scripts/oidc-provider.sh failed (Node.js 20 and npm needed)"
    );
    let accounts = json!({
        "sam": {"name": "Sam Lead", "roles": ["safeguarding_lead"]},
        "dee": {"name": "Dee Director", "roles": ["director"]},
        "ivan": {"name": "Ivan Auditor", "roles": ["auditor"]},
        "dora": {"name": "Dora DPO", "roles": ["dpo"]},
    });
    let mut child = Command::new("node")
        .arg(repo().join("tests/peers/oidc-provider/provider.mjs"))
        .env("OIDC_PORT", "0")
        .env("OIDC_CLIENT_ID", "isa-console")
        .env("OIDC_CLIENT_SECRET", secret)
        .env("OIDC_REDIRECT_URI", redirect)
        .env("OIDC_ACCOUNTS", accounts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = line
        .trim()
        .strip_prefix("listening ")
        .expect("the provider says where it listens")
        .to_owned();
    (Killed(child), issuer)
}

fn start_chromedriver() -> (Killed, u16) {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "the console's browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
    );
    let port = free_port();
    let child = Killed(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("chromedriver did not start");
}

/// One person's browser: a fresh profile, headless.
struct Browser {
    client: Client,
    journey: String,
    shots: usize,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(driver: u16, journey: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display())],
            },
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{driver}"))
            .await
            .expect("a WebDriver session");
        Self {
            client,
            journey: journey.to_owned(),
            shots: 0,
            _profile: profile,
        }
    }

    /// Saves what the person sees now, and audits it for accessibility when it is a console page.
    async fn shot(&mut self, name: &str) {
        let dir = repo().join("target/console-screens");
        std::fs::create_dir_all(&dir).unwrap();
        self.shots += 1;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{}-{:02}-{name}.png", self.journey, self.shots)), png).unwrap();
        let url = self.client.current_url().await.unwrap();
        if url.scheme() == "https" {
            self.accessible(name).await;
        }
    }

    /// axe finds what it should here: an image without a text alternative, added to the page
    /// for the check and removed after (so that a clean audit means something).
    async fn axe_catches_a_missing_alt(&self) {
        self.client
            .execute(
                "const i = document.createElement('img'); i.id = 'axe-probe'; i.src = '/assets/none.png'; \
                 document.querySelector('main').appendChild(i); return true;",
                vec![],
            )
            .await
            .unwrap();
        let caught = std::panic::AssertUnwindSafe(self.accessible("probe"));
        let result = futures_util::FutureExt::catch_unwind(caught).await;
        self.client
            .execute("document.getElementById('axe-probe').remove(); return true;", vec![])
            .await
            .unwrap();
        let message = result
            .expect_err("axe let an image without alt through")
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert!(message.contains("image-alt"), "{message}");
    }

    /// Deque's axe-core (pinned in tests/peers/axe) run in the page against the WCAG 2.0, 2.1 and
    /// 2.2 A and AA rules: no violation allowed. Injected over WebDriver (the page's own policy
    /// allows no script, and the console ships none).
    async fn accessible(&self, page: &str) {
        static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let axe = AXE.get_or_init(|| {
            std::fs::read_to_string(repo().join("tests/peers/axe/node_modules/axe-core/axe.min.js"))
                .expect("axe-core: run `npm ci` in tests/peers/axe (.ci/run does)")
        });
        let mut found = None;
        for _ in 0..50 {
            // A page still loading has no document to audit yet: try again.
            let injected = self
                .client
                .execute(&format!("{axe}\n;return typeof axe;"), vec![])
                .await;
            if !matches!(injected, Ok(Value::String(ref t)) if t == "object") {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let run = self
                .client
                .execute(
                    "return axe.run(document, {runOnly: {type: 'tag', values: \
                       ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}}) \
                     .then(r => r.violations.map(v => v.id + ': ' + v.help + ' at ' + \
                       v.nodes.map(n => n.target.join(' ')).join(', ')));",
                    vec![],
                )
                .await;
            if let Ok(Value::Array(v)) = run {
                found = Some(v);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let violations = found.unwrap_or_else(|| panic!("axe did not run on {page}"));
        assert!(
            violations.is_empty(),
            "accessibility (axe, WCAG 2.2 AA) on {} / {page}: {violations:#?}",
            self.journey
        );
    }

    async fn goto(&mut self, url: &str, name: &str) {
        self.client.goto(url).await.unwrap();
        self.shot(name).await;
    }

    /// The page's heading (asked again while a navigation is under way).
    async fn h1(&self) -> String {
        for _ in 0..50 {
            let h = self
                .client
                .execute(
                    "const h = document.querySelector('h1'); return h ? h.textContent.trim() : null;",
                    vec![],
                )
                .await;
            if let Ok(Value::String(h)) = h {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page has no heading");
    }

    /// The heading once it is `want` (a submitted form's answer may still be on its way), or the
    /// last heading seen after ten seconds.
    async fn wait_h1(&self, want: &str) -> String {
        let mut h = String::new();
        for _ in 0..200 {
            h = self.h1().await;
            if h == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h
    }

    /// The page's HTML (asked again while a navigation is under way).
    async fn source(&self) -> String {
        for _ in 0..100 {
            if let Ok(html) = self.client.source().await {
                return html;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page did not answer");
    }

    /// What `css` finds, once the page has it (a navigation may still be under way).
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Signs in at the identity provider as `login`, from the console's sign-in page.
    async fn sign_in(&mut self, console: &str, login: &str) {
        self.goto(&format!("{console}/"), "start").await;
        assert_eq!(self.h1().await, "Sign in");
        self.click("a.button").await;
        let login_field = self.find("input[name=login]").await;
        self.shot("identity-provider").await;
        login_field.send_keys(login).await.unwrap();
        self.find("input[name=password]").await.send_keys("any").await.unwrap();
        self.click("button[type=submit]").await;
        // The console's "signed in" page moves on to the start page by itself.
        for _ in 0..100 {
            if self.h1().await == "What do you need to do?" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shot("signed-in").await;
        assert_eq!(self.h1().await, "What do you need to do?");
    }

    /// The session cookie, for requests a browser would not make (a form without its token).
    async fn session_cookie(&self) -> String {
        let cookies = self.client.get_all_cookies().await.unwrap();
        let c = cookies
            .iter()
            .find(|c| c.name() == "__Host-isa-session")
            .expect("a session cookie");
        format!("{}={}", c.name(), c.value())
    }
}

/// Sets an input by its name (a JSON pointer) as a person's typing would leave it.
async fn set(client: &Client, name: &str, value: &str) {
    let found = client
        .execute(
            "const e = document.getElementsByName(arguments[0])[0]; if (!e) return false; e.value = arguments[1]; return true;",
            vec![json!(name), json!(value)],
        )
        .await
        .unwrap();
    assert_eq!(found, json!(true), "the form has a field {name}");
}

/// The number of items an array's part of the form shows (-1: its items are checkboxes), once
/// the page answers (asked again while a navigation is under way).
async fn shown(client: &Client, ptr: &str) -> i64 {
    for _ in 0..200 {
        let n = client
            .execute(
                "if (document.readyState !== 'complete') return null; \
                 const e = document.getElementsByName('#count' + arguments[0])[0]; return e ? Number(e.value) : -1;",
                vec![json!(ptr)],
            )
            .await;
        if let Ok(Value::Number(n)) = n {
            return n.as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the form did not come back");
}

/// Fills the referral form from an example envelope: arrays grown with "Add another" first (a
/// round trip each), then every value; arrays of choices ticked.
async fn fill(b: &mut Browser, envelope: &Value) {
    let mut arrays = Vec::new();
    let mut leaves = Vec::new();
    walk(envelope, String::new(), &mut arrays, &mut leaves);
    // The message type is the page's own.
    leaves.retain(|(name, _)| name != "/message_type");
    for (ptr, items) in arrays {
        if items.iter().all(Value::is_string) && shown(&b.client, &ptr).await < 0 {
            for v in items {
                let css = format!("input[type=checkbox][name='{ptr}/*'][value='{}']", v.as_str().unwrap());
                b.click(&css).await;
            }
            continue;
        }
        loop {
            let now = shown(&b.client, &ptr).await;
            if now >= items.len() as i64 {
                break;
            }
            b.click(&format!("button[name=_add][value='{ptr}']")).await;
            // The form comes back with one more item: wait for that page, not the old one.
            for _ in 0..200 {
                if shown(&b.client, &ptr).await > now {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (i, v) in items.iter().enumerate() {
            walk(v, format!("{ptr}/{i}"), &mut Vec::new(), &mut leaves);
        }
    }
    for (name, value) in leaves {
        match value {
            Value::String(s) if name.ends_with("verbal_referral_at") => {
                // datetime-local holds London time without an offset.
                let t: jiff::Timestamp = s.parse().unwrap();
                let local = t.in_tz("Europe/London").unwrap().strftime("%Y-%m-%dT%H:%M").to_string();
                set(&b.client, &name, &local).await;
            }
            Value::String(s) => set(&b.client, &name, &s).await,
            v => set(&b.client, &name, &v.to_string()).await,
        }
    }
}

/// Leaves (pointer, value) and arrays (pointer, items), outermost arrays only: their items are
/// walked once the form shows them.
fn walk(v: &Value, ptr: String, arrays: &mut Vec<(String, Vec<Value>)>, leaves: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                walk(v, format!("{ptr}/{k}"), arrays, leaves);
            }
        }
        Value::Array(items) => arrays.push((ptr, items.clone())),
        v => leaves.push((ptr, v.clone())),
    }
}

struct Setup {
    gateway: GatewayProcess,
    console: String,
    dir: tempfile::TempDir,
    _provider: Killed,
    _driver: Killed,
    driver: u16,
}

async fn setup(edit: impl Fn(String) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cport = free_port();
    let console = format!("https://127.0.0.1:{cport}");
    let secret = "console-client-secret-for-tests";
    let (provider, issuer) = start_provider(&format!("{console}/auth/callback"), secret);
    let secret_file = dir.path().join("oidc-client-secret");
    isa_gateway::platform::fs::write_file(&secret_file, secret.as_bytes(), true).unwrap();
    let config = dev_config_in(dir.path(), |c| {
        edit(c.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{cport}\"")).replace(
            "[console]",
            &format!(
                "[[auth.issuers]]\nissuer = \"{issuer}\"\nalgorithms = [\"ES256\"]\n\
                 roles = [\"practitioner\", \"safeguarding_lead\", \"director\", \"dpo\", \"auditor\"]\n\
                 systems = [\"tt-case-system\", \"ig-audit\"]\n\n[auth.issuers.oidc]\nlabel = \"Test identity provider\"\n\
                 client_id = \"isa-console\"\nclient_secret_file = \"{}\"\nredirect_url = \"{console}/auth/callback\"\n\n[console]",
                secret_file.display()
            ),
        ))
    });
    let gateway = GatewayProcess::start(&config).await;
    let (driver_process, driver) = start_chromedriver();
    Setup {
        gateway,
        console,
        dir,
        _provider: provider,
        _driver: driver_process,
        driver,
    }
}

fn mash_example() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("examples/mash_referral.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_is_sent_held_approved_by_another_person_audited_and_found_by_the_dpo() {
    let s = setup(|c| c).await;
    let example = mash_example();
    let nhs = example
        .pointer("/payload/subject/nhs_number")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();

    // A safeguarding lead sends a MASH referral, consent not sought, with the reason.
    let mut sam = Browser::open(s.driver, "1-lead-sends").await;
    sam.sign_in(&s.console, "sam").await;
    sam.axe_catches_a_missing_alt().await;
    sam.goto(&format!("{}/send", s.console), "send").await;
    sam.goto(&format!("{}/send/nvtt-mash-referral/mash_referral", s.console), "form")
        .await;
    let mut without_consent = example.clone();
    without_consent.as_object_mut().unwrap().remove("consent");
    fill(&mut sam, &without_consent).await;
    let status = sam.find("select[name='/consent/status']").await;
    status.select_by_value("not_sought").await.unwrap();
    let why = sam.find("select[name='/consent/reason_not_sought']").await;
    why.select_by_value("increase_risk_of_significant_harm").await.unwrap();
    sam.shot("form-filled").await;
    sam.click("button[name=_send]").await;
    let decision = sam.wait_h1("Held for a director").await;
    sam.shot("decision").await;
    assert_eq!(decision, "Held for a director", "{}", sam.source().await);
    let transfer = sam.find("main code").await.text().await.unwrap();
    // The referrer cannot approve their own; the director's queue is not theirs to open.
    sam.goto(&format!("{}/transfers/{transfer}", s.console), "own-transfer")
        .await;
    assert!(!sam.source().await.contains("Approve and send"));
    sam.goto(&format!("{}/held", s.console), "held-forbidden").await;
    assert_eq!(
        sam.wait_h1("You cannot open this page").await,
        "You cannot open this page"
    );

    // A director, another person, approves it; it is delivered.
    let mut dee = Browser::open(s.driver, "2-director-approves").await;
    dee.sign_in(&s.console, "dee").await;
    dee.goto(&format!("{}/held", s.console), "queue").await;
    assert!(dee.source().await.contains(&transfer));
    dee.click(&format!("a[href='/transfers/{transfer}']")).await;
    dee.wait_h1("Transfer").await;
    dee.shot("transfer").await;
    set(&dee.client, "note_ref", "CMS:case/2201").await;
    dee.click("form[action$='/approve'] button").await;
    for _ in 0..100 {
        if dee.source().await.contains("DELIVERED") || dee.source().await.to_lowercase().contains(">delivered<") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        dee.client.refresh().await.unwrap();
    }
    dee.shot("delivered").await;
    assert!(dee.source().await.contains(">delivered<"), "{}", dee.source().await);
    let folder = s.dir.path().join("var/deliveries/mash");
    let files: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one referral at the MASH");

    // A form without the session's CSRF token is refused, whoever's cookie it carries.
    let cookie = dee.session_cookie().await;
    let raw = plain_client();
    let r = raw
        .post(format!("{}/transfers/{transfer}/refuse", s.console))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("reason", "insufficient_grounds")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("security token"));

    // An auditor filters the agreement's transfers and downloads the CSV.
    let mut ivan = Browser::open(s.driver, "3-auditor").await;
    ivan.sign_in(&s.console, "ivan").await;
    ivan.goto(&format!("{}/audit", s.console), "register").await;
    ivan.click("a[href='/audit/transfers?agreement=nvtt-mash-referral']")
        .await;
    ivan.find("select#status")
        .await
        .select_by_value("delivered")
        .await
        .unwrap();
    ivan.click("form.filters button").await;
    for _ in 0..200 {
        if ivan
            .client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("status=delivered")
            && ivan.source().await.contains(&transfer)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ivan.shot("filtered").await;
    assert!(ivan.source().await.contains(&transfer));
    let csv_href = ivan.find("a#csv").await.attr("href").await.unwrap().unwrap();
    let csv = raw
        .get(format!("{}{csv_href}", s.console))
        .header("cookie", ivan.session_cookie().await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains(&transfer) && csv.lines().count() == 2, "{csv}");
    // The agreement as a document, its activity (the held referral on today's bar), the ledger.
    ivan.goto(
        &format!("{}/audit/agreements/nvtt-mash-referral", s.console),
        "agreement",
    )
    .await;
    assert_eq!(
        ivan.wait_h1("Safeguarding referrals from Northvale Talking Therapies to the Northvale MASH")
            .await,
        "Safeguarding referrals from Northvale Talking Therapies to the Northvale MASH"
    );
    ivan.click("a[href='/audit/agreements/nvtt-mash-referral/activity']")
        .await;
    ivan.wait_h1("Agreement activity").await;
    ivan.shot("activity").await;
    let activity = ivan.source().await;
    assert!(
        activity.contains("0 permitted without waiting, 1 held for a director"),
        "{activity}"
    );
    ivan.goto(&format!("{}/audit/ledger", s.console), "ledger").await;
    ivan.click("form[action='/audit/ledger/verify'] button").await;
    // It runs in the background: the page says so until it has finished.
    for _ in 0..200 {
        if ivan.source().await.contains("every listing") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ivan.client.refresh().await.unwrap();
    }
    ivan.shot("ledger-verified").await;
    assert!(ivan.source().await.contains("every listing"));

    // The DPO looks the person up and sees exactly their disclosure.
    let mut dora = Browser::open(s.driver, "4-dpo").await;
    dora.sign_in(&s.console, "dora").await;
    dora.goto(&format!("{}/dpo", s.console), "lookup").await;
    dora.find("#nhs").await.send_keys(&nhs).await.unwrap();
    dora.click("main form button").await;
    dora.wait_h1("Subject access: disclosures found").await;
    dora.shot("answer").await;
    let answer = dora.source().await;
    assert!(answer.contains("1 disclosure(s)"), "{answer}");
    assert!(answer.contains("nvtt-mash-referral"));
    assert!(
        !dora.client.title().await.unwrap().contains(&nhs),
        "no NHS number in a title"
    );

    // No page but the DPO's answer (and the form it was typed into) shows the number; no log has it.
    for page in [&sam, &dee, &ivan] {
        assert!(!page.source().await.contains(&nhs));
    }
    let log = s.gateway.kill();
    assert!(!log.contains(&nhs), "the NHS number reached the gateway's log");
    for b in [sam, dee, ivan, dora] {
        b.client.close().await.unwrap();
    }
}

/// A client as a browser's requests look to the console: HTTPS trusting the test CA, no client
/// certificate, no redirects followed.
pub(crate) fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::helpers::client_tls(None))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `name` in a response's Set-Cookie headers.
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf_in(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a form with a CSRF token")
        .to_owned()
}

/// Development sign-in as a browser would do it (the sign-in page's cookie and token, then the
/// form); returns the session cookie.
pub(crate) async fn dev_sign_in(client: &reqwest::Client, console: &str, name: &str, role: &str) -> String {
    let page = client.get(format!("{console}/sign-in")).send().await.unwrap();
    let login = set_cookie(&page, "__Host-isa-login").expect("the sign-in page binds its form");
    let html = page.text().await.unwrap();
    let csrf = csrf_in(&html);
    let r = client
        .post(format!("{console}/sign-in/dev"))
        .header("cookie", login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("name", name), ("role", role), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    set_cookie(&r, "__Host-isa-session").expect("signed in")
}

#[tokio::test]
async fn an_idle_session_ends_and_the_person_signs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_in(dir.path(), |c| {
        c.replace(
            "dev_sign_in = true",
            "dev_sign_in = true\nidle_timeout_secs = 1\nabsolute_timeout_secs = 60",
        )
    });
    let gateway = GatewayProcess::start(&config).await;
    let console = gateway.console_url();
    let client = plain_client();
    let session = dev_sign_in(&client, &console, "sam", "safeguarding_lead").await;
    let home = client
        .get(format!("{console}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status().as_u16(), 200);
    let headers = home.headers().clone();
    assert!(home.text().await.unwrap().contains("What do you need to do?"));
    let csp = headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = client
        .get(format!("{console}/send"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(later.status().as_u16(), 303);
    assert_eq!(later.headers().get("location").unwrap(), "/sign-in?ended=1");
    // Signing in again works, and signing out ends the session at once.
    let again = dev_sign_in(&client, &console, "sam", "safeguarding_lead").await;
    let page = client
        .get(format!("{console}/"))
        .header("cookie", &again)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page);
    let out = client
        .post(format!("{console}/sign-out"))
        .header("cookie", &again)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let after = client
        .get(format!("{console}/"))
        .header("cookie", &again)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 303);
}

#[tokio::test]
async fn a_transfer_page_is_for_the_asker_directors_and_auditors_and_bad_filters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&dev_config_in(dir.path(), |c| c)).await;
    let console = gateway.console_url();
    // Sam asks for a MASH referral through the case system's API; it is held.
    let api = super::helpers::http_client_as(
        &super::helpers::pki().sender,
        &super::helpers::token("sam", &["safeguarding_lead"]),
    );
    let body = std::fs::read(repo().join("examples/mash_referral.json")).unwrap();
    let id = super::helpers::post_accepted(
        api,
        gateway.url("/v1/agreements/nvtt-mash-referral/transfers"),
        body,
        &[],
    )
    .await;
    let client = plain_client();
    let page = |cookie: String| {
        let client = client.clone();
        let url = format!("{console}/transfers/{id}");
        async move { client.get(url).header("cookie", cookie).send().await.unwrap() }
    };
    // Another practitioner learns nothing, not even that it exists.
    let pat = dev_sign_in(&client, &console, "pat", "practitioner").await;
    assert_eq!(page(pat).await.status().as_u16(), 404);
    // Nor does one whose name merely looks like the asker's: access needs the exact person
    // (look-alikes count as the same person only to refuse a decision; review finding).
    for lookalike in ["SAM", "5am", "s\u{430}m"] {
        let other = dev_sign_in(&client, &console, lookalike, "practitioner").await;
        assert_eq!(page(other).await.status().as_u16(), 404, "{lookalike:?}");
    }
    // The asker sees it; a director who is the asker (spelt otherwise) is offered no decision.
    let sam = dev_sign_in(&client, &console, "sam", "safeguarding_lead").await;
    assert_eq!(page(sam).await.status().as_u16(), 200);
    let sam_director = dev_sign_in(&client, &console, " Sam\u{2800}", "director").await;
    let own = page(sam_director).await.text().await.unwrap();
    assert!(
        own.contains("two-person rule") && !own.contains("Approve and send"),
        "{own}"
    );
    let dee = dev_sign_in(&client, &console, "dee", "director").await;
    assert!(page(dee).await.text().await.unwrap().contains("Approve and send"));
    // An auditor sees it; a date filter that is not a date is refused, not ignored.
    let ivan = dev_sign_in(&client, &console, "ivan", "auditor").await;
    assert_eq!(page(ivan.clone()).await.status().as_u16(), 200);
    let bad = client
        .get(format!("{console}/audit/transfers?since=garbage"))
        .header("cookie", &ivan)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(!bad.text().await.unwrap().contains("garbage"));
}
