#!/usr/bin/env node
// Test OpenID provider for nixtla's integration tests, built on npm `oidc-provider` 8.
//
// It runs the real provider (discovery, JWKS, authorization code flow with S256 PKCE, RS256
// ID tokens signed with a key generated at startup) on 127.0.0.1. Login and consent complete
// without a human, as the "current user" that a test sets through the /control endpoints.
// Usage and the control API are described in README.md beside this file.
//
// stdout carries exactly one line, `listening http://127.0.0.1:PORT`, once the server
// accepts connections. Every log line goes to stderr.

import { randomBytes, generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { createServer } from 'node:http';
import { Console } from 'node:console';
import { parseArgs } from 'node:util';

import { CompactSign, decodeJwt, decodeProtectedHeader } from 'jose';
import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info, which goes to stdout. The caller reads
// stdout for the single "listening" line, so every console method is pointed at stderr.
globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });

const CLIENT_ID = 'nixtla-test';
const CLIENT_SECRET = 'nixtla-test-secret';
const SIGNING_ALG = 'RS256';
const MAX_CONTROL_BODY_BYTES = 64 * 1024;
// oidc-provider 8 defaults for the authorization endpoint (routes.authorization) and the
// session cookie's name (cookies.names.session). Signing adds a `_session.sig` cookie.
const AUTHORIZATION_PATH = '/auth';
const SESSION_COOKIE = '_session';

const DEFAULT_USER = Object.freeze({
  sub: 'u-1',
  name: 'Ada Lovelace',
  given_name: 'Ada',
  email: 'ada@example.com',
  email_verified: true,
});

// Claims released per scope. `openid` only releases `sub`.
const SCOPE_CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: [
    'name',
    'given_name',
    'family_name',
    'middle_name',
    'nickname',
    'preferred_username',
    'profile',
    'picture',
    'website',
    'gender',
    'birthdate',
    'zoneinfo',
    'locale',
    'updated_at',
  ],
};

const ID_TOKEN_OVERRIDE_KEYS = new Set(['nonce', 'aud', 'exp_offset_s', 'iss']);

// OAuth error codes are limited to printable ASCII without `"` and `\` (RFC 6749, appendix A.7).
const OAUTH_ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]+$/;

function log(message, fields = {}) {
  const extra = Object.entries(fields)
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`)
    .join(' ');
  process.stderr.write(`oidc-provider: ${message}${extra ? ` ${extra}` : ''}\n`);
}

function parseCommandLine() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      'redirect-uri': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });

  if (values.help) {
    process.stdout.write(
      'usage: node oidc-provider.mjs [--port PORT] --redirect-uri URI [--redirect-uri URI ...]\n' +
        '  --port          TCP port on 127.0.0.1 (default 0: the system picks a free port)\n' +
        '  --redirect-uri  redirect URI registered for the client nixtla-test (repeatable)\n',
    );
    process.exit(0);
  }

  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid --port ${JSON.stringify(values.port)}: expected 0..65535`);
  }

  const redirectUris = values['redirect-uri'];
  if (redirectUris.length === 0) {
    throw new Error(
      'missing --redirect-uri: register at least one, e.g. http://127.0.0.1:7000/auth',
    );
  }
  for (const uri of redirectUris) {
    if (!URL.canParse(uri)) {
      throw new Error(`invalid --redirect-uri ${JSON.stringify(uri)}: expected an absolute URL`);
    }
  }

  return { port, redirectUris };
}

// State that tests set through the /control endpoints and that the provider reads.
class ControlState {
  constructor() {
    this.reset();
  }

  reset() {
    this.currentUser = { ...DEFAULT_USER };
    // Claims of every account that signed in, by `sub`, as they were at sign-in. The token
    // endpoint reads them later, so a /control/user call in between changes no issued token.
    this.accounts = new Map();
    this.nextError = null;
    this.nextIdTokenOverride = null;
    // The last token response and the code and PKCE verifier it was issued for, so tests
    // can check that none of them shows up in the app's logs.
    this.lastTokens = null;
  }

  takeNextError() {
    const error = this.nextError;
    this.nextError = null;
    return error;
  }

  takeNextIdTokenOverride() {
    const override = this.nextIdTokenOverride;
    this.nextIdTokenOverride = null;
    return override;
  }
}

function generateSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg: SIGNING_ALG, use: 'sig' };
}

// Storage for the provider's sessions, grants, codes and tokens. oidc-provider 8.8's
// built-in memory adapter is a QuickLRU of maxSize 1000 (1000 to 2000 objects), so a few
// hundred sign-ins in a row evict grants and codes still in use, and the token endpoint
// then returns invalid_grant. This adapter keeps every object until it expires.
const storedObjects = new Map();
const SWEEP_EVERY_UPSERTS = 1000;
let upsertsSinceSweep = 0;

class UnboundedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    storedObjects.set(this.key(id), { payload, expiresAt });
    if (payload.grantId) {
      storedObjects.set(`grant-index:${payload.grantId}:${this.key(id)}`, { expiresAt });
    }
    if (payload.uid) {
      storedObjects.set(`uid-index:${this.model}:${payload.uid}`, { id, expiresAt });
    }
    if (payload.userCode) {
      storedObjects.set(`user-code-index:${this.model}:${payload.userCode}`, { id, expiresAt });
    }
    upsertsSinceSweep += 1;
    if (upsertsSinceSweep >= SWEEP_EVERY_UPSERTS) {
      upsertsSinceSweep = 0;
      sweepExpired();
    }
  }

  async find(id) {
    const stored = liveObject(this.key(id));
    return stored?.payload;
  }

  async findByUid(uid) {
    const index = liveObject(`uid-index:${this.model}:${uid}`);
    return index ? this.find(index.id) : undefined;
  }

  async findByUserCode(userCode) {
    const index = liveObject(`user-code-index:${this.model}:${userCode}`);
    return index ? this.find(index.id) : undefined;
  }

  async consume(id) {
    const stored = liveObject(this.key(id));
    if (stored) {
      stored.payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    storedObjects.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const prefix = `grant-index:${grantId}:`;
    for (const key of [...storedObjects.keys()]) {
      if (key.startsWith(prefix)) {
        storedObjects.delete(key);
        storedObjects.delete(key.slice(prefix.length));
      }
    }
  }
}

// Returns the stored object under `key`, deleting it instead when it has expired.
function liveObject(key) {
  const stored = storedObjects.get(key);
  if (stored && stored.expiresAt <= Date.now()) {
    storedObjects.delete(key);
    return undefined;
  }
  return stored;
}

function sweepExpired() {
  const now = Date.now();
  for (const [key, stored] of storedObjects) {
    if (stored.expiresAt <= now) {
      storedObjects.delete(key);
    }
  }
}

function buildConfiguration({ redirectUris, signingKey, state }) {
  return {
    adapter: UnboundedMemoryAdapter,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // oidc-provider accepts client_secret_post as well for a client registered with
        // client_secret_basic, because both authenticate with the same shared secret.
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: SIGNING_ALG,
      },
    ],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    scopes: ['openid', 'email', 'profile'],
    claims: SCOPE_CLAIMS,
    // Put the scope claims (name, email, ...) into the ID token, not only into userinfo.
    conformIdTokenClaims: false,
    jwks: { keys: [signingKey] },
    cookies: {
      keys: [randomBytes(32).toString('hex')],
      // The default for long-lived cookies is SameSite=None. Chromium rejects such cookies
      // without the Secure flag, which an http issuer cannot set, so Lax is used instead.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount: (ctx, sub) => findAccount(state, sub),
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
    },
    // Clients here have no jwks_uri, sector_identifier_uri or request_uri, so the provider
    // has nothing to fetch. If a future option makes it try, the request fails at once.
    httpOptions: (url) => {
      log('blocked an outbound HTTP request', { url: url.href });
      return { signal: AbortSignal.abort(new Error(`outbound HTTP request blocked: ${url.href}`)) };
    },
    renderError: (ctx, out, error) => {
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
      log('rendered an error page', {
        error: out.error,
        description: out.error_description,
        cause: String(error),
      });
    },
  };
}

function findAccount(state, sub) {
  const claims = state.accounts.get(sub);
  if (claims === undefined) {
    return undefined;
  }
  return {
    accountId: sub,
    claims: async () => ({ ...claims }),
  };
}

// Wraps IdToken#issue so that an override set through /control/next-id-token replaces
// claims of the next ID token. oidc-provider 8.8 sets `iss`, `aud` and `exp` from its own
// configuration while it signs (lib/helpers/jwt.js), after any claim hook runs, so the override
// decodes the issued token, changes the claims and signs again with the same provider key
// and header. The result is a validly signed token with the requested wrong claims.
function installIdTokenOverride(provider, signingKey, state) {
  const privateKey = createPrivateKey({ key: signingKey, format: 'jwk' });
  const { IdToken } = provider;
  const issue = IdToken.prototype.issue;

  IdToken.prototype.issue = async function issueWithTestOverride(options = {}) {
    const jwt = await issue.call(this, options);
    if (options.use !== 'idtoken' || state.nextIdTokenOverride === null) {
      return jwt;
    }
    const override = state.takeNextIdTokenOverride();
    const header = decodeProtectedHeader(jwt);
    const payload = applyIdTokenOverride(decodeJwt(jwt), override);
    log('issued an ID token with overridden claims', { override });
    return new CompactSign(Buffer.from(JSON.stringify(payload)))
      .setProtectedHeader(header)
      .sign(privateKey);
  };
}

function applyIdTokenOverride(payload, override) {
  const result = { ...payload };
  if (override.nonce !== undefined) {
    result.nonce = override.nonce;
  }
  if (override.aud !== undefined) {
    result.aud = override.aud;
  }
  if (override.iss !== undefined) {
    result.iss = override.iss;
  }
  if (override.exp_offset_s !== undefined) {
    // The offset is relative to the token's issue time, so -3600 means "expired an hour ago".
    result.exp = result.iat + override.exp_offset_s;
  }
  return result;
}

// Completes an interaction in one step as the current user: login, plus consent to every
// requested scope. One step matters because the provider's session cookie is dropped on the
// authorization endpoint (see dropSessionCookies), so no state may carry over to a second
// interaction. A pending /control/next-error ends the interaction with that error instead,
// which the provider sends to the redirect URI.
async function handleInteraction(provider, state, req, res) {
  const { uid, prompt, params } = await provider.interactionDetails(req, res);

  const error = state.takeNextError();
  if (error !== null) {
    log('ending interaction with the requested error', { uid, error: error.error });
    await provider.interactionFinished(req, res, error, { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name !== 'login') {
    throw new Error(
      `unexpected interaction prompt ${JSON.stringify(prompt.name)}: expected "login"`,
    );
  }

  const user = { ...state.currentUser };
  state.accounts.set(user.sub, user);
  const grant = new provider.Grant({ accountId: user.sub, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const grantId = await grant.save();

  log('signed in the current user', { uid, sub: user.sub, scope: params.scope });
  const result = { login: { accountId: user.sub }, consent: { grantId } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

class RequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readJsonBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_CONTROL_BODY_BYTES) {
      throw new RequestError(413, `request body exceeds ${MAX_CONTROL_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    return {};
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new RequestError(400, `invalid JSON body: ${error.message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new RequestError(400, 'invalid JSON body: expected an object');
  }
  return body;
}

function validateUser(body) {
  if (typeof body.sub !== 'string' || body.sub === '') {
    throw new RequestError(400, 'invalid user: "sub" must be a non-empty string');
  }
  if (body.email_verified !== undefined && typeof body.email_verified !== 'boolean') {
    throw new RequestError(400, 'invalid user: "email_verified" must be a boolean');
  }
  return { ...body };
}

function validateNextError(body) {
  if (typeof body.error !== 'string' || !OAUTH_ERROR_CODE.test(body.error)) {
    throw new RequestError(
      400,
      'invalid next-error: "error" must be an OAuth error code such as "access_denied"',
    );
  }
  if (body.error_description !== undefined && typeof body.error_description !== 'string') {
    throw new RequestError(400, 'invalid next-error: "error_description" must be a string');
  }
  const error = { error: body.error };
  if (body.error_description !== undefined) {
    error.error_description = body.error_description;
  }
  return error;
}

function validateIdTokenOverride(body) {
  const unknown = Object.keys(body).filter((key) => !ID_TOKEN_OVERRIDE_KEYS.has(key));
  if (unknown.length > 0) {
    throw new RequestError(
      400,
      `invalid next-id-token: unknown keys ${unknown.join(', ')}. Allowed keys: ${[...ID_TOKEN_OVERRIDE_KEYS].join(', ')}`,
    );
  }
  for (const key of ['nonce', 'iss']) {
    if (body[key] !== undefined && typeof body[key] !== 'string') {
      throw new RequestError(400, `invalid next-id-token: "${key}" must be a string`);
    }
  }
  const audIsValid =
    body.aud === undefined ||
    typeof body.aud === 'string' ||
    (Array.isArray(body.aud) && body.aud.every((value) => typeof value === 'string'));
  if (!audIsValid) {
    throw new RequestError(
      400,
      'invalid next-id-token: "aud" must be a string or an array of strings',
    );
  }
  if (body.exp_offset_s !== undefined && !Number.isInteger(body.exp_offset_s)) {
    throw new RequestError(
      400,
      'invalid next-id-token: "exp_offset_s" must be an integer number of seconds',
    );
  }
  return { ...body };
}

async function handleControl(state, req, res, pathname) {
  if (pathname === '/control/last-tokens') {
    sendLastTokens(state, req, res);
    return;
  }
  if (req.method !== 'POST') {
    throw new RequestError(405, `method ${req.method} not allowed on ${pathname}: use POST`);
  }
  const body = await readJsonBody(req);
  switch (pathname) {
    case '/control/user':
      state.currentUser = validateUser(body);
      log('set the current user', { sub: state.currentUser.sub });
      break;
    case '/control/next-error':
      state.nextError = validateNextError(body);
      log('set the next authorization error', { error: state.nextError.error });
      break;
    case '/control/next-id-token':
      state.nextIdTokenOverride = validateIdTokenOverride(body);
      log('set the next ID token override', { override: state.nextIdTokenOverride });
      break;
    case '/control/reset':
      state.reset();
      log('reset the control state');
      break;
    default:
      throw new RequestError(404, `unknown control endpoint ${pathname}`);
  }
  res.writeHead(204).end();
}

function sendLastTokens(state, req, res) {
  if (req.method !== 'GET') {
    throw new RequestError(405, `method ${req.method} not allowed on /control/last-tokens: use GET`);
  }
  if (state.lastTokens === null) {
    throw new RequestError(404, 'no tokens issued since the start or the last reset');
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(state.lastTokens)}\n`);
}

function sendRequestError(res, error) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // oidc-provider's own errors, such as an expired interaction, carry an HTTP statusCode and
  // an OAuth error_description.
  const status = error instanceof RequestError ? error.status : (error?.statusCode ?? 500);
  const body = { error: error.message };
  if (error?.error_description !== undefined) {
    body.error_description = error.error_description;
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

// Removes the provider's session cookies from requests to the authorization endpoint and
// its resume path (`/auth/UID`), so every authorization request starts signed out and
// reaches the interaction handler. That handler then signs in the current user and applies
// /control/next-error. With the cookie, the provider would reuse the earlier user, or respond to
// a change of user with a logout form that only a browser with JavaScript submits.
function dropSessionCookies(req) {
  const cookies = req.headers.cookie;
  if (cookies === undefined) {
    return;
  }
  const otherCookies = cookies
    .split(';')
    .map((cookie) => cookie.trim())
    .filter(
      (cookie) =>
        cookie !== '' &&
        !cookie.startsWith(`${SESSION_COOKIE}=`) &&
        !cookie.startsWith(`${SESSION_COOKIE}.`),
    );
  req.headers.cookie = otherCookies.join('; ');
}

function createRequestHandler(provider, state) {
  const providerCallback = provider.callback();

  return async (req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    try {
      if (pathname.startsWith('/control/')) {
        await handleControl(state, req, res, pathname);
      } else if (pathname.startsWith('/interaction/') && req.method === 'GET') {
        await handleInteraction(provider, state, req, res);
      } else {
        if (pathname === AUTHORIZATION_PATH || pathname.startsWith(`${AUTHORIZATION_PATH}/`)) {
          dropSessionCookies(req);
        }
        providerCallback(req, res);
      }
    } catch (error) {
      if (error?.statusCode !== undefined) {
        log('request failed', {
          method: req.method,
          path: pathname,
          error: error.message,
          description: error.error_description,
        });
      } else if (!(error instanceof RequestError)) {
        log('request failed', {
          method: req.method,
          path: pathname,
          error: String(error?.stack ?? error),
        });
      }
      sendRequestError(res, error);
    }
  };
}

// Keeps the values of the last successful token request: the code, the PKCE verifier and
// the tokens in the response body, which oidc-provider has set when it emits grant.success.
function recordIssuedTokens(provider, state) {
  provider.on('grant.success', (ctx) => {
    const { code, code_verifier: codeVerifier } = ctx.oidc.params;
    const { access_token: accessToken, id_token: idToken } = ctx.body;
    state.lastTokens = {
      code,
      code_verifier: codeVerifier,
      access_token: accessToken,
      id_token: idToken,
    };
  });
}

function logProviderEvents(provider) {
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (ctx, error) => {
      log(event, { error: error.message, description: error.error_description });
    });
  }
  provider.on('grant.success', () => log('issued tokens at the token endpoint'));
}

async function main() {
  const { port, redirectUris } = parseCommandLine();
  const state = new ControlState();

  // The issuer URL contains the port, which is only known after listen() when port is 0,
  // so the server starts first and routes requests to the provider once it exists.
  let handler = (req, res) => res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const signingKey = generateSigningKey();
  const provider = new Provider(issuer, buildConfiguration({ redirectUris, signingKey, state }));
  installIdTokenOverride(provider, signingKey, state);
  logProviderEvents(provider);
  recordIssuedTokens(provider, state);
  handler = createRequestHandler(provider, state);

  log('started', {
    issuer,
    client_id: CLIENT_ID,
    redirect_uris: redirectUris,
    kid: signingKey.kid,
  });
  process.stdout.write(`listening ${issuer}\n`);

  const stop = (signal) => {
    log('stopping', { signal });
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  log(`failed to start: ${error.message}`);
  process.exit(1);
});
