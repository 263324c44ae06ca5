// Loopback OpenID Connect provider for isa-gateway's web console tests.
//
// A real, certified provider (npm `oidc-provider`, pinned in package.json)
// with its development interactions (login form + consent page), one
// confidential client and a fixed set of accounts, all from the environment:
//
//   OIDC_PORT           port on 127.0.0.1 (0 or unset: a free port)
//   OIDC_CLIENT_ID      the one client (client_secret_basic, code flow, PKCE S256)
//   OIDC_CLIENT_SECRET
//   OIDC_REDIRECT_URI   its redirect_uri (exact match)
//   OIDC_POST_LOGOUT_REDIRECT_URI  optional, for RP-initiated logout
//   OIDC_ACCOUNTS       JSON: {"alice": {"name": "Alice", "roles": ["practitioner"]}, ...}
//   OIDC_CONSENT        "skip" (default: the client is first party, no consent
//                       page) or "prompt" (show oidc-provider's consent page)
//
// Once listening it prints exactly one line to stdout:
//   listening http://127.0.0.1:<port>
// and that URL (no trailing slash) is the issuer. Everything else (provider
// notices and warnings, request errors) goes to stderr. SIGTERM/SIGINT stop it
// with exit status 0.
//
// Differences from a stock oidc-provider, all deliberate and test-facing:
// - the login form's submission is handled here: the login name must be a key
//   of OIDC_ACCOUNTS (any password is accepted); an unknown name ends the
//   authorization with error=access_denied at the redirect_uri;
// - an authorization request without a nonce is refused (400);
// - the stock pages' web-font @import (an internet URL) is removed;
// - cookie names carry an "op_" prefix: cookies are not isolated by port, so
//   the provider and the gateway on 127.0.0.1 share one cookie jar.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// Only the "listening" line may reach stdout: oidc-provider prints its
// notices with console.info.
const toStderr = (...args) => console.error(...args);
console.info = toStderr;
console.log = toStderr;

function fail(message) {
  process.stderr.write(`oidc-provider peer: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} must be set`);
  return value;
}

const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUri = required('OIDC_REDIRECT_URI');
const postLogoutRedirectUri = process.env.OIDC_POST_LOGOUT_REDIRECT_URI || '';
const consentMode = process.env.OIDC_CONSENT || 'skip';
if (!['skip', 'prompt'].includes(consentMode)) fail('OIDC_CONSENT must be "skip" or "prompt"');

let accounts;
try {
  accounts = JSON.parse(required('OIDC_ACCOUNTS'));
} catch (err) {
  fail(`OIDC_ACCOUNTS is not JSON: ${err.message}`);
}
if (accounts === null || typeof accounts !== 'object' || Array.isArray(accounts)) {
  fail('OIDC_ACCOUNTS must be a JSON object: login name -> {"name": ..., "roles": [...]}');
}
for (const [login, account] of Object.entries(accounts)) {
  if (account === null || typeof account !== 'object'
    || typeof account.name !== 'string'
    || !Array.isArray(account.roles)
    || !account.roles.every((r) => typeof r === 'string')) {
    fail(`OIDC_ACCOUNTS["${login}"] must be {"name": string, "roles": [string, ...]}`);
  }
}
const hasAccount = (login) => typeof login === 'string' && Object.hasOwn(accounts, login);

const port = Number.parseInt(process.env.OIDC_PORT || '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('OIDC_PORT must be a port number');

// Fresh ES256 signing key for every start; published at /jwks.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomUUID(),
  alg: 'ES256',
  use: 'sig',
};

// Scopes granted, without a consent page, to the one (first-party) client.
const FIRST_PARTY_SCOPE = 'openid profile roles';
const FIRST_PARTY_CLAIMS = ['sub', 'name', 'roles'];

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: postLogoutRedirectUri ? [postLogoutRedirectUri] : [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signingKey] },
  responseTypes: ['code'],
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
  allowOmittingSingleRegisteredRedirectUri: false,

  // "profile" carries name and roles; "roles" alone carries roles.
  claims: {
    openid: ['sub'],
    profile: ['name', 'roles'],
    roles: ['roles'],
  },
  // Put the scope-requested claims (name, roles) in the ID token itself, not
  // only at the userinfo endpoint.
  conformIdTokenClaims: false,

  async findAccount(_ctx, sub) {
    if (!hasAccount(sub)) return undefined;
    const { name, roles } = accounts[sub];
    return {
      accountId: sub,
      async claims() {
        return { sub, name, roles: [...roles] };
      },
    };
  },

  async loadExistingGrant(ctx) {
    const { Grant } = ctx.oidc.provider;
    const { clientId: cid } = ctx.oidc.client;
    const { accountId } = ctx.oidc.session;
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(cid);
    let grant = grantId ? await Grant.find(grantId) : undefined;
    if (grant && grant.accountId !== accountId) grant = undefined;
    if (consentMode === 'prompt' || cid !== clientId) return grant;
    if (!grant) grant = new Grant({ clientId: cid, accountId });
    grant.addOIDCScope(FIRST_PARTY_SCOPE);
    grant.addOIDCClaims(FIRST_PARTY_CLAIMS);
    await grant.save();
    return grant;
  },

  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
  },

  cookies: {
    names: {
      session: 'op_session',
      interaction: 'op_interaction',
      resume: 'op_interaction_resume',
    },
    keys: [randomBytes(32).toString('base64url')],
  },

  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
};

const server = createServer();
server.listen(port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, configuration);

// Requests errors are logged, never thrown out of the process.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
  provider.on(event, (_ctx, err) => {
    process.stderr.write(`oidc-provider peer: ${event}: ${err?.name || ''} ${err?.message || err} ${err?.error_description || ''}\n`);
  });
}

const MAX_FORM = 16 * 1024;
async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

provider.use(async (ctx, next) => {
  // An authorization request must carry a nonce (the gateway sends one).
  if ((ctx.path === '/auth') && ['GET', 'POST'].includes(ctx.method)) {
    const params = ctx.method === 'GET'
      ? new URLSearchParams(ctx.querystring)
      : undefined; // POSTed authorization requests are left to the provider
    if (params && !params.get('nonce')) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = '<!DOCTYPE html><title>invalid_request</title><h1>invalid_request</h1><p>nonce is required</p>';
      return;
    }
  }

  // The login form's submission: known login names only, any password.
  const m = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (m && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
    const interaction = await provider.interactionDetails(ctx.req, ctx.res).catch(() => undefined);
    if (interaction && interaction.uid === m[1] && interaction.prompt.name === 'login') {
      const form = await readForm(ctx.req);
      if (form.get('prompt') !== 'login') {
        ctx.status = 400;
        ctx.type = 'html';
        ctx.body = '<!DOCTYPE html><title>invalid_request</title><p>expected the login form</p>';
        return;
      }
      const login = form.get('login');
      const result = hasAccount(login)
        ? { login: { accountId: login } }
        : { error: 'access_denied', error_description: 'unknown login name' };
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
      return;
    }
  }

  await next();

  // The stock pages import a web font from the internet; there is no network
  // here, and a browser under WebDriver would wait on it.
  if (typeof ctx.body === 'string' && ctx.body.includes('@import url(https://')) {
    ctx.body = ctx.body.replace(/@import url\(https:\/\/[^)]*\);?/g, '');
  }
});

server.on('request', provider.callback());

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(`listening ${issuer}\n`);
