// Self-tests for the test OpenID provider and the browser driver. Run with `node --test`
// in this folder. The browser tests need Chromium (see README.md).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  compactVerify,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  importJWK,
  jwtVerify,
} from 'jose';

import {
  CLIENT_ID,
  CookieJar,
  authorizationUrl,
  exchangeCode,
  followToRedirectUri,
  pkcePair,
  postJson,
  runHelper,
  startHelper,
  startPageServer,
} from './selftest-support.mjs';

// Never contacted: the walk stops at the first redirect that points here.
const REDIRECT_URI = 'http://127.0.0.1:9/callback';

describe('oidc-provider.mjs', () => {
  let provider;
  let issuer;
  let jwks;

  before(async () => {
    provider = await startHelper('oidc-provider.mjs', [
      '--port',
      '0',
      '--redirect-uri',
      REDIRECT_URI,
    ]);
    issuer = provider.url;
    jwks = createRemoteJWKSet(new URL('/jwks', issuer));
  });

  after(async () => {
    await provider?.stop();
  });

  beforeEach(async () => {
    const reset = await postJson(`${issuer}/control/reset`, {});
    assert.equal(reset.status, 204, reset.text);
  });

  // Runs one authorization request and returns the URL the provider redirected back to.
  async function authorize({
    jar = new CookieJar(),
    challenge,
    state = 'state-1',
    nonce = 'nonce-1',
  } = {}) {
    const start = authorizationUrl(issuer, { redirectUri: REDIRECT_URI, state, nonce, challenge });
    return followToRedirectUri(start, REDIRECT_URI, jar);
  }

  // Runs a full code flow and returns the token response body.
  async function signIn({ jar, auth = 'basic', nonce = 'nonce-1' } = {}) {
    const { verifier, challenge } = pkcePair();
    const callback = await authorize({ jar, challenge, nonce });
    const code = callback.searchParams.get('code');
    assert.ok(code, `no code in callback ${callback.href}`);
    const token = await exchangeCode(issuer, { code, redirectUri: REDIRECT_URI, verifier, auth });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    return token.body;
  }

  test('discovery document matches contract', async () => {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    assert.equal(response.status, 200);
    const discovery = await response.json();
    assert.equal(discovery.issuer, issuer);
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(discovery.token_endpoint_auth_methods_supported, [
      'client_secret_basic',
      'client_secret_post',
    ]);
    assert.deepEqual(discovery.id_token_signing_alg_values_supported, ['RS256']);
    assert.deepEqual(discovery.response_types_supported, ['code']);
    for (const scope of ['openid', 'email', 'profile']) {
      assert.ok(discovery.scopes_supported.includes(scope), `scope ${scope} missing`);
    }
  });

  test('code flow issues ID token with profile claims', async () => {
    const tokens = await signIn({ nonce: 'n-42' });
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token, jwks, {
      issuer,
      audience: CLIENT_ID,
    });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.sub, 'u-1');
    assert.equal(payload.name, 'Ada Lovelace');
    assert.equal(payload.given_name, 'Ada');
    assert.equal(payload.email, 'ada@example.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.nonce, 'n-42');
    assert.ok(payload.exp > Date.now() / 1000, 'ID token already expired');
  });

  test('code survives 600 later sign-ins', async () => {
    // oidc-provider's own memory adapter is a QuickLRU of maxSize 1000, which keeps 1000
    // to 2000 objects, and every sign-in stores an interaction, a session, a grant and a code.
    const { verifier, challenge } = pkcePair();
    const first = await authorize({ challenge });
    const code = first.searchParams.get('code');
    for (let batch = 0; batch < 50; batch += 1) {
      await Promise.all(Array.from({ length: 12 }, () => authorize({ challenge })));
    }
    const token = await exchangeCode(issuer, { code, redirectUri: REDIRECT_URI, verifier });
    assert.equal(token.status, 200, JSON.stringify(token.body));
  });

  test('client_secret_post is accepted', async () => {
    const tokens = await signIn({ auth: 'post' });
    const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer, audience: CLIENT_ID });
    assert.equal(payload.sub, 'u-1');
  });

  test('wrong client secret is rejected', async () => {
    const { verifier, challenge } = pkcePair();
    const callback = await authorize({ challenge });
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:wrong`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code'),
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      }),
    });
    assert.equal(response.status, 401);
    assert.equal((await response.json()).error, 'invalid_client');
  });

  test('control user sets claims, omitted ones absent', async () => {
    const user = { sub: 'u-2', email: 'grace@example.org', email_verified: false };
    const set = await postJson(`${issuer}/control/user`, user);
    assert.equal(set.status, 204, set.text);

    const tokens = await signIn();
    const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer, audience: CLIENT_ID });
    assert.equal(payload.sub, 'u-2');
    assert.equal(payload.email, 'grace@example.org');
    assert.equal(payload.email_verified, false);
    assert.equal('name' in payload, false, 'name claim present');
    assert.equal('given_name' in payload, false, 'given_name claim present');
  });

  test('unusual names pass through unchanged', async () => {
    const names = [
      '<script>alert(1)</script>',
      'Zoë Ångström 名前',
      'مرحبا بالعالم',
      'x'.repeat(10 * 1024),
    ];
    for (const name of names) {
      await postJson(`${issuer}/control/user`, {
        sub: 'u-3',
        name,
        email: 'a@example.com',
        email_verified: true,
      });
      const tokens = await signIn();
      const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer, audience: CLIENT_ID });
      assert.equal(payload.name, name);
    }
  });

  test('same cookie jar signs in new user', async () => {
    const jar = new CookieJar();
    const first = await signIn({ jar });
    assert.equal(decodeJwt(first.id_token).sub, 'u-1');

    await postJson(`${issuer}/control/user`, { sub: 'u-9', name: 'Grace Hopper' });
    const second = await signIn({ jar });
    assert.equal(decodeJwt(second.id_token).sub, 'u-9');
    assert.equal(decodeJwt(second.id_token).name, 'Grace Hopper');
  });

  test('authorization without PKCE is rejected', async () => {
    const callback = await authorize({ challenge: undefined, state: 's-no-pkce' });
    assert.equal(callback.searchParams.get('error'), 'invalid_request');
    assert.equal(callback.searchParams.get('state'), 's-no-pkce');
    assert.equal(callback.searchParams.has('code'), false);
  });

  test('wrong PKCE verifier is rejected', async () => {
    const { challenge } = pkcePair();
    const callback = await authorize({ challenge });
    const token = await exchangeCode(issuer, {
      code: callback.searchParams.get('code'),
      redirectUri: REDIRECT_URI,
      verifier: pkcePair().verifier,
    });
    assert.equal(token.status, 400);
    assert.equal(token.body.error, 'invalid_grant');
  });

  test('next-error redirects once with error', async () => {
    const set = await postJson(`${issuer}/control/next-error`, { error: 'access_denied' });
    assert.equal(set.status, 204, set.text);

    const { challenge } = pkcePair();
    const failed = await authorize({ challenge, state: 's-denied' });
    assert.equal(failed.searchParams.get('error'), 'access_denied');
    assert.equal(failed.searchParams.get('state'), 's-denied');
    assert.equal(failed.searchParams.has('code'), false);

    const next = await authorize({ challenge });
    assert.ok(next.searchParams.has('code'), `second request failed: ${next.href}`);
  });

  test('next-id-token overrides claims, still signed', async () => {
    const set = await postJson(`${issuer}/control/next-id-token`, {
      nonce: 'forged-nonce',
      aud: 'someone-else',
      iss: 'http://127.0.0.1:1',
      exp_offset_s: -3600,
    });
    assert.equal(set.status, 204, set.text);

    const tokens = await signIn({ nonce: 'real-nonce' });
    const header = decodeProtectedHeader(tokens.id_token);
    assert.equal(header.alg, 'RS256');
    // compactVerify checks only the signature, so the expired token still verifies here.
    const keys = await (await fetch(`${issuer}/jwks`)).json();
    const key = keys.keys.find((candidate) => candidate.kid === header.kid);
    assert.ok(key, `no JWKS key with kid ${header.kid}`);
    await compactVerify(tokens.id_token, await importJWK(key, 'RS256'));

    const payload = decodeJwt(tokens.id_token);
    assert.equal(payload.nonce, 'forged-nonce');
    assert.equal(payload.aud, 'someone-else');
    assert.equal(payload.iss, 'http://127.0.0.1:1');
    assert.equal(payload.exp, payload.iat - 3600);
    assert.equal(payload.sub, 'u-1');
    assert.equal(payload.name, 'Ada Lovelace');

    const next = await signIn({ nonce: 'after' });
    const { payload: normal } = await jwtVerify(next.id_token, jwks, {
      issuer,
      audience: CLIENT_ID,
    });
    assert.equal(normal.nonce, 'after');
  });

  test('next-id-token overrides only given claims', async () => {
    await postJson(`${issuer}/control/next-id-token`, { nonce: 'other' });
    const tokens = await signIn({ nonce: 'mine' });
    const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer, audience: CLIENT_ID });
    assert.equal(payload.nonce, 'other');
  });

  test('control endpoints reject invalid input', async () => {
    const cases = [
      ['/control/user', { name: 'no sub' }, 400],
      ['/control/user', { sub: 'u', email_verified: 'yes' }, 400],
      ['/control/next-error', {}, 400],
      ['/control/next-error', { error: 'bad"quote' }, 400],
      ['/control/next-id-token', { audience: 'x' }, 400],
      ['/control/next-id-token', { exp_offset_s: '10' }, 400],
      ['/control/unknown', {}, 404],
    ];
    for (const [path, body, status] of cases) {
      const response = await postJson(`${issuer}${path}`, body);
      assert.equal(response.status, status, `${path} ${JSON.stringify(body)}: ${response.text}`);
    }

    const invalidJson = await fetch(`${issuer}/control/user`, { method: 'POST', body: '{' });
    assert.equal(invalidJson.status, 400);
    const wrongMethod = await fetch(`${issuer}/control/reset`);
    assert.equal(wrongMethod.status, 405);
  });

  test('unknown interaction returns 400', async () => {
    const response = await fetch(`${issuer}/interaction/unknown-uid`);
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(body.error, 'invalid_request');
    assert.match(body.error_description, /not found/);
  });

  test('reset restores default user', async () => {
    await postJson(`${issuer}/control/user`, { sub: 'u-5' });
    await postJson(`${issuer}/control/next-error`, { error: 'access_denied' });
    await postJson(`${issuer}/control/reset`, {});
    const tokens = await signIn();
    assert.equal(decodeJwt(tokens.id_token).sub, 'u-1');
  });

  test('last-tokens returns last token response', async () => {
    const before = await fetch(`${issuer}/control/last-tokens`);
    assert.equal(before.status, 404);
    const { verifier, challenge } = pkcePair();
    const callback = await authorize({ challenge });
    const code = callback.searchParams.get('code');
    const token = await exchangeCode(issuer, { code, redirectUri: REDIRECT_URI, verifier });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    const response = await fetch(`${issuer}/control/last-tokens`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      code,
      code_verifier: verifier,
      access_token: token.body.access_token,
      id_token: token.body.id_token,
    });
    await postJson(`${issuer}/control/reset`, {});
    const afterReset = await fetch(`${issuer}/control/last-tokens`);
    assert.equal(afterReset.status, 404);
  });

  test('stdout has only the listening line', async () => {
    await signIn();
    assert.deepEqual(provider.stdoutLines, [`listening ${issuer}`]);
  });
});

describe('oidc-provider.mjs arguments', () => {
  test('missing redirect URI fails', async () => {
    const result = await runHelper('oidc-provider.mjs', ['--port', '0']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /missing --redirect-uri/);
    assert.equal(result.stdout, '');
  });
});

describe('browser-flow.mjs', () => {
  let outputDir;

  before(async () => {
    outputDir = await mkdtemp(join(tmpdir(), 'nixtla-browser-selftest-'));
  });

  after(async () => {
    await rm(outputDir, { recursive: true, force: true });
  });

  async function assertPng(path) {
    const bytes = await readFile(path);
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  }

  function parseReport(stdout) {
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1, `expected one JSON line, got:\n${stdout}`);
    return JSON.parse(lines[0]);
  }

  test('dev mode signs in and out', async () => {
    const pages = await startPageServer('dev');
    try {
      const screenshot = join(outputDir, 'dev', 'signed-in.png');
      const result = await runHelper('browser-flow.mjs', [
        '--base-url',
        pages.url,
        '--mode',
        'dev',
        '--name',
        'Ada <Lovelace>',
        '--email',
        'ada@example.com',
        '--expect-greeting',
        'Hello Ada <Lovelace>!',
        '--screenshot',
        screenshot,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const report = parseReport(result.stdout);
      assert.equal(report.ok, true);
      assert.equal(report.greeting, 'Hello Ada <Lovelace>!');
      assert.equal(report.login_url, `${pages.url}/login`);
      assert.equal(report.signed_in_url, `${pages.url}/nixtla`);
      assert.equal(report.signed_out, true);
      assert.deepEqual(report.after_sign_out, { status: 302, location: '/login?next=/nixtla' });
      await assertPng(screenshot);
    } finally {
      await pages.close();
    }
  });

  test('oidc mode signs in through provider', async () => {
    const pages = await startPageServer('oidc');
    const provider = await startHelper('oidc-provider.mjs', [
      '--redirect-uri',
      `${pages.url}/auth`,
    ]);
    pages.setIssuer(provider.url);
    try {
      const screenshot = join(outputDir, 'oidc.png');
      const result = await runHelper('browser-flow.mjs', [
        '--base-url',
        pages.url,
        '--mode',
        'oidc',
        '--expect-greeting',
        'Hello Ada Lovelace!',
        '--screenshot',
        screenshot,
      ]);
      assert.equal(result.code, 0, `${result.stderr}\nprovider log:\n${provider.output()}`);
      const report = parseReport(result.stdout);
      assert.equal(report.ok, true);
      assert.equal(report.greeting, 'Hello Ada Lovelace!');
      assert.ok(
        report.provider_urls.some((url) => url.startsWith(provider.url)),
        report.provider_urls.join(' '),
      );
      assert.equal(report.signed_out, true);
      await assertPng(screenshot);
    } finally {
      await provider.stop();
      await pages.close();
    }
  });

  test('wrong greeting exits 1', async () => {
    const pages = await startPageServer('dev');
    try {
      const result = await runHelper('browser-flow.mjs', [
        '--base-url',
        pages.url,
        '--mode',
        'dev',
        '--name',
        'Ada',
        '--email',
        'ada@example.com',
        '--expect-greeting',
        'Hello Bob!',
        '--screenshot',
        join(outputDir, 'wrong.png'),
      ]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /unexpected greeting "Hello Ada!": expected "Hello Bob!"/);
      const report = parseReport(result.stdout);
      assert.equal(report.ok, false);
      await assertPng(report.screenshot);
    } finally {
      await pages.close();
    }
  });

  test('failed sign-out exits 1', async () => {
    const pages = await startPageServer('dev', { keepSessionOnLogout: true });
    try {
      const result = await runHelper('browser-flow.mjs', [
        '--base-url',
        pages.url,
        '--mode',
        'dev',
        '--name',
        'Ada',
        '--email',
        'ada@example.com',
        '--expect-greeting',
        'Hello Ada!',
        '--screenshot',
        join(outputDir, 'kept-session.png'),
      ]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /still signed in after #sign-out: GET \/nixtla returned 200/);
      const report = parseReport(result.stdout);
      assert.equal(report.ok, false);
      assert.equal(report.signed_out, false);
      assert.equal(report.greeting, 'Hello Ada!');
    } finally {
      await pages.close();
    }
  });

  test('stuck sign-in times out', async () => {
    // oidc mode waits for the provider to finish, but the dev page server stops at its form.
    const pages = await startPageServer('dev');
    try {
      const result = await runHelper('browser-flow.mjs', [
        '--base-url',
        pages.url,
        '--mode',
        'oidc',
        '--expect-greeting',
        'Hello Ada!',
        '--screenshot',
        join(outputDir, 'stuck.png'),
        '--timeout-ms',
        '2000',
      ]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /Timeout 2000ms exceeded/);
      assert.match(result.stderr, /browser was on http:\/\/127\.0\.0\.1:\d+\/login\)/);
      assert.equal(parseReport(result.stdout).failed_at_url, `${pages.url}/login`);
    } finally {
      await pages.close();
    }
  });

  test('unreachable app exits 1', async () => {
    const pages = await startPageServer('dev');
    const url = pages.url;
    await pages.close();
    const result = await runHelper('browser-flow.mjs', [
      '--base-url',
      url,
      '--mode',
      'dev',
      '--name',
      'Ada',
      '--email',
      'ada@example.com',
      '--expect-greeting',
      'Hello Ada!',
      '--screenshot',
      join(outputDir, 'unreachable.png'),
      '--timeout-ms',
      '5000',
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /browser-flow: FAILED: .*ERR_CONNECTION_REFUSED/);
  });

  test('missing Chromium exits 1 with hint', async () => {
    const result = await runHelper(
      'browser-flow.mjs',
      [
        '--base-url',
        'http://127.0.0.1:9',
        '--mode',
        'oidc',
        '--expect-greeting',
        'Hello!',
        '--screenshot',
        join(outputDir, 'none.png'),
      ],
      { env: { ...process.env, NIXTLA_TEST_CHROMIUM: '/nonexistent/chromium' } },
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Chromium not found at \/nonexistent\/chromium: install it with/);
  });

  test('invalid mode exits 1', async () => {
    const result = await runHelper('browser-flow.mjs', [
      '--base-url',
      'http://127.0.0.1:9',
      '--mode',
      'magic',
      '--expect-greeting',
      'x',
      '--screenshot',
      'x.png',
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid --mode "magic"/);
  });
});
