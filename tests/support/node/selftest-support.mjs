// Helpers for selftest.test.mjs: spawning the helper scripts and a cookie-aware walk
// through the provider's redirects. A small page server serves nixtla's pages (`/`,
// `/login`, `/auth`, `/nixtla`, `/logout`), so the browser driver can be tested without
// the Rust app.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { createRemoteJWKSet, jwtVerify } from 'jose';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const CLIENT_ID = 'nixtla-test';
export const CLIENT_SECRET = 'nixtla-test-secret';

const STARTUP_TIMEOUT_MS = 15000;

// Starts `node SCRIPT ARGS...` from this folder and resolves once it prints
// `listening URL`. The child's stderr is kept in `output()` for failure messages.
export function startHelper(script, args, { env = process.env } = {}) {
  const child = spawn(process.execPath, [join(HERE, script), ...args], {
    cwd: HERE,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout });
  const stdoutLines = [];

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(
        new Error(
          `${script} printed no "listening" line within ${STARTUP_TIMEOUT_MS} ms, stderr:\n${stderr}`,
        ),
      );
    }, STARTUP_TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with code ${code} before listening, stderr:\n${stderr}`));
    });
    lines.on('line', (line) => {
      stdoutLines.push(line);
      const match = /^listening (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[1],
          child,
          stdoutLines,
          output: () => stderr,
          stop: () => stopChild(child),
        });
      }
    });
  });
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

// Runs `node SCRIPT ARGS...` to completion and returns its exit code and output.
export function runHelper(script, args, { env = process.env } = {}) {
  const child = spawn(process.execPath, [join(HERE, script), ...args], {
    cwd: HERE,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function postJson(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

// A minimal cookie store: name=value pairs per origin, enough for the provider's cookies.
export class CookieJar {
  constructor() {
    this.cookies = new Map();
  }

  store(origin, response) {
    const jar = this.cookies.get(origin) ?? new Map();
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const separator = pair.indexOf('=');
      jar.set(pair.slice(0, separator).trim(), pair.slice(separator + 1).trim());
    }
    this.cookies.set(origin, jar);
  }

  header(origin) {
    const jar = this.cookies.get(origin) ?? new Map();
    return [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

export function base64url(buffer) {
  return buffer.toString('base64url');
}

export function pkcePair() {
  const verifier = base64url(randomBytes(32));
  const challenge = base64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

// Follows redirects from `startUrl` with `jar` until one points at `redirectUri`, and
// returns that final URL (with `code` or `error`). Throws on any non-redirect response.
export async function followToRedirectUri(startUrl, redirectUri, jar, maxSteps = 10) {
  let url = new URL(startUrl);
  for (let step = 0; step < maxSteps; step += 1) {
    if (url.href.startsWith(redirectUri)) {
      return url;
    }
    const response = await fetch(url, {
      redirect: 'manual',
      headers: { cookie: jar.header(url.origin) },
    });
    jar.store(url.origin, response);
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || location === null) {
      throw new Error(
        `expected a redirect from ${url.href}, got ${response.status}: ${await response.text()}`,
      );
    }
    url = new URL(location, url);
  }
  throw new Error(`no redirect to ${redirectUri} after ${maxSteps} steps`);
}

export function authorizationUrl(
  issuer,
  { redirectUri, state, nonce, challenge, scope = 'openid email profile' },
) {
  const url = new URL('/auth', issuer);
  url.search = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    ...(challenge === undefined
      ? {}
      : { code_challenge: challenge, code_challenge_method: 'S256' }),
  }).toString();
  return url;
}

// Exchanges an authorization code at the token endpoint with client_secret_basic (default)
// or client_secret_post.
export async function exchangeCode(issuer, { code, redirectUri, verifier, auth = 'basic' }) {
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
  });
  if (verifier !== undefined) {
    form.set('code_verifier', verifier);
  }
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
  } else {
    form.set('client_id', CLIENT_ID);
    form.set('client_secret', CLIENT_SECRET);
  }
  const response = await fetch(new URL('/token', issuer), { method: 'POST', headers, body: form });
  return { status: response.status, body: await response.json() };
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

function readCookie(req, name) {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) {
      return rest.join('=');
    }
  }
  return undefined;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Serves nixtla's page contract. In "dev" mode /login shows the development login form. In
// "oidc" mode /login redirects to the provider set with `setIssuer`, and /auth completes
// the code flow with PKCE and checks the ID token's signature, issuer, audience and nonce.
// With `keepSessionOnLogout`, POST /logout redirects without ending the session, which
// tests the driver's sign-out check.
export async function startPageServer(mode, { keepSessionOnLogout = false } = {}) {
  const sessions = new Map();
  const pendingLogins = new Map();
  let issuer;

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      res
        .writeHead(500, { 'content-type': 'text/plain' })
        .end(`page server error: ${error.message}\n`);
    });
  });

  const redirect = (res, location, cookies = []) => {
    res.writeHead(302, { location, 'set-cookie': cookies }).end();
  };
  const html = (res, status, title, body) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' }).end(page(title, body));
  };
  const startSession = (res, name) => {
    const id = base64url(randomBytes(16));
    sessions.set(id, { name });
    redirect(res, '/nixtla', [`sid=${id}; Path=/; HttpOnly; SameSite=Lax`]);
  };

  async function handle(req, res) {
    const url = new URL(req.url, `http://${req.headers.host}`);
    const session = sessions.get(readCookie(req, 'sid'));

    if (req.method === 'GET' && url.pathname === '/') {
      html(res, 200, 'nixtla', '<a id="sign-in" href="/login">Sign in</a>');
    } else if (req.method === 'GET' && url.pathname === '/login' && mode === 'dev') {
      html(
        res,
        200,
        'Sign in',
        '<p id="dev-login-banner">Development login</p><form method="post" action="/login">' +
          '<input name="name"><input name="email"><button id="dev-sign-in">Sign in</button></form>',
      );
    } else if (req.method === 'POST' && url.pathname === '/login' && mode === 'dev') {
      const form = await readForm(req);
      startSession(res, form.get('name'));
    } else if (req.method === 'GET' && url.pathname === '/login' && mode === 'oidc') {
      const { verifier, challenge } = pkcePair();
      const state = base64url(randomBytes(16));
      const nonce = base64url(randomBytes(16));
      pendingLogins.set(state, { verifier, nonce });
      redirect(
        res,
        authorizationUrl(issuer, { redirectUri: `${url.origin}/auth`, state, nonce, challenge })
          .href,
      );
    } else if (req.method === 'GET' && url.pathname === '/auth' && mode === 'oidc') {
      const pending = pendingLogins.get(url.searchParams.get('state'));
      pendingLogins.delete(url.searchParams.get('state'));
      if (pending === undefined || !url.searchParams.has('code')) {
        html(res, 400, 'Sign-in failed', '<p>invalid callback</p>');
        return;
      }
      const token = await exchangeCode(issuer, {
        code: url.searchParams.get('code'),
        redirectUri: `${url.origin}/auth`,
        verifier: pending.verifier,
      });
      const { payload } = await jwtVerify(
        token.body.id_token,
        createRemoteJWKSet(new URL('/jwks', issuer)),
        {
          issuer,
          audience: CLIENT_ID,
        },
      );
      if (payload.nonce !== pending.nonce) {
        html(res, 400, 'Sign-in failed', '<p>nonce mismatch</p>');
        return;
      }
      startSession(res, payload.name ?? payload.sub);
    } else if (req.method === 'GET' && url.pathname === '/nixtla') {
      if (session === undefined) {
        redirect(res, '/login?next=/nixtla');
        return;
      }
      html(
        res,
        200,
        'nixtla',
        `<h1 id="greeting">Hello ${escapeHtml(session.name)}!</h1>` +
          '<form method="post" action="/logout"><button id="sign-out">Sign out</button></form>',
      );
    } else if (req.method === 'POST' && url.pathname === '/logout') {
      if (keepSessionOnLogout) {
        redirect(res, '/');
        return;
      }
      sessions.delete(readCookie(req, 'sid'));
      redirect(res, '/', ['sid=; Path=/; Max-Age=0']);
    } else {
      html(res, 404, 'Not found', '<p>not found</p>');
    }
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setIssuer: (value) => {
      issuer = value;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
