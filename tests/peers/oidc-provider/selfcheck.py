#!/usr/bin/env python3
"""End-to-end check of the loopback OpenID Connect provider (provider.mjs).

Standard library only. Starts `node provider.mjs` itself (twice: consent
skipped, then consent prompted), walks the browser journey without a browser
(authorization request with PKCE S256 + nonce + state, the login form, the
consent form when shown, the redirect to the redirect_uri), exchanges the code
with client_secret_basic, checks the ID token (ES256 signature checked with
node:crypto), and checks the refusals: unknown login name, missing nonce,
missing PKCE, wrong code_verifier. Stops each provider with SIGTERM.

    python3 tests/peers/oidc-provider/selfcheck.py [-v]

Needs node_modules (scripts/oidc-provider.sh). Exit status 0 when all passed.
"""

import base64
import hashlib
import html.parser
import http.cookiejar
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "-v" in sys.argv[1:]
CLIENT_ID = "isa-console"
CLIENT_SECRET = "console-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:9/console/callback"  # never contacted
ACCOUNTS = {
    "alice": {"name": "Alice Practitioner", "roles": ["practitioner"]},
    "root": {"name": "Ops Admin", "roles": ["admin", "practitioner"]},
}
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")
    return cond


def log(*args):
    if VERBOSE:
        print(*args)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookie jar + one request at a time, redirects recorded, not followed."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(self, url, data=None, headers=None):
        req = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            resp = self.opener.open(req, timeout=10)
        except urllib.error.HTTPError as err:
            resp = err
        body = resp.read().decode("utf-8", "replace")
        return resp.status, resp.headers, body


class FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "inputs": [], "buttons": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(a)


def forms_of(body):
    p = FormParser()
    p.feed(body)
    return p.forms


class Provider:
    def __init__(self, consent="skip"):
        env = dict(os.environ)
        env.update(
            OIDC_PORT="0",
            OIDC_CLIENT_ID=CLIENT_ID,
            OIDC_CLIENT_SECRET=CLIENT_SECRET,
            OIDC_REDIRECT_URI=REDIRECT_URI,
            OIDC_ACCOUNTS=json.dumps(ACCOUNTS),
            OIDC_CONSENT=consent,
        )
        self.proc = subprocess.Popen(
            ["node", os.path.join(HERE, "provider.mjs")],
            cwd=HERE, env=env, stdout=subprocess.PIPE,
            stderr=None if VERBOSE else subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening http://127.0.0.1:"):
            self.proc.kill()
            raise SystemExit(f"provider did not start: {line!r}")
        self.issuer = line.split(" ", 1)[1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        extra = self.proc.stdout.read()
        check(rc == 0, f"provider exits 0 on SIGTERM (got {rc})")
        check(extra == "", "provider printed nothing else on stdout")


def auth_request(meta, *, nonce=True, pkce=True, scope="openid profile"):
    verifier = b64url(secrets.token_bytes(32))
    state = b64url(secrets.token_bytes(16))
    nonce_v = b64url(secrets.token_bytes(16))
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
    }
    if nonce:
        params["nonce"] = nonce_v
    if pkce:
        params["code_challenge"] = b64url(hashlib.sha256(verifier.encode()).digest())
        params["code_challenge_method"] = "S256"
    url = meta["authorization_endpoint"] + "?" + urllib.parse.urlencode(params)
    return url, verifier, state, nonce_v


def journey(op, meta, login, *, expect_consent, br=None, expect_login=True):
    """Browser journey up to the redirect_uri; returns (location, verifier, state, nonce)."""
    br = br or Browser()
    url, verifier, state, nonce = auth_request(meta)
    hops = []
    seen_login = False
    status, headers, body = br.request(url)
    hops.append(f"GET {urllib.parse.urlsplit(url).path}?... -> {status} {headers.get('Location', '')}")
    seen_consent = False
    for _ in range(10):
        if status in (302, 303):
            loc = urllib.parse.urljoin(url, headers["Location"])
            if loc.startswith(REDIRECT_URI):
                log("  redirects:\n    " + "\n    ".join(hops))
                check(seen_consent == expect_consent, f"{login}: consent page {'shown' if expect_consent else 'skipped'}")
                check(seen_login == expect_login, f"{login}: login form {'shown' if expect_login else 'skipped (SSO session)'}")
                return loc, verifier, state, nonce
            url = loc
            status, headers, body = br.request(url)
            hops.append(f"GET {urllib.parse.urlsplit(url).path} -> {status} {headers.get('Location', '')}")
            continue
        if status != 200:
            break
        forms = forms_of(body)
        if not forms:
            break
        form = forms[0]
        prompt = next((i.get("value") for i in form["inputs"] if i.get("name") == "prompt"), None)
        action = urllib.parse.urljoin(url, form["action"])
        log(f"  page {urllib.parse.urlsplit(url).path} prompt={prompt} form={json.dumps(form)}")
        if prompt == "login":
            seen_login = True
            names = [i.get("name") for i in form["inputs"]]
            check(names == ["prompt", "login", "password"], f"login form inputs {names}")
            fields = {"prompt": "login", "login": login, "password": "anything"}
        elif prompt == "consent":
            seen_consent = True
            fields = {"prompt": "consent"}
        else:
            break
        url = action
        status, headers, body = br.request(
            url, data=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        hops.append(f"POST {urllib.parse.urlsplit(url).path} ({prompt}) -> {status} {headers.get('Location', '')}")
    log("  redirects:\n    " + "\n    ".join(hops))
    check(False, f"{login}: journey ended at {url} status {status}: {body[:300]!r}")
    return None, verifier, state, nonce


def token(meta, code, verifier):
    basic = base64.b64encode(
        f"{urllib.parse.quote(CLIENT_ID, safe='')}:{urllib.parse.quote(CLIENT_SECRET, safe='')}".encode()
    ).decode()
    data = urllib.parse.urlencode({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }).encode()
    return Browser().request(meta["token_endpoint"], data=data, headers={
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    })


def verify_es256(jwt, jwks):
    """Check the JWS signature with node:crypto (no Python crypto in the stdlib)."""
    header = json.loads(b64url_decode(jwt.split(".")[0]))
    key = next(k for k in jwks["keys"] if k.get("kid") == header.get("kid"))
    script = (
        "const c=require('node:crypto');const [jwk,jwt]=JSON.parse(process.argv[1]);"
        "const [h,p,s]=jwt.split('.');"
        "const ok=c.verify('sha256',Buffer.from(h+'.'+p),"
        "{key:c.createPublicKey({key:jwk,format:'jwk'}),dsaEncoding:'ieee-p1363'},"
        "Buffer.from(s,'base64url'));process.exit(ok?0:1)"
    )
    return subprocess.run(["node", "-e", script, json.dumps([key, jwt])]).returncode == 0


def happy_path(op, meta, jwks, login, *, expect_consent, br=None, expect_login=True):
    loc, verifier, state, nonce = journey(op, meta, login, expect_consent=expect_consent,
                                          br=br, expect_login=expect_login)
    if not loc:
        return
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    log(f"  redirect_uri reached: {loc}")
    check(q.get("state") == state and "code" in q, f"{login}: redirect carries code and state")
    check(q.get("iss") == op.issuer, f"{login}: redirect carries iss (RFC 9207) = {q.get('iss')}")
    status, _, body = token(meta, q["code"], verifier)
    check(status == 200, f"{login}: token exchange 200 (got {status})")
    tok = json.loads(body)
    log(f"  token response keys: {sorted(tok)}")
    id_token = tok["id_token"]
    header = json.loads(b64url_decode(id_token.split(".")[0]))
    claims = json.loads(b64url_decode(id_token.split(".")[1]))
    print(f"  {login}: ID token header {json.dumps(header)}")
    print(f"  {login}: ID token claims {json.dumps(claims)}")
    check(header.get("alg") == "ES256", f"{login}: alg ES256")
    check(verify_es256(id_token, jwks), f"{login}: ES256 signature verifies against /jwks")
    check(claims.get("iss") == op.issuer and claims.get("aud") == CLIENT_ID, f"{login}: iss and aud")
    check(claims.get("nonce") == nonce, f"{login}: nonce echoed")
    check(claims.get("sub") == login, f"{login}: sub is the login name")
    check(claims.get("name") == ACCOUNTS[login]["name"], f"{login}: name in the ID token")
    check(claims.get("roles") == ACCOUNTS[login]["roles"], f"{login}: roles in the ID token")
    check(claims["exp"] - claims["iat"] == 600, f"{login}: ID token lives 600 s")
    # The code is single use.
    status, _, body = token(meta, q["code"], verifier)
    check(status == 400 and json.loads(body).get("error") == "invalid_grant", f"{login}: code replay refused")


def main():
    global failed
    op = Provider("skip")
    try:
        br = Browser()
        status, _, body = br.request(op.issuer + "/.well-known/openid-configuration")
        meta = json.loads(body)
        check(status == 200 and meta["issuer"] == op.issuer, f"discovery: issuer {meta['issuer']}")
        check(meta["code_challenge_methods_supported"] == ["S256"], "discovery: PKCE S256 only")
        check("ES256" in meta["id_token_signing_alg_values_supported"], "discovery: ES256")
        jwks = json.loads(br.request(meta["jwks_uri"])[2])
        check([k["kty"] + "/" + k["crv"] for k in jwks["keys"]] == ["EC/P-256"], "jwks: one P-256 key")

        for login in ACCOUNTS:
            happy_path(op, meta, jwks, login, expect_consent=False)

        # Same browser again: the provider's session cookie signs in without the form.
        br2 = Browser()
        happy_path(op, meta, jwks, "alice", expect_consent=False, br=br2)
        happy_path(op, meta, jwks, "alice", expect_consent=False, br=br2, expect_login=False)

        # Unknown login name: access_denied at the redirect_uri.
        loc, *_ = journey(op, meta, "mallory", expect_consent=False)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc or "").query))
        check(q.get("error") == "access_denied", f"unknown login refused: {q.get('error')} / {q.get('error_description')}")

        # No nonce: 400 at the authorization endpoint.
        url, *_ = auth_request(meta, nonce=False)
        status, _, body = Browser().request(url)
        check(status == 400 and "nonce" in body, f"no nonce refused ({status})")

        # No PKCE: invalid_request back at the redirect_uri.
        url, *_ = auth_request(meta, pkce=False)
        status, headers, _ = Browser().request(url)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers.get("Location", "")).query))
        check(status == 303 and q.get("error") == "invalid_request", f"no PKCE refused: {q.get('error_description')}")

        # Wrong code_verifier: invalid_grant at the token endpoint.
        loc, verifier, *_ = journey(op, meta, "alice", expect_consent=False)
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))["code"]
        status, _, body = token(meta, code, b64url(secrets.token_bytes(32)))
        check(status == 400 and json.loads(body).get("error") == "invalid_grant", "wrong code_verifier refused")
    finally:
        op.stop()

    # OIDC_CONSENT=prompt: the stock consent page between login and redirect.
    op = Provider("prompt")
    try:
        br = Browser()
        meta = json.loads(br.request(op.issuer + "/.well-known/openid-configuration")[2])
        jwks = json.loads(br.request(meta["jwks_uri"])[2])
        happy_path(op, meta, jwks, "alice", expect_consent=True)
    finally:
        op.stop()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
